"""A split held as tensors on the device, batched by index (what ``train.fit`` iterates over).

The slow way to train (and the one most tutorials show) is a ``Dataset`` returning one sample at
a time through a ``DataLoader``: Python runs once per *sample* and every batch is re-collated and
copied. Here the whole (small) data set is moved to the device once, each epoch draws one random
permutation, and a batch is a single indexing op per modality. ``benchmarks/`` measures the gap.

Inputs are a (N, ...) tensor or a modality dict of them (sorted keys, the modality contract).
Used by ``mmcourse.train.fit`` and everything that batches a split; the appendix of
``notebooks/12_scaling_out.ipynb`` times it against a per-sample ``DataLoader``.
"""

from __future__ import annotations

import torch
from torch import Tensor

Inputs = Tensor | dict[str, Tensor]


def take(inputs: Inputs, idx: Tensor) -> Inputs:
    """Rows ``idx`` of a tensor, or of every tensor of a modality dict (sorted keys)."""
    if isinstance(inputs, dict):
        return {k: inputs[k][idx] for k in sorted(inputs)}
    return inputs[idx]


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: inputs[k].to(device) for k in sorted(inputs)}
    return inputs.to(device)


def num_rows(inputs: Inputs) -> int:
    if isinstance(inputs, dict):
        sizes = {k: len(v) for k, v in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every modality needs the same number of rows, got {sizes}")
        return next(iter(sizes.values()))
    return len(inputs)


def logits_of(out) -> Tensor:
    """Models may return logits (B, C) or a dict with a ``"logits"`` entry (plus auxiliaries)."""
    return out["logits"] if isinstance(out, dict) else out
