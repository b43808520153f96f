"""Exercise checkers for notebooks 01 (the base model) and 02 (cross-entropy).

Each checker takes the learner's function, calls it on small fixed inputs and compares with a
reference computed by autograd or by ``mmcourse.metrics``, after looking for the typical mistakes.
Reference solutions: ``solutions.py``.
"""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches, scalar
from mmcourse.metrics import precision_recall_f1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- notebook 01
@exercise(task='(X, y, P) -> {"W", "b", "w2", "b2"}: the mean-BCE gradients of the net with a '
               "tanh hidden layer",
          hints=("Start from backward_by_hand of the sigmoid net: the chain rule is the same, and "
                 "exactly one factor belongs to the hidden activation. Which one?",
                 "The output layer has not changed, so dL/dz2 and the w2, b2 gradients are as "
                 "before; only the step from dL/dh back to dL/da1 (a1 = XW^T + b) differs.",
                 "That step multiplies by the activation's derivative at a1. For the sigmoid it "
                 "was h(1 - h); write tanh'(a1) in terms of h = tanh(a1) and use it there."),
          success="all four gradients of the tanh net match autograd.")
def tanh_net_grads(fn) -> None:
    """Check ``fn(x, y, P) -> dict`` of the mean-BCE gradients of the net with a tanh hidden layer.

    h = tanh(x @ W.T + b) (N, H), p = sigmoid(h @ w2 + b2) (N,); ``P`` holds W (H, D), b (H,),
    w2 (H,), b2 (); the answer must hold the same keys with tensors of the same shapes.
    """
    g = _gen(1)
    N, D, H = 6, 5, 4
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0], dtype=torch.float64)
    f64 = {"generator": g, "dtype": torch.float64}
    P = {"W": torch.randn(H, D, **f64), "b": torch.randn(H, **f64), "w2": torch.randn(H, **f64),
         "b2": torch.tensor(0.1, dtype=torch.float64)}
    leaves = {k: v.clone().requires_grad_() for k, v in P.items()}
    h = torch.tanh(x @ leaves["W"].T + leaves["b"])  # (N, H)
    z2 = h @ leaves["w2"] + leaves["b2"]  # (N,)
    torch.nn.functional.binary_cross_entropy_with_logits(z2, y).backward()
    out = attempt(fn, x, y, {k: v.clone() for k, v in P.items()})
    if not isinstance(out, dict) or set(out) != set(P):
        raise Wrong(f"return a dict with keys {sorted(P)}.")
    h, dz2 = h.detach(), (torch.sigmoid(z2.detach()) - y) / N  # (N, H), (N,)
    dW_sigmoid = (dz2[:, None] * P["w2"] * h * (1 - h)).T @ x  # the sigmoid net's sigma'
    if matches(out["W"], dW_sigmoid):
        raise Wrong("dW uses h(1 - h), the sigmoid's derivative; the hidden layer is tanh now.")
    if all(matches(out[k], N * leaves[k].grad) for k in P):
        raise Wrong(f"every gradient is {N} (= N) times too large: the loss is a mean over N.")
    for k in sorted(P):
        expect_close(out[k], leaves[k].grad, f"d{k}")


@exercise(task="(cm) -> float: the F1 of class 1 from a 2x2 confusion matrix [[TN, FP], [FN, TP]]",
          hints=("Write precision and recall in terms of TP, FP and FN first.",
                 "F1 is their harmonic mean, not their average: 2PR / (P + R).",
                 "Substitute P = TP/(TP+FP) and R = TP/(TP+FN) into 2PR/(P+R) and simplify: TN "
                 "drops out and the result has a single fraction."),
          success="your F1 matches mmcourse.metrics.")
def f1_from_confusion(fn) -> None:
    """Check ``fn(cm) -> float``: the F1 of class 1 from a 2x2 confusion matrix."""
    for cm in ([[50, 10], [5, 35]], [[90, 2], [30, 8]], [[3, 40], [1, 60]]):
        cm = torch.tensor(cm)
        prec, rec, f1 = (v.double() for v in precision_recall_f1(cm))  # each (2,): per class
        got = scalar(attempt(fn, cm), f"F1 for cm={cm.tolist()}")
        mistakes = ((prec[1], "that is precision TP / (TP + FP); F1 combines it with recall."),
                    (rec[1], "that is recall TP / (TP + FN); F1 combines it with precision."),
                    (f1[0], "that is the F1 of class 0; the positive class is 1 (cm[1, 1] = TP)."),
                    ((cm[0, 0] + cm[1, 1]) / cm.sum(), "that is the accuracy, not F1."),
                    ((prec[1] + rec[1]) / 2, "that is the arithmetic mean of precision and "
                                             "recall; F1 is their harmonic mean."))
        for value, message in mistakes:
            if matches(got, value):
                raise Wrong(message)
        expect_close(got, f1[1], f"F1 for cm={cm.tolist()}")


