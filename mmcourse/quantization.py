"""Dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``) and the rulers that
measure any compression: size on disk and CPU latency. Taught in ``notebooks/09_compression.ipynb``.

``nn.Linear`` weights are stored as int8 with one scale per tensor; activations are quantized on
the fly per batch. Convolutions are left in float32, so a conv-heavy model shrinks only by its
linear layers (``int8_bytes`` says where the bytes go). Re-exported by ``mmcourse.compress``.
"""

from __future__ import annotations

import io
import time
import warnings
import zlib

import torch
from torch import nn

from mmcourse.pruning import copy_model
from mmcourse.train import Inputs, num_rows, take


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every ``nn.Linear`` (a copy; CPU inference only).

    Uses the ``x86`` engine when present (else ``qnnpack`` on ARM). torch ≥ 2.10 warns that
    ``torch.ao.quantization`` is deprecated in favour of torchao; the call still works in this
    build, so the warning is silenced here rather than printed into every notebook.
    """
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine not in ("x86", "fbgemm", "qnnpack", "onednn"):
        preferred = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
        if preferred is None:
            raise RuntimeError(f"no quantized engine in this torch build (have {engines})")
        torch.backends.quantized.engine = preferred
    model = copy_model(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------------------------- rulers
def size_on_disk(model: nn.Module, compressed: bool = False) -> int:
    """Bytes of ``torch.save(model.state_dict())``; with ``compressed``, after zlib (level 6).

    Pruned zeros are still stored as dense float32, so pruning alone does not shrink the file;
    a general-purpose compressor does see the zeros (that is what ``compressed`` measures).
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return len(zlib.compress(data, 6)) if compressed else len(data)


def int8_bytes(model: nn.Module) -> dict[str, int]:
    """Where dynamic int8 saves and spends bytes on disk.

    Returns:
        ``{"fp32": size of the float model, "int8": size of ``quantize_int8(model)``,
        "linear_weights": number of Linear weight entries, "ideal_saving": 3 bytes per such entry
        (4-byte float → 1-byte int), "overhead": what the int8 file holds beyond
        fp32 − ideal_saving}``: the packed-parameter records, scales, zero points and names that
        each quantized layer adds. int8 shrinks a model when ideal_saving > overhead.
    """
    n_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    fp32, int8 = size_on_disk(model), size_on_disk(quantize_int8(model))
    return {"fp32": fp32, "int8": int8, "linear_weights": n_linear, "ideal_saving": 3 * n_linear,
            "overhead": int8 - (fp32 - 3 * n_linear)}


@torch.inference_mode()
def cpu_latency_ms(model: nn.Module, inputs: Inputs, batch_size: int = 1, repeats: int = 30,
                   warmup: int = 5) -> float:
    """Fastest wall time (ms) of ``repeats`` forward passes on ``batch_size`` rows, CPU, eval mode.

    The minimum, not the mean or median: other processes can only slow a run down, never speed
    it up, so the fastest run is the least disturbed estimate of what the model costs (the advice
    of Python's ``timeit``). Still machine- and load-dependent: compare variants measured in the
    same cell, never numbers from different machines.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if batch_size > num_rows(inputs):
        raise ValueError(f"batch_size {batch_size} exceeds the {num_rows(inputs)} rows given")
    model = model.cpu().eval()
    batch = take(inputs, torch.arange(batch_size))
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        model(batch)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    return min(times)
