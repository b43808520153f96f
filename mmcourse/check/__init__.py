"""Checks the notebooks call: ``check.cmp(...)``, ``check.<exercise>(fn)``, ``check.hint(name)``
and ``check.solution(name)``.

``core`` holds the machinery (the ``exercise`` decorator, ``attempt``, ``hint``, ``solution``),
``inputs`` what ``attempt`` does with the learner's inputs, ``compare`` the ``cmp`` gradient check; each
lesson adds one module of checkers and one import line in the marked block below; the reference
solutions live in ``solutions.py``, one function per exercise, under the exercise's name.
"""

from mmcourse.check.compare import cmp, with_hand_backward
from mmcourse.check.core import (REGISTRY, Exercise, NotSolved, Wrong, attempt, exercise, expect_close,
                                 expect_shape, hint, matches, scalar, solution)

# --- lesson checkers: one import line per lesson module (keep sorted by notebook number) -----
from mmcourse.check.tour import cosine_similarity_matrix, mean_image_per_digit  # notebook 00
from mmcourse.check.basics import (bce_logit_grad_by_hand, f1_from_confusion,  # notebooks 01-02
                                   stable_log_softmax, tanh_net_grads)
from mmcourse.check.pretraining import (alignment_uniformity, attack_success_rate,  # notebooks 03-04
                                        cka_from_gram, knn_accuracy)
from mmcourse.check.fusion import outer_with_one, weighted_sum  # notebook 05
from mmcourse.check.balance import aux_loss, ogm_coefficient  # notebook 06
from mmcourse.check.alignment import (adapter_params, lora_forward, lora_merge, recall_at_k,  # notebooks 07-08
                                       symmetric_info_nce)
from mmcourse.check.compression import kd_loss, prune_mask  # notebook 09
from mmcourse.check.evaluation import (ece, fgsm_step, grad_times_input,  # notebooks 10-11
                                       pool_token_logits, two_input_model)
from mmcourse.check.scaling import gradient_bytes_per_step, rank_shard  # notebook 12
# --- end of lesson checkers ------------------------------------------------------------------

EXERCISES: tuple[str, ...] = tuple(REGISTRY)  # every exercise's name, in notebook order

# every name imported or defined above, sorted; add a lesson's checkers here too
__all__ = [
    "with_hand_backward",
    "adapter_params", "alignment_uniformity", "attack_success_rate", "attempt", "aux_loss",
    "bce_logit_grad_by_hand", "cka_from_gram", "cmp", "cosine_similarity_matrix", "ece",
    "Exercise", "EXERCISES", "exercise", "expect_close", "expect_shape", "f1_from_confusion", "fgsm_step",
    "grad_times_input", "gradient_bytes_per_step", "rank_shard",
    "hint", "kd_loss", "knn_accuracy", "lora_forward", "lora_merge", "matches",
    "mean_image_per_digit", "NotSolved", "ogm_coefficient", "outer_with_one", "pool_token_logits",
    "prune_mask", "recall_at_k", "REGISTRY", "scalar", "solution", "stable_log_softmax",
    "symmetric_info_nce", "tanh_net_grads", "two_input_model", "weighted_sum", "Wrong",
]