# ---------------------------------------------------------------------------------- notebook 02
@exercise(task="(z, y) -> dL/dz, same shape as z: the gradient of the mean BCE with respect to "
               "the logits",
          hints=("Chain rule: dL/dz = dL/dp * dp/dz with p = sigmoid(z). Write both factors for "
                 "one example first; the mean adds a constant factor.",
                 "dp/dz = p(1 - p). Multiply it into dL/dp and simplify: the divisions by p and "
                 "1 - p cancel, leaving something very short.",
                 "After cancelling, one example's gradient is a difference of two things you "
                 "already have; the mean then divides by a constant. For p use a sigmoid that "
                 "stays finite at z = ±1e4."),
          success="your gradient matches autograd, also at logits of ±1e4.")
def bce_logit_grad_by_hand(fn) -> None:
    """Check ``fn(z, y) -> dL/dz`` of the mean BCE on logits, same shape as z."""
    g = _gen(2)
    z = torch.cat([torch.randn(5, generator=g, dtype=torch.float64) * 3,
                   torch.tensor([-1e4, 1e4, 40.0], dtype=torch.float64)]).requires_grad_()
    y = torch.tensor([0.0, 1, 1, 0, 1, 1, 0, 0], dtype=torch.float64)
    torch.nn.functional.binary_cross_entropy_with_logits(z, y).backward()
    want, n = z.grad, z.numel()
    got = attempt(fn, z.detach(), y)
    if matches(got, n * want):
        raise Wrong(f"your gradient is {n} (= N) times too large: the loss is the mean over N.")
    if matches(got, -want):
        raise Wrong("the sign is flipped: that is the gradient of the log-likelihood, not of the "
                    "loss.")
    got_t = torch.as_tensor(got).detach().double()
    if (got_t.shape == want.shape and matches(got_t[:5], want[:5])
            and not torch.isfinite(got_t[5:]).all()):
        raise Wrong("right at moderate logits but inf or nan at z = ±1e4: exp(1e4) overflows, or "
                    "p or 1 - p is exactly 0 there. Simplify until no division by p or 1 - p is "
                    "left, and use a sigmoid that is stable for large |z|.")
    expect_close(got, want, "dL/dz")


@exercise(task="(z) -> (B, C): log softmax over the last dim of z, finite for huge logits",
          hints=("Write log softmax(z)_k = z_k - log sum_j exp(z_j) and ask: for which z does "
                 "exp overflow, or underflow to 0?",
                 "log softmax does not change if you subtract the same number from every logit "
                 "of a row. Which number makes every exponent <= 0 and at least one equal to 0?",
                 "Subtract the maximum of each row (keepdim=True, so it broadcasts over the row) "
                 "from that row, then apply the formula of hint 1 to the shifted logits."),
          success="your log-softmax matches torch.log_softmax and stays finite at ±1e4.")
def stable_log_softmax(fn) -> None:
    """Check ``fn(z) -> log softmax(z)`` over the last dim of z (B, C), finite for huge logits.

    Rows 0-3 are moderate, row 4 is [1e4, 0, -1e4, 5, 1e4] (a naive formula overflows there) and
    row 5 is all -1e4 (a max over the whole batch, 1e4, underflows every exponent of it and of
    rows 0-3). B = 6 != C = 5, so a row max without keepdim fails to broadcast instead of
    silently subtracting the wrong numbers.
    """
    g = _gen(3)
    z = torch.cat([torch.randn(4, 5, generator=g, dtype=torch.float64),
                   torch.tensor([[1e4, 0, -1e4, 5, 1e4], [-1e4] * 5], dtype=torch.float64)])
    want = torch.log_softmax(z, dim=-1)  # (6, 5)
    try:
        got = attempt(fn, z.clone())
    except RuntimeError as e:
        if "must match the size" not in str(e):
            raise
        raise Wrong(f"your code raised RuntimeError: {e}. A max over dim -1 has shape (B,); "
                    "keep it (B, 1) with keepdim=True so it lines up with the rows.") from e
    got_t = torch.as_tensor(got).detach().double()
    if got_t.shape == want.shape:
        row_ok = [matches(got_t[i], want[i]) for i in range(len(z))]
        if all(row_ok[:4]) and not torch.isfinite(got_t[4]).all():
            raise Wrong("the moderate rows are right, but the row [1e4, 0, -1e4, 5, 1e4] came "
                        "out inf/nan: exp(1e4) overflows to inf, and softmax rounds e^(-2e4) to "
                        "0, whose log is -inf. That is the naive log(softmax(z)); subtract the "
                        "row's max before exponentiating, as the section shows.")
        if row_ok[4] and not torch.isfinite(got_t[[0, 1, 2, 3, 5]]).all():
            raise Wrong("only the row holding the batch's largest logit (1e4) is right; the "
                        "other rows are inf/nan: you subtracted one max for the whole batch, "
                        "so every exponent of a row far below it underflows to 0. Subtract "
                        "each row's own max.")
        if matches(got_t, torch.log_softmax(z, dim=0)):
            raise Wrong("you normalised over dim 0 (each column); normalise each row (dim=-1).")
    expect_close(got, want, "log_softmax(z)")
