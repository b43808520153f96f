"""Exercise checkers for notebook 00 (the tour)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


@exercise(hint="select the rows with y == c, e.g. X[y == c].mean(0), for c in 0..9 and stack them.",
          success="one average image per digit, shape (10, 28, 28).")
def mean_image_per_digit(fn) -> None:
    """Check ``fn(X, y) -> (10, H, W)``: the mean image of each class."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 5, 6, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 10
    got = attempt(fn, X, y)
    want = torch.stack([X[y == c].mean(0) for c in range(10)])
    expect_close(got, want, "the mean images")


@exercise(hint="divide every row by its L2 norm (E / E.norm(dim=1, keepdim=True)), then E @ E.T.",
          success="cosine similarities: 1 on the diagonal, symmetric.")
def cosine_similarity_matrix(fn) -> None:
    """Check ``fn(E) -> (N, N)`` for unnormalised (N, D) embeddings."""
    g = torch.Generator().manual_seed(1)
    E = torch.randn(7, 5, generator=g, dtype=torch.float64) * torch.arange(1, 8)[:, None]
    got = attempt(fn, E)
    unit = F.normalize(E, dim=1)
    if torch.as_tensor(got).shape == (7, 7) and torch.allclose(torch.as_tensor(got).double(), E @ E.T):
        raise Wrong("that is the plain dot product: long vectors get large scores.")
    expect_close(got, unit @ unit.T, "the similarity matrix")
