"""Exercise checkers for notebook 09 (compression). Reference solutions: ``solutions.py``."""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches, scalar


def _logits(seed: int, shape=(4, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(*shape, generator=g, dtype=torch.float64)


def _kl(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(p ‖ q) for (B, C) rows."""
    return (p * (p.log() - log_q)).sum(1).mean()


@exercise(task="(student_logits, teacher_logits, T) -> scalar: the distillation loss of the "
               "exercise text, for (B, C) logits",
          hints=("Look at the section's formula: which two distributions does the KL compare, "
                 "and which factor keeps the gradient's size independent of T?",
                 "Both distributions are softmaxes of logits divided by T: p from the teacher, q "
                 "from the student. Get log q with log_softmax (lesson 02), not softmax().log().",
                 "KL(p ‖ q) sums p (log p − log q) over the classes of each example; then take "
                 "the mean over the batch and apply the T factor from hint 1."),
          success="T² · KL(p_teacher ‖ q_student), the distillation term.")
def kd_loss(fn) -> None:
    """Check ``fn(student_logits, teacher_logits, T) -> scalar``."""
    s, t, T = _logits(0), _logits(1), 3.0
    B, C = s.shape
    p, log_q = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)  # (B, C) each
    kl = _kl(p, log_q)
    got = scalar(attempt(fn, s, t, T), "the loss")
    mistakes = ((kl, "you forgot the T² factor that keeps the gradient's size independent of T."),
                (kl * B * T**2, "you summed over the batch; take the mean over examples."),
                (T * kl, "the factor is T², not T."),
                (T**2 * _kl(log_q.exp(), p.log()), "the KL is the wrong way round: "
                                                   "KL(p_teacher ‖ q_student) weights by "
                                                   "the teacher's p."),
                (T**2 * _kl(torch.softmax(t, 1), torch.log_softmax(s, 1)),
                 "you left out the temperature inside: soften both distributions by dividing "
                 "the logits by T."),
                (T**2 * -(p * log_q).sum(1).mean(), "that is the cross-entropy −Σ p log q; "
                                                    "the KL also has +Σ p log p."),
                (T**2 * kl / C, "you averaged over the classes too (F.kl_div's default "
                                "reduction='mean'); sum over classes, mean over the batch "
                                "(reduction='batchmean')."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, T**2 * kl, "the loss")


@exercise(task="(w, amount) -> bool mask shaped like w: False for the round(amount * w.numel()) "
               "entries of smallest |w|, True elsewhere",
          hints=("How many weights go? And by which quantity are weights ranked: their value, or "
                 "their size?",
                 "Find the k-th smallest |w| over the whole tensor (flatten it; "
                 "Tensor.kthvalue or a sort), where k is the number to prune.",
                 "Keep the weights whose |w| is strictly above that threshold (the k-th smallest "
                 "itself goes too). k = 0 needs its own case: nothing is pruned."),
          success="a magnitude-pruning mask.")
def prune_mask(fn) -> None:
    """Check ``fn(w, amount) -> bool mask``, False for the ``round(amount·numel)`` smallest |w|."""
    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    got = torch.as_tensor(attempt(fn, w, 0.5))
    want = torch.tensor([[False, True, False], [True, False, True]])  # keep -3, 2, 1
    if got.shape != want.shape:
        raise Wrong(f"the mask has shape {tuple(got.shape)}; it needs the weight's shape {tuple(w.shape)}.")
    mistakes = ((w > 0.3, "rank by magnitude |w|, not by signed value: -3.0 is the largest weight here."),
                (~want, "your mask is inverted: True means *keep* (the large |w|)."),
                (w.abs() >= 0.5, "you kept the k-th smallest |w| (0.5 here) too; it is pruned: "
                                 "keep only |w| strictly above it."))
    for value, message in mistakes:
        if torch.equal(got.bool(), value):
            raise Wrong(message)
    if not torch.equal(got.bool(), want):
        raise Wrong(f"expected {want.tolist()} for amount 0.5, got {got.bool().tolist()}.")
    try:
        kept = int(torch.as_tensor(attempt(fn, w, 0.0)).bool().sum())
    except (RuntimeError, IndexError) as e:
        raise Wrong(f"amount 0 raised {type(e).__name__}: {e}. With k = 0 there is no k-th "
                    "smallest value: prune nothing.") from e
    if kept != 6:
        raise Wrong("amount 0 must keep every weight.")
