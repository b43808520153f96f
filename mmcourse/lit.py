"""Classifiers onto frozen text prompts: LiT (locked-image tuning) and its reverse.

Both score an image against one text embedding per class (MiniLM prompts) with a learned scale
``LogitScale`` from ``mmcourse.clip``; they differ in which side learns. Taught in
``notebooks/07_contrastive_alignment.ipynb``; re-exported by ``mmcourse.align``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.clip import LogitScale


class PromptClassifier(nn.Module):
    """A classifier head onto *frozen* text prompts: the image tower and a projection train, the
    class prompts stay fixed. This is the *reverse* of LiT (which locks the image tower and tunes
    the text side; ``LockedImageTuning``): with one fixed prompt per class it is an ordinary
    cosine classifier whose class vectors are MiniLM embeddings instead of learned weights.

    Args:
        encoder: the image tower (has ``out_dim``), trained.
        prompts: (C, D_text) frozen text embeddings of the class prompts (a buffer, never trained);
            swap them with ``set_prompts`` to classify with other wordings or other classes.

    Train it with ``fit(..., callbacks=[ClampLogitScale()])`` like the aligner.

    Shapes:
        forward: (B, 1, 28, 28) → (B, C) logits = s · normalize(P f(x)) · normalize(prompts)ᵀ.
    """

    def __init__(self, encoder: nn.Module, prompts: Tensor, temperature: float = 0.07):
        super().__init__()
        self.encoder = encoder
        self.proj = nn.Linear(encoder.out_dim, prompts.shape[1])
        self.logit_scale = LogitScale(temperature)
        self.register_buffer("prompts", F.normalize(prompts.float(), dim=-1))

    def set_prompts(self, prompts: Tensor) -> PromptClassifier:
        if prompts.ndim != 2 or prompts.shape[1] != self.prompts.shape[1]:
            raise ValueError(f"prompts must be (C, {self.prompts.shape[1]}), got {tuple(prompts.shape)}")
        self.prompts = F.normalize(prompts.float(), dim=-1).to(self.prompts.device)
        return self

    def embed(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) → (B, D_text) unit vectors in the text space."""
        return F.normalize(self.proj(self.encoder(x)), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_scale() * self.embed(x) @ self.prompts.T  # (B, C)


class LockedImageTuning(nn.Module):
    """LiT, locked-image tuning (Zhai et al. 2022): the pretrained image tower is *locked* (frozen,
    batch-norm statistics included) and the text side learns to point at its embeddings.

    Image side: f̂(x) = normalize(f(x)), nothing trained. Text side: frozen sentence embeddings
    t_c (e.g. MiniLM, D_text) through a trainable head g: D_text → D_img (LiT tunes the whole
    text tower; a linear head on a frozen one is the cheapest version). Class scores:

        logits(x)_c = s · f̂(x) · normalize(g(t_c)),

    the image→text half of the CLIP loss with one text per class.

    Args:
        encoder: the pretrained image tower (has ``out_dim``); frozen here, in place.
        prompts: (C, D_text) class prompt embeddings (a buffer; ``set_prompts`` swaps them).

    Shapes:
        forward: (B, 1, 28, 28) → (B, C) logits.
    """

    def __init__(self, encoder: nn.Module, prompts: Tensor, temperature: float = 0.07):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.text_head = nn.Linear(prompts.shape[1], encoder.out_dim)
        self.logit_scale = LogitScale(temperature)
        self.register_buffer("prompts", prompts.float())

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # locked: its batch-norm statistics must not move either
        return self

    def set_prompts(self, prompts: Tensor) -> LockedImageTuning:
        if prompts.ndim != 2 or prompts.shape[1] != self.prompts.shape[1]:
            raise ValueError(f"prompts must be (C, {self.prompts.shape[1]}), got {tuple(prompts.shape)}")
        self.prompts = prompts.float().to(self.prompts.device)
        return self

    def embed_text(self, prompts: Tensor) -> Tensor:
        """(C, D_text) → (C, D_img) unit vectors in the locked image space."""
        return F.normalize(self.text_head(prompts), dim=-1)

    def embed(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) → (B, D_img) unit vectors from the locked image tower."""
        with torch.no_grad():
            return F.normalize(self.encoder(x), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.logit_scale() * self.embed(x) @ self.embed_text(self.prompts).T  # (B, C)
