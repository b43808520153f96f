"""Multiplicative interactions: the gated multimodal unit and FiLM.

- Gated multimodal unit (Arevalo et al. 2017): h_m = tanh(W_m f_m); a gate computed from *all*
  features decides, per hidden unit, how much each modality contributes:
  g = softmax_m(W_g [f_1; …; f_M]) ∈ (B, M, D), h = Σ_m g_m ⊙ h_m. With two modalities this is
  the paper's z ⊙ h_1 + (1 − z) ⊙ h_2.
- FiLM (Perez et al. 2018): one modality *conditions* another by a feature-wise affine map,
  h = γ(c) ⊙ P f_target + β(c), with γ, β predicted from the conditioning features c.
Taught in notebooks/05_fusion.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcourse.fusion.base import Fusion


class GatedFusion(Fusion):
    """Gated multimodal unit over M modalities, then a linear head. Needs every modality."""

    def __init__(self, dims: dict[str, int], out_dim: int, hidden: int = 64):
        super().__init__(dims, out_dim)
        self.hidden = hidden
        self.proj = nn.ModuleDict({k: nn.Linear(d, hidden) for k, d in self.dims.items()})
        self.gate = nn.Linear(sum(self.dims.values()), len(self.keys) * hidden)
        self.head = nn.Linear(hidden, out_dim)

    def gates(self, feats: dict[str, Tensor]) -> Tensor:
        """Per-unit modality gates (B, M, hidden), summing to 1 over M."""
        g = self.gate(torch.cat([feats[k] for k in self.keys], 1))  # (B, M * hidden)
        return g.view(-1, len(self.keys), self.hidden).softmax(dim=1)  # (B, M, hidden)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        self.check(feats)
        h = torch.stack([torch.tanh(self.proj[k](feats[k])) for k in self.keys], 1)  # (B, M, hidden)
        return self.head((self.gates(feats) * h).sum(1))  # (B, hidden) → (B, out)


class FiLMFusion(Fusion):
    """Feature-wise linear modulation of one modality by the others. Needs every modality.

    Args:
        target: the modulated modality (default: the last key in sorted order, e.g. "image").
        hidden: size of the modulated representation.

    γ starts at 1 and β at 0 (the conditioning layer is zero-initialised), so at initialisation
    the model is the target modality alone and learns how much to listen to the others.
    """

    def __init__(self, dims: dict[str, int], out_dim: int, target: str | None = None, hidden: int = 64):
        super().__init__(dims, out_dim)
        if len(self.keys) < 2:
            raise ValueError("FiLM needs at least two modalities: one to modulate, one to condition on")
        self.target = target or self.keys[-1]
        if self.target not in self.dims:
            raise KeyError(f"target {self.target!r} is not one of {self.keys}")
        self.conditions = [k for k in self.keys if k != self.target]
        self.proj = nn.Linear(self.dims[self.target], hidden)
        self.film = nn.Linear(sum(self.dims[k] for k in self.conditions), 2 * hidden)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        self.check(feats)
        c = torch.cat([feats[k] for k in self.conditions], 1)  # (B, ΣD_cond)
        d_gamma, beta = self.film(c).chunk(2, dim=1)  # (B, hidden) each
        return self.head((1 + d_gamma) * self.proj(feats[self.target]) + beta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, target={self.target!r}, conditions={self.conditions}"
