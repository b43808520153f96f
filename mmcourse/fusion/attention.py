"""Attention fusion: modality tokens attend to each other, H = A(F_x, F_y).

Each modality's feature vector becomes one token of a shared size (a linear projection plus a
learned modality embedding). Multi-head attention over the M tokens lets every modality query
the others, softmax(Q Kᵀ / √d) V; a residual connection and layer norm follow, and the output is
the mean of the present tokens. An absent modality is masked out of the keys, so the model runs
with whatever is there. Taught in notebooks/05_fusion.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcourse.fusion.base import Fusion


class CrossAttentionFusion(Fusion):
    """Multi-head attention across modality tokens, then a linear head.

    Args:
        d_model: token size; heads: attention heads (must divide d_model).
    """

    handles_missing = True

    def __init__(self, dims: dict[str, int], out_dim: int, d_model: int = 64, heads: int = 4):
        super().__init__(dims, out_dim)
        if d_model % heads:
            raise ValueError(f"heads ({heads}) must divide d_model ({d_model})")
        self.tokens = nn.ModuleDict({k: nn.Linear(d, d_model) for k, d in self.dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.keys), d_model) * 0.02)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out_dim)
        self.last_attention: Tensor | None = None  # (B, M, M) weights of the latest call, for plots

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        present = self.check(feats)
        B = feats[present[0]].shape[0]
        ref = feats[present[0]]
        tok = torch.stack([
            self.tokens[k](feats[k]) if k in feats else ref.new_zeros(B, self.attn.embed_dim)
            for k in self.keys], 1) + self.modality_embedding  # (B, M, d)
        absent = torch.tensor([k not in feats for k in self.keys], device=ref.device)  # (M,)
        mask = absent[None, :].expand(B, -1)  # (B, M): True = ignore this key
        out, weights = self.attn(tok, tok, tok, key_padding_mask=mask, need_weights=True)
        self.last_attention = weights.detach()
        h = self.norm(tok + out)  # (B, M, d)
        keep = (~absent).to(h.dtype)[None, :, None]  # (1, M, 1)
        return self.head((h * keep).sum(1) / keep.sum(1))  # mean over present tokens → (B, out)
