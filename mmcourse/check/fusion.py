"""Exercise checkers for notebook 05 (fusion)."""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


@exercise(hint="loop over sorted(feats) and add weights[k] * feats[k]; the result is (B, D).",
          success="z = Σ w_m f_m, the weighted-sum fusion.")
def weighted_sum(fn) -> None:
    """Check ``fn(feats, weights) -> (B, D)`` with feats {name: (B, D)} and weights {name: float}."""
    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(3, 4, generator=g, dtype=torch.float64),
             "audio": torch.randn(3, 4, generator=g, dtype=torch.float64)}
    weights = {"image": 0.7, "audio": 0.2}
    got = attempt(fn, feats, weights)
    if torch.as_tensor(got).shape == (3, 4) and torch.allclose(torch.as_tensor(got), (0.7 * feats["image"] + 0.2 * feats["audio"]) / 0.9):
        raise Wrong("you renormalised the weights; the formula uses them as given.")
    expect_close(got, 0.7 * feats["image"] + 0.2 * feats["audio"], "z")


@exercise(hint="append a column of ones to each: torch.cat([f, ones], 1); then "
               "(a[:, :, None] * b[:, None, :]).flatten(1) gives (B, (Da + 1)(Db + 1)).",
          success="the outer product keeps unimodal and bimodal terms.")
def outer_with_one(fn) -> None:
    """Check ``fn(a, b) -> (B, (Da+1)(Db+1))``: vec([a; 1] ⊗ [b; 1])."""
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    b = torch.tensor([[3.0], [2.0]], dtype=torch.float64)
    got = attempt(fn, a, b)
    want = torch.tensor([[3.0, 1.0, 6.0, 2.0, 3.0, 1.0], [1.0, 0.5, -2.0, -1.0, 2.0, 1.0]], dtype=torch.float64)
    if torch.as_tensor(got).shape == (2, 2):
        raise Wrong("you dropped the appended 1s: without them the unimodal terms vanish.")
    expect_close(got, want, "the flattened outer product")
