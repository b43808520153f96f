"""Contrastive alignment into a shared space: the CLIP objective and retrieval recall@k.

This module holds the two-tower aligner and the lesson's trained one; the objective
(``clip_loss``, ``LogitScale``, ``ClampLogitScale``) lives in ``mmcourse.clip``, recall@k and
hubness in ``mmcourse.retrieval``, the prompt classifiers (``PromptClassifier``,
``LockedImageTuning``) in ``mmcourse.lit``. Every one of those names is re-exported here.

CLIP (Radford et al. 2021, fig. 3) embeds a batch of B pairs (aᵢ, bᵢ) with two towers, makes
every embedding unit length and scores all B × B pairs by a scaled cosine similarity,

    Sᵢⱼ = s · aᵢ·bⱼ,   s = exp(t) the inverse temperature, t a learned scalar,

then asks each row and each column to pick its own partner (symmetric InfoNCE):

    L = ½ [ CE(S, I) + CE(Sᵀ, I) ],   CE(S, I) = −(1/B) Σᵢ log softmax(Sᵢ)ᵢ.

``t`` starts at log(1/0.07) and, as in CLIP's training code, the *parameter* t is clamped to
≤ log 100 after each optimiser step (``ClampLogitScale``, a ``fit`` callback); the forward pass
uses exp(t) unclipped, so the gradient wrt t never vanishes. Retrieval is scored with
recall@k: a query counts as found when one of its k nearest gallery items is correct. In
AV-digits pairs match only by digit, so "correct" means "shows the same digit".

Taught in ``notebooks/07_contrastive_alignment.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.clip import MAX_LOGIT_SCALE, ClampLogitScale, LogitScale, clip_loss  # re-exported
from mmcourse.lit import LockedImageTuning, PromptClassifier  # re-exported
from mmcourse.retrieval import (chance_recall_at_k, hub_share, k_occurrence, recall_at_k,  # re-exported
                                retrieval_table)


class ContrastiveAligner(nn.Module):
    """One tower per modality → a projection into a shared (B, P) space, plus a learned scale.

    Args:
        encoders: ``nn.ModuleDict`` of exactly two encoders, each with ``out_dim``.
        proj_dim: P, the shared space's size.
        hidden: hidden width of each two-layer projection head (None: a single linear map).
        freeze_encoders: keep the towers fixed and learn only the projections and the scale
            (cheap, and the towers' own features survive intact).

    ``forward(inputs)`` returns ``{modality: (B, P) unit vectors, ..., "logit_scale": scalar}``,
    so ``mmcourse.train.fit`` can train it with ``loss_fn=aligner.loss`` and
    ``callbacks=[ClampLogitScale()]`` (keeps s ≤ 100 as CLIP does).
    """

    def __init__(self, encoders: nn.ModuleDict, proj_dim: int = 64, hidden: int | None = 128,
                 freeze_encoders: bool = False, temperature: float = 0.07):
        super().__init__()
        if len(encoders) != 2:
            raise ValueError(f"ContrastiveAligner aligns exactly two modalities, got {sorted(encoders.keys())}")
        self.encoders, self.freeze_encoders = encoders, freeze_encoders
        if freeze_encoders:
            encoders.requires_grad_(False)

        def head(d: int) -> nn.Module:
            if hidden is None:
                return nn.Linear(d, proj_dim)
            return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))

        self.proj = nn.ModuleDict({k: head(encoders[k].out_dim) for k in sorted(encoders.keys())})
        self.logit_scale = LogitScale(temperature)

    @property
    def keys(self) -> list[str]:
        return sorted(self.encoders.keys())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoders:
            self.encoders.eval()  # frozen towers keep their batch-norm statistics
        return self

    def embed(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """{modality: (B, P) unit vectors} for every modality present in ``inputs``."""
        unknown = sorted(set(inputs) - set(self.keys))
        if unknown:
            raise KeyError(f"unknown modality {unknown}; this aligner has {self.keys}")
        return {k: F.normalize(self.proj[k](self.encoders[k](inputs[k])), dim=-1) for k in sorted(inputs)}

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {**self.embed(inputs), "logit_scale": self.logit_scale()}

    def loss(self, out: dict[str, Tensor], labels: Tensor | None = None) -> Tensor:
        """CLIP loss of a forward output; ``labels`` are ignored (pairs are their own targets)."""
        a, b = self.keys
        return clip_loss(out[a].float(), out[b].float(), out["logit_scale"])


@torch.no_grad()
def embed_all(aligner: ContrastiveAligner, inputs: dict[str, Tensor], batch_size: int = 512) -> dict[str, Tensor]:
    """Embed a whole split in eval mode: {modality: (N, P)} on the CPU."""
    was = aligner.training
    aligner.eval()
    device = next(aligner.parameters()).device
    n = len(next(iter(inputs.values())))
    out = {k: [] for k in sorted(inputs)}
    for i in range(0, n, batch_size):
        emb = aligner.embed({k: v[i:i + batch_size].to(device) for k, v in inputs.items()})
        for k in out:
            out[k].append(emb[k].cpu())
    aligner.train(was)
    return {k: torch.cat(v) for k, v in out.items()}


def build_av_aligner(proj_dim: int = 32, seed: int = 0) -> ContrastiveAligner:
    """Fresh image and audio towers (the fusion lessons' sizes: D = 64) + projections to P."""
    from mmcourse.encoders import AudioEncoder, ImageEncoder
    torch.manual_seed(seed)
    towers = nn.ModuleDict({"audio": AudioEncoder(64, hidden=64), "image": ImageEncoder(64, width=8)})
    return ContrastiveAligner(towers, proj_dim=proj_dim)


def aligned_av_encoders(difficulty: str = "clean", epochs: int | None = None, n_train: int | None = None,
                        seed: int = 0, progress: bool = True, return_info: bool = False):
    """Image and audio towers aligned with the CLIP loss on AV-digits *train* pairs (cached).

    No labels enter the loss, but note: AV-digits pairs were *formed* by matching digits, so the
    pairing itself carries the class structure (real paired data, e.g. a video frame and its
    sound, co-occur without anyone labelling them).

    Args:
        epochs, n_train: default ``quick(30, 1)`` epochs over ``quick(3500, 300)`` pairs (lesson 07's
            settings; lesson 08 calls it with the defaults, so both load the same file).
        return_info: also return ``load_or_train``'s info (``"path"``: the checkpoint file).
    """
    from mmcourse.checkpoint import load_or_train
    from mmcourse.data import load_av_digits
    from mmcourse.runtime import QUICK, quick
    from mmcourse.train import FitConfig, fit
    epochs = epochs if epochs is not None else quick(30, 1)
    n_train = n_train if n_train is not None else quick(3500, 300)
    aligner = build_av_aligner(seed=seed)
    train = load_av_digits("train", difficulty, seed)
    X = {k: v[:n_train] for k, v in train.inputs.items()}
    config = FitConfig(epochs=epochs, batch_size=256, lr=1e-2, weight_decay=1e-4, seed=seed)

    def train_fn(model):
        fit(model, (X, train.labels[:n_train]), None, config, loss_fn=model.loss,
            callbacks=[ClampLogitScale()])

    name = f"clip-av-{difficulty}-{'quick' if QUICK else 'full'}"
    key = {"config": config, "difficulty": difficulty, "n_train": n_train, "init_seed": seed,
           "train": (X, train.labels[:n_train]), "clamp": MAX_LOGIT_SCALE}
    model, info = load_or_train(name, aligner, train_fn, key=key, verbose=progress, return_info=True)
    return (model.eval(), info) if return_info else model.eval()
