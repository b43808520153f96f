"""Tensor fusion and its low-rank factorisation.

- Tensor fusion (Zadeh et al. 2017): z = vec([f_1; 1] ⊗ [f_2; 1] ⊗ …), then a linear layer. The
  appended 1s keep every unimodal term and every cross-modal product; the size is Π_m (D_m + 1).
- Low-rank multimodal fusion (Liu et al. 2018): the weight tensor W acting on that outer product
  is written as a sum of R rank-one terms, W = Σ_r ⊗_m W_m^(r), so that
  h = Σ_r λ_r Π_m ([f_m; 1] W_m^(r)) + b, never forming the outer product. The factors W_m must be
  registered parameters (a well-known public implementation kept them in a plain Python list, so
  the optimiser never saw them and they never trained).
Taught in notebooks/05_fusion.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmcourse.fusion.base import Fusion, with_one


class TensorFusion(Fusion):
    """Outer product of [f_m; 1] over modalities (sorted), flattened, then an MLP head.

    Args:
        proj: first project each modality to this size (keeps Π (D_m + 1) small); None = raw.
    """

    def __init__(self, dims: dict[str, int], out_dim: int, proj: int | None = 16, hidden: int = 64):
        super().__init__(dims, out_dim)
        if proj is not None and (isinstance(proj, bool) or not isinstance(proj, int) or proj < 1):
            raise ValueError(f"TensorFusion proj={proj!r}: a positive integer, or None for no projection")
        self.proj = nn.ModuleDict({k: nn.Linear(d, proj) if proj else nn.Identity() for k, d in self.dims.items()})
        size = math.prod((proj or d) + 1 for d in self.dims.values())
        self.head = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def outer(self, feats: dict[str, Tensor]) -> Tensor:
        """(B, Π (D_m + 1)): the flattened outer product."""
        z = None
        for k in self.keys:
            f = with_one(self.proj[k](feats[k]))  # (B, D_m + 1)
            z = f if z is None else (z[:, :, None] * f[:, None, :]).flatten(1)  # (B, prod so far)
        return z

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        self.check(feats)
        return self.head(self.outer(feats))


class LowRankTensorFusion(Fusion):
    """Low-rank tensor fusion with rank R, then ReLU and a linear head.

    Args:
        rank: R; hidden: size of the fused representation h.
    """

    def __init__(self, dims: dict[str, int], out_dim: int, rank: int = 4, hidden: int = 64):
        super().__init__(dims, out_dim)
        for name, v in (("rank", rank), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LowRankTensorFusion {name}={v!r}: must be a positive integer (e.g. rank=4)")
        # ParameterDict, not a list: the optimiser must see (and train) every factor.
        self.factors = nn.ParameterDict({
            k: nn.Parameter(torch.randn(rank, d + 1, hidden) * math.sqrt(2.0 / (d + 1 + hidden)))
            for k, d in self.dims.items()})
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        self.check(feats)
        prod = None
        for k in self.keys:
            f = with_one(feats[k])  # (B, D_m + 1)
            term = torch.einsum("bd,rdh->brh", f, self.factors[k])  # (B, R, hidden)
            prod = term if prod is None else prod * term
        h = torch.einsum("brh,r->bh", prod, self.rank_weights) + self.bias  # (B, hidden)
        return self.head(h)
