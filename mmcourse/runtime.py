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

# ------------------------------------------------------------------ environment variables
# Read once at import; a value outside these raises ValueError naming the variable (a typo must
# not silently run the full course, or every thread count but the one asked for).
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
DEVICES = ("cpu", "cuda", "mps")  # and "cuda:N", the N-th GPU


def read_quick(environ=os.environ) -> bool:
    """``MMCOURSE_QUICK``: 1/true/yes/on (any case) is quick mode; 0/false/no/off, empty or unset is full."""
    value = environ.get("MMCOURSE_QUICK", "")
    if value.strip().lower() not in _YES + _NO:
        raise ValueError(f"MMCOURSE_QUICK={value!r} is not a yes/no value: use 1, true, yes or on for the quick "
                         "smoke run, or 0, false, no, off (or unset it) for the full course")
    return value.strip().lower() in _YES


def read_threads(environ=os.environ) -> int | None:
    """``MMCOURSE_THREADS``: a positive integer (torch's intra-op threads), or ``None`` when unset/empty."""
    value = environ.get("MMCOURSE_THREADS", "")
    if not value.strip():
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"MMCOURSE_THREADS={value!r} is not a positive integer: set the number of torch threads, "
                         f"e.g. MMCOURSE_THREADS=2 (this machine has {os.cpu_count()} cores), or unset it for "
                         "torch's default")
    return int(value)


def _device_name(value: str, source: str) -> str:
    """``value`` lower-cased if it names a device (cpu, cuda, cuda:N, mps), else ValueError naming ``source``."""
    name = str(value).strip().lower()
    kind, _, index = name.partition(":")
    if name in DEVICES or (kind == "cuda" and index.isdigit()):
        return name
    unset = ", or unset it to pick the best device present" if source.startswith("MMCOURSE_") else ""
    raise ValueError(f"{source}={value!r} is not a device name: use cpu, cuda, cuda:N (the N-th GPU, from 0) "
                     f"or mps{unset}")


def read_device(environ=os.environ) -> str | None:
    """``MMCOURSE_DEVICE``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``, or ``None`` when unset/empty.
    Only the spelling is checked here; ``pick_device`` checks that the device is present."""
    value = environ.get("MMCOURSE_DEVICE", "")
    return _device_name(value, "MMCOURSE_DEVICE") if value.strip() else None


QUICK: bool = read_quick()
read_device()  # a misspelt device fails at import, not in the middle of a lesson

SMOKE_NOTE = ("SMOKE RUN (MMCOURSE_QUICK=1): tiny data and a few epochs, only to test that the code "
              "runs. These numbers mean nothing; run without MMCOURSE_QUICK for the real results.")

# A fixed intra-op thread count makes float sums (and so results) repeat exactly on one machine;
# MMCOURSE_THREADS sets it explicitly (make test uses OMP_NUM_THREADS=1 per worker instead).
if read_threads() is not None:
    torch.set_num_threads(read_threads())


def quick(full, fast):
    """Return ``fast`` in quick mode and ``full`` otherwise, e.g. ``epochs = quick(30, 2)``."""
    return fast if QUICK else full


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device present: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: force one ("cuda", "cuda:N", "mps" or "cpu"); ``MMCOURSE_DEVICE`` does the same
            from the environment. Asking for a device that is not present raises ``ValueError``.
    """
    source = "MMCOURSE_DEVICE" if prefer is None else "prefer"
    name = read_device() if prefer is None else _device_name(prefer, "pick_device: prefer")
    if name is None:
        return torch.device(available_devices()[0])
    fix = "unset MMCOURSE_DEVICE or set it to one of those" if source == "MMCOURSE_DEVICE" else "pick one of those"
    device = torch.device(name)
    if device.type not in available_devices():
        raise ValueError(f"device {name!r} is not available here (available: {available_devices()}); {fix}")
    if device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(f"device {name!r} is not available here (this machine has {n} CUDA GPUs: cuda:0 .. "
                         f"cuda:{n - 1}); {fix}")
    return device


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


def source_fingerprint() -> str:
    """A 16-hex-digit hash of the package's ``.py`` files (path and bytes) and ``constraints.txt``.

    Executed notebooks record it (``metadata["mmcourse"]["source"]``, written by
    ``python -m mmcourse.warm --write``), so a test can tell when committed lessons were run with
    different code, or with code other than today's.
    """
    import hashlib
    from pathlib import Path

    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    constraints = package.parent / "constraints.txt"
    if constraints.is_file():
        h.update(b"constraints.txt\0" + constraints.read_bytes())
    return h.hexdigest()[:16]
