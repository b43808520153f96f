"""Tests of mmcourse.checkpoint: atomic save, weights_only load, corrupt files, load_or_train."""

import hashlib
import json

import pytest
import torch
from torch import nn

from mmcourse import checkpoint


def test_round_trip_and_no_partial_file(tmp_path):
    model = nn.Linear(3, 2)
    path = checkpoint.save(model.state_dict(), tmp_path / "m.pt")
    assert not list(tmp_path.glob("*.part"))
    other = nn.Linear(3, 2)
    other.load_state_dict(checkpoint.load(path))
    assert torch.equal(other.weight, model.weight)


def test_corrupt_file_raises_with_the_fix(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="rm .*bad.pt"):
        checkpoint.load(path)


class Arbitrary:  # an object that is not a tensor: weights_only refuses to unpickle it
    pass


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Arbitrary()}, path)
    with pytest.raises(ValueError, match="corrupt or not a plain state_dict"):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="trains it"):
        checkpoint.load(tmp_path / "nothing.pt")


def test_load_or_train_trains_once_then_loads(tmp_path, capsys):
    calls = []

    def train_fn(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)

    a = checkpoint.load_or_train("tiny", nn.Linear(2, 2), train_fn, directory=tmp_path)
    b = checkpoint.load_or_train("tiny", nn.Linear(2, 2), train_fn, directory=tmp_path)
    assert calls == [1] and torch.equal(a.weight, b.weight)
    out = capsys.readouterr().out
    assert "saved tiny-" in out and "loaded checkpoint tiny-" in out and "matches" in out


def test_checkpoint_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path / "ck"))
    assert checkpoint.checkpoint_dir() == tmp_path / "ck" and (tmp_path / "ck").is_dir()


def _set(value):
    def train_fn(model):
        with torch.no_grad():
            model.weight.fill_(value)
    return train_fn


def test_a_changed_setting_retrains_and_the_same_one_loads(tmp_path, capsys):
    data = torch.arange(6.0).reshape(3, 2)
    a = checkpoint.load_or_train("t", nn.Linear(2, 2), _set(1.0), key={"lr": 0.1, "data": data}, directory=tmp_path)
    b = checkpoint.load_or_train("t", nn.Linear(2, 2), _set(2.0), key={"lr": 0.2, "data": data}, directory=tmp_path)
    c = checkpoint.load_or_train("t", nn.Linear(2, 2), _set(3.0), key={"lr": 0.1, "data": data + 1}, directory=tmp_path)
    d = checkpoint.load_or_train("t", nn.Linear(2, 3), _set(4.0), key={"lr": 0.1, "data": data}, directory=tmp_path)
    e = checkpoint.load_or_train("t", nn.Linear(2, 2), _set(9.0), key={"data": data, "lr": 0.1}, directory=tmp_path)
    assert [m.weight[0, 0].item() for m in (a, b, c, d, e)] == [1.0, 2.0, 3.0, 4.0, 1.0]
    assert len(list(tmp_path.glob("t-*.pt"))) == 4 and len(list(tmp_path.glob("t-*.json"))) == 4
    assert "lr=0.1" in capsys.readouterr().out


def test_cache_version_bump_retrains(tmp_path, monkeypatch):
    checkpoint.load_or_train("v", nn.Linear(2, 2), _set(1.0), directory=tmp_path)
    monkeypatch.setattr(checkpoint, "CACHE_VERSION", checkpoint.CACHE_VERSION + 1)
    m = checkpoint.load_or_train("v", nn.Linear(2, 2), _set(2.0), directory=tmp_path)
    assert m.weight[0, 0].item() == 2.0


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "", "x y", "/abs"])
def test_names_must_be_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        checkpoint.load_or_train(name, nn.Linear(2, 2), _set(1.0), directory=tmp_path / "ck")
    assert not list(tmp_path.rglob("*.pt"))


def test_wrong_architecture_names_the_file_what_differs_and_the_fix(tmp_path):
    path = checkpoint.save(nn.Linear(3, 2).state_dict(), tmp_path / "my ck" / "teacher.pt")
    with pytest.raises(ValueError) as err:
        checkpoint.load_into(nn.Linear(4, 2), path)
    msg = str(err.value)
    assert "teacher.pt" in msg and "weight: file (2, 3) vs model (2, 4)" in msg
    assert f"rm '{path}'" in msg  # quoted: the folder name has a space


def test_fix_commands_quote_paths(tmp_path):
    path = tmp_path / "my ck" / "bad.pt"
    path.parent.mkdir()
    path.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"rm '.*my ck/bad.pt'"):
        checkpoint.load(path)


def test_fingerprint_rejects_unhashable_settings():
    with pytest.raises(TypeError, match="cannot fingerprint"):
        checkpoint.fingerprint({"f": object()})


