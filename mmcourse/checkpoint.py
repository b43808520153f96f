"""Checkpoints: atomic saves, safe loads (``weights_only=True``) and load-or-train, keyed.

Later notebooks reuse what earlier ones trained (e.g. the pretrained image encoder). A checkpoint
is a plain ``state_dict`` (tensors and simple Python values only), so it loads with
``torch.load(..., weights_only=True)``: no arbitrary code runs when a file is opened.

A cached checkpoint is only reused for the run that would have produced it. ``load_or_train``
names the file ``<name>-<fingerprint>.pt``, where the fingerprint hashes everything that
determines the weights: the caller's ``key`` (every config field, the training data — tensors are
hashed by dtype, shape and bytes — and data-variant settings), the model's architecture (class,
parameter names and shapes) and ``CACHE_VERSION``, bumped whenever training code changes what a
setting produces. Change any of it and a new file is trained. A sidecar ``.json`` says what the
fingerprint covers, for humans, and records the fingerprint and the sha256 of the ``.pt``: a file
that does not match its sidecar (swapped, edited, or saved before sidecars had a sha256) is
retrained, and weights with NaN/inf (a diverged run) are never saved nor loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shlex
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcourse.course import checkout_root
from mmcourse.data._store import atomic_write, env_path, folder, permission_problem, sha256_file

CACHE_VERSION = 2  # bump when training code changes: every old checkpoint then retrains
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


_EXAMPLE = "~/.cache/mmcourse/checkpoints"
_FIX = (f"point MMCOURSE_CHECKPOINTS at a folder you can write, e.g. `export MMCOURSE_CHECKPOINTS={_EXAMPLE}` "
        f"(in a notebook: `%env MMCOURSE_CHECKPOINTS={_EXAMPLE}`)")


def _cannot_write(folder: Path, err: OSError, what: str = "") -> OSError:
    """The same kind of ``OSError``, saying which folder and what to do instead."""
    return type(err)(f"cannot write checkpoints to {folder} ({err.strerror or err}){what}. Fix: {_FIX}, "
                     "or pass directory= a folder you can write; then re-run this cell.")


def _unreadable(path: Path) -> PermissionError:
    return PermissionError(f"{permission_problem(path, 'MMCOURSE_CHECKPOINTS', _EXAMPLE)}; then re-run this cell.")


def checkpoint_dir() -> Path:
    """``$MMCOURSE_CHECKPOINTS`` if set (``~`` and ``$VARS`` expanded), else ``checkpoints/`` in
    the checkout (git-ignored), else ``~/.cache/mmcourse/checkpoints`` (installed: see
    ``mmcourse.course.checkout_root``)."""
    env = env_path("MMCOURSE_CHECKPOINTS")
    root = checkout_root()
    path = env or (root if root is not None else Path.home() / ".cache" / "mmcourse") / "checkpoints"
    named = f"MMCOURSE_CHECKPOINTS={shlex.quote(str(env))}" if env else f"the checkpoint folder {path}"
    return folder(path, named, f"point MMCOURSE_CHECKPOINTS at a folder, e.g. `export MMCOURSE_CHECKPOINTS={_EXAMPLE}`",
                  NotADirectoryError, _cannot_write)


def save(obj, path: str | Path) -> Path:
    """Save a state_dict (or a dict of tensors/numbers) atomically: write a temp file unique to
    this process, then rename it into place (a crash or a concurrent save never leaves a
    truncated checkpoint behind). The file gets the umask's mode (0644 under umask 022), so the
    other users of a shared folder can read it."""
    path = Path(path)
    folder(path.parent, f"the checkpoint folder {path.parent}", "save into a folder", NotADirectoryError, _cannot_write)
    atomic_write(path, lambda f: torch.save(obj, f), _cannot_write)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """Load a checkpoint with ``weights_only=True``; a corrupt file raises a ``ValueError``
    that names the file and the fix (delete it and re-run the cell that trains it), a file this
    user may not read a ``PermissionError`` that says whose it is and what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; run the notebook cell that trains it")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as e:  # another user's file in a shared folder: not corrupt
        raise _unreadable(path) from e
    except Exception as e:  # truncated zip, pickle of non-tensor objects, garbage bytes
        raise ValueError(
            f"checkpoint {path} is corrupt or not a plain state_dict ({type(e).__name__}: "
            f"{str(e)[:120]}). Fix: delete it (`rm {shlex.quote(str(path))}`) and re-run the cell "
            "that trains it."
        ) from e


