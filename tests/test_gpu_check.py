"""benchmarks/gpu_check.py (``make gpu-check``) without a GPU: the no-CUDA exit, the report
writer on GPU-shaped results, the notebook runner's time box, and a CPU dry run of every step.

The CUDA path itself needs an NVIDIA GPU and is not run here.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_runs_nothing_and_exits_0(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r.md")], capture_output=True,
                         text=True, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no CUDA device: make gpu-check needs an NVIDIA GPU; nothing was run"
    assert not (tmp_path / "r.md").exists()


def test_makefile_has_the_target():
    text = (ROOT / "Makefile").read_text()
    assert "\ngpu-check:" in text and "benchmarks/gpu_check.py" in text
    assert any("gpu-check" in line.split() for line in text.splitlines() if line.startswith(".PHONY"))


def args(**kw):
    base = dict(device="cuda", quick=False, budget=900, epochs=5, seeds=3, batch_size=128, ensemble_seeds=5,
                ensemble_rounds=3, ensemble_epochs=6)
    return argparse.Namespace(**{**base, **kw})


def test_report_of_gpu_shaped_results_has_every_section_and_the_ratios():
    g = load()
    results = {
        "throughput": {"fit@cuda": {"samples_per_s": 40000.0, "peak_mib": "210"},
                       "fit@cpu": {"samples_per_s": 2000.0, "peak_mib": "n/a"},
                       "per-sample loop@cuda": {"samples_per_s": 8000.0, "peak_mib": "190"}},
        "LiveTrainer": {"status": "finished: late on cuda", "seconds": 3.0, "model_on": "cuda",
                        "val_acc": 0.8, "peak_mib": "150"},
        "torchrun": {"processes": 1, "backend": "nccl", "last_line": "max param diff: 0", "max_param_diff": 0.0,
                     "step_ms": 2.0, "allreduce_ms": 0.05, "gradient_bytes": 64176, "seconds": 20.0},
        "precision": {"fp32": {"val": 0.85, "val_std": 0.01, "test": 0.84, "test_std": 0.01, "seconds": 4.0,
                               "peak_mib": "120", "seeds": 3},
                      "fp16": {"error": "TypeError: something"}},
        "ensemble": {"image_only": {"serial_s": [10.0, 10.0, 10.4], "ensemble_s": [4.0, 4.0, 4.0], "ratio": 2.5,
                                    "low": 2.5, "high": 2.6, "verdict": "a faster", "max_weight_diff": 3e-7,
                                    "val_serial": 0.8, "val_ensemble": 0.8, "seeds": 5},
                     "late": {"error": "RuntimeError: no vmap rule"}},
        "notebooks": {"00_tour.ipynb": {"status": "ok", "seconds": 12.0, "device_line": "mmcourse | device: cuda"},
                      "05_fusion.ipynb": {"status": "not run (time box)", "seconds": 0.0, "device_line": ""}},
        "broken step": {"failed": "RuntimeError: boom", "seconds": 1.0},
    }
    g.SECTIONS["broken step"] = lambda v, a: ""
    text = g.render(results, args(), 100.0, "cuda (NVIDIA H200, 1 GPU(s)) | torch 2 | CUDA 13")
    assert text.startswith("# GPU check") and "NVIDIA H200" in text and "Dry run" not in text
    assert "| fit on cuda | 40,000 | 20.00x | 210 |" in text  # vs fit on the CPU
    assert "fit vs the per-sample loop on cuda: **5.00x**" in text
    assert "`max param diff: 0` (round-off)" in text and "backend nccl" in text
    assert "| fp32 | 0.850 ± 0.010 | 0.840 ± 0.010 | 4.0 | 120 |" in text and "not run: TypeError" in text
    assert "| image_only | 5 | 10.0 | 4.0 | **2.50x** (2.50, 2.50, 2.60) | ensemble faster | 3.0e-07 |" in text
    assert "| late | not run: RuntimeError: no vmap rule |" in text
    assert "failed for late: pass `run_grid(..., ensemble=False)`" in text
    won = results["ensemble"]["image_only"]
    assert "keep `run_grid`'s default" in g.SECTIONS["ensemble"]({"image_only": won}, args())
    lost = {**won, "ensemble_s": [20.0, 20.0, 20.8], "ratio": 0.5, "low": 0.5, "high": 0.5, "verdict": "b faster"}
    mixed = g.SECTIONS["ensemble"]({"image_only": won, "late": lost}, args())
    assert "| late | 5 | 10.0 | 20.0 | **0.50x** (0.50, 0.50, 0.50) | serial faster |" in mixed
    assert "consider `run_grid(..., ensemble=False)`" in mixed
    assert "1 of 2 ran without error" in text and "not run (time box)" in text
    assert "FAILED after 1 s: RuntimeError: boom" in text


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)


def test_notebooks_run_into_a_temp_dir_with_status_device_line_and_time_box(tmp_path):
    g = load()
    _notebook(tmp_path / "00_ok.ipynb", "print('mmcourse | device: cpu | mode: FULL | python 3')")
    _notebook(tmp_path / "01_bad.ipynb", "raise ValueError('planted')")
    _notebook(tmp_path / "02_late.ipynb", "print(1)")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    a = args(device="cpu", notebooks=None, notebook_dir=str(tmp_path), budget=10_000, notebook_timeout=120,
             cell_timeout=60)
    out = g.step_notebooks(argparse.Namespace(**{**vars(a), "notebooks": "00,01"}))
    assert list(out) == ["00_ok.ipynb", "01_bad.ipynb"]
    assert out["00_ok.ipynb"]["status"] == "ok" and out["00_ok.ipynb"]["device_line"] == "mmcourse | device: cpu | mode: FULL"
    assert out["01_bad.ipynb"]["status"].startswith("failed") and "planted" in out["01_bad.ipynb"]["status"]
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # never executed in place
    boxed = g.step_notebooks(argparse.Namespace(**{**vars(a), "notebooks": "02", "budget": 10}))
    assert boxed["02_late.ipynb"]["status"] == "not run (time box)"


def test_cpu_dry_run_writes_the_report(tmp_path):
    report = tmp_path / "gpu-check.md"
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(report)],
                         capture_output=True, text=True, env=ENV, timeout=300)
    text = report.read_text()
    assert "Dry run on the CPU" in text
    for section in ("## throughput", "## LiveTrainer", "## torchrun", "## precision", "## ensemble"):
        assert section in text
    assert "| fit on cpu |" in text and "per-sample loop on cpu" in text
    assert "backend gloo: `max param diff:" in text
    assert "| fp16 | not run:" in text  # fp16 needs CUDA: fit says so, the report keeps going
    assert "finished" in text.split("## LiveTrainer")[1].split("##")[0]
    ensemble = text.split("## ensemble")[1]
    assert "| image_only | 2 |" in ensemble and "| late | 2 |" in ensemble and "not run" not in ensemble
    assert out.returncode in (0, 1)  # 1 when a step failed; the report says which
    assert "steps ran" in out.stdout
