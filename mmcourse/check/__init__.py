"""Checks the notebooks call: ``mmcourse.check.cmp(...)`` and ``mmcourse.check.<exercise>(fn)``.

``core`` holds the machinery (``cmp``, the ``exercise`` decorator); each lesson adds one module of
checkers and one import line in the marked block below.
"""

from mmcourse.check.core import NotSolved, Wrong, attempt, cmp, exercise, expect_close

# --- lesson checkers: one import line per lesson module (keep sorted by notebook number) -----
from mmcourse.check.basics import (bce_logit_grad_by_hand, f1_from_confusion,  # notebooks 01-02
                                   output_layer_grads, stable_log_softmax)
# --- end of lesson checkers ------------------------------------------------------------------

__all__ = [
    "NotSolved", "Wrong", "attempt", "cmp", "exercise", "expect_close",
    "bce_logit_grad_by_hand", "f1_from_confusion", "output_layer_grads", "stable_log_softmax",
]
