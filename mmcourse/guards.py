"""The guards of ``train.fit``: checks that fail loudly before time is wasted, and divergence handling.

Up front, the config (``check_config``) and each split (``check_split``: empty data, NaN/inf
inputs, labels that are not int64 class ids) are checked, and validation data taken from a test
split are refused, also a slice or shuffle of one (``check_not_test``); after the first forward,
the labels against the model's output size (``_check_classes``). Every epoch, ``_blow_up`` looks
for a divergence that has not reached NaN/inf yet (a loss 100x the untrained model's or 10x epoch
0's, a weight beyond ``MAX_WEIGHT``), and ``_fall_back`` leaves finite weights in the model and
says which. ``fit`` (``mmcourse.train``) calls them; ``fit_ensemble`` (``mmcourse.ensemble``) calls
the public ones (``check_*``, ``loss_blow_up``, ``MAX_WEIGHT``) so both refuse the same data the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mmcourse.batches import Inputs, num_rows
from mmcourse.runtime import PRECISIONS

if TYPE_CHECKING:
    from mmcourse.train import FitConfig, State

# A trainable weight beyond 1e6 has blown up: float32 spacing there is 0.06, so an update of
# lr·1 = 1e-3 no longer even moves it.
MAX_WEIGHT = 1e6
SCHEDULES = ("constant", "onecycle")  # the values FitConfig.schedule accepts


def check_config(config: FitConfig) -> None:
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
    if config.schedule not in SCHEDULES:
        raise ValueError(f"FitConfig.schedule={config.schedule!r}: use one of {SCHEDULES} (default 'constant')")
    clip = config.grad_clip  # a negative max norm flips every gradient: gradient *ascent*
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                             or not math.isfinite(clip) or clip <= 0):
        raise ValueError(f"FitConfig.grad_clip={clip!r}: use None (no clipping) or a finite number > 0, e.g. 1.0")


def check_split(name: str, split) -> None:
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


def check_not_test(inputs: Inputs, labels: Tensor) -> None:
    """Raise ``ValueError`` when validation data are (a slice, subset or shuffle of) a test split."""
    import sys
    av = sys.modules.get("mmcourse.data.av")
    if av is None:
        return
    why = None
    if av.is_test_labels(labels, runs=False):
        why = "its labels are a test split's"
    elif av.is_test_labels(labels):
        why = f"its labels are a run of {len(labels)} labels of a test split"
    elif n := av.test_rows(inputs):
        why = f"{n} of its {num_rows(inputs)} rows are test examples"
    if why:
        raise ValueError(f"the validation data passed to fit come from a test split (load_av_digits('test')): {why}. "
                         "fit selects the best epoch on validation data, so pass the 'val' split (or rows of it); "
                         "the test split is for the final report only")


def _check_classes(out, top: dict[str, int], default_loss: bool) -> None:
    """After the first forward: raise ``ValueError`` when a label is not one of the model's outputs."""
    logits = out.get("logits") if isinstance(out, dict) else out
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        return  # e.g. per-token outputs (B, T, C) under a custom loss_fn
    C = logits.shape[1]
    for name, m in top.items():  # train labels only meet the default loss; val ones always (evaluate)
        if m >= C and (default_loss or name == "val"):
            raise ValueError(f"{name} labels go up to {m} but the model outputs {C} logits per example (classes "
                             f"0 .. {C - 1}): give its last layer {m + 1} outputs (e.g. nn.Linear(..., {m + 1})), "
                             f"or relabel the data to 0 .. {C - 1}")


def _max_weight(params) -> float:
    """The largest |w| over the trainable weights; nan/inf when one is not finite."""
    with torch.no_grad():
        peaks = [p.detach().abs().max().float() for p in params if p.is_floating_point() and p.numel()]
        return torch.stack([x.to(peaks[0].device) for x in peaks]).max().item() if peaks else 0.0


def loss_blow_up(losses: list[float], init_loss: float | None, classes: int | None) -> str | None:
    """Why the epoch just trained blew up by its loss (huge but finite), else None.

    A normal epoch's mean loss stays near the untrained model's (cross-entropy: about ln C) or
    below: over 100x that, or over 10x epoch 0's mean (which already averages the fast first
    steps) and by more than 1, is a run that diverged without reaching inf yet.
    """
    loss = losses[-1]
    if init_loss is not None and classes:  # the default cross-entropy: its scale is known
        ref = max(init_loss, math.log(max(classes, 2)))
        if loss > 100 * ref:
            return f"its mean training loss {loss:.3g} is over 100x the untrained model's ({ref:.3g})"
    if len(losses) > 1 and losses[0] > 0 and loss > 10 * losses[0] and loss - losses[0] > 1:
        return f"its mean training loss {loss:.3g} is over 10x epoch 0's ({losses[0]:.3g})"
    return None


def _blow_up(losses: list[float], init_loss: float | None, classes: int | None, params) -> str | None:
    """Why the epoch just trained blew up (``loss_blow_up``, or a weight beyond ``MAX_WEIGHT``), else None."""
    if why := loss_blow_up(losses, init_loss, classes):
        return why
    w = _max_weight(params)
    return None if w <= MAX_WEIGHT else f"a weight reached {w:.3g}"


def _fall_back(model: nn.Module, params, best_epoch: int | None, before_update: bool, fallback: dict,
               state: State) -> str:
    """After a divergence, leave finite, sane weights in ``model``; say which they are."""
    if best_epoch is not None:  # fit loads them at the end
        return f"fit returns the weights of epoch {best_epoch}, the best on validation before it diverged"
    if before_update and _max_weight(params) <= MAX_WEIGHT:  # a NaN loss stopped fit before its update
        return f"the model keeps the weights of its last finite step (step {state.step})"
    model.load_state_dict(fallback)
    return ("the model is reset to its initial weights" if state.epoch == 0 else
            f"the model is reset to its weights at the end of epoch {state.epoch - 1}")
