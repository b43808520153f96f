"""Checks the notebooks call: ``mmcourse.check.cmp(...)`` and ``mmcourse.check.<exercise>(fn)``.

``core`` holds the machinery (``cmp``, the ``exercise`` decorator); each lesson adds one module of
checkers and one import line in the marked block below.
"""

from mmcourse.check.core import NotSolved, Wrong, attempt, cmp, exercise, expect_close

# --- lesson checkers: one import line per lesson module (keep sorted by notebook number) -----
from mmcourse.check.tour import cosine_similarity_matrix, mean_image_per_digit  # notebook 00
from mmcourse.check.basics import (bce_logit_grad_by_hand, f1_from_confusion,  # notebooks 01-02
                                   stable_log_softmax, tanh_net_grads)
from mmcourse.check.pretraining import alignment_uniformity, knn_accuracy  # notebooks 03-04
from mmcourse.check.fusion import outer_with_one, weighted_sum  # notebook 05
from mmcourse.check.balance import aux_loss, ogm_coefficient  # notebook 06
from mmcourse.check.alignment import lora_forward, lora_merge, recall_at_k, symmetric_info_nce  # notebooks 07-08
# --- end of lesson checkers ------------------------------------------------------------------

__all__ = [
    "outer_with_one", "weighted_sum",
    "NotSolved", "Wrong", "cosine_similarity_matrix", "mean_image_per_digit", "attempt", "cmp", "exercise", "expect_close",
    "bce_logit_grad_by_hand", "f1_from_confusion", "stable_log_softmax", "tanh_net_grads",
    "aux_loss", "ogm_coefficient",
    "lora_forward", "lora_merge", "recall_at_k", "symmetric_info_nce",
]
