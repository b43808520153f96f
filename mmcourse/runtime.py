"""Runtime helpers shared by every notebook: device choice, seeding and quick mode.

Quick mode (``MMCOURSE_QUICK=1``, set by ``make test``) shrinks data and epochs so every
notebook runs in CI in well under 90 s on a 2-core CPU. It changes sizes, never code paths.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

QUICK: bool = os.environ.get("MMCOURSE_QUICK", "0").strip().lower() in {"1", "true", "yes"}


def quick(full, fast):
    """Return ``fast`` in quick mode and ``full`` otherwise, e.g. ``epochs = quick(30, 2)``."""
    return fast if QUICK else full


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device present: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: force one ("cuda", "mps" or "cpu"); ``MMCOURSE_DEVICE`` does the same from
            the environment. Asking for a device that is not present raises ``ValueError``.
    """
    prefer = prefer or os.environ.get("MMCOURSE_DEVICE") or None
    available = available_devices()
    if prefer is not None:
        if prefer not in available:
            raise ValueError(
                f"device {prefer!r} is not available here (available: {available}); "
                "unset MMCOURSE_DEVICE or pick one of those"
            )
        return torch.device(prefer)
    return torch.device(available[0])


def available_devices() -> list[str]:
    """Device names that exist on this machine, best first, e.g. ``["cuda", "cpu"]``."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a seeded CPU ``torch.Generator``.

    Bitwise determinism on GPU additionally needs deterministic kernels; on CPU this is enough.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device | None = None) -> str:
    """One line saying how this notebook runs, for the set-up cell (so screenshots tell)."""
    device = device or pick_device()
    gpu = ""
    if device.type == "cuda":
        gpu = f" ({torch.cuda.get_device_name(device)})"
    mode = "QUICK (MMCOURSE_QUICK=1: small data, few epochs)" if QUICK else "FULL"
    return (
        f"mmcourse | device: {device}{gpu} | mode: {mode} | torch {torch.__version__} | "
        f"python {platform.python_version()} | threads {torch.get_num_threads()}"
    )
