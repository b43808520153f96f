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


@pytest.mark.parametrize("device, bf16_ok, requested, expected", [
    # auto: bf16 on a GPU that has it (A100/H100/L4), fp16 + GradScaler on one that doesn't (T4)
    ("cuda", True, "auto", (torch.bfloat16, False)),
    ("cuda", False, "auto", (torch.float16, True)),
    ("cpu", True, "auto", (None, False)),   # CPU autocast was slower here: stay in float32
    ("mps", False, "auto", (None, False)),
    ("cuda", True, "fp32", (None, False)), ("cuda", False, "fp32", (None, False)),
    ("cpu", True, "fp32", (None, False)), ("mps", False, "fp32", (None, False)),
    ("cuda", True, "bf16", (torch.bfloat16, False)),
    ("cpu", True, "bf16", (torch.bfloat16, False)),  # only when asked for explicitly
    ("cuda", True, "fp16", (torch.float16, True)), ("cuda", False, "fp16", (torch.float16, True)),
])
def test_choose_precision_every_case(device, bf16_ok, requested, expected):
    assert runtime.choose_precision(device, bf16_ok, requested) == expected


@pytest.mark.parametrize("device, bf16_ok, requested, match", [
    ("cuda", False, "bf16", "'bf16' is not supported.*'auto'"),  # a T4 asked for bf16
    ("mps", False, "bf16", "'bf16' is not supported"),
    ("cpu", True, "fp16", "needs a CUDA GPU"), ("mps", False, "fp16", "needs a CUDA GPU"),
    ("cuda", True, "float16", "unknown precision 'float16'"),
])
def test_choose_precision_refuses_what_the_device_cannot_do(device, bf16_ok, requested, match):
    with pytest.raises(ValueError, match=match):
        runtime.choose_precision(device, bf16_ok, requested)


def test_bf16_supported_reads_the_device():
    assert runtime.bf16_supported(torch.device("cpu")) is True
    assert runtime.bf16_supported(torch.device("mps")) is False


def test_bf16_supported_on_cuda_needs_compute_capability_8(monkeypatch):
    for capability, ok in [((7, 5), False), ((7, 0), False), ((8, 0), True), ((8, 9), True), ((9, 0), True)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.bf16_supported(torch.device("cuda")) is ok, capability  # T4 is 7.5


def test_describe_names_the_course_version_for_bug_reports():
    import mmcourse
    assert runtime.describe(torch.device("cpu")).startswith(f"mmcourse {mmcourse.__version__} | device: cpu")
