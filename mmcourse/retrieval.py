"""Scoring retrieval in a shared space: recall@k, its chance level, and hubness.

Retrieval is scored with recall@k: a query counts as found when one of its k nearest gallery
items is correct. In AV-digits pairs match only by digit, so "correct" means "shows the same
digit". Hubs (Radovanović et al. 2010) are gallery items near almost every query.

Taught in ``notebooks/07_contrastive_alignment.ipynb``; re-exported by ``mmcourse.align``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


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
