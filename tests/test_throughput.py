"""Tests of mmcourse.throughput and a smoke run of benchmarks/train_throughput.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mmcourse.throughput import PerSampleDataset, breakdown, index_ms, loader_ms, step_ms, verdict
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
    assert set(out) == {"loader_ms", "index_ms", "step_ms", "gather_x", "gather_x_lo", "gather_x_hi",
                        "speedup", "speedup_lo", "speedup_hi", "rounds"}
    assert min(out.values()) > 0 and out["rounds"] == 1
    # one round: the ratios follow from that round's times, and the range is that one value
    assert out["speedup"] == pytest.approx((out["loader_ms"] + out["step_ms"]) / (out["index_ms"] + out["step_ms"]))
    assert out["gather_x"] == pytest.approx(out["loader_ms"] / out["index_ms"])
    assert out["speedup_lo"] == out["speedup"] == out["speedup_hi"]
    assert loader_ms(inputs, labels, 8, max_batches=2) > 0 and index_ms(inputs, labels, 8) > 0


def test_rounds_give_a_median_inside_the_range_of_rounds():
    inputs, labels = toy()
    out = breakdown(Flat(), inputs, labels, batch_size=8, max_batches=3, repeats=2, rounds=3)
    assert out["rounds"] == 3
    for key in ("gather_x", "speedup"):
        assert out[f"{key}_lo"] <= out[key] <= out[f"{key}_hi"]
    with pytest.raises(ValueError, match="rounds"):
        breakdown(Flat(), inputs, labels, rounds=0)


def test_verdict_only_when_every_round_agrees():
    assert verdict(1.2, 1.5) == "faster"
    assert verdict(0.5, 0.8) == "slower"
    assert verdict(0.9, 1.3) is None  # rounds disagree: the measurement cannot tell
    assert verdict(1.01, 1.04) is None  # all above 1, but within the margin
    assert verdict(1.01, 1.04, margin=0.0) == "faster"


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


def test_interleaved_rounds_rotate_and_compare_rounds_decides_within_rounds():
    from mmcourse.throughput import compare_rounds, interleaved

    order = []
    t = interleaved({"x": lambda: order.append("x") or 1.0, "y": lambda: order.append("y") or 2.0}, rounds=4)
    assert order == ["x", "y", "y", "x", "x", "y", "y", "x"] and t == {"x": [1.0] * 4, "y": [2.0] * 4}
    # load that slows whole rounds 10x cannot flip the verdict: a wins every round
    a, b = [1.0, 10.0, 1.1, 9.0], [2.0, 19.0, 2.3, 18.5]
    r = compare_rounds(a, b)
    assert r["verdict"] == "a faster" and 1.9 < r["ratio"] < 2.1
    assert compare_rounds(b, a)["verdict"] == "b faster"
    assert compare_rounds([1.0, 1.0, 1.0], [1.5, 0.7, 1.0])["verdict"] == "can't tell"
    assert compare_rounds([1.0, 2.0], [1.02, 1.97])["verdict"] == "about the same"
    with pytest.raises(ValueError, match="same rounds"):
        compare_rounds([1.0], [1.0, 2.0])


def test_compare_rounds_follows_verdicts_rule():
    """One rule: compare_rounds says "faster"/"slower" exactly when ``verdict`` does, on every ratio."""
    from mmcourse.throughput import compare_rounds, verdict

    for ratio in (0.90, 0.951, 0.9524, 0.953, 1.0, 1.049, 1.051, 1.2):
        said = compare_rounds([1.0] * 3, [ratio] * 3)["verdict"]
        expected = {"faster": "a faster", "slower": "b faster", None: "about the same"}[verdict(ratio, ratio)]
        assert said == expected, (ratio, said, expected)
