"""Classification metrics computed by hand: accuracy, confusion matrix, precision/recall/F1, ROC.

Argument order follows scikit-learn, ``(y_true, y_pred)`` or ``(y_true, scores)``, and the
confusion matrix has true classes as rows and predicted classes as columns, so every function
can be cross-checked against ``sklearn.metrics`` (``tests/test_metrics.py`` does). Inputs may be
torch tensors, NumPy arrays or lists. Taught in ``notebooks/01_base_model.ipynb``; reused by the
later lessons.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _labels(a, name: str) -> Tensor:
    t = torch.as_tensor(a).detach().cpu()
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of length N, got shape {tuple(t.shape)}; use .ravel()")
    if t.dtype.is_floating_point:
        if not torch.equal(t, t.round()):
            raise ValueError(f"{name} must hold integer class labels, got non-integer floats; "
                             "threshold scores first, e.g. (p > 0.5).long()")
        t = t.long()
    return t.long()


def _pair(y_true, y_pred) -> tuple[Tensor, Tensor]:
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("metrics need at least one example; got empty inputs")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples whose predicted label equals the true label.

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) integer labels.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return (y_true == y_pred).double().mean().item()


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> Tensor:
    """Counts cm[t, p] of examples with true class t predicted as class p.

    Args:
        y_true: (N,) integer labels in 0..C-1.
        y_pred: (N,) integer labels in 0..C-1.
        num_classes: C; default the largest label + 1.
    Returns:
        (C, C) int64: rows are true classes, columns predicted ones (as scikit-learn).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    C = num_classes if num_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= C:
        raise ValueError(f"labels must lie in 0..{C - 1}; pass num_classes large enough for every label")
    flat = y_true * C + y_pred  # (N,): one bin per (true, predicted) pair
    return torch.bincount(flat, minlength=C * C).view(C, C)  # (C, C)


def precision_recall_f1(cm) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class precision, recall and F1 from a confusion matrix.

    precision_c = TP / (TP + FP) = cm[c, c] / column sum;  recall_c = TP / (TP + FN) = cm[c, c] /
    row sum;  F1 = 2 P R / (P + R) = 2 TP / (2 TP + FP + FN). A 0/0 counts as 0 (scikit-learn's
    ``zero_division=0``). For a binary task the positive class is index 1.

    Args:
        cm: (C, C) counts, true classes as rows.
    Returns:
        precision, recall, f1: each (C,) float64.
    """
    cm = torch.as_tensor(cm).double()
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (C, C) matrix, got shape {tuple(cm.shape)}")
    tp = cm.diagonal()  # (C,)
    fp = cm.sum(0) - tp  # predicted c but truly another class
    fn = cm.sum(1) - tp  # truly c but predicted another class

    def safe(num, den):
        return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))

    return safe(tp, tp + fp), safe(tp, tp + fn), safe(2 * tp, 2 * tp + fp + fn)


def roc_curve(y_true, scores) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC curve of a binary scorer: (false-positive rate, true-positive rate) per threshold.

    Sort scores from high to low; lowering the threshold past each distinct score turns those
    examples positive. TPR = TP / #positives, FPR = FP / #negatives. The curve starts at (0, 0)
    with threshold +inf.

    Args:
        y_true: (N,) labels in {0, 1}, both present.
        scores: (N,) real scores, larger meaning "more likely 1" (probabilities or logits).
    Returns:
        fpr, tpr, thresholds: each (K + 1,) for K distinct scores.
    """
    y = _labels(y_true, "y_true")
    s = torch.as_tensor(scores).detach().cpu().double()
    if s.shape != y.shape:
        raise ValueError(f"y_true and scores must both be (N,), got {tuple(y.shape)} and {tuple(s.shape)}")
    if set(y.unique().tolist()) != {0, 1}:
        raise ValueError(f"ROC needs binary labels with both 0 and 1 present, got {y.unique().tolist()}")
    order = torch.argsort(s, descending=True, stable=True)
    s, y = s[order], y[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)  # (N,)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # keep the last position of each run of tied scores
    tpr = torch.cat([torch.zeros(1, dtype=s.dtype), tp[last] / tp[-1]])
    fpr = torch.cat([torch.zeros(1, dtype=s.dtype), fp[last] / fp[-1]])
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=s.dtype), s[last]])
    return fpr, tpr, thresholds


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve by the trapezoid rule.

    Equals the probability that a random positive scores above a random negative (ties count
    half), the Mann–Whitney U statistic divided by #positives · #negatives.

    Args:
        y_true: (N,) labels in {0, 1}, both present.
        scores: (N,) real scores.
    """
    fpr, tpr, _ = roc_curve(y_true, scores)
    return torch.trapezoid(tpr, fpr).item()


def paired_sentence(a_name: str, b_name: str, a, b, unit: str = "test pairs", alpha: float = 0.05,
                    scale: float = 100.0, what: str = " points", digits: int = 1) -> tuple[str, str]:
    """The course's rule (``mmcourse.stats``: paired t, level ``alpha``) applied over paired units
    other than seeds, e.g. the test pairs two models are both scored on.

    Args:
        a, b: (n,) per-unit results of the two (e.g. 1.0 right / 0.0 wrong, or a per-pair score where
            higher is better), the same units in the same order.

    Returns:
        ``(verdict, sentence)``: ``"a"`` / ``"b"`` / ``"not resolved"`` and e.g. "fused better than
        image_only by +3.1 points (95% CI +1.2 to +5.0, paired t over 500 test pairs)". One trained
        model per side: the test speaks of test-sample noise, not of what retraining would change.
    """
    from mmcourse import stats

    a, b = torch.as_tensor(a, dtype=torch.float64).numpy(), torch.as_tensor(b, dtype=torch.float64).numpy()
    r, v = stats.paired_test(a, b, alpha), stats.paired_verdict(a, b, alpha)
    level, f = f"{100 * (1 - alpha):.0f}%", f"+.{digits}f"
    ci = f"{level} CI {scale * r['low']:{f}} to {scale * r['high']:{f}}"
    if v == "not resolved":
        return v, f"{a_name} vs {b_name}: not resolved with {r['n']} {unit} ({scale * r['mean_diff']:{f}}{what}, {ci})"
    sign = 1 if v == "a" else -1
    winner, loser = (a_name, b_name) if v == "a" else (b_name, a_name)
    ci = (ci if v == "a" else f"{level} CI {-scale * r['high']:{f}} to {-scale * r['low']:{f}}")
    return v, f"{winner} better than {loser} by {sign * scale * r['mean_diff']:{f}}{what} ({ci}, paired t over {r['n']} {unit})"
