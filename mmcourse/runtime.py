"""Runtime helpers shared by every notebook: device choice, seeding, quick mode, conclusions.

Quick mode (``MMCOURSE_QUICK=1``, set by ``make test``) is a **smoke test for CI**, not a lite
course: it shrinks data and epochs so every notebook runs in well under 90 s on a 2-core CPU and
changes sizes, never code paths. Its numbers mean nothing (models barely train), so every cell
that states a conclusion goes through ``say``/``claim``/``title``, which label a quick run as a
smoke run instead of letting it print a claim it cannot support. Learners run the full mode.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

QUICK: bool = os.environ.get("MMCOURSE_QUICK", "0").strip().lower() in {"1", "true", "yes"}

SMOKE_NOTE = ("SMOKE RUN (MMCOURSE_QUICK=1): tiny data and a few epochs, only to test that the code "
              "runs. These numbers mean nothing; run without MMCOURSE_QUICK for the real results.")

# A fixed intra-op thread count makes float sums (and so results) repeat exactly on one machine;
# MMCOURSE_THREADS sets it explicitly (make test uses OMP_NUM_THREADS=1 per worker instead).
if os.environ.get("MMCOURSE_THREADS", "").strip():
    torch.set_num_threads(max(1, int(os.environ["MMCOURSE_THREADS"])))


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


PRECISIONS = ("fp32", "auto", "bf16", "fp16")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: CUDA from compute capability 8 (A100, L4,
    RTX 30xx on), not a T4 or V100 (7.x, where torch would emulate it slowly); the CPU does."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu"


def choose_precision(device_type: str, bf16_ok: bool, requested: str = "auto") -> tuple[torch.dtype | None, bool]:
    """The autocast dtype for ``requested`` precision on a device, and whether a GradScaler is needed.

    Args:
        device_type: ``"cuda"``, ``"mps"`` or ``"cpu"``.
        bf16_ok: ``bf16_supported(device)``.
        requested: ``"fp32"`` (no autocast), ``"auto"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        ``(dtype or None, use_grad_scaler)``. ``"auto"`` picks bfloat16 on a CUDA GPU that has it
        (float32's exponent range in 16 bits: gradients don't underflow, no scaler), float16 with a
        GradScaler on one that doesn't, such as Colab's T4 (float16's 5-bit exponent flushes small
        gradients to 0 unless the loss is scaled up before backward and the gradients unscaled
        before the step), and float32 on CPU and MPS (CPU autocast ran slower here).
        ``"bf16"`` on the CPU only when asked for explicitly.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; use one of {PRECISIONS}")
    if requested == "fp32" or (requested == "auto" and device_type != "cuda"):
        return None, False
    if requested == "auto":
        return (torch.bfloat16, False) if bf16_ok else (torch.float16, True)
    if requested == "bf16":
        if device_type not in ("cuda", "cpu") or not bf16_ok:
            raise ValueError(f"precision 'bf16' is not supported on this {device_type} device; use 'auto' "
                             "(float16 with a GradScaler on older GPUs such as a T4) or 'fp32'")
        return torch.bfloat16, False
    if device_type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU, not {device_type}; use 'fp32' or 'auto'")
    return torch.float16, True


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a seeded CPU ``torch.Generator``.

    With ``deterministic`` (the default) torch also picks deterministic kernels where it has them
    (``use_deterministic_algorithms(warn_only=True)``: an op without one warns instead of failing),
    and cuDNN stops auto-tuning, so a re-run on the same machine and thread count repeats exactly.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to repeat
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device | None = None) -> str:
    """One line saying how this notebook runs, for the set-up cell (so screenshots tell) and for
    bug reports (the issue form asks for it): course version, device, mode, versions, threads."""
    from mmcourse import __version__
    device = device or pick_device()
    gpu = ""
    if device.type == "cuda":
        gpu = f" ({torch.cuda.get_device_name(device)})"
    mode = "QUICK = CI SMOKE TEST (numbers mean nothing)" if QUICK else "FULL"
    return (
        f"mmcourse {__version__} | device: {device}{gpu} | mode: {mode} | torch {torch.__version__} | "
        f"python {platform.python_version()} | threads {torch.get_num_threads()}"
    )


def title(text: str) -> str:
    """A figure title that states a finding: prefixed with ``[smoke run]`` in quick mode."""
    return f"[smoke run — numbers mean nothing] {text}" if QUICK else text


def say(markdown: str) -> None:
    """Show a conclusion computed from this run (Markdown); in quick mode under the smoke note.

    Use it for every "What the numbers say" cell: the text is formatted from this run's values,
    and a quick run says plainly that it cannot support any of it.
    """
    text = f"**{SMOKE_NOTE}**\n\n{markdown}" if QUICK else markdown
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        if get_ipython() is not None:
            display(Markdown(text))
            return
    except ImportError:  # plain Python: print the Markdown as text
        pass
    print(text)


def claim(holds: bool, text: str) -> bool:
    """Print whether this run shows ``text`` (a claim the prose makes) and return ``holds``.

    Full mode: "✓ this run shows: ..." or "✗ this run does NOT show: ..." (so prose that depends on
    it can be conditional). Quick mode: "smoke run, not evidence: ..." whatever the numbers.
    """
    holds = bool(holds)
    if QUICK:
        print(f"smoke run, not evidence either way: {text}")
    else:
        print(f"{'✓ this run shows' if holds else '✗ this run does NOT show'}: {text}")
    return holds
