"""Checkpoints: atomic saves, safe loads (``weights_only=True``) and load-or-train.

Later notebooks reuse what earlier ones trained (e.g. the pretrained image encoder). A checkpoint
is a plain ``state_dict`` (tensors and simple Python values only), so it loads with
``torch.load(..., weights_only=True)``: no arbitrary code runs when a file is opened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def checkpoint_dir() -> Path:
    """``$MMCOURSE_CHECKPOINTS`` if set, else ``checkpoints/`` in the checkout (git-ignored),
    else ``~/.cache/mmcourse/checkpoints``."""
    if os.environ.get("MMCOURSE_CHECKPOINTS"):
        path = Path(os.environ["MMCOURSE_CHECKPOINTS"])
    else:
        root = Path(__file__).resolve().parents[1]
        base = root if (root / "pyproject.toml").exists() else Path.home() / ".cache" / "mmcourse"
        path = base / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(obj, path: str | Path) -> Path:
    """Save a state_dict (or a dict of tensors/numbers) atomically: write ``.part``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    torch.save(obj, part)
    os.replace(part, path)  # a crash mid-save never leaves a truncated checkpoint behind
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """Load a checkpoint with ``weights_only=True``; a corrupt file raises a ``ValueError``
    that names the file and the fix (delete it and re-run the cell that trains it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; run the notebook cell that trains it")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle of non-tensor objects, garbage bytes
        raise ValueError(
            f"checkpoint {path} is corrupt or not a plain state_dict ({type(e).__name__}: "
            f"{str(e)[:120]}). Fix: delete it (`rm {path}`) and re-run the cell that trains it."
        ) from e


def load_or_train(name: str, model: nn.Module, train_fn: Callable[[nn.Module], object],
                  directory: str | Path | None = None, verbose: bool = True) -> nn.Module:
    """Load ``<dir>/<name>.pt`` into ``model`` if it exists, else ``train_fn(model)`` and save.

    Put everything that changes the weights (mode, sizes, seed) into ``name`` so a quick-mode
    checkpoint is never mistaken for a full one, e.g. ``f"simclr-image-{steps}steps-seed0"``.
    A corrupt file raises (see ``load``) instead of being silently retrained over.
    """
    path = Path(directory or checkpoint_dir()) / f"{name}.pt"
    if path.exists():
        model.load_state_dict(load(path))
        if verbose:
            print(f"loaded checkpoint {path.name}")
        return model
    t0 = time.perf_counter()
    train_fn(model)
    save(model.state_dict(), path)
    if verbose:
        print(f"trained in {time.perf_counter() - t0:.1f} s and saved {path.name}")
    return model
