"""Exercise checkers for notebook 00 (the tour). Reference solutions: ``solutions.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches


@exercise(task="(X, y) -> (10, H, W): the average image of every digit 0-9",
          hints=("Which rows of X show a given digit c? A boolean mask built from y selects them.",
                 "For one digit c: select its images, then average over the image axis (dim 0), "
                 "which leaves one (H, W) image.",
                 "Do that for c = 0, ..., 9 and stack the ten (H, W) results along a new first dim."),
          success="one average image per digit, shape (10, 28, 28).")
def mean_image_per_digit(fn) -> None:
    """Check ``fn(X, y) -> (10, H, W)``: the mean image of each class."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 5, 6, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 10
    want = torch.stack([X[y == c].mean(0) for c in range(10)])  # (10, 5, 6)
    got = attempt(fn, X, y)  # fn gets copies: whatever it does to them, X and y stay as they are
    if matches(got, X.mean(0)):
        raise Wrong("that is one average over all images; average each digit's images separately.")
    if matches(got, 4 * want):
        raise Wrong("those are the sums of each digit's images; divide by how many there are.")
    expect_close(got, want, "the mean images")


@exercise(task="(E) -> (N, N): the cosine similarity of every pair of rows of E (N, D), "
               "not normalised",
          hints=("Cosine similarity is the dot product of two vectors after each is scaled to "
                 "length 1. Which vectors are the embeddings here, rows or columns?",
                 "Divide every row of E by its own L2 norm (keepdim=True keeps it broadcastable).",
                 "With unit rows U, all pairwise dot products at once are one matrix product of "
                 "U with its transpose."),
          success="cosine similarities: 1 on the diagonal, symmetric.")
def cosine_similarity_matrix(fn) -> None:
    """Check ``fn(E) -> (N, N)`` for unnormalised (N, D) embeddings."""
    g = torch.Generator().manual_seed(1)
    E = torch.randn(7, 5, generator=g, dtype=torch.float64) * torch.arange(1, 8)[:, None]
    unit = F.normalize(E, dim=1)
    got = attempt(fn, E)
    if matches(got, E @ E.T):
        raise Wrong("that is the plain dot product: long vectors get large scores.")
    cols = F.normalize(E, dim=0)
    if matches(got, cols @ cols.T):
        raise Wrong("you normalised each column (feature); normalise each row (embedding).")
    expect_close(got, unit @ unit.T, "the similarity matrix")
