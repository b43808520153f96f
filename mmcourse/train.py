"""A visible training loop: ``fit`` batches tensors that already live on the device, by index.

The slow way to train (and the one most tutorials show) is a ``Dataset`` returning one sample at
a time through a ``DataLoader``: Python runs once per *sample* and every batch is re-collated and
copied. Here the whole (small) data set is moved to the device once, each epoch draws one random
permutation, and a batch is a single indexing op per modality. ``benchmarks/`` measures the gap.

Batching by index lives in ``mmcourse.batches`` (``take``, ``to_device``, ``num_rows``,
``logits_of``), the guards below in ``mmcourse.guards``; both are re-exported here.

Hooks: pass objects with any of ``on_batch_end(state)``, ``on_after_backward(state)``,
``on_epoch_end(state)``. Setting ``state.stop = True`` stops after the current batch and still
returns a usable model. Widgets (``mmcourse.widgets``) attach here; ``fit`` itself draws nothing.

Guards, each failing loudly before time is wasted: the config and data are checked up front
(validation data from a test split are refused, also a slice or shuffle of one), labels against
the model's output size after the first forward, and every epoch for a divergence (a NaN/inf loss
or features, a loss 100x the untrained model's or 10x epoch 0's, a weight beyond 1e6): ``fit``
warns, stops, and leaves finite weights, saying which.

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

from mmcourse.batches import Inputs, logits_of, num_rows, take, to_device  # also re-exported from here
from mmcourse.fusion.base import NonFiniteFeatures
from mmcourse.guards import (MAX_WEIGHT, SCHEDULES, _blow_up, _check_classes,  # re-exported: importable from here
                             _fall_back, _is_test_labels, _max_weight, check_config, check_not_test, check_split)
from mmcourse.runtime import bf16_supported, choose_precision, pick_device


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
    grad_clip: float | None = None  # max gradient norm (clip_grad_norm_), e.g. 1.0; None: no clipping
    # learning-rate schedule per step: "constant" (lr throughout) or "onecycle" (Smith & Topin 2019,
    # torch's OneCycleLR: warm up from lr/25 to lr over the first 30 % of steps, then anneal to
    # ~0; Adam's beta1 cycles 0.95 → 0.85 → 0.95). One-cycle converges in fewer epochs here.
    schedule: str = "constant"
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
        ``stopped_early`` when patience ran out, and ``diverged``: True when the run diverged
        (a NaN/inf loss or features, or a blow-up: see ``_blow_up``); ``fit`` then warns once,
        stops, and says which finite weights the model holds (the best-val epoch's, the last
        finite step's, or those from before the epoch that blew up). The train_loss of an epoch
        that blew up is recorded, its validation is not.

    Raises:
        ValueError: empty data, NaN/inf inputs, labels that are not int64 class indices or that
            the model has no output for, a bad FitConfig field, or validation data taken from a
            test split (also a slice, subset or shuffle of it).

    Model selection is on validation, never on test: with ``val`` given (and
    ``config.restore_best``, the default) the returned model holds the weights of the epoch with
    the best validation accuracy (the first one on ties). At a high learning rate the validation
    accuracy can swing by tens of points between epochs; the last epoch is a lottery ticket.
    """
    config = config or FitConfig()
    check_config(config)
    check_split("train", train)
    if val is not None:
        check_split("val", val)
        check_not_test(*val)
    top = {name: int(torch.as_tensor(split[1]).max()) for name, split in (("train", train), ("val", val)) if split}
    device = pick_device(config.device)
    default_loss, loss_fn = loss_fn is None, loss_fn or _default_loss
    g = torch.Generator().manual_seed(config.seed)
    X, y = to_device(train[0], device), train[1].to(device)
    n = num_rows(X)
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
    sched = None
    if config.schedule == "onecycle":  # one scheduler step per optimizer step, over the whole run
        steps = config.epochs * math.ceil(n / config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    amp_dtype, use_scaler = choose_precision(device.type, bf16_supported(device), config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)  # disabled: passes everything through
    history = {k: [] for k in ("train_loss", "val_loss", "val_acc", "seconds", "samples_per_s")}
    state = State(model, opt, config, device, history)
    best_acc, best_state, bad_epochs, why, nan_loss = -1.0, None, 0, None, False
    init_loss = classes = None  # the untrained model's loss and output size: the blow-up reference
    for epoch in range(config.epochs):
        if best_state is None or not config.restore_best:  # what a diverging epoch falls back to
            fallback = copy.deepcopy(model.state_dict())
        state.epoch, t0, total, seen = epoch, time.perf_counter(), 0.0, 0
        model.train()
        for idx in torch.randperm(n, generator=g).split(config.batch_size):
            idx = idx.to(device)
            with _autocast(device, amp_dtype):
                try:
                    out = step_model(take(X, idx))
                except NonFiniteFeatures:  # the inputs were checked finite: the weights did this
                    if state.step == 0:
                        raise  # the untrained model: its encoder, not the learning rate
                    why = f"the features became NaN/inf at epoch {epoch}, step {state.step} (the inputs were finite)"
                    break
                if state.step == 0:
                    _check_classes(out, top, default_loss)
                loss = loss_fn(out, y[idx])
            if not torch.isfinite(loss.detach()).all():  # stop before the step ruins the weights
                why, nan_loss = f"the training loss became {loss.item()} at epoch {epoch}, step {state.step}", True
                break
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)  # hooks and clipping see the true gradients
            _call(callbacks, "on_after_backward", state)
            if config.grad_clip:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(opt)  # = opt.step(), skipped when float16 gradients overflowed
            scaler.update()
            if sched is not None:
                sched.step()
            if state.step == 0 and default_loss and logits_of(out).dim() == 2:
                init_loss, classes = loss.item(), logits_of(out).shape[1]
            state.step += 1
            state.loss, state.batch_size = loss.item(), len(idx)
            total, seen = total + state.loss * len(idx), seen + len(idx)
            _call(callbacks, "on_batch_end", state)
            if state.stop:
                break
        seconds = time.perf_counter() - t0
        if seen:
            history["train_loss"].append(total / seen)
            history["seconds"].append(seconds)
            history["samples_per_s"].append(seen / seconds)
            if why is None and (blown := _blow_up(history["train_loss"], init_loss, classes, params)):
                why = f"training blew up at epoch {epoch}: {blown}"
        if val is not None and why is None:
            try:
                metrics = evaluate(model, val[0], val[1], precision=config.precision)
            except NonFiniteFeatures:
                why = f"the validation features became NaN/inf after epoch {epoch}"
            else:
                history["val_loss"].append(metrics["loss"])
                history["val_acc"].append(metrics["acc"])
                if metrics["acc"] > best_acc:
                    best_acc, bad_epochs = metrics["acc"], 0
                    best_state = copy.deepcopy(model.state_dict())
                    history["best_epoch"], history["best_val_acc"] = epoch, metrics["acc"]
                else:
                    bad_epochs += 1
        if why:
            state.stop = True
            best = history.get("best_epoch") if config.restore_best else None
            kept = _fall_back(model, params, best, nan_loss, fallback, state)
            cause = (f"the run diverged (learning rate {config.lr:g} too high?)" if state.step else
                     "before any update, so not the learning rate: check the model and loss_fn")
            warnings.warn(f"{why}: {cause}. Training stopped; {kept}. Lower the learning rate (e.g. 10x) or set "
                          "grad_clip (e.g. 1.0).", RuntimeWarning, stacklevel=2)
            break
        _call(callbacks, "on_epoch_end", state)
        if state.stop:
            break
        if config.patience is not None and val is not None and bad_epochs >= config.patience:
            history["stopped_early"] = True
            break
    history["diverged"] = why is not None
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)  # select on validation: the best epoch, not the last
    model.eval()
    return history
