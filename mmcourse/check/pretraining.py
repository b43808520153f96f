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


# ---------------------------------------------------------------------------------- notebook 04
@exercise(hint="centre both Gram matrices with H = I - 11^T/n (Kc = H @ K @ H), then "
               "CKA = (Kc * Lc).sum() / (norm(Kc) * norm(Lc)), Frobenius norms.",
          success="your kernel-form CKA equals linear_cka on the features.")
def cka_from_gram(fn) -> None:
    """Check ``fn(K, L) -> float``: CKA from two (n, n) Gram matrices K = X Xᵀ, L = Y Yᵀ."""
    from mmcourse.homogenization import linear_cka
    g = _gen(40)
    X = torch.randn(9, 3, generator=g, dtype=torch.float64) + 2.0  # not centred on purpose
    Y = X @ torch.randn(3, 5, generator=g, dtype=torch.float64) + torch.randn(9, 5, generator=g, dtype=torch.float64)
    got = torch.as_tensor(attempt(fn, X @ X.T, Y @ Y.T), dtype=torch.float64).reshape(())
    K, L = X @ X.T, Y @ Y.T
    uncentred = (K * L).sum() / (K.norm() * L.norm())
    if torch.isclose(got, uncentred):
        raise Wrong("you forgot to centre the Gram matrices.")
    expect_close(got, torch.tensor(linear_cka(X, Y), dtype=torch.float64), "CKA")


@exercise(hint="keep only examples whose true label is not the target (labels != target), then "
               "return the fraction of those predicted as the target: (preds[keep] == target).mean().",
          success="your attack success rate matches.")
def attack_success_rate(fn) -> None:
    """Check ``fn(preds, labels, target) -> float``."""
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 5])
    preds = torch.tensor([0, 0, 2, 0, 0, 0, 0, 3, 1, 0])
    want = torch.tensor(5 / 7, dtype=torch.float64)  # 7 non-target rows, 5 of them predicted 0
    got = torch.as_tensor(attempt(fn, preds.clone(), labels.clone(), 0), dtype=torch.float64).reshape(())
    if torch.isclose(got, torch.tensor(7 / 10, dtype=torch.float64)):
        raise Wrong("examples that truly are the target class cannot be 'attacked': leave them out.")
    expect_close(got, want, "attack success rate")
