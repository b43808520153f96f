"""Tests of mmcourse.throughput and a smoke run of benchmarks/train_throughput.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mmcourse.throughput import PerSampleDataset, breakdown, index_ms, loader_ms, step_ms
from mmcourse.train import take

ROOT = Path(__file__).resolve().parents[1]


def toy(n=40):
    g = torch.Generator().manual_seed(0)
    inputs = {"image": torch.randn(n, 1, 4, 4, generator=g), "audio": torch.randn(n, 3, 2, generator=g)}
    return inputs, torch.randint(0, 3, (n,), generator=g)


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16 + 6, 3)

    def forward(self, x):  # keys sorted: audio, image
        return self.head(torch.cat([x[k].flatten(1) for k in sorted(x)], -1))


def test_per_sample_batches_equal_index_batches():
    inputs, labels = toy()
    idx = torch.arange(8)
    (x, y), = [b for b, _ in zip(DataLoader(PerSampleDataset(inputs, labels), batch_size=8), range(1))]
    expected = take(inputs, idx)
    assert sorted(x) == sorted(expected) == ["audio", "image"]
    for k in expected:
        assert x[k].shape == expected[k].shape and torch.equal(x[k], expected[k])
    assert torch.equal(y, labels[idx])


def test_timings_are_positive_and_speedup_follows_from_them():
    inputs, labels = toy()
    out = breakdown(Flat(), inputs, labels, batch_size=8, max_batches=3, repeats=2)
    assert set(out) == {"loader_ms", "index_ms", "step_ms", "speedup"}
    assert min(out.values()) > 0
    assert out["speedup"] == pytest.approx((out["loader_ms"] + out["step_ms"]) / (out["index_ms"] + out["step_ms"]))
    assert loader_ms(inputs, labels, 8, max_batches=2) > 0 and index_ms(inputs, labels, 8) > 0


def test_step_ms_trains_the_model_it_is_given():
    inputs, labels = toy()
    model = Flat()
    before = model.head.weight.detach().clone()
    step_ms(model, inputs, labels, batch_size=8, repeats=1)
    assert not torch.equal(before, model.head.weight)


def test_breakdown_wants_a_modality_dict():
    inputs, labels = toy()
    with pytest.raises(TypeError, match="dict"):
        breakdown(Flat(), inputs["image"], labels)


def test_benchmark_script_runs_and_ends_with_the_speedup_line():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--epochs", "1",
                          "--rounds", "1", "--model", "linear"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("ceiling for any loop") for line in lines)
    assert re.fullmatch(r"speedup: \d+\.\d\d", lines[-1])
