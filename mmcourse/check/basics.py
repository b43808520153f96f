"""Exercise checkers for notebooks 01 (the base model) and 02 (cross-entropy).

Each checker takes the learner's function, calls it on small fixed inputs and compares with a
reference computed by autograd or by ``mmcourse.metrics``. The reference solutions live in
``tests/test_check.py``.
"""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_close
from mmcourse.metrics import precision_recall_f1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- notebook 01
@exercise(hint="only sigma' changes: tanh'(a) = 1 - tanh(a)^2, so dL/da1 = (dL/dz2 * w2) * (1 - h**2); "
               "the output layer is as before: dL/dz2 = (p - y) / N.",
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
    for k in sorted(P):
        expect_close(out[k], leaves[k].grad, f"d{k}")


@exercise(hint="for cm = [[TN, FP], [FN, TP]] (rows: true class), F1 = 2 TP / (2 TP + FP + FN).",
          success="your F1 matches mmcourse.metrics.")
def f1_from_confusion(fn) -> None:
    """Check ``fn(cm) -> float``: the F1 of class 1 from a 2x2 confusion matrix."""
    for cm in ([[50, 10], [5, 35]], [[90, 2], [30, 8]], [[3, 40], [1, 60]]):
        cm = torch.tensor(cm)
        want = precision_recall_f1(cm)[2][1]
        got = attempt(fn, cm)
        expect_close(torch.as_tensor(got, dtype=torch.float64).reshape(()), want,
                     f"F1 for cm={cm.tolist()}")


# ---------------------------------------------------------------------------------- notebook 02
@exercise(hint="chain dL/dp = -(y/p - (1-y)/(1-p))/N with dp/dz = p(1-p): the divisions cancel to "
               "(sigmoid(z) - y) / N. Use a sigmoid that is stable for large |z|.",
          success="your gradient matches autograd, also at logits of ±1e4.")
def bce_logit_grad_by_hand(fn) -> None:
    """Check ``fn(z, y) -> dL/dz`` of the mean BCE on logits, same shape as z."""
    g = _gen(2)
    z = torch.cat([torch.randn(5, generator=g, dtype=torch.float64) * 3,
                   torch.tensor([-1e4, 1e4, 40.0], dtype=torch.float64)]).requires_grad_()
    y = torch.tensor([0.0, 1, 1, 0, 1, 1, 0, 0], dtype=torch.float64)
    torch.nn.functional.binary_cross_entropy_with_logits(z, y).backward()
    expect_close(attempt(fn, z.detach(), y), z.grad, "dL/dz")


@exercise(hint="subtract each row's maximum first: log softmax(z) = (z - m) - log(sum(exp(z - m))), "
               "with m = z.max(dim=-1, keepdim=True).values.",
          success="your log-softmax matches torch.log_softmax and stays finite at ±1e4.")
def stable_log_softmax(fn) -> None:
    """Check ``fn(z) -> log softmax(z)`` over the last dim of z (B, C), finite for huge logits."""
    g = _gen(3)
    z = torch.cat([torch.randn(3, 5, generator=g, dtype=torch.float64),
                   torch.tensor([[1e4, 0, -1e4, 5, 1e4], [-1e4] * 5], dtype=torch.float64)])
    expect_close(attempt(fn, z.clone()), torch.log_softmax(z, dim=-1), "log_softmax(z)")
