"""Fusion: ways to combine per-modality features into one prediction (lesson 05).

Every class follows one contract: ``Cls(dims={"audio": 16, "image": 32}, out_dim=10, **options)``,
called on ``dict[str, Tensor]`` of (B, D_m) features, returning (B, out_dim). Keys are iterated in
sorted order. Methods that can run with a modality absent (``handles_missing``): weighted sum,
late, cross-attention; the others raise a ``KeyError`` naming the missing key.
"""

from mmcourse.fusion.attention import CrossAttentionFusion
from mmcourse.fusion.base import Fusion, MultimodalClassifier
from mmcourse.fusion.gating import FiLMFusion, GatedFusion
from mmcourse.fusion.simple import ConcatFusion, LateFusion, WeightedSumFusion
from mmcourse.fusion.tensor import LowRankTensorFusion, TensorFusion

METHODS = {
    "concat": ConcatFusion,
    "late": LateFusion,
    "weighted_sum": WeightedSumFusion,
    "gated": GatedFusion,
    "film": FiLMFusion,
    "cross_attention": CrossAttentionFusion,
    "tensor": TensorFusion,
    "low_rank_tensor": LowRankTensorFusion,
}

__all__ = ["METHODS", "ConcatFusion", "CrossAttentionFusion", "FiLMFusion", "Fusion", "GatedFusion",
           "LateFusion", "LowRankTensorFusion", "MultimodalClassifier", "TensorFusion", "WeightedSumFusion"]
