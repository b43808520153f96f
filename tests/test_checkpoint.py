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
    assert "saved tiny.pt" in out and "loaded checkpoint tiny.pt" in out


def test_checkpoint_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path / "ck"))
    assert checkpoint.checkpoint_dir() == tmp_path / "ck" and (tmp_path / "ck").is_dir()
