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


# ------------------------------------------------------------- environment variables, checked at import
@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("Yes", True), ("on", True), (" 1 ", True),
                                          ("0", False), ("false", False), ("no", False), ("off", False), ("", False)])
def test_read_quick_accepts_the_documented_values(value, quick):
    assert runtime.read_quick({"MMCOURSE_QUICK": value}) is quick
    assert runtime.read_quick({}) is False


@pytest.mark.parametrize("value", ["maybe", "2", "quick", "y"])
def test_read_quick_refuses_anything_else_naming_the_variable(value):
    with pytest.raises(ValueError, match=rf"MMCOURSE_QUICK='{value}' is not a yes/no value.*1, true, yes or on"):
        runtime.read_quick({"MMCOURSE_QUICK": value})


@pytest.mark.parametrize("value, threads", [("1", 1), ("4", 4), (" 2 ", 2), ("", None)])
def test_read_threads_accepts_a_positive_integer(value, threads):
    assert runtime.read_threads({"MMCOURSE_THREADS": value}) == threads
    assert runtime.read_threads({}) is None


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5", "1e3"])
def test_read_threads_refuses_zero_negative_and_non_integers(value):
    with pytest.raises(ValueError, match=rf"MMCOURSE_THREADS='{value}' is not a positive integer.*MMCOURSE_THREADS=2"):
        runtime.read_threads({"MMCOURSE_THREADS": value})


@pytest.mark.parametrize("value, device", [("cpu", "cpu"), ("cuda", "cuda"), ("mps", "mps"), ("cuda:1", "cuda:1"),
                                           (" CPU ", "cpu"), ("", None)])
def test_read_device_accepts_device_names(value, device):
    assert runtime.read_device({"MMCOURSE_DEVICE": value}) == device
    assert runtime.read_device({}) is None


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "cuda:-1", "tpu", "mps:0"])
def test_read_device_refuses_other_names(value):
    with pytest.raises(ValueError, match=rf"MMCOURSE_DEVICE='{value}' is not a device name.*cpu, cuda, cuda:N"):
        runtime.read_device({"MMCOURSE_DEVICE": value})


def test_pick_device_honours_and_checks_the_environment(monkeypatch):
    monkeypatch.setenv("MMCOURSE_DEVICE", "cpu")
    assert runtime.pick_device() == torch.device("cpu")
    monkeypatch.setenv("MMCOURSE_DEVICE", "gpu")
    with pytest.raises(ValueError, match="MMCOURSE_DEVICE='gpu' is not a device name"):
        runtime.pick_device()
    with pytest.raises(ValueError, match="pick_device: prefer='gpu' is not a device name: use cpu, cuda, cuda:N .the N-th GPU, from 0. or mps$"):
        runtime.pick_device("gpu")


def test_pick_device_refuses_a_gpu_that_is_not_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("MMCOURSE_DEVICE", raising=False)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available here.*\['cpu'\]"):
        runtime.pick_device("cuda")
    monkeypatch.setenv("MMCOURSE_DEVICE", "cuda:0")
    with pytest.raises(ValueError, match="device 'cuda:0' is not available here.*unset MMCOURSE_DEVICE"):
        runtime.pick_device()


def test_pick_device_checks_the_gpu_number(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"'cuda:2' is not available here .this machine has 2 CUDA GPUs: cuda:0 .. cuda:1.; pick one"):
        runtime.pick_device("cuda:2")


def _import_mmcourse(**env):
    import os
    import subprocess
    import sys
    full = {k: v for k, v in os.environ.items() if not k.startswith("MMCOURSE_")}
    full.update(OMP_NUM_THREADS="1", **env)
    code = "import mmcourse, torch; print(mmcourse.QUICK, torch.get_num_threads())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120)


@pytest.mark.parametrize("env, message", [
    ({"MMCOURSE_THREADS": "abc"}, "MMCOURSE_THREADS='abc' is not a positive integer"),
    ({"MMCOURSE_QUICK": "maybe"}, "MMCOURSE_QUICK='maybe' is not a yes/no value"),
    ({"MMCOURSE_DEVICE": "gpu"}, "MMCOURSE_DEVICE='gpu' is not a device name"),
], ids=["threads", "quick", "device"])
def test_import_refuses_a_bad_environment_variable_by_name(env, message):
    out = _import_mmcourse(**env)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("ValueError: MMCOURSE_")  # the last line says it


def test_import_reads_quick_on_and_the_thread_count():
    out = _import_mmcourse(MMCOURSE_QUICK="on", MMCOURSE_THREADS="2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "2"]
