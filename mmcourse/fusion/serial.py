"""Serial and hybrid fusion: one modality's processing conditions a later stage of another's.

The taxonomy of lesson 05 (notebooks/05_fusion.ipynb):
- **parallel**: every modality is encoded on its own, then the (B, D_m) features are combined —
  every method in ``mmcourse.fusion.METHODS``, FiLM included (it modulates the *final* image vector);
- **serial**: one modality's output enters *inside* another's encoder, and the prediction comes
  from the end of that chain (here: audio → the image CNN's mid-level maps → one image head);
- **hybrid**: both — the serial link inside the encoders, then a parallel combination of both
  streams' final features (here: late fusion of an audio head and an image head).

The serial link is FiLM (Perez et al. 2018) on feature *maps*: with h the (B, C, H, W) maps after
conv block ``after`` of ``ImageEncoder`` and c = f_audio(x_audio) of shape (B, D_c),

    h' = (1 + Δγ(c)) ⊙ h + β(c),    Δγ, β: (B, C), broadcast over H and W,

and the image encoder's later blocks run on h'. Δγ and β come from a zero-initialised linear map,
so at initialisation the link is the identity and the image stream is the plain ``ImageEncoder``.
Only ``after`` = 0 or 1 are allowed: after the last block no convolution or nonlinearity follows,
only the flatten and the final linear map, so the link would be an affine modulation of the final
features, i.e. parallel FiLM again.

Missing modality: without audio there is no c, and the link falls back to the identity (Δγ = 0,
β = 0), the same map as at initialisation, so the image stream runs unconditioned. Without the
image, the serial model has no output stream and raises a ``KeyError``; the hybrid one answers
from its audio head alone (``LateFusion`` skips absent modalities).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmcourse.encoders import ImageEncoder
from mmcourse.fusion.base import Fusion, MultimodalClassifier
from mmcourse.fusion.simple import LateFusion, _head

KINDS = ("serial", "hybrid")


class FiLM2d(nn.Module):
    """Per-channel FiLM of (B, C, H, W) maps by a (B, D_c) condition: (1 + Δγ(c)) ⊙ h + β(c).

    Args:
        cond_dim: D_c, the conditioning vector's size.
        channels: C, the number of feature maps modulated.

    ``cond=None`` (modality absent) is the identity: Δγ = 0, β = 0. The linear map is
    zero-initialised, so the identity is also what the layer computes before training.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        for name, v in (("cond_dim", cond_dim), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: must be a positive integer")
        self.cond_dim, self.channels = cond_dim, channels
        self.film = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def gamma_beta(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """γ = 1 + Δγ and β, each (B, C), from the condition (B, D_c)."""
        if cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"the condition must be (B, {self.cond_dim}), got {tuple(cond.shape)}")
        d_gamma, beta = self.film(cond).chunk(2, dim=1)  # (B, C) each
        return 1 + d_gamma, beta

    def forward(self, maps: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            return maps  # no conditioning modality: the identity (γ = 1, β = 0)
        if maps.dim() != 4 or maps.shape[1] != self.channels:
            raise ValueError(f"FiLM2d modulates (B, {self.channels}, H, W) maps, got {tuple(maps.shape)}")
        if cond.shape[0] != maps.shape[0]:
            raise ValueError(f"the condition has batch {cond.shape[0]} but the maps have {maps.shape[0]}; "
                             "pass the same examples to both modalities")
        gamma, beta = self.gamma_beta(cond)
        return gamma[:, :, None, None] * maps + beta[:, :, None, None]  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"cond_dim={self.cond_dim}, channels={self.channels}"


class ConditionedImageEncoder(nn.Module):
    """An ``ImageEncoder`` whose maps after conv block ``after`` are FiLM-modulated by a condition.

    Args:
        encoder: the ``ImageEncoder`` to condition (used as is: its weights are this module's).
        cond_dim: D_c, the size of the conditioning features (e.g. the audio encoder's D).
        after: 0 → modulate the (B, w, 14, 14) maps, 1 → the (B, 2w, 7, 7) maps (default).

    Shapes:
        forward: x (B, 1, 28, 28), cond (B, D_c) or None → (B, D); ``cond=None`` gives exactly
        ``encoder(x)``.
    """

    def __init__(self, encoder: ImageEncoder, cond_dim: int, after: int = 1):
        super().__init__()
        if not isinstance(encoder, ImageEncoder):
            raise TypeError(f"encoder must be an mmcourse.encoders.ImageEncoder, got {type(encoder).__name__}")
        if after not in (0, 1):
            raise ValueError(f"after={after!r}: condition after conv block 0 or 1; after the last block (2) "
                             "only a linear map follows it, so it would be parallel FiLM of the final features")
        self.encoder, self.after, self.out_dim = encoder, after, encoder.out_dim
        self.link = FiLM2d(cond_dim, encoder.width * 2 ** after)

    def maps(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The modulated maps after block ``after``: (B, 1, 28, 28) → (B, w·2^after, H, W)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"ConditionedImageEncoder wants (B, 1, H, W) grey images, got {tuple(x.shape)}; "
                             "add the channel axis with x.unsqueeze(1)")
        h = self.encoder.features[: self.after + 1](x)  # (B, C, H, W), the blocks before the link
        return self.link(h, cond)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.encoder.features[self.after + 1:](self.maps(x, cond))  # later blocks, flatten → (B, 2w·49)
        return self.encoder.proj(h)  # (B, D)

    def extra_repr(self) -> str:
        return f"after={self.after}"


class SerialHead(Fusion):
    """The serial model's head: reads only the end of the chain, the conditioned target's features.

    ``dims`` names every modality (the contract), but only ``target`` (default: the last sorted
    key, "image") is read: the others have already entered through the link. Runs without the
    source modality (the link is then the identity); raises ``KeyError`` without the target.

    Shapes: {target: (B, D_target), others ignored} → (B, out_dim).
    """

    handles_missing = True

    def __init__(self, dims: dict[str, int], out_dim: int, target: str | None = None, hidden: int | None = None):
        super().__init__(dims, out_dim)
        self.target = target or self.keys[-1]
        if self.target not in self.dims:
            raise KeyError(f"target {self.target!r} is not one of {self.keys}")
        self.net = _head(self.dims[self.target], out_dim, hidden)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        if self.target not in self.check(feats):
            raise KeyError(f"missing modality [{self.target!r}]: a serial model predicts from the {self.target} "
                           f"stream, so it cannot answer without it; use build_av_model('hybrid') or a "
                           "parallel method that masks absent modalities to predict without it")
        return self.net(feats[self.target])  # (B, D_target) → (B, out)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, target={self.target!r}"


class SerialClassifier(MultimodalClassifier):
    """encoders with a serial link → fusion → head: ``source``'s features condition ``target``'s encoder.

    Args:
        encoders: ``{source: (B, ...) → (B, D_s), target: module called as enc(x, cond)}``, e.g.
            ``{"audio": AudioEncoder, "image": ConditionedImageEncoder}``.
        fusion: ``SerialHead`` (serial) or a parallel fusion such as ``LateFusion`` (hybrid).

    ``features(inputs)`` encodes the source first, then the target conditioned on it (or
    unconditioned when the source is absent from ``inputs``), returning {name: (B, D_m)}.
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: Fusion, source: str = "audio", target: str = "image",
                 head: nn.Module | None = None):
        super().__init__(encoders, fusion, head)
        if source == target or {source, target} != set(encoders.keys()):
            raise ValueError(f"source {source!r} and target {target!r} must be the two encoders "
                             f"{sorted(encoders.keys())}")
        self.source, self.target = source, target

    def features(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if not isinstance(inputs, dict):
            raise TypeError(f"the model takes a dict of raw inputs keyed by modality, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(self.encoders.keys()))
        if unknown:
            raise KeyError(f"unknown modality {unknown}; this model has encoders for {sorted(self.encoders.keys())}")
        feats = {}
        if self.source in inputs:
            feats[self.source] = self.encoders[self.source](inputs[self.source])  # (B, D_s), runs first
        if self.target in inputs:
            feats[self.target] = self.encoders[self.target](inputs[self.target], feats.get(self.source))  # (B, D_t)
        return {k: feats[k] for k in sorted(feats)}

    def extra_repr(self) -> str:
        return f"source={self.source!r} → target={self.target!r}"


def serial_av_model(kind: str, encoders: nn.ModuleDict, out_dim: int = 10, after: int = 1,
                    hidden: int | None = None) -> SerialClassifier:
    """Assemble the AV-digits serial or hybrid model from the zoo's plain encoders.

    Args:
        kind: ``"serial"`` (audio → image maps → ``SerialHead`` on the image features) or
            ``"hybrid"`` (the same link, then ``LateFusion`` of an audio head and an image head).
        encoders: ``{"audio": AudioEncoder, "image": ImageEncoder}`` (``zoo.build_av_encoders``);
            the image encoder is wrapped, not copied, so its initial weights are the zoo's.
        after: the image conv block whose output maps the audio conditions (0 or 1).
        hidden: the head's hidden size (None: linear, as ``image_only`` and ``late``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {list(KINDS)}")
    if sorted(encoders.keys()) != ["audio", "image"]:
        raise KeyError(f"serial AV models need encoders for ['audio', 'image'], got {sorted(encoders.keys())}")
    audio, image = encoders["audio"], encoders["image"]
    linked = nn.ModuleDict({"audio": audio, "image": ConditionedImageEncoder(image, audio.out_dim, after=after)})
    dims = {"audio": audio.out_dim, "image": image.out_dim}
    fusion = SerialHead(dims, out_dim, hidden=hidden) if kind == "serial" else LateFusion(dims, out_dim, hidden=hidden)
    return SerialClassifier(linked, fusion)
