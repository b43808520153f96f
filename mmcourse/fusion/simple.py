"""Concatenation (early), late (decision-level) and weighted-sum fusion.

- Early fusion concatenates features and lets one layer see all of them: z = W [f_1; …; f_M] + b.
- Late fusion gives each modality its own classifier and combines their *decisions*: the mean of
  the logits, a majority vote, or learned weights.
- Weighted sum projects each modality to a shared size and adds them: z = Σ_m w_m P_m f_m, with
  weights set by hand (a widget moves them) or learned through a softmax.

Late and weighted-sum fusion answer with a modality missing (its term is left out). A model trained
only on complete pairs may still answer badly then: its heads *co-adapt*, each learning to be right
only together with the other. ``modality_dropout=p`` (Neverova et al. 2016, "ModDrop") trains for
that case: in training, each example loses each modality with probability p (never all of them),
and the absent terms are left out exactly as at test time.
Taught in notebooks/05_fusion.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.fusion.base import Fusion


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"modality_dropout={p!r}: use a probability in [0, 1), e.g. 0.3 (0 turns it off)")
    return float(p)


def modality_keep_mask(batch: int, modalities: int, p: float, device=None) -> Tensor:
    """Which modalities each example keeps under modality dropout: (B, M) bool.

    Each entry is dropped independently with probability ``p``; an example that would lose every
    modality keeps one, chosen uniformly. Uses torch's global generator (seeded by the run's seed).
    """
    _check_p(p)
    keep = torch.rand(batch, modalities, device=device) >= p  # (B, M)
    none = ~keep.any(1)  # (B,) examples that lost everything
    pick = torch.randint(modalities, (batch,), device=device)  # (B,)
    keep[none, pick[none]] = True
    return keep


def _drop_weights(w: Tensor, batch: int, p: float) -> Tensor:
    """Per-example weights (B, M) under modality dropout, rescaled to keep each row's total."""
    kept = w * modality_keep_mask(batch, len(w), p, w.device)  # (B, M), 0 where dropped
    return kept * (w.sum() / kept.sum(1, keepdim=True).clamp_min(1e-12))


def _head(d_in: int, out_dim: int, hidden: int | None) -> nn.Module:
    if hidden is None:
        return nn.Linear(d_in, out_dim)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class ConcatFusion(Fusion):
    """Early fusion: concatenate (sorted keys), then a linear layer or a 1-hidden-layer MLP."""

    def __init__(self, dims: dict[str, int], out_dim: int, hidden: int | None = 64):
        super().__init__(dims, out_dim)
        self.net = _head(sum(self.dims.values()), out_dim, hidden)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        self.check(feats)
        return self.net(torch.cat([feats[k] for k in self.keys], dim=1))  # (B, ΣD_m) → (B, out)


class LateFusion(Fusion):
    """Decision-level fusion: a head per modality, then combine the (B, C) logits.

    Args:
        combine: ``"mean"`` (average logits), ``"learned"`` (softmax-weighted average, weights
            trained) or ``"vote"`` (majority vote of the heads' argmax in eval mode, ties broken by
            the mean probability; training uses the mean of logits, since a vote has no gradient).
        modality_dropout: p, the probability that a training example loses a modality (each
            independently, never all): its logits are left out of that example's average, as a
            missing modality's are at test time. 0 (default): off. Only in training.

    A missing modality is skipped: only the present heads vote or are averaged.
    """

    handles_missing = True

    def __init__(self, dims: dict[str, int], out_dim: int, combine: str = "mean", hidden: int | None = None,
                 modality_dropout: float = 0.0):
        super().__init__(dims, out_dim)
        self.modality_dropout = _check_p(modality_dropout)
        if combine not in ("mean", "learned", "vote"):
            raise ValueError(f"combine must be 'mean', 'learned' or 'vote', got {combine!r}")
        self.combine = combine
        self.heads = nn.ModuleDict({k: _head(d, out_dim, hidden) for k, d in self.dims.items()})
        self.weight_logits = nn.Parameter(torch.zeros(len(self.keys)), requires_grad=combine == "learned")

    def unimodal_logits(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each present modality's own prediction: {name: (B, C)}."""
        return {k: self.heads[k](feats[k]) for k in self.check(feats)}

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        logits = self.unimodal_logits(feats)
        stacked = torch.stack(list(logits.values()), dim=1)  # (B, M_present, C)
        present = [self.keys.index(k) for k in logits]
        w = torch.softmax(self.weight_logits[present], dim=0)  # (M_present,), uniform unless learned
        if self.combine == "vote" and not self.training:
            votes = F.one_hot(stacked.argmax(-1), self.out_dim).float().mean(1)  # (B, C) vote shares
            tie_break = 1e-3 * stacked.softmax(-1).mean(1)
            return torch.log(votes + tie_break)
        if self.training and self.modality_dropout and len(present) > 1:
            w_ex = _drop_weights(w, stacked.shape[0], self.modality_dropout)  # (B, M_present)
            return (w_ex[:, :, None] * stacked).sum(1)  # (B, C)
        return (w[None, :, None] * stacked).sum(1)  # (B, C)

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}" + (f", modality_dropout={self.modality_dropout:g}"
                                               if self.modality_dropout else "")


