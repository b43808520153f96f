"""Fusion: ways to combine per-modality features into one prediction (lesson 05).

Every class follows one contract: ``Cls(dims={"audio": 16, "image": 32}, out_dim=10, **options)``,
called on ``dict[str, Tensor]`` of (B, D_m) features, returning (B, out_dim). Keys are iterated in
sorted order. Methods that can run with a modality absent (``handles_missing``): weighted sum,
late, cross-attention; the others raise a ``KeyError`` naming the missing key.

All of ``METHODS`` are *parallel* fusion (each modality encoded on its own, then combined).
``mmcourse.fusion.serial`` adds *serial* (audio conditions the image encoder's mid-level maps)
and *hybrid* (that link plus late fusion of both streams) models; ``TAXONOMY`` sorts them all.
"""

from mmcourse.fusion.attention import CrossAttentionFusion
from mmcourse.fusion.base import Fusion, MultimodalClassifier
from mmcourse.fusion.gating import FiLMFusion, GatedFusion
from mmcourse.fusion.serial import ConditionedImageEncoder, FiLM2d, SerialClassifier, SerialHead
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

# Every fusion model the zoo builds (zoo.build_av_model) -> its family in the taxonomy of lesson 05.
TAXONOMY = {**{m: "parallel" for m in METHODS}, "serial": "serial", "hybrid": "hybrid"}

__all__ = ["METHODS", "TAXONOMY", "ConcatFusion", "ConditionedImageEncoder", "CrossAttentionFusion", "FiLM2d",
           "FiLMFusion", "Fusion", "GatedFusion", "LateFusion", "LowRankTensorFusion", "MultimodalClassifier",
           "SerialClassifier", "SerialHead", "TensorFusion", "WeightedSumFusion"]