# --- where checkpoints go: ~ and $VARS expanded, a file refused -------------------------------

def test_checkpoint_dir_expands_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", "~/ck")
    assert checkpoint.checkpoint_dir() == tmp_path / "home" / "ck"
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", "$SCRATCH/ck")
    assert checkpoint.checkpoint_dir() == tmp_path / "scratch" / "ck" and (tmp_path / "scratch" / "ck").is_dir()
    assert not (tmp_path / "~").exists() and not (tmp_path / "$SCRATCH").exists()


def test_checkpoint_dir_with_an_unset_variable_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", "${NOT_SET_ANYWHERE}/ck")
    with pytest.raises(ValueError, match=r"MMCOURSE_CHECKPOINTS.*\$NOT_SET_ANYWHERE.*not set"):
        checkpoint.checkpoint_dir()
    assert not list(tmp_path.iterdir())


def test_checkpoint_dir_that_is_a_file_names_the_variable_and_fix(tmp_path, monkeypatch):
    (tmp_path / "ck").write_text("a file")
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path / "ck"))
    with pytest.raises(NotADirectoryError, match=r"MMCOURSE_CHECKPOINTS=.*ck.* is a file, not a folder.*Fix"):
        checkpoint.checkpoint_dir()


def test_load_or_train_into_a_file_says_so(tmp_path):
    (tmp_path / "ck").write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"directory=.*ck.* is a file, not a folder"):
        checkpoint.load_or_train("t", nn.Linear(2, 2), _set(1.0), directory=tmp_path / "ck")


# --- unreadable is a permission problem, not corruption --------------------------------------

def test_unreadable_checkpoint_is_a_permission_problem_not_corruption(tmp_path, monkeypatch):
    path = checkpoint.save(nn.Linear(2, 2).state_dict(), tmp_path / "teacher.pt")

    def denied(f, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(f))
    monkeypatch.setattr(checkpoint.torch, "load", denied)
    with pytest.raises(PermissionError) as err:
        checkpoint.load(path)
    msg = str(err.value)
    assert "teacher.pt" in msg and "chmod a+r" in msg and "MMCOURSE_CHECKPOINTS" in msg
    assert "corrupt" not in msg and "rm " not in msg and path.exists()


# --- non-finite weights are never saved nor loaded -------------------------------------------

def test_diverged_training_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match=r"non-finite.*weight.*diverged.*lower the learning rate"):
        checkpoint.load_or_train("nan", nn.Linear(2, 2), _set(float("nan")), directory=tmp_path)
    assert not list(tmp_path.glob("nan-*"))


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    checkpoint.load_or_train("nan", nn.Linear(2, 2), _set(1.0), directory=tmp_path)
    path, = tmp_path.glob("nan-*.pt")
    bad = nn.Linear(2, 2).state_dict()
    bad["bias"][0] = float("inf")
    checkpoint.save(bad, path)  # e.g. saved by an older course version, sidecar vouching for it
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    with pytest.raises(ValueError, match=rf"{path.name} has non-finite weights \(bias\).*rm .*{path.name}.*retrain"):
        checkpoint.load_or_train("nan", nn.Linear(2, 2), _set(2.0), directory=tmp_path)


# --- a read-only folder fails before training, not after -------------------------------------

def test_unwritable_folder_fails_before_training(tmp_path, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):  # root ignores chmod, so refuse at the probe file
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(checkpoint.tempfile, "TemporaryFile", refuse)
    with pytest.raises(PermissionError, match=r"cannot write.*nothing was trained.*export MMCOURSE_CHECKPOINTS="):
        checkpoint.load_or_train("ro", nn.Linear(2, 2), lambda m: calls.append(1), directory=tmp_path)
    assert calls == []


# --- the sidecar vouches for the weights file ------------------------------------------------

def _two_runs(tmp_path):
    """Two checkpoints of the same architecture, oldest first: lr=0.1 (weights 1) and lr=0.2 (2)."""
    checkpoint.load_or_train("s", nn.Linear(2, 2), _set(1.0), key={"lr": 0.1}, directory=tmp_path)
    checkpoint.load_or_train("s", nn.Linear(2, 2), _set(2.0), key={"lr": 0.2}, directory=tmp_path)
    return sorted(tmp_path.glob("s-*.pt"), key=lambda p: p.stat().st_mtime_ns)


def test_a_swapped_weights_file_is_detected(tmp_path):
    first, second = _two_runs(tmp_path)
    first.write_bytes(second.read_bytes())  # same shapes, other weights: load_state_dict accepts it
    with pytest.raises(ValueError, match=rf"{first.name} is not the file its sidecar {first.stem}.json describes"
                                         rf".*rm .*{first.name}"):
        checkpoint.load_or_train("s", nn.Linear(2, 2), _set(3.0), key={"lr": 0.1}, directory=tmp_path)
    first.unlink()  # the fix it names
    m = checkpoint.load_or_train("s", nn.Linear(2, 2), _set(3.0), key={"lr": 0.1}, directory=tmp_path)
    assert m.weight[0, 0].item() == 3.0


