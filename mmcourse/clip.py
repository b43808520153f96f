"""The CLIP objective: symmetric InfoNCE over a batch of pairs, with a learned temperature.

CLIP (Radford et al. 2021, fig. 3) embeds a batch of B pairs (aᵢ, bᵢ) with two towers, makes
every embedding unit length and scores all B × B pairs by a scaled cosine similarity,

    Sᵢⱼ = s · aᵢ·bⱼ,   s = exp(t) the inverse temperature, t a learned scalar,

then asks each row and each column to pick its own partner (symmetric InfoNCE):

    L = ½ [ CE(S, I) + CE(Sᵀ, I) ],   CE(S, I) = −(1/B) Σᵢ log softmax(Sᵢ)ᵢ.

``t`` starts at log(1/0.07) and, as in CLIP's training code, the *parameter* t is clamped to
≤ log 100 after each optimiser step (``ClampLogitScale``, a ``fit`` callback); the forward pass
uses exp(t) unclipped, so the gradient wrt t never vanishes.

Taught in ``notebooks/07_contrastive_alignment.ipynb``; re-exported by ``mmcourse.align``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_LOGIT_SCALE = 100.0  # CLIP clamps t at log(100) after each step so training stays stable


def clip_loss(a: Tensor, b: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE of two batches of paired embeddings.

    Args:
        a, b: (B, D) embeddings; row i of ``a`` and row i of ``b`` are a positive pair. They are
            L2-normalised here, so passing unnormalised features is fine.
        logit_scale: s = 1/τ, a positive scalar (tensor or float), multiplying the cosines.

    Returns:
        scalar: the mean of the a→b and b→a cross-entropies.
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
            raise TypeError(f"clip_loss: embeddings {name} must be a floating-point tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}; use {name}.float()")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"clip_loss wants two (B, D) batches of the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"clip_loss needs at least one pair of non-empty embeddings, got shape {tuple(a.shape)}")
    scale = torch.as_tensor(logit_scale).detach()
    if not torch.isfinite(scale).all() or (scale <= 0).any():
        raise ValueError(f"logit_scale must be finite and > 0 (it is 1/temperature), got {logit_scale}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.T  # (B, B): row i scores a_i against every b_j
    targets = torch.arange(len(a), device=a.device)  # (B,) the partner of row i is column i
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class LogitScale(nn.Module):
    """The learned inverse temperature s = exp(t); t is kept ≤ log ``MAX_LOGIT_SCALE`` by ``clamp_``.

    Learning log s instead of s keeps it positive and makes steps multiplicative. The forward pass
    does *not* clip: ``exp(t).clamp(max=100)`` would have zero gradient wrt t once exp(t) > 100,
    so t could never come back down. CLIP instead clamps the parameter after the optimiser step
    (``ClampLogitScale`` does that inside ``mmcourse.train.fit``).
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def forward(self) -> Tensor:
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self, max_scale: float = MAX_LOGIT_SCALE) -> LogitScale:
        """t ← min(t, log max_scale), in place; call it after each optimiser step."""
        self.log_scale.clamp_(max=math.log(max_scale))
        return self

    def extra_repr(self) -> str:
        return f"temperature={1 / self().item():.4f}"


class ClampLogitScale:
    """A ``fit`` callback: after every optimiser step, clamp each ``LogitScale`` in the model.

    ``fit(model, ..., callbacks=[ClampLogitScale()])`` does what CLIP's training code does after
    ``optimizer.step()``: the paper caps s at 100 (open_clip writes
    ``logit_scale.clamp_(0, math.log(100))``, which also keeps s ≥ 1; we keep only the cap).
    """

    def __init__(self, max_scale: float = MAX_LOGIT_SCALE):
        self.max_scale = max_scale

    def on_batch_end(self, state) -> None:
        for m in state.model.modules():
            if isinstance(m, LogitScale):
                m.clamp_(self.max_scale)
