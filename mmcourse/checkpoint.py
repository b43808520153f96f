"""Checkpoints: atomic saves, safe loads (``weights_only=True``) and load-or-train, keyed.

Later notebooks reuse what earlier ones trained (e.g. the pretrained image encoder). A checkpoint
is a plain ``state_dict`` (tensors and simple Python values only), so it loads with
``torch.load(..., weights_only=True)``: no arbitrary code runs when a file is opened.

A cached checkpoint is only reused for the run that would have produced it. ``load_or_train``
names the file ``<name>-<fingerprint>.pt``, where the fingerprint hashes everything that
determines the weights: the caller's ``key`` (every config field, the training data — tensors are
hashed by dtype, shape and bytes — and data-variant settings), the model's architecture (class,
parameter names and shapes) and ``CACHE_VERSION``, bumped whenever training code changes what a
setting produces. Change any of it and a new file is trained; a sidecar ``.json`` says what the
fingerprint covers, for humans.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcourse.course import checkout_root

CACHE_VERSION = 2  # bump when training code changes: every old checkpoint then retrains
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def checkpoint_dir() -> Path:
    """``$MMCOURSE_CHECKPOINTS`` if set, else ``checkpoints/`` in the checkout (git-ignored),
    else ``~/.cache/mmcourse/checkpoints`` (installed: see ``mmcourse.course.checkout_root``)."""
    if os.environ.get("MMCOURSE_CHECKPOINTS"):
        path = Path(os.environ["MMCOURSE_CHECKPOINTS"])
    else:
        root = checkout_root()
        base = root if root is not None else Path.home() / ".cache" / "mmcourse"
        path = base / "checkpoints"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create the checkpoint folder {path} ({e.strerror or e}). Fix: point "
                      "MMCOURSE_CHECKPOINTS at a folder you can write, e.g. "
                      "`export MMCOURSE_CHECKPOINTS=~/.cache/mmcourse/checkpoints`") from e
    return path


def save(obj, path: str | Path) -> Path:
    """Save a state_dict (or a dict of tensors/numbers) atomically: write a temp file unique to
    this process, then rename it into place (a crash or a concurrent save never leaves a
    truncated checkpoint behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
            f"{str(e)[:120]}). Fix: delete it (`rm {shlex.quote(str(path))}`) and re-run the cell "
            "that trains it."
        ) from e


def load_into(model: nn.Module, path: str | Path) -> nn.Module:
    """``model.load_state_dict(load(path))`` with an error that names the file and what differs."""
    state = load(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = ([f"missing in the file: {missing[:5]}"] if missing else []) + \
                ([f"not in the model: {extra[:5]}"] if extra else []) + shapes[:5]
        raise ValueError(
            f"checkpoint {Path(path).name} does not fit {type(model).__name__} ({'; '.join(parts)}). "
            f"It was saved from another architecture. Fix: delete it (`rm {shlex.quote(str(path))}`) "
            "or rename it, and re-run the cell that trains it.")
    model.load_state_dict(state)
    return model


def _canonical(obj):
    """A JSON-able, order-independent stand-in for ``obj`` (tensors/arrays become a digest)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest = hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
        return {"tensor": str(t.dtype), "shape": list(t.shape), "sha256": digest[:16]}
    if isinstance(obj, np.ndarray):
        return _canonical(torch.from_numpy(np.ascontiguousarray(obj)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"dataclass": type(obj).__name__, **{f.name: _canonical(getattr(obj, f.name))
                                                    for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {str(k): _canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return _canonical(obj.item())
    if isinstance(obj, float):
        return repr(obj)  # exact: 0.1 and 0.1000001 are different settings
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot fingerprint a {type(obj).__name__} in a checkpoint key; pass numbers, "
                    "strings, tensors, arrays, dataclasses, or lists/dicts of them")


def architecture(model: nn.Module) -> dict:
    """The model's class and every state_dict entry's name, shape and dtype."""
    return {"class": type(model).__name__,
            "state": [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]}


def fingerprint(key: dict) -> str:
    """12 hex digits that change whenever anything in ``key`` changes."""
    blob = json.dumps(_canonical(key), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _summary(key: dict, limit: int = 8) -> str:
    """'epochs=8, lr=0.003, ..., train data' — the settings a learner would change, flattened."""
    items = []
    for k, v in key.items():
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            items += [f"{f.name}={getattr(v, f.name)}" for f in dataclasses.fields(v)
                      if isinstance(getattr(v, f.name), (bool, int, float, str))]
        elif isinstance(v, (bool, int, float, str)):
            items.append(f"{k}={v}")
        else:
            items.append(f"{k} " + ("data" if isinstance(v, (torch.Tensor, np.ndarray, tuple, list)) else "settings"))
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def check_name(name: str) -> str:
    """A checkpoint name must be a plain file name: no folders, no '..', no hidden files."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"checkpoint name {name!r} is not a plain file name; use letters, digits, "
                         "'.', '_' and '-' only (no '/' or '..'), e.g. 'simclr-image'")
    return name


def load_or_train(name: str, model: nn.Module, train_fn: Callable[[nn.Module], object],
                  key: dict | None = None, directory: str | Path | None = None,
                  verbose: bool = True) -> nn.Module:
    """Load ``<dir>/<name>-<fingerprint>.pt`` into ``model`` if it exists, else train and save.

    Args:
        name: a readable prefix, e.g. ``"simclr-image"`` (a plain file name).
        model: the freshly built model (its architecture is part of the fingerprint).
        train_fn: ``train_fn(model)`` trains it in place.
        key: everything else that determines the weights: config fields (a dataclass is taken
            field by field), the training tensors or their settings, seeds, the mode.
    """
    check_name(name)
    full = {"cache_version": CACHE_VERSION, "architecture": architecture(model), **(key or {})}
    digest = fingerprint(full)
    path = Path(directory or checkpoint_dir()) / f"{name}-{digest}.pt"
    if path.exists():
        load_into(model, path)
        if verbose:
            covered = f"{_summary(key)}; " if key else ""
            print(f"loaded checkpoint {path.name}: its fingerprint matches this run's settings "
                  f"({covered}architecture and cache version {CACHE_VERSION} included)")
        return model
    t0 = time.perf_counter()
    train_fn(model)
    save(model.state_dict(), path)
    sidecar = path.with_suffix(".json")
    try:
        sidecar.write_text(json.dumps(_canonical(full), indent=1, sort_keys=True))
    except OSError:  # the description is for humans; the checkpoint itself is saved
        pass
    if verbose:
        print(f"trained in {time.perf_counter() - t0:.1f} s and saved {path.name} "
              f"(no checkpoint matched these settings)")
    return model
