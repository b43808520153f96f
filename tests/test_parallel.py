"""Tests of mmcourse.parallel.run_many: same results as the serial run, order, clear errors."""

import os

import pytest
import torch

from mmcourse.parallel import default_workers, run_many


def square_after_seed(seed: int, n: int = 3):
    torch.manual_seed(seed)
    return (torch.randn(n) ** 2).sum().item(), torch.get_num_threads()


def fail_on(seed: int):
    if seed == 1:
        raise ValueError("seed 1 is bad")
    return seed


def die_on(seed: int):
    if seed == 1:
        os._exit(3)  # a worker killed mid-job (e.g. by the out-of-memory killer)
    return seed


def test_results_in_job_order_and_identical_to_serial():
    jobs = [{"seed": s} for s in range(4)]
    serial = run_many(square_after_seed, jobs, workers=1, progress=False)
    parallel = run_many(square_after_seed, jobs, workers=2, progress=False)
    assert serial == parallel
    assert [r[1] for r in parallel] == [1, 1, 1, 1]  # one torch thread per job, here and in workers
    assert serial[0][0] == square_after_seed(0)[0]


def test_zoo_runs_identical_in_workers_and_serially():
    from mmcourse.data import load_av_digits
    from mmcourse.fusion import zoo
    from mmcourse.train import FitConfig

    tr, va, te = (load_av_digits(s) for s in ("train", "val", "test"))
    small = ({k: v[:256] for k, v in tr.inputs.items()}, tr.labels[:256])
    cfg = FitConfig(epochs=1, batch_size=64, device="cpu")
    jobs = [dict(method=m, train=small, val=va, test=te, config=cfg, seed=0) for m in ("late", "image_only")]
    serial = run_many(zoo.run, jobs, workers=1, progress=False)
    parallel = run_many(zoo.run, jobs, workers=2, progress=False)
    for a, b in zip(serial, parallel):
        assert a["method"] == b["method"] and a["test_acc"] == b["test_acc"]
        for (k, p), q in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
            assert torch.equal(p, q), k


def say_things(seed: int):
    print("loading the shared base")  # every job prints this one
    print(f"job {seed} trained")
    print("loading the shared base")  # printed twice by one job: still one job
    return seed


@pytest.mark.parametrize("workers", [1, 2])
def test_what_jobs_print_comes_once_per_line_in_job_order(workers, capsys):
    assert run_many(say_things, [{"seed": s} for s in range(3)], workers=workers, progress=False) == [0, 1, 2]
    assert capsys.readouterr().out.splitlines() == [
        "loading the shared base  [3 jobs]", "job 0 trained", "job 1 trained", "job 2 trained"]


def test_a_failing_job_is_named():
    with pytest.raises(RuntimeError, match=r"seed=1.*ValueError: seed 1 is bad"):
        run_many(fail_on, [{"seed": 0}, {"seed": 1}], workers=2, progress=False)
    with pytest.raises(RuntimeError, match=r"seed=1.*ValueError"):
        run_many(fail_on, [{"seed": 0}, {"seed": 1}], workers=1, progress=False)


def test_a_dead_worker_is_reported():
    with pytest.raises(RuntimeError, match="worker process died.*workers=1"):
        run_many(die_on, [{"seed": 0}, {"seed": 1}, {"seed": 2}], workers=2, progress=False)


def test_bad_arguments():
    with pytest.raises(TypeError, match="list of dicts"):
        run_many(square_after_seed, [0, 1])
    with pytest.raises(ValueError, match="workers=0"):
        run_many(square_after_seed, [{"seed": 0}], workers=0)
    assert run_many(square_after_seed, []) == []
    assert default_workers(5, "cuda") == 1 and default_workers(1) == 1


def test_run_grid_trains_in_workers_then_loads_the_same_models(tmp_path, monkeypatch, capsys):
    from mmcourse.data import load_av_digits
    from mmcourse.fusion import zoo
    from mmcourse.train import FitConfig

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    tr, va, te = (load_av_digits(s) for s in ("train", "val", "test"))
    small = ({k: v[:192] for k, v in tr.inputs.items()}, tr.labels[:192])
    cfg = FitConfig(epochs=1, batch_size=64, lr=5e-3, schedule="onecycle", device="cpu")
    first = zoo.run_grid(["late", "image_only"], [0, 1], small, va, te, cfg, workers=2)
    assert "0 loaded from the checkpoint cache, 4 trained" in capsys.readouterr().out
    again = zoo.run_grid(["late", "image_only"], [0, 1], small, va, te, cfg, workers=2)
    assert "4 loaded from the checkpoint cache, 0 trained" in capsys.readouterr().out
    assert [(r["method"], r["seed"]) for r in again] == [("late", 0), ("late", 1), ("image_only", 0), ("image_only", 1)]
    for a, b in zip(first, again):
        assert not a["loaded"] and b["loaded"]
        assert a["test_acc"] == b["test_acc"] and a["history"]["val_acc"] == b["history"]["val_acc"]
        assert a["seconds"] == pytest.approx(b["seconds"])
    # a changed setting retrains only what it changes
    zoo.run_grid(["late"], [0], small, va, te, FitConfig(**{**cfg.__dict__, "lr": 1e-3}), workers=1)
    assert "0 loaded from the checkpoint cache, 1 trained" in capsys.readouterr().out


def test_script_without_main_guard_is_told_the_fix(tmp_path):
    """Spawned workers import the calling script again: without the __main__ guard they die at
    start-up, and the error must say so rather than only blaming memory."""
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text("from mmcourse.parallel import run_many\n"
                      "print(run_many(abs, [{'x': -1}, {'x': -2}], workers=2, progress=False))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert 'if __name__ == "__main__":' in out.stderr.splitlines()[-1]
