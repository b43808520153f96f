"""Exercise checkers for notebooks 07 (contrastive alignment) and 08 (fine-tuning, LoRA).

Reference solutions: ``solutions.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches, scalar


def _pairs(seed: int = 0, B: int = 4, D: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, D, generator=g, dtype=torch.float64),
            torch.randn(B, D, generator=g, dtype=torch.float64))


def _clip(a, b, s):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = s * a @ b.T  # (B, B)
    t = torch.arange(len(a))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2, logits, t


# ---------------------------------------------------------------------------------- notebook 07
@exercise(task="(a, b, scale) -> scalar: the symmetric InfoNCE (CLIP) loss for (B, D) embeddings "
               "a, b, not yet unit length",
          hints=("Row i of a belongs with row i of b. Which similarity does CLIP use, and what "
                 "must happen to the embeddings for it?",
                 "With unit rows, scale times the (B, B) matrix of all pairwise dot products are "
                 "the logits; the right 'class' of row i is column i.",
                 "That cross-entropy is the a→b direction. The loss is symmetric: do the same for "
                 "b→a (think about which matrix that is) and combine the two."),
          success="symmetric InfoNCE: each row and each column picks its partner.")
def symmetric_info_nce(fn) -> None:
    """Check ``fn(a, b, scale) -> scalar`` for (B, D) embeddings a, b (not yet normalised)."""
    a, b = _pairs()
    want, logits, t = _clip(a, b, 10.0)
    got = scalar(attempt(fn, a, b, 10.0), "the loss")
    mistakes = ((F.cross_entropy(logits, t), "that is only the a→b direction; CLIP averages "
                                             "it with b→a (the transpose)."),
                (F.cross_entropy(logits.T, t), "that is only the b→a direction; CLIP averages "
                                               "it with a→b."),
                ((F.cross_entropy(10.0 * a @ b.T, t) + F.cross_entropy(10.0 * b @ a.T, t)) / 2,
                 "the embeddings must be L2-normalised first (cosine similarity)."),
                (2 * want, "you summed the two directions; CLIP averages them."),
                (_clip(a, b, 1.0)[0], "you left out the scale: the logits are scale × cosine."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, want, "the loss")


@exercise(task="(queries, gallery, query_labels, gallery_labels, k) -> float: recall@k for unit "
               "vectors",
          hints=("Rank the gallery for every query by similarity: one (N, G) matrix. The vectors "
                 "are already unit length.",
                 "Tensor.topk(k, dim=1) gives each query's k most similar gallery indices; look "
                 "up their labels, (N, k).",
                 "A query is found if at least one of its k labels equals its own label (compare "
                 "against query_labels with a broadcastable shape); recall is the mean over "
                 "queries."),
          success="recall@k counts a query as found when any of its k neighbours is right.")
def recall_at_k(fn) -> None:
    """Check ``fn(queries, gallery, query_labels, gallery_labels, k) -> float`` (unit vectors)."""
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    g = F.normalize(torch.tensor([[1.0, 0.1], [0.2, 1.0], [-1.0, 0.0], [1.0, 0.9]]), dim=-1)
    ql, gl = torch.tensor([1, 2, 2]), torch.tensor([1, 1, 0, 2])
    # ranks: q0 → g0, g3, g1, g2; q1 → g1, g3, g0, g2; q2 → g3, g1, g0, g2.
    for k, want in ((1, 2 / 3), (2, 1.0)):
        got = scalar(attempt(fn, q, g, ql, gl, k), f"recall@{k}").item()  # nan, inf: Wrong
        if k == 1 and abs(got) < 1e-6:
            raise Wrong("recall@1 came out 0: did you take the *least* similar item (topk largest=False)?")
        if k == 2 and abs(got) < 1e-6:
            raise Wrong("recall@2 came out 0: a query counts as found when *any* of its k "
                        "neighbours has its label, not all of them.")
        if abs(got - want * 3) < 1e-6 and want != 0:
            raise Wrong(f"recall@{k} came out {got:g}: return the fraction of queries found, not the count.")
        if abs(got - want) > 1e-6:
            raise Wrong(f"recall@{k} should be {want:.3f} on the test case, got {got:.3f}.")


# ---------------------------------------------------------------------------------- notebook 08
def _lora_case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, generator=g, dtype=torch.float64)
    W, b = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    A, B = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    return x, W, b, A, B, 8.0, 2


@exercise(task="(x, W, b, A, B, alpha, r) -> (N, out): the LoRA forward pass of the section above",
          hints=("There are two paths: the frozen layer, and the low-rank path through A then B. "
                 "What does each do to x, and how are they combined?",
                 "The frozen path is the ordinary linear layer. The low-rank path maps x to r "
                 "dims with A and back to out dims with B; check the shapes: A is (r, in), B is "
                 "(out, r).",
                 "Only the low-rank path is scaled, by the factor from the section (it involves "
                 "alpha and r); add it to the frozen path."),
          success="the frozen path plus the scaled low-rank path.")
def lora_forward(fn) -> None:
    """Check ``fn(x, W, b, A, B, alpha, r) -> (N, out)``."""
    x, W, b, A, B, alpha, r = _lora_case()
    got = attempt(fn, x, W, b, A, B, alpha, r)
    frozen, low = x @ W.T + b, x @ A.T @ B.T  # (2, 3) each
    mistakes = ((frozen + low, "the low-rank path must be scaled by alpha / r."),
                (frozen + (r / alpha) * low, "the scaling is alpha / r, not r / alpha."),
                (x @ W.T + (alpha / r) * low, "you dropped the frozen layer's bias b."),
                ((alpha / r) * (frozen + low), "scale only the low-rank path, not the frozen one."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, frozen + (alpha / r) * low, "y")


@exercise(task="(W, A, B, alpha, r) -> (out, in): the single merged weight W' of the section above",
          hints=("W' must compute, for every x, what the frozen path plus the scaled low-rank path "
                 "compute together. Write that sum for one x without the bias.",
                 "Both paths are linear in x, so factor x out: W' is W plus one matrix, which must "
                 "have W's shape (out, in). Which product of A and B has that shape?"),
          success="merged: one matrix again, no extra cost at inference.")
def lora_merge(fn) -> None:
    """Check ``fn(W, A, B, alpha, r) -> W'`` with W' x = W x + (α/r) B A x."""
    _, W, _, A, B, alpha, r = _lora_case()
    want = W + (alpha / r) * B @ A  # (3, 5)
    got = attempt(fn, W, A, B, alpha, r)  # a copy of W: W += ... in fn leaves W and want as they are
    mistakes = ((W + B @ A, "forgot the scaling alpha / r."),
                (W + (r / alpha) * B @ A, "the scaling is alpha / r, not r / alpha."),
                ((alpha / r) * B @ A, "that is only the update; W' is W plus the update."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    if tuple(torch.as_tensor(got).shape) == tuple(W.shape[::-1]):
        raise Wrong(f"the merged weight has shape {tuple(W.shape[::-1])}; it needs W's shape "
                    f"{tuple(W.shape)}, (out, in).")
    expect_close(got, want, "the merged weight")


@exercise(task="(d, m, n_layers) -> int: trainable parameters of Houlsby adapters (bottleneck m "
               "on d-dim hidden states) in a model with n_layers transformer layers",
          hints=("Count one adapter first: it is two nn.Linear layers, d → m and m → d. How many "
                 "numbers does each hold, counting its bias?",
                 "Each linear map has a weight matrix (inputs × outputs) and one bias per output. "
                 "Then: how many adapters does each transformer layer get, and where do they sit?"),
          success="2·d·m + d + m per adapter, two per layer: the bottleneck m sets the budget.")
def adapter_params(fn) -> None:
    """Check ``fn(d, m, n_layers) -> int`` = (2·d·m + d + m) · 2 · n_layers."""
    for d, m, n_layers in ((384, 8, 6), (768, 64, 12), (16, 3, 1)):
        got = attempt(fn, d, m, n_layers)
        one = 2 * d * m + d + m
        mistakes = ((2 * d * m * 2 * n_layers, "you left out the biases: the down-projection has m, "
                                               "the up-projection d."),
                    ((2 * d * m + m) * 2 * n_layers, "the up-projection's bias (d numbers) is missing."),
                    ((2 * d * m + d) * 2 * n_layers, "the down-projection's bias (m numbers) is missing."),
                    (one * n_layers, "Houlsby put two adapters in each layer: after attention and "
                                     "after the feed-forward block."),
                    (one, "that is one adapter; count all of them (two per layer)."),
                    ((d * m + d + m) * 2 * n_layers, "there are two weight matrices, d × m and m × d."))
        value = scalar(got, kind="a whole number").item()
        if value != round(value):
            raise Wrong(f"return a whole number, got {value:g}.")
        value = round(value)
        for wrong, message in mistakes:
            if value == wrong and value != one * 2 * n_layers:
                raise Wrong(f"{message} (d={d}, m={m}, {n_layers} layers: you gave {value:,})")
        if value != one * 2 * n_layers:
            raise Wrong(f"for d={d}, m={m} and {n_layers} layers the count is off by "
                        f"{value - one * 2 * n_layers:+,}.")
