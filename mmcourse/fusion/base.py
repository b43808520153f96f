"""What every fusion method shares: the modality contract, input checks, and the classifier.

Contract (as in TorchMultimodal): a fusion module is built as ``Cls(dims, out_dim, **options)``
with ``dims = {"audio": 16, "image": 32}`` and called on ``dict[str, Tensor]`` of (B, D_m)
features, returning (B, out_dim). Keys are always iterated in sorted order, so the order in which
a learner writes the dict never matters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

MASKING_METHODS = "WeightedSumFusion, LateFusion or CrossAttentionFusion"


class NonFiniteFeatures(ValueError):
    """Features reaching a fusion are NaN/inf. ``mmcourse.train.fit`` checks that the raw inputs
    are finite before training, so when this is raised mid-training it reports a divergence
    (weights blown up by too high a learning rate) instead of this message about the data."""


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is active for ``device_type``: then bf16/fp16 features meeting float32
    weights are expected (``fit(..., FitConfig(precision="bf16"))``) and autocast casts them."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument and has a separate CPU flag
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()

class Fusion(nn.Module):
    """Base class: stores ``dims`` in sorted order and validates inputs.

    Subclasses set ``handles_missing = True`` if they can run with a modality absent.
    """

    handles_missing = False

    def __init__(self, dims: dict[str, int], out_dim: int):
        super().__init__()
        if not isinstance(dims, dict) or not dims:
            raise ValueError(f"dims must be a non-empty dict modality -> feature size, e.g. {{'audio': 16}}, got {dims!r}")
        for k, d in dims.items():
            if not isinstance(k, str):
                raise TypeError(f"dims keys are modality names (str), got {k!r}")
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ValueError(f"dims[{k!r}]={d!r}: a feature size must be a positive integer "
                                 f"(not rounded for you), e.g. dims={{{k!r}: 16}}")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim={out_dim!r}: must be a positive integer")
        self.dims = {k: int(dims[k]) for k in sorted(dims)}
        self.keys = list(self.dims)
        self.out_dim = out_dim

    def check(self, feats: dict[str, Tensor]) -> list[str]:
        """Validate ``feats`` and return the present modality names, sorted.

        Raises:
            KeyError: an unknown modality, or a missing one when the method cannot mask.
            ValueError: wrong rank or feature size, unequal batch sizes; ``NonFiniteFeatures`` (a
                ``ValueError``) for NaN or inf values.
        """
        if not isinstance(feats, dict):
            raise TypeError(f"fusion takes a dict of (B, D) tensors keyed by modality, got {type(feats).__name__}")
        unknown = sorted(set(feats) - set(self.keys))
        if unknown:
            raise KeyError(f"unknown modality {unknown}; this {type(self).__name__} was built for {self.keys}")
        present = [k for k in self.keys if k in feats]
        missing = [k for k in self.keys if k not in feats]
        if not present:
            raise KeyError(f"no modality given; pass at least one of {self.keys}")
        if missing and not self.handles_missing:
            raise KeyError(
                f"missing modality {missing} for {type(self).__name__}, which needs all of {self.keys}; "
                f"pass every modality, or use a method that masks absent ones ({MASKING_METHODS})"
            )
        batch = {k: feats[k].shape[0] if feats[k].dim() else None for k in present}
        for k in present:
            x = feats[k]
            if not isinstance(x, Tensor):
                raise TypeError(f"{k!r} features must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() != 2 or x.shape[1] != self.dims[k]:
                raise ValueError(f"{k!r} features must be (B, {self.dims[k]}), got {tuple(x.shape)}")
            param = next(self.parameters(), None)
            if param is not None and x.dtype != param.dtype and not _autocast_on(x.device.type):
                raise TypeError(f"{k!r} features are {x.dtype} but this {type(self).__name__}'s weights are "
                                f"{param.dtype}: convert one of them, e.g. feats[{k!r}].float() or fusion.double()")
            if not torch.isfinite(x).all():
                raise NonFiniteFeatures(f"{k!r} features contain NaN or inf; check that modality's input "
                                        "and encoder (e.g. torch.nan_to_num on the raw data)")
        if len(set(batch.values())) != 1:
            raise ValueError(f"every modality needs the same batch size, got {batch}")
        return present

    def extra_repr(self) -> str:
        return f"dims={self.dims}, out_dim={self.out_dim}"


def with_one(x: Tensor) -> Tensor:
    """Append a constant 1 to every row: (B, D) → (B, D + 1). Keeps unimodal terms in products."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)  # (B, D + 1)


class MultimodalClassifier(nn.Module):
    """encoders → fusion → head.

    Args:
        encoders: ``nn.ModuleDict`` mapping modality → encoder producing (B, D_m).
        fusion: a ``Fusion`` whose ``dims`` match the encoders' output sizes.
        head: optional module applied to the fused (B, out_dim) output (default: identity).

    ``forward(inputs)`` takes ``dict[str, Tensor]`` of raw inputs (e.g. ``{"audio": (B, T, 13),
    "image": (B, 1, 28, 28)}``) and returns (B, C) logits. Leave a modality out of ``inputs`` to
    evaluate without it (works when the fusion method masks; otherwise a clear ``KeyError``).
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: Fusion, head: nn.Module | None = None):
        super().__init__()
        if sorted(encoders.keys()) != fusion.keys:
            raise ValueError(f"encoders {sorted(encoders.keys())} and fusion dims {fusion.keys} must name the same modalities")
        self.encoders, self.fusion, self.head = encoders, fusion, head or nn.Identity()

    def features(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Encode every modality present in ``inputs``: {name: (B, D_m)}."""
        unknown = sorted(set(inputs) - set(self.encoders.keys()))
        if unknown:
            raise KeyError(f"unknown modality {unknown}; this model has encoders for {sorted(self.encoders.keys())}")
        return {k: self.encoders[k](inputs[k]) for k in sorted(inputs)}

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.head(self.fusion(self.features(inputs)))
