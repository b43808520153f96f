"""Tests of mmcourse.checkpoint: atomic save, weights_only load, corrupt files, load_or_train."""

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
