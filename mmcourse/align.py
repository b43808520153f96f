"""Contrastive alignment into a shared space: the CLIP objective and retrieval recall@k.

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


def recall_at_k(queries: Tensor, gallery: Tensor, query_labels: Tensor, gallery_labels: Tensor,
                k: int = 1) -> float:
    """Fraction of queries with a same-label item among their k most similar gallery items.

    Args:
        queries: (N, D) and gallery: (G, D) embeddings (cosine similarity is used).
        query_labels: (N,) and gallery_labels: (G,) int labels.
        k: how many neighbours count.

    Returns:
        recall@k in [0, 1].
    """
    for name, x in (("queries", queries), ("gallery", gallery)):
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] < 1:
            raise ValueError(f"recall_at_k: {name} must be an (N, D) embedding tensor, got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries and gallery embeddings differ in size D: {queries.shape[1]} vs {gallery.shape[1]}")
    if len(queries) == 0:
        raise ValueError("recall_at_k needs at least one query")
    for name, y in (("query_labels", query_labels), ("gallery_labels", gallery_labels)):
        if not isinstance(y, Tensor) or y.ndim != 1 or y.dtype.is_floating_point:
            raise ValueError(f"{name} must be a (N,) integer tensor of class labels")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(gallery):
        raise ValueError(f"k must be in 1..{len(gallery)} (the gallery size), got {k}")
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError(f"one label per row: queries {len(queries)} vs {len(query_labels)} labels, "
                         f"gallery {len(gallery)} vs {len(gallery_labels)} labels")
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(gallery.float(), dim=-1).T  # (N, G)
    top = sim.topk(k, dim=1).indices  # (N, k)
    hit = (gallery_labels[top] == query_labels[:, None]).any(1)  # (N,)
    return hit.float().mean().item()


def chance_recall_at_k(query_labels: Tensor, gallery_labels: Tensor, k: int = 1) -> float:
    """Expected recall@k of a random ranking: 1 − C(G − n, k) / C(G, k) per query, averaged,
    where n is how many gallery items share the query's label (drawing k without replacement)."""
    G = len(gallery_labels)
    counts = torch.bincount(gallery_labels, minlength=int(query_labels.max()) + 1)
    miss = [math.comb(G - int(counts[c]), k) / math.comb(G, k) for c in query_labels.tolist()]
    return 1 - sum(miss) / len(miss)


def retrieval_table(emb: dict[str, Tensor], labels: Tensor, ks=(1, 5)) -> dict[str, float]:
    """recall@k both ways between the two modalities of ``emb`` (same rows, same labels)."""
    a, b = sorted(emb)
    out = {}
    for q, g in ((a, b), (b, a)):
        for k in ks:
            out[f"{q}→{g} R@{k}"] = recall_at_k(emb[q], emb[g], labels, labels, k)
    return out


def k_occurrence(queries: Tensor, gallery: Tensor, k: int = 5) -> Tensor:
    """How often each gallery item is among a query's k nearest: the k-occurrence N_k (hubness).

    In high-dimensional spaces a few gallery items ("hubs") can be near almost every query, and
    then they fill most top-k lists (Radovanović et al. 2010, JMLR). Every query contributes k
    slots, so ``N_k.sum() == k · N``; without hubs N_k stays close to k · N / G for every item.

    Args:
        queries: (N, D), gallery: (G, D) embeddings (cosine similarity).
        k: neighbours per query, 1 ≤ k ≤ G.

    Returns:
        (G,) int64 counts.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"k_occurrence wants (N, D) queries and (G, D) gallery, got {tuple(queries.shape)} "
                         f"and {tuple(gallery.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(gallery):
        raise ValueError(f"k must be in 1..{len(gallery)} (the gallery size), got {k}")
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(gallery.float(), dim=-1).T  # (N, G)
    top = sim.topk(k, dim=1).indices.flatten()  # (N·k,)
    return torch.bincount(top, minlength=len(gallery))  # (G,)


def hub_share(queries: Tensor, gallery: Tensor, k: int = 5, top: int = 10) -> float:
    """Fraction of all N·k top-k slots taken by the ``top`` most retrieved gallery items.

    Without hubs this is about top / G; when a handful of items answer every query it nears 1.
    """
    counts = k_occurrence(queries, gallery, k)
    return (counts.sort(descending=True).values[:top].sum() / counts.sum()).item()


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
