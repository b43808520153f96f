"""Exercise checkers for notebooks 07 (contrastive alignment) and 08 (fine-tuning, LoRA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


def _pairs(seed: int = 0, B: int = 4, D: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, D, generator=g, dtype=torch.float64),
            torch.randn(B, D, generator=g, dtype=torch.float64))


def _clip(a, b, s):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = s * a @ b.T
    t = torch.arange(len(a))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2, logits, t


@exercise(hint="normalise a and b, logits = scale * a @ b.T (B, B), targets = arange(B); average "
               "cross_entropy(logits, targets) and cross_entropy(logits.T, targets).",
          success="symmetric InfoNCE: each row and each column picks its partner.")
def symmetric_info_nce(fn) -> None:
    """Check ``fn(a, b, scale) -> scalar`` for (B, D) embeddings a, b (not yet normalised)."""
    a, b = _pairs()
    got = attempt(fn, a, b, 10.0)
    want, logits, t = _clip(a, b, 10.0)
    one_way = F.cross_entropy(logits, t)
    if torch.as_tensor(got).numel() == 1 and torch.isclose(torch.as_tensor(got, dtype=torch.float64), one_way):
        raise Wrong("that is only the a→b direction; CLIP averages it with b→a (the transpose).")
    raw = (F.cross_entropy(10.0 * a @ b.T, t) + F.cross_entropy(10.0 * b @ a.T, t)) / 2
    if torch.as_tensor(got).numel() == 1 and torch.isclose(torch.as_tensor(got, dtype=torch.float64), raw):
        raise Wrong("the embeddings must be L2-normalised first (cosine similarity).")
    expect_close(torch.as_tensor(got).reshape(()), want, "the loss")


@exercise(hint="sim = queries @ gallery.T; top = sim.topk(k, dim=1).indices (N, k); a hit is "
               "(gallery_labels[top] == query_labels[:, None]).any(1); return the mean as a float.",
          success="recall@k counts a query as found when any of its k neighbours is right.")
def recall_at_k(fn) -> None:
    """Check ``fn(queries, gallery, query_labels, gallery_labels, k) -> float`` (unit vectors)."""
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    g = F.normalize(torch.tensor([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0], [1.0, 0.9]]), dim=-1)
    ql, gl = torch.tensor([1, 2, 2]), torch.tensor([1, 1, 0, 2])
    # ranks: q0 → g0, g3, g1, g2; q1 → g1, g3, g0, g2; q2 → g3, g1, g0, g2.
    for k, want in ((1, 2 / 3), (2, 1.0)):
        got = float(attempt(fn, q, g, ql, gl, k))
        if k == 1 and abs(got) < 1e-6:
            raise Wrong("recall@1 came out 1/3: did you take the *least* similar item (topk largest=False)?")
        if abs(got - want) > 1e-6:
            raise Wrong(f"recall@{k} should be {want:.3f} on the test case, got {got:.3f}.")


def _lora_case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, generator=g, dtype=torch.float64)
    W, b = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    A, B = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    return x, W, b, A, B, 8.0, 2


@exercise(hint="y = x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T with A: (r, in), B: (out, r).",
          success="the frozen path plus the scaled low-rank path.")
def lora_forward(fn) -> None:
    """Check ``fn(x, W, b, A, B, alpha, r) -> (N, out)``."""
    x, W, b, A, B, alpha, r = _lora_case()
    got = attempt(fn, x, W, b, A, B, alpha, r)
    if torch.as_tensor(got).shape == (2, 3) and torch.allclose(torch.as_tensor(got), x @ W.T + b + x @ A.T @ B.T):
        raise Wrong("the low-rank path must be scaled by alpha / r.")
    expect_close(got, x @ W.T + b + (alpha / r) * x @ A.T @ B.T, "y")


@exercise(hint="the update to W is (alpha / r) * B @ A, shape (out, in) like W.",
          success="merged: one matrix again, no extra cost at inference.")
def lora_merge(fn) -> None:
    """Check ``fn(W, A, B, alpha, r) -> W'`` with W' x = W x + (α/r) B A x."""
    _, W, _, A, B, alpha, r = _lora_case()
    got = attempt(fn, W, A, B, alpha, r)
    if torch.as_tensor(got).shape == W.shape and torch.allclose(torch.as_tensor(got), W + B @ A):
        raise Wrong("forgot the scaling alpha / r.")
    expect_close(got, W + (alpha / r) * B @ A, "the merged weight")