def _non_finite(state: dict, names) -> list[str]:
    """The entries of ``state`` among ``names`` that hold a NaN or an infinity."""
    return [k for k in names if torch.is_tensor(state.get(k)) and state[k].is_floating_point()
            and not torch.isfinite(state[k]).all()]


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
    bad = _non_finite(state, dict(model.named_parameters()))
    if bad:
        raise ValueError(
            f"checkpoint {Path(path).name} has non-finite weights ({', '.join(bad[:3])}): it was saved "
            f"from a run that diverged. Fix: delete it (`rm {shlex.quote(str(path))}`) so that the cell "
            "retrains it, and lower the learning rate if that run diverges too.")
    model.load_state_dict(state)
    return model


def _canonical(obj):
    """A JSON-able, order-independent stand-in for ``obj`` (tensors/arrays become a digest)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        flat = t.reshape(-1)  # a 0-d tensor (e.g. BatchNorm's num_batches_tracked) cannot be viewed as bytes
        digest = hashlib.sha256(flat.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
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


def _plain(obj):
    """``obj`` as plain JSON values (numbers stay numbers), for a training result kept in the sidecar."""
    if isinstance(obj, (torch.Tensor, np.ndarray, np.generic)):
        return obj.tolist()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"train_fn returned a {type(obj).__name__} inside its result; return numbers, strings "
                    "and lists/dicts of them (e.g. fit's history) to keep it with the checkpoint")


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


def _stale(path: Path, digest: str) -> str | None:
    """None when the sidecar ``.json`` vouches for ``path``; why to retrain when there is no usable
    sidecar (an older course version wrote none with a sha256). A sidecar that contradicts the file
    raises a ``ValueError`` with the fix, as a corrupt file does: it is the learner's to delete."""
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
    except FileNotFoundError:
        return f"{path.name} has no sidecar {sidecar.name} (saved by an older course version?)"
    except ValueError as e:
        return f"{path.name}'s sidecar {sidecar.name} is not valid JSON ({e})"
    if not isinstance(meta, dict) or "sha256" not in meta:
        return f"{path.name} was saved by an older course version (its sidecar has no sha256 of the weights)"
    if meta.get("fingerprint") != digest:
        raise ValueError(
            f"checkpoint {path.name}: its sidecar {sidecar.name} says it was trained for other settings "
            f"(fingerprint {meta.get('fingerprint')!r}, expected {digest!r}), so one of them was copied or "
            f"renamed. Fix: delete both (`rm {shlex.quote(str(path))} {shlex.quote(str(sidecar))}`) and "
            "re-run the cell that trains it.")
    if meta["sha256"] != sha256_file(path):
        raise ValueError(
            f"checkpoint {path.name} is not the file its sidecar {sidecar.name} describes (sha256 differs: "
            f"it was replaced, edited or truncated after it was saved). Fix: delete it "
            f"(`rm {shlex.quote(str(path))}`) and re-run the cell that trains it.")
    return None


