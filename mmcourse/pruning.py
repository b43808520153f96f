"""Magnitude pruning (Han et al. 2015, "Learning both Weights and Connections"): zero the weights
of smallest |w|, per layer or globally across layers. Taught in ``notebooks/09_compression.ipynb``.

Through ``torch.nn.utils.prune``: a mask ``weight_mask`` and a re-parametrisation
``weight = weight_orig * weight_mask``; ``make_permanent`` folds the mask in. ``pruning_curve``
measures accuracy against sparsity without retraining, ``finetune_pruned`` retrains the survivors.
Re-exported by ``mmcourse.compress``.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import prune

from mmcourse.checkpoint import load_or_train
from mmcourse.train import FitConfig, evaluate, fit


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every Linear and Conv layer, in ``named_modules`` order."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on a pruned model.

    While a mask is attached, ``module.weight`` is a plain tensor computed as ``weight_orig *
    weight_mask`` (not a leaf), which ``deepcopy`` refuses; it is set aside for the copy and
    recomputed in both models.
    """
    stash = {}
    for module, name in prunable(model):
        if hasattr(module, name + "_orig") and name in module.__dict__:
            stash[module, name] = module.__dict__.pop(name)
    try:
        clone = copy.deepcopy(model)
    finally:
        for (module, name), w in stash.items():
            setattr(module, name, w)
    for module, name in prunable(clone):
        if hasattr(module, name + "_orig") and name not in module.__dict__:
            setattr(module, name, getattr(module, name + "_orig") * getattr(module, name + "_mask"))
    return clone


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global", inplace: bool = False) -> nn.Module:
    """Zero the fraction ``amount`` of Linear/Conv weights with the smallest |w| (L1 magnitude).

    Args:
        amount: fraction in [0, 1) of the prunable weights to zero.
        scope: ``"global"`` ranks all prunable weights together (layers end up with different
            sparsities); ``"layer"`` prunes ``amount`` of every layer separately.
        inplace: prune ``model`` itself instead of a deep copy.

    Returns:
        the pruned model, still re-parametrised (``weight_orig``, ``weight_mask``); call
        ``make_permanent`` before saving it as a plain state_dict.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    model = model if inplace else copy_model(model)
    params = prunable(model)
    if not params:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv layer to prune")
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in params:
            prune.l1_unstructured(module, name, amount=amount)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (``prune.remove``): plain parameters again."""
    for module, name in prunable(model):
        if prune.is_pruned(module) and hasattr(module, name + "_mask"):
            prune.remove(module, name)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the Linear/Conv weights (masks applied)."""
    weights = [getattr(m, name) for m, name in prunable(model)]
    total = sum(w.numel() for w in weights)
    if total == 0:
        return 0.0  # nothing prunable: nothing is pruned
    return sum(int((w == 0).sum()) for w in weights) / total


def pruning_curve(model: nn.Module, amounts, splits: dict, scopes=("global", "layer")):
    """Accuracy after magnitude pruning at each amount, no retraining: a DataFrame with one row per
    (scope, amount) and columns ``scope, amount, sparsity`` and ``<split>_acc`` for each split.

    Args:
        splits: ``{"val": (inputs, labels), "test": (inputs, labels)}``.
    """
    import pandas as pd

    rows = []
    for scope in scopes:
        for amount in amounts:
            pruned = magnitude_prune(model, amount, scope=scope)
            rows.append({"scope": scope, "amount": amount, "sparsity": sparsity(pruned),
                         **{f"{name}_acc": evaluate(pruned, x, y)["acc"] for name, (x, y) in splits.items()}})
    return pd.DataFrame(rows)


def finetune_pruned(model: nn.Module, amount: float, train, val, config: FitConfig, scope: str = "global"):
    """Prune ``model`` (a copy) to ``amount``, fine-tune the surviving weights, cached; masks folded in.

    The mask stays fixed while the surviving weights train (``torch.nn.utils.prune`` multiplies by it
    every forward). Keyed by the source model's weights, the amount, the config and the data.
    """
    pruned = magnitude_prune(model, amount, scope=scope)
    key = {"source": {k: v.reshape(-1) for k, v in model.state_dict().items()}, "amount": amount, "scope": scope,
           "config": {**config.__dict__, "device": None}, "train": train, "val": val}
    pruned = load_or_train(f"pruned-finetuned-{scope}-{amount:g}", pruned,
                           lambda m: fit(m, train, val, config), key=key)
    return make_permanent(pruned.eval())