def test_a_sidecar_of_other_settings_is_detected(tmp_path):
    first, second = _two_runs(tmp_path)
    first.write_bytes(second.read_bytes())  # a copied pair: the sidecar vouches for the bytes,
    first.with_suffix(".json").write_bytes(second.with_suffix(".json").read_bytes())  # not the settings
    with pytest.raises(ValueError, match=r"says it was trained for other settings.*rm .*s-.*\.pt .*s-.*\.json"):
        checkpoint.load_or_train("s", nn.Linear(2, 2), _set(3.0), key={"lr": 0.1}, directory=tmp_path)


@pytest.mark.parametrize("sidecar", ["old", "missing", "garbage"])
def test_a_checkpoint_without_a_valid_sidecar_is_retrained_once(tmp_path, capsys, sidecar):
    checkpoint.load_or_train("o", nn.Linear(2, 2), _set(1.0), key={"lr": 0.1}, directory=tmp_path)
    path, = tmp_path.glob("o-*.pt")
    meta = path.with_suffix(".json")
    if sidecar == "old":  # what the course wrote before the sidecar carried the file's sha256
        meta.write_text(json.dumps(json.loads(meta.read_text())["key"]))
    elif sidecar == "missing":
        meta.unlink()
    else:
        meta.write_text("{not json")
    capsys.readouterr()
    m = checkpoint.load_or_train("o", nn.Linear(2, 2), _set(2.0), key={"lr": 0.1}, directory=tmp_path)
    assert m.weight[0, 0].item() == 2.0
    assert "retraining once" in capsys.readouterr().out
    m = checkpoint.load_or_train("o", nn.Linear(2, 2), _set(3.0), key={"lr": 0.1}, directory=tmp_path)
    assert m.weight[0, 0].item() == 2.0


def test_load_or_train_keeps_and_returns_the_training_result(tmp_path):
    import torch
    from torch import nn

    from mmcourse.checkpoint import load_or_train

    def train(m):
        with torch.no_grad():
            m.weight.fill_(0.5)
        return {"val_acc": [0.25, 0.5], "best_epoch": 1, "seconds": 1.5}

    m, info = load_or_train("r", nn.Linear(2, 2), train, key={"a": 1}, directory=tmp_path, return_info=True,
                            verbose=False)
    assert info["loaded"] is False and info["result"]["val_acc"] == [0.25, 0.5]
    m2, info2 = load_or_train("r", nn.Linear(2, 2), lambda _: 1 / 0, key={"a": 1}, directory=tmp_path,
                              return_info=True, verbose=False)
    assert info2["loaded"] is True and info2["result"] == info["result"] and info2["path"] == info["path"]
    assert torch.equal(m2.weight, m.weight)


def test_a_diverged_history_is_not_saved(tmp_path):
    import pytest
    from torch import nn

    from mmcourse.checkpoint import load_or_train

    with pytest.warns(RuntimeWarning, match="diverged.*not saved"):
        load_or_train("d", nn.Linear(2, 2), lambda m: {"diverged": True}, directory=tmp_path, verbose=False)
    assert not list(tmp_path.glob("d-*"))


def test_fingerprint_hashes_a_0d_tensor():
    import torch

    from mmcourse.checkpoint import fingerprint

    assert fingerprint({"n": torch.tensor(5)}) != fingerprint({"n": torch.tensor(6)})
    assert fingerprint({"n": torch.tensor(5)}) == fingerprint({"n": torch.tensor(5)})


def test_thread_count_is_kept_and_said_when_it_differs(tmp_path, capsys):
    """Results depend on the torch thread count (summation order): the sidecar keeps it and a load
    under another count says so; the same count says nothing extra."""
    from mmcourse.checkpoint import load_or_train

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, info = load_or_train("t", nn.Linear(3, 2), lambda m: None, key={"a": 1}, directory=tmp_path,
                                return_info=True)
        assert info["torch_threads"] == 1 and not info["loaded"]
        capsys.readouterr()
        _, info = load_or_train("t", nn.Linear(3, 2), lambda m: None, key={"a": 1}, directory=tmp_path,
                                return_info=True)
        assert info["loaded"] and info["torch_threads"] == 1
        assert "torch thread" not in capsys.readouterr().out
        torch.set_num_threads(2)
        _, info = load_or_train("t", nn.Linear(3, 2), lambda m: None, key={"a": 1}, directory=tmp_path,
                                return_info=True)
        assert info["loaded"] and info["torch_threads"] == 1  # the same file: threads are not in the key
        assert "trained with 1 torch thread (this process uses 2)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
