"""LoRA, low-rank adaptation (Hu et al. 2021, eq. 3), written by hand.

A frozen linear layer y = W x + b gets a trainable low-rank update

    y = W x + b + (α / r) · B A x,   A: (r, in), B: (out, r), r ≪ min(in, out),

so fine-tuning trains r·(in + out) numbers per layer instead of in·out. A is initialised like an
``nn.Linear`` weight (Kaiming-uniform) and B with zeros, so at the start B A = 0 and the wrapped
model computes exactly what the base model computes. Dropout acts only on the LoRA branch's
input. After training, ``merge()`` folds (α/r)·B A into W: the adapted model then costs nothing
extra at inference; ``unmerge()`` takes it out again. Neither happens implicitly (not on
``eval()``). The same rules as the ``peft`` library, whose ``LoraConfig(r, lora_alpha,
target_modules)`` builds the same thing (``tests/test_lora.py`` checks the two agree).

Taught in ``notebooks/08_fine_tuning.ipynb``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · lora_B(lora_A(dropout(x)))`` with ``base`` frozen.

    Args:
        base: the ``nn.Linear`` to adapt (its parameters are frozen here).
        r: rank of the update (≥ 1).
        alpha: scaling numerator, a finite number > 0; the update is multiplied by ``alpha / r``.
        dropout: dropout probability on the LoRA branch's input only.

    Shapes:
        forward: (..., in) → (..., out), like ``base``.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"rank r must be an integer >= 1, got {r!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:  # NaN too
            raise ValueError(f"alpha must be a finite number > 0 (the update is scaled by alpha / r), got {alpha!r}; "
                             f"a common choice is alpha = 2r = {2 * r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.base, self.r, self.alpha, self.scaling = base, r, alpha, alpha / r
        base.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=w.device, dtype=w.dtype)  # nn.Linear init
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=w.device, dtype=w.dtype)
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the wrapped layer starts equal to the base
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> Tensor:
        """(α / r) · B A, the (out, in) update to W."""
        return self.scaling * self.lora_B.weight @ self.lora_A.weight

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:  # the update already lives in base.weight
            return y
        return y + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))

    @torch.no_grad()
    def merge(self) -> LoRALinear:
        """W ← W + (α/r) B A; the LoRA branch is then skipped. Raises if already merged."""
        if self.merged:
            raise ValueError("already merged; call unmerge() first")
        self.base.weight += self.delta_weight()
        self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self) -> LoRALinear:
        """W ← W − (α/r) B A, undoing ``merge``. Raises if not merged."""
        if not self.merged:
            raise ValueError("not merged; nothing to unmerge")
        self.base.weight -= self.delta_weight()
        self.merged = False
        return self

    def extra_repr(self) -> str:
        return (f"in={self.base.in_features}, out={self.base.out_features}, r={self.r}, "
                f"alpha={self.alpha}, merged={self.merged}")


def apply_lora(model: nn.Module, target_modules=("query", "value"), r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0) -> nn.Module:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends in a target with ``LoRALinear``.

    Names match like peft's: ``"query"`` matches ``encoder.layer.0.attention.self.query``.
    The model is changed in place and returned; only the LoRA A and B matrices train.

    Raises:
        ValueError: when no linear layer matches (a typo in ``target_modules``).
    """
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    model.requires_grad_(False)
    targets = [name for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.split(".")[-1] in target_modules]
    if not targets:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear named {list(target_modules)} in the model; its linear "
                         f"layers are named {linear}")
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every ``LoRALinear`` of ``model`` (see ``LoRALinear.merge``)."""
    for m in lora_layers(model):
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for m in lora_layers(model):
        m.unmerge()
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared tensors are counted once."""
    seen = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())
