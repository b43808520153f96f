"""Build and train AV-digits models for any fusion method, the same way for every method.

``build_av_model("late")`` gives encoders (image CNN, audio 1-D CNN) + that fusion; ``run`` trains
it with ``mmcourse.train.fit`` and reports test accuracy, parameter count and wall time, so the
lesson's results table compares methods on equal terms (same encoders, data, epochs, seeds).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from mmcourse.encoders import AudioEncoder, ImageEncoder
from mmcourse.fusion import METHODS
from mmcourse.fusion.base import MultimodalClassifier
from mmcourse.train import FitConfig, evaluate, fit

UNIMODAL = ("audio_only", "image_only")


def build_av_encoders(modalities=("audio", "image"), dim: int = 32, image_width: int = 8,
                      audio_hidden: int = 32) -> nn.ModuleDict:
    """The course's AV-digits encoders, each (B, ...) → (B, dim), built in sorted key order.

    audio: 1-D CNN over MFCC frames (``AudioEncoder``); image: small CNN (``ImageEncoder``).
    Building in a fixed order keeps initial weights the same for the same seed everywhere.
    """
    make = {"audio": lambda: AudioEncoder(dim, hidden=audio_hidden), "image": lambda: ImageEncoder(dim, width=image_width)}
    unknown = set(modalities) - set(make)
    if unknown:
        raise KeyError(f"unknown modality {sorted(unknown)}; use some of {sorted(make)}")
    return nn.ModuleDict({k: make[k]() for k in sorted(modalities)})


def build_av_model(method: str, dim: int = 32, image_width: int = 8, audio_hidden: int = 32,
                   **fusion_options) -> MultimodalClassifier:
    """encoders → fusion for AV-digits.

    Args:
        method: a key of ``mmcourse.fusion.METHODS``, or ``"audio_only"`` / ``"image_only"``
            (one encoder and a linear head, through ``ConcatFusion(hidden=None)``).
        dim: D, every encoder's output size.
    """
    if method not in METHODS and method not in UNIMODAL:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS) + list(UNIMODAL)}")
    encoders = build_av_encoders(("audio", "image"), dim, image_width, audio_hidden)  # both, even for one: same init
    if method in UNIMODAL:
        keep = method.removesuffix("_only")
        return MultimodalClassifier(nn.ModuleDict({keep: encoders[keep]}),
                                    METHODS["concat"]({keep: dim}, 10, hidden=None))
    fusion = METHODS[method]({k: dim for k in encoders}, 10, **fusion_options)
    return MultimodalClassifier(encoders, fusion)


def modalities_of(model: MultimodalClassifier) -> list[str]:
    return sorted(model.encoders.keys())


def run(method: str, train, val, test, config: FitConfig, seed: int = 0, **options) -> dict:
    """Train one method on AV-digits splits and evaluate it on the test split.

    Args:
        train, val, test: ``AVDigits`` splits (``mmcourse.data.load_av_digits``); ``train`` may
            be a subset given as ``(inputs, labels)``.

    Returns:
        ``{"method", "seed", "test_acc", "params", "seconds", "history", "model"}``.
    """
    torch.manual_seed(seed)
    model = build_av_model(method, **options)
    keys = modalities_of(model)

    def pick(split):
        inputs, labels = split if isinstance(split, tuple) else (split.inputs, split.labels)
        return {k: inputs[k] for k in keys}, labels

    t0 = time.perf_counter()
    history = fit(model, pick(train), pick(val), FitConfig(**{**config.__dict__, "seed": seed}))
    seconds = time.perf_counter() - t0
    return {"method": method, "seed": seed, "test_acc": evaluate(model, *pick(test))["acc"],
            "params": sum(p.numel() for p in model.parameters()), "seconds": seconds,
            "history": history, "model": model}