class WeightedSumFusion(Fusion):
    """z = Σ_m w_m P_m f_m, then logits = head(z). ``P_m`` projects modality m to a shared size ``dim``.

    Args:
        dim: shared size of the projections (default: the largest D_m).
        weights: fixed weights, e.g. ``{"audio": 0.3, "image": 0.7}`` (default 1/M each), used as
            given (not renormalised), so one-hot weights give exactly one modality's path.
        learn: learn the weights instead, as ``softmax(a)`` over modalities.
        modality_dropout: p, the probability that a training example loses a modality (each
            independently, never all); its term is left out and the rest rescaled, as for a
            missing modality at test time. 0 (default): off. Only in training.

    ``set_weights`` changes them at run time (the widget of lesson 05). A missing modality's term
    is dropped and the present weights are rescaled to keep their total.
    """

    handles_missing = True

    def __init__(self, dims: dict[str, int], out_dim: int, dim: int | None = None,
                 weights: dict[str, float] | None = None, learn: bool = False, hidden: int | None = 64,
                 modality_dropout: float = 0.0):
        super().__init__(dims, out_dim)
        self.modality_dropout = _check_p(modality_dropout)
        dim = dim or max(self.dims.values())
        self.proj = nn.ModuleDict({k: nn.Linear(d, dim) for k, d in self.dims.items()})
        self.head = _head(dim, out_dim, hidden)
        self.learn = learn
        self.weight_logits = nn.Parameter(torch.zeros(len(self.keys)), requires_grad=learn)
        self.register_buffer("fixed", torch.full((len(self.keys),), 1.0 / len(self.keys)))
        if weights is not None:
            self.set_weights(weights)

    def set_weights(self, weights: dict[str, float]) -> None:
        """Set fixed weights (or, if learned, the softmax's starting point) by modality name."""
        if sorted(weights) != self.keys:
            raise KeyError(f"give a weight for each of {self.keys}, got {sorted(weights)}")
        w = torch.tensor([float(weights[k]) for k in self.keys])
        if (w < 0).any() or not torch.isfinite(w).all():
            raise ValueError(f"weights must be finite and >= 0, got {weights}")
        with torch.no_grad():
            self.fixed.copy_(w)
            self.weight_logits.copy_(torch.log(w.clamp_min(1e-6)))

    def weights(self) -> dict[str, float]:
        w = torch.softmax(self.weight_logits.detach(), 0) if self.learn else self.fixed
        return {k: float(v) for k, v in zip(self.keys, w)}

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        present = self.check(feats)
        w = torch.softmax(self.weight_logits, 0) if self.learn else self.fixed  # (M,)
        idx = [self.keys.index(k) for k in present]
        w_present = w[idx] * (w.sum() / w[idx].sum().clamp_min(1e-12))  # keep the total weight
        if self.training and self.modality_dropout and len(present) > 1:
            projected = torch.stack([self.proj[k](feats[k]) for k in present], dim=1)  # (B, M_present, dim)
            w_ex = _drop_weights(w_present, projected.shape[0], self.modality_dropout)  # (B, M_present)
            return self.head((w_ex[:, :, None] * projected).sum(1))  # (B, dim) → (B, out)
        z = sum(w_present[i] * self.proj[k](feats[k]) for i, k in enumerate(present))  # (B, dim): Σ_m w_m P_m f_m
        return self.head(z)

    def extra_repr(self) -> str:
        return f"learn={self.learn}" + (f", modality_dropout={self.modality_dropout:g}" if self.modality_dropout else "")
