"""mmcourse.runtime: quick mode is a smoke test and every conclusion helper says so."""

import pytest
import torch

from mmcourse import runtime


@pytest.mark.parametrize("quick", [False, True])
def test_say_claim_title_label_a_smoke_run(quick, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "QUICK", quick)
    runtime.say("- fusion beats audio by 12 points")
    assert runtime.claim(True, "fusion beats audio") is True
    assert runtime.claim(False, "fusion beats audio") is False
    out = capsys.readouterr().out
    title = runtime.title("Fusion wins")
    if quick:
        assert out.count("SMOKE RUN") == 1 and "numbers mean nothing" in out
        assert out.count("smoke run, not evidence either way") == 2 and "✓" not in out
        assert title.startswith("[smoke run") and title.endswith("Fusion wins")
    else:
        assert "SMOKE" not in out and "smoke" not in out
        assert "✓ this run shows: fusion beats audio" in out
        assert "✗ this run does NOT show: fusion beats audio" in out
        assert title == "Fusion wins"


def test_describe_names_the_mode(monkeypatch):
    monkeypatch.setattr(runtime, "QUICK", True)
    assert "SMOKE TEST" in runtime.describe(torch.device("cpu"))
    monkeypatch.setattr(runtime, "QUICK", False)
    assert "mode: FULL" in runtime.describe(torch.device("cpu"))


def test_seed_everything_repeats_and_asks_for_deterministic_kernels():
    runtime.seed_everything(3)
    a = torch.randn(4)
    g = runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=torch.Generator().manual_seed(3)))
