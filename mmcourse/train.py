"""A visible training loop: ``fit`` batches tensors that already live on the device, by index.

The slow way to train (and the one most tutorials show) is a ``Dataset`` returning one sample at
a time through a ``DataLoader``: Python runs once per *sample* and every batch is re-collated and
copied. Here the whole (small) data set is moved to the device once, each epoch draws one random
permutation, and a batch is a single indexing op per modality. ``benchmarks/`` measures the gap.

Hooks: pass objects with any of ``on_batch_end(state)``, ``on_after_backward(state)``,
``on_epoch_end(state)``. Setting ``state.stop = True`` stops after the current batch and still
returns a usable model. Widgets (``mmcourse.widgets``) attach here; ``fit`` itself draws nothing.

Precision: float32 by default; ``FitConfig(precision="auto")`` trains in mixed precision on a GPU
(bfloat16, or float16 with loss scaling where bfloat16 is missing): ``runtime.choose_precision``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.runtime import PRECISIONS, bf16_supported, choose_precision, pick_device

Inputs = Tensor | dict[str, Tensor]


@dataclass
class FitConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # "adamw" or "sgd" (momentum 0.9)
    patience: int | None = None  # early stopping: epochs without a better val accuracy
    restore_best: bool = True  # with val data: end on the best-val epoch's weights, not the last
    device: str | None = None  # None: the best available (cuda > mps > cpu)
    # "fp32" (the default: every number in the notebooks); "auto": bfloat16 autocast on a GPU that
    # has it, float16 + GradScaler on one that doesn't (Colab's T4), fp32 on CPU/MPS; "bf16"; "fp16"
    precision: str = "fp32"
    compile: bool = False  # torch.compile the model (pays off only for long runs on a GPU)
    grad_clip: float | None = None
    seed: int = 0


@dataclass
class State:
    """What hooks see. Set ``stop = True`` to end training after the current batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: FitConfig
    device: torch.device
    history: dict[str, list]
    epoch: int = 0
    step: int = 0
    loss: float = float("nan")
    batch_size: int = 0
    stop: bool = False
    extra: dict = field(default_factory=dict)  # free space for hooks (e.g. OGM-GE coefficients)


def take(inputs: Inputs, idx: Tensor) -> Inputs:
    """Rows ``idx`` of a tensor, or of every tensor of a modality dict (sorted keys)."""
    if isinstance(inputs, dict):
        return {k: inputs[k][idx] for k in sorted(inputs)}
    return inputs[idx]


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: inputs[k].to(device) for k in sorted(inputs)}
    return inputs.to(device)


