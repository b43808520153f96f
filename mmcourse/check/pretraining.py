"""Exercise checkers for notebooks 03 (pretraining and emergence) and 04 (homogenization).

Reference solutions live in ``tests/test_pretrain.py`` and ``tests/test_homogenization.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- notebook 03
@exercise(hint="normalise both batches first (F.normalize(z, dim=1)); alignment = "
               "((u - v) ** 2).sum(1).mean(); uniformity = log of the mean of exp(-2 * squared "
               "distance) over all pairs i < j of u: torch.pdist(u).pow(2).mul(-2).exp().mean().log().",
          success="alignment and uniformity match Wang & Isola (2020), eqs. 4-5 with alpha=2, t=2.")
def alignment_uniformity(fn) -> None:
    """Check ``fn(z1, z2) -> (alignment, uniformity)`` for two (B, D) batches of views."""
    g = _gen(30)
    z1 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    want_align = ((u - v) ** 2).sum(1).mean()
    want_unif = torch.pdist(u).pow(2).mul(-2).exp().mean().log()
    got = attempt(fn, z1.clone(), z2.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Wrong("return a pair (alignment, uniformity).")
    a, un = (torch.as_tensor(x, dtype=torch.float64).reshape(()) for x in got)
    raw = ((z1 - z2) ** 2).sum(1).mean()
    if torch.isclose(a, raw):
        raise Wrong("your alignment uses unnormalised vectors; both measures live on the unit sphere.")
    expect_close(a, want_align, "alignment")
    expect_close(un, want_unif, "uniformity")


@exercise(hint="cosine similarity = F.normalize(test) @ F.normalize(train).T (N_test, N_train); "
               "take .topk(k, dim=1).indices, vote with torch.mode over train_labels[indices], "
               "and return the fraction equal to test_labels.",
          success="your k-NN accuracy matches a direct implementation.")
def knn_accuracy(fn) -> None:
    """Check ``fn(train_feats, train_labels, test_feats, test_labels, k) -> float``."""
    g = _gen(31)
    centres = 3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    ytr, yte = torch.arange(30) % 3, torch.arange(12) % 3
    Xtr = centres[ytr] + torch.randn(30, 5, generator=g, dtype=torch.float64)
    Xte = centres[yte] + 2.5 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    sims = F.normalize(Xte, dim=1) @ F.normalize(Xtr, dim=1).T  # (12, 30)
    for k in (1, 5):
        votes = ytr[sims.topk(k, dim=1).indices]  # (12, k)
        want = (votes.mode(dim=1).values == yte).double().mean()
        got = attempt(fn, Xtr.clone(), ytr.clone(), Xte.clone(), yte.clone(), k)
        expect_close(torch.as_tensor(got, dtype=torch.float64).reshape(()), want, f"accuracy with k={k}")