def load_or_train(name: str, model: nn.Module, train_fn: Callable[[nn.Module], object],
                  key: dict | None = None, directory: str | Path | None = None,
                  verbose: bool = True, return_info: bool = False):
    """Load ``<dir>/<name>-<fingerprint>.pt`` into ``model`` if it exists, else train and save.

    Args:
        name: a readable prefix, e.g. ``"simclr-image"`` (a plain file name).
        model: the freshly built model (its architecture is part of the fingerprint).
        train_fn: ``train_fn(model)`` trains it in place.
        key: everything else that determines the weights: config fields (a dataclass is taken
            field by field), the training tensors or their settings, seeds, the mode.
        return_info: also return ``{"loaded": bool, "path": Path, "result": ..., "torch_threads": n}``, where
            ``result`` is what ``train_fn`` returned (kept in the sidecar as JSON, e.g. a training
            history, and given back when the checkpoint is loaded instead of trained), and ``n`` the
            torch thread count it was trained with (kept in the sidecar, not in the fingerprint).

    Returns:
        ``model`` (trained or loaded), or ``(model, info)`` with ``return_info=True``.

    A ``train_fn`` that returns a dict with ``"diverged": True`` (``fit``'s history) is not saved.
    """
    check_name(name)
    full = {"cache_version": CACHE_VERSION, "architecture": architecture(model), **(key or {})}
    digest = fingerprint(full)
    where = (folder(Path(directory), f"directory={shlex.quote(str(directory))}", "pass a folder as directory=",
                    NotADirectoryError, _cannot_write) if directory is not None else checkpoint_dir())
    path = where / f"{name}-{digest}.pt"
    if path.exists():
        try:
            stale = _stale(path, digest)
        except PermissionError as e:  # another user's file in a shared folder: not corrupt
            raise _unreadable(Path(e.filename or path)) from e
        if stale is None:
            load_into(model, path)
            meta = json.loads(path.with_suffix(".json").read_text())
            if verbose:
                covered = f"{_summary(key)}; " if key else ""
                print(f"loaded checkpoint {path.name}: its fingerprint matches this run's settings "
                      f"({covered}architecture and cache version {CACHE_VERSION} included){_threads_note(meta)}")
            if not return_info:
                return model
            return model, {"loaded": True, "path": path, "result": meta.get("result"),
                           "torch_threads": meta.get("torch_threads")}
        print(f"{stale}: retraining once (the retrained file replaces it)")
    try:  # before training, not after: a folder we cannot write would lose the trained model
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise _cannot_write(where, e, ", so a trained model could not be saved: nothing was trained") from e
    t0, threads = time.perf_counter(), torch.get_num_threads()
    result = train_fn(model)
    if isinstance(result, dict) and result.get("diverged"):
        warnings.warn(f"training {name!r} diverged (see fit's warning), so it was not saved: the next run "
                      "trains again. Fix: lower the learning rate.", RuntimeWarning, stacklevel=2)
        return (model, {"loaded": False, "path": None, "result": result}) if return_info else model
    bad = _non_finite(model.state_dict(), dict(model.named_parameters()))
    if bad:
        raise ValueError(
            f"training {name!r} ended with non-finite weights (NaN/inf in {', '.join(bad[:3])}): the run "
            "diverged, so nothing was saved. Fix: lower the learning rate (e.g. divide it by 10), then "
            "re-run this cell.")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    blob = buffer.getvalue()
    meta = {"fingerprint": digest, "sha256": hashlib.sha256(blob).hexdigest(), "key": _canonical(full),
            "torch_threads": threads}
    if return_info:
        meta["result"] = _plain(result)
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True).encode()),
                 _cannot_write)  # first: a reader that sees the .pt then finds its sidecar
    atomic_write(path, lambda f: f.write(blob), _cannot_write)
    if verbose:
        print(f"trained in {time.perf_counter() - t0:.1f} s and saved {path.name} "
              f"(no checkpoint matched these settings)")
    return (model, {"loaded": False, "path": path, "result": meta.get("result"),
                    "torch_threads": threads}) if return_info else model


def _threads_note(meta: dict) -> str:
    """'; trained with 1 torch thread (this process uses 2)' when the counts differ, else ''.

    The thread count is not part of the fingerprint: it changes only the order in which floats are
    summed, so a model trained with another count is an equally valid run of the same settings,
    though not bit for bit the one this kernel would train (its numbers can differ in the last
    digits, and a long run can drift further). The sidecar keeps the count so the message can say.
    """
    trained, here = meta.get("torch_threads"), torch.get_num_threads()
    if trained is None or trained == here:
        return ""
    return f"; trained with {trained} torch thread{'s' * (trained != 1)} (this process uses {here})"
