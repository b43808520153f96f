"""Exercise checkers for notebook 05 (fusion). Reference solutions: ``solutions.py``."""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches


@exercise(task="(feats, weights) -> (B, D): the weighted-sum fusion of a dict of (B, D) features "
               "with a dict of weights",
          hints=("Every modality contributes its features scaled by its own weight. What shape "
                 "does the sum of two (B, D) tensors have?",
                 "Loop over the modality names (sorted, as everywhere in mmcourse) and accumulate "
                 "weight times features; use the weights exactly as given."),
          success="z = Σ w_m f_m, the weighted-sum fusion.")
def weighted_sum(fn) -> None:
    """Check ``fn(feats, weights) -> (B, D)`` with feats {name: (B, D)} and weights {name: float}."""
    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(3, 4, generator=g, dtype=torch.float64),
             "audio": torch.randn(3, 4, generator=g, dtype=torch.float64)}
    weights = {"image": 0.7, "audio": 0.2}
    want = 0.7 * feats["image"] + 0.2 * feats["audio"]  # (3, 4)
    got = attempt(fn, feats, weights)
    mistakes = ((want / 0.9, "you renormalised the weights; the formula uses them as given."),
                (want / 2, "you averaged over the modalities; the formula sums them."),
                (feats["image"] + feats["audio"], "you ignored the weights."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    if torch.as_tensor(got).shape == (3, 8):
        raise Wrong("that is concatenation, (B, M·D); the weighted sum keeps the shape (B, D).")
    expect_close(got, want, "z")


@exercise(task="(a, b) -> (B, (Da + 1)(Db + 1)): the flattened outer product of [a; 1] and "
               "[b; 1] per example",
          hints=("First make (B, Da + 1) and (B, Db + 1) by appending a column of ones at the end "
                 "of a and of b (torch.cat along dim 1).",
                 "The outer product of two vectors u, v is the matrix u_i v_j. For a batch, insert "
                 "singleton dims so that broadcasting gives (B, Da + 1, Db + 1).",
                 "Flatten everything but the batch dim; a's index must vary slowest (row-major)."),
          success="the outer product keeps unimodal and bimodal terms.")
def outer_with_one(fn) -> None:
    """Check ``fn(a, b) -> (B, (Da+1)(Db+1))``: vec([a; 1] ⊗ [b; 1])."""
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    b = torch.tensor([[3.0], [2.0]], dtype=torch.float64)
    got = attempt(fn, a, b)
    want = torch.tensor([[3.0, 1.0, 6.0, 2.0, 3.0, 1.0], [1.0, 0.5, -2.0, -1.0, 2.0, 1.0]], dtype=torch.float64)
    shape = tuple(torch.as_tensor(got).shape)
    if shape == (2, 2):
        raise Wrong("you dropped the appended 1s: without them the unimodal terms vanish.")
    if shape == (2, 3, 2):
        raise Wrong("that is the (B, Da + 1, Db + 1) outer product; flatten it to (B, (Da + 1)(Db + 1)).")
    one = torch.ones(2, 1, dtype=torch.float64)
    a1, b1 = torch.cat([a, one], 1), torch.cat([b, one], 1)  # (2, 3), (2, 2)
    front_a, front_b = torch.cat([one, a], 1), torch.cat([one, b], 1)
    mistakes = (((front_a[:, :, None] * front_b[:, None, :]).flatten(1),  # (2, 6)
                 "you put the 1 first; append it at the end, [a; 1], so the layout matches."),
                ((b1[:, :, None] * a1[:, None, :]).flatten(1),
                 "that is [b; 1] ⊗ [a; 1]; the order is a first, so a's index varies slowest."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, want, "the flattened outer product")