def num_rows(inputs: Inputs) -> int:
    if isinstance(inputs, dict):
        sizes = {k: len(v) for k, v in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every modality needs the same number of rows, got {sizes}")
        return next(iter(sizes.values()))
    return len(inputs)


def logits_of(out) -> Tensor:
    """Models may return logits (B, C) or a dict with a ``"logits"`` entry (plus auxiliaries)."""
    return out["logits"] if isinstance(out, dict) else out


def _default_loss(out, y: Tensor) -> Tensor:
    return F.cross_entropy(logits_of(out).float(), y)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` (from ``choose_precision``); ``None``: float32 throughout."""
    return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(model: nn.Module, inputs: Inputs, batch_size: int = 512, precision: str = "fp32") -> Tensor:
    """Logits (N, C) in float32 on the CPU, computed in eval mode batch by batch."""
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)  # an int8-quantized model may have none left
    device = first.device if first is not None else torch.device("cpu")
    dtype, _ = choose_precision(device.type, bf16_supported(device), precision)
    out = []
    for i in range(0, num_rows(inputs), batch_size):
        idx = torch.arange(i, min(i + batch_size, num_rows(inputs)))
        with _autocast(device, dtype):
            out.append(logits_of(model(to_device(take(inputs, idx), device))).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, inputs: Inputs, labels: Tensor, batch_size: int = 512,
             precision: str = "fp32") -> dict[str, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    logits = predict(model, inputs, batch_size, precision)
    labels = labels.cpu()
    return {"loss": F.cross_entropy(logits, labels).item(),
            "acc": (logits.argmax(-1) == labels).float().mean().item()}


def _check_config(config: FitConfig) -> None:
    """Raise ``ValueError`` naming the field and a sensible value for a config that cannot train."""
    for name, low in (("epochs", 1), ("batch_size", 1)):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"FitConfig.{name}={v!r}: needs an integer >= {low} (e.g. {name}=10)")
    if not (isinstance(config.lr, (int, float)) and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"FitConfig.lr={config.lr!r}: needs a finite number > 0, e.g. 1e-3")
    if config.precision not in PRECISIONS:
        raise ValueError(f"FitConfig.precision={config.precision!r}: use one of {PRECISIONS} (default 'fp32')")
    if config.patience is not None and (not isinstance(config.patience, int) or config.patience < 1):
        raise ValueError(f"FitConfig.patience={config.patience!r}: use None (no early stopping) or an integer >= 1")


def _check_split(name: str, split) -> None:
    """Raise ``ValueError`` for an empty split, non-finite inputs or labels that are not class ids."""
    if not (isinstance(split, (tuple, list)) and len(split) == 2):
        raise ValueError(f"{name} must be a pair (inputs, labels), got {type(split).__name__}")
    inputs, labels = split
    labels = torch.as_tensor(labels)
    n = num_rows(inputs)
    if n == 0 or len(labels) == 0:
        raise ValueError(f"{name} data is empty ({n} rows): pass at least one example"
                         + ("; or pass val=None to train without validation" if name == "val" else ""))
    if len(labels) != n:
        raise ValueError(f"{name} has {n} input rows but {len(labels)} labels; pass matching (inputs, labels)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise ValueError(f"{name} labels must be a (N,) tensor of int64 class indices, got {labels.dtype} "
                         f"of shape {tuple(labels.shape)}: use labels.long() (0 .. C-1)")
    if labels.min() < 0:
        raise ValueError(f"{name} labels must be class indices 0 .. C-1, found {int(labels.min())}")
    for key, x in (inputs.items() if isinstance(inputs, dict) else [("inputs", inputs)]):
        if x.dtype.is_floating_point and not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} {key} contain {bad} NaN/inf values: clean or impute them first "
                             "(e.g. torch.nan_to_num), they would turn every weight into NaN")


def _is_test_labels(labels: Tensor) -> bool:
    import sys
    av = sys.modules.get("mmcourse.data.av")  # only test splits handed out by the data layer count
    return av is not None and av.is_test_labels(labels)


def _call(callbacks, name: str, state: State) -> None:
    for cb in callbacks:
        hook = getattr(cb, name, None)
        if hook is not None:
            hook(state)


def fit(model: nn.Module, train: tuple[Inputs, Tensor], val: tuple[Inputs, Tensor] | None = None,
        config: FitConfig | None = None, callbacks=(), loss_fn=None) -> dict[str, list]:
    """Train ``model`` on ``train = (inputs, labels)``; return the history.

    Args:
        model: maps a batch of inputs (a (B, ...) tensor or a dict of them) to logits (B, C) or
            to a dict with ``"logits"``.
        train, val: ``(inputs, labels)`` with labels (N,) int64. Moved to the device once.
        loss_fn: ``loss_fn(model_output, labels) -> scalar``; default cross-entropy on the logits.

    Returns:
        history with per-epoch lists ``train_loss``, ``val_loss``, ``val_acc``, ``seconds``,
        ``samples_per_s``; with val data also ``best_epoch`` and ``best_val_acc``, and
        ``stopped_early`` when patience ran out, and ``diverged`` (True when the training loss
        became NaN/inf: ``fit`` warns once and stops before that update).

    Raises:
        ValueError: empty data, NaN/inf inputs, labels that are not int64 class indices,
            epochs/batch_size < 1, lr <= 0, or a test split passed as validation data.

    Model selection is on validation, never on test: with ``val`` given (and
    ``config.restore_best``, the default) the returned model holds the weights of the epoch with
    the best validation accuracy (the first one on ties). At a high learning rate the validation
    accuracy can swing by tens of points between epochs; the last epoch is a lottery ticket.
    """
    config = config or FitConfig()
    _check_config(config)
    _check_split("train", train)
    if val is not None:
        _check_split("val", val)
    device = pick_device(config.device)
    loss_fn = loss_fn or _default_loss
    g = torch.Generator().manual_seed(config.seed)
    X, y = to_device(train[0], device), train[1].to(device)
    n = num_rows(X)
    diverged = False
    if val is not None and _is_test_labels(val[1]):
        raise ValueError("the validation labels passed to fit are a test split's (load_av_digits('test')): "
                         "fit selects the best epoch on validation data, so pass the 'val' split; "
                         "the test split is for the final report only")
    model.to(device)
    step_model = torch.compile(model) if config.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        try:  # one fused kernel per step instead of a dozen small ops per parameter: 1.5x here
            opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # devices or older torch without the fused kernel
            opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'adamw' or 'sgd'")
    amp_dtype, use_scaler = choose_precision(device.type, bf16_supported(device), config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)  # disabled: passes everything through
    history = {k: [] for k in ("train_loss", "val_loss", "val_acc", "seconds", "samples_per_s")}
    state = State(model, opt, config, device, history)
    best_acc, best_state, bad_epochs = -1.0, None, 0
    for epoch in range(config.epochs):
        state.epoch, t0, total, seen = epoch, time.perf_counter(), 0.0, 0
        model.train()
        for idx in torch.randperm(n, generator=g).split(config.batch_size):
            idx = idx.to(device)
            with _autocast(device, amp_dtype):
                loss = loss_fn(step_model(take(X, idx)), y[idx])
            if not torch.isfinite(loss.detach()).all():  # diverged: stop before the step ruins the weights
                diverged = state.stop = True
                warnings.warn(
                    f"training loss became {loss.item()} at epoch {epoch}, step {state.step}: the run "
                    f"diverged (learning rate {config.lr:g} too high?). Training stopped before that "
                    "update; lower the learning rate (e.g. 10x) or set grad_clip.", RuntimeWarning, stacklevel=2)
                break
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)  # hooks and clipping see the true gradients
            _call(callbacks, "on_after_backward", state)
            if config.grad_clip:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(opt)  # = opt.step(), skipped when float16 gradients overflowed
            scaler.update()
            state.step += 1
            state.loss, state.batch_size = loss.item(), len(idx)
            total, seen = total + state.loss * len(idx), seen + len(idx)
            _call(callbacks, "on_batch_end", state)
            if state.stop:
                break
        seconds = time.perf_counter() - t0
        if seen == 0:  # diverged on the epoch's first batch: nothing to report for it
            break
        history["train_loss"].append(total / seen)
        history["seconds"].append(seconds)
        history["samples_per_s"].append(seen / seconds)
        if val is not None:
            metrics = evaluate(model, val[0], val[1], precision=config.precision)
            history["val_loss"].append(metrics["loss"])
            history["val_acc"].append(metrics["acc"])
            if metrics["acc"] > best_acc:
                best_acc, bad_epochs = metrics["acc"], 0
                best_state = copy.deepcopy(model.state_dict())
                history["best_epoch"], history["best_val_acc"] = epoch, metrics["acc"]
            else:
                bad_epochs += 1
        _call(callbacks, "on_epoch_end", state)
        if state.stop:
            break
        if config.patience is not None and val is not None and bad_epochs >= config.patience:
            history["stopped_early"] = True
            break
    history["diverged"] = diverged
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)  # select on validation: the best epoch, not the last
    model.eval()
    return history
