"""``make gpu-check``: run the course on an NVIDIA GPU and write a short report, build/gpu-check.md.

On a CUDA machine, in this order (each step is timed, and recorded even when it fails, and the
report is rewritten after every step, so a crash or a time-out still leaves what was measured):

1. throughput: ``fit`` on the GPU vs on the CPU, and ``fit`` vs the per-sample ``Dataset`` +
   ``DataLoader`` loop on the GPU (the loop of most tutorials, batches copied to the GPU), on the
   dashboard's gated model (``benchmarks/train_throughput.py`` does the CPU side of this);
2. a headless ``LiveTrainer`` run on cuda (the dashboard of lesson 05 driven by its buttons);
3. ``torchrun --standalone --nproc-per-node=<GPUs> -m mmcourse.distributed --check``: DDP with
   NCCL; its last line, ``max param diff``, must stay at round-off;
4. precision: the same model and seeds trained with ``FitConfig(precision=...)`` "fp32", "bf16"
   and "fp16" (float16 with a GradScaler): validation and test accuracy, time, peak memory;
5. ensemble: K=5 seeds of ``image_only`` and ``late`` under ``zoo.RECIPE`` trained by ``fit`` one
   after another vs as one vmapped model (``mmcourse.ensemble.fit_ensemble``), interleaved rounds
   (``benchmarks/ensemble.py``): the ratio per round and the verdict decide whether ``zoo.run_grid``
   should keep using the ensemble on CUDA (its default there);
6. every ``notebooks/NN_*.ipynb`` executed in full mode (``--quick``: quick mode) with
   ``MMCOURSE_DEVICE=cuda``, by nbconvert into a temporary folder (the committed notebooks are
   never touched), each with a time limit, all within ``--budget`` seconds; notebooks left when
   the budget runs out are listed as not run.

Peak GPU memory is ``torch.cuda.max_memory_allocated`` for the steps run in this process; the
notebooks run in their own kernels, so the report gives their time and the device line they
printed instead.

Without CUDA it prints "no CUDA device: make gpu-check needs an NVIDIA GPU; nothing was run" and
exits with status 0 (chosen so that ``make gpu-check`` on a laptop is a friendly no-op, not a
failed build). ``--device cpu`` is a dry run of steps 1-5 on the CPU with tiny sizes (and the
notebooks only when ``--notebooks`` names some): the tests use it to exercise the report writer.

    python benchmarks/gpu_check.py [--quick] [--budget 900] [--notebooks 05,12] [--out build/gpu-check.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device: make gpu-check needs an NVIDIA GPU; nothing was run"


def peak_mib(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device == "cuda" else "n/a"


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def data(n: int | None):
    """(train, val, test) as (inputs, labels) pairs, train cut to ``n`` rows (``None``: all)."""
    from mmcourse.data import load_av_digits
    splits = [load_av_digits(s) for s in ("train", "val", "test")]
    cut = lambda d, k: ({m: v[:k] for m, v in d.inputs.items()}, d.labels[:k])  # noqa: E731
    return cut(splits[0], n or len(splits[0])), cut(splits[1], None), cut(splits[2], None)


def per_sample_loop(model, inputs, labels, batch_size: int, epochs: int, device: str) -> float:
    """Seconds for ``epochs`` epochs of the tutorial loop: per-sample Dataset, DataLoader, copy to device."""
    from torch.utils.data import DataLoader

    from mmcourse.throughput import PerSampleDataset
    from mmcourse.train import logits_of
    loader = DataLoader(PerSampleDataset(inputs, labels), batch_size=batch_size, shuffle=True,
                        pin_memory=device == "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.to(device).train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            x = {k: v.to(device, non_blocking=True) for k, v in x.items()}
            loss = torch.nn.functional.cross_entropy(logits_of(model(x)), y.to(device, non_blocking=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def step_throughput(args, train) -> dict:
    """samples/s of fit on the device and on the CPU, and of the per-sample loop on the device."""
    from mmcourse.fusion.zoo import build_av_model
    from mmcourse.train import FitConfig, fit
    n, out = len(train[1]), {}
    for dev in dict.fromkeys([args.device, "cpu"]):  # the device, then the CPU (once on a dry run)
        torch.manual_seed(0)
        model = build_av_model("gated")
        fit(model, train, config=FitConfig(epochs=1, batch_size=args.batch_size, device=dev))  # warm-up
        reset_peak(dev)
        h = fit(model, train, config=FitConfig(epochs=args.epochs, batch_size=args.batch_size, device=dev))
        out[f"fit@{dev}"] = {"samples_per_s": n * args.epochs / sum(h["seconds"]), "peak_mib": peak_mib(dev)}
    torch.manual_seed(0)
    model = build_av_model("gated")
    per_sample_loop(model, *train, args.batch_size, 1, args.device)  # warm-up
    reset_peak(args.device)
    seconds = per_sample_loop(model, *train, args.batch_size, args.epochs, args.device)
    out[f"per-sample loop@{args.device}"] = {"samples_per_s": n * args.epochs / seconds, "peak_mib": peak_mib(args.device)}
    return out


def step_live(args, train, val) -> dict:
    """A LiveTrainer run driven by its widgets, as tests/test_live.py does, on ``args.device``."""
    from mmcourse.live import LiveTrainer
    from mmcourse.train import evaluate
    t = LiveTrainer(train, val, epochs=args.epochs, method="late")
    if args.device not in t.device.options:
        raise RuntimeError(f"LiveTrainer does not offer {args.device!r}: {t.device.options}")
    t.device.value = args.device
    reset_peak(args.device)
    t0 = time.perf_counter()
    t.start_button.click()
    t.join(timeout=args.step_timeout)
    if t.thread.is_alive():
        t.stop_button.click()
        t.join(timeout=60)
        raise TimeoutError(f"LiveTrainer still training after {args.step_timeout} s (Stop pressed)")
    status = re.sub(r"<[^>]+>", "", t.status.value)
    if "error" in status:
        raise RuntimeError(status)
    on = next(t.model.parameters()).device.type
    return {"status": status, "seconds": time.perf_counter() - t0, "model_on": on,
            "val_acc": evaluate(t.model, *val)["acc"], "peak_mib": peak_mib(args.device)}


def step_torchrun(args) -> dict:
    """torchrun with one process per GPU (NCCL); on the CPU dry run 2 processes with gloo."""
    from mmcourse.distributed import torchrun_command
    n = torch.cuda.device_count() if args.device == "cuda" else 2
    batch = max(n, 128 // n * n)  # divisible by the number of ranks
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = torchrun_command(n, "--check", "--steps", 5, "--batch-size", batch, "--report", report,
                               *(["--limit", args.limit] if args.limit else []))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.step_timeout, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError("torchrun failed: " + " | ".join(out.stderr.strip().splitlines()[-5:]))
        r = json.loads(Path(report).read_text())
    last = out.stdout.strip().splitlines()[-1]
    return {"processes": n, "backend": r["backend"], "last_line": last, "max_param_diff": r["max_param_diff"],
            "step_ms": r["step_ms"], "allreduce_ms": r["allreduce_ms"], "gradient_bytes": r["gradient_bytes"],
            "seconds": time.perf_counter() - t0}


def step_precision(args, train, val, test) -> dict:
    """The late-fusion model trained at each precision over the same seeds."""
    from mmcourse.fusion.zoo import build_av_model
    from mmcourse.runtime import seed_everything
    from mmcourse.train import FitConfig, evaluate, fit
    out = {}
    for precision in ("fp32", "bf16", "fp16"):
        rows = []
        try:
            for seed in range(args.seeds):
                seed_everything(seed)
                model = build_av_model("late")
                reset_peak(args.device)
                config = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=3e-3, device=args.device,
                                   precision=precision, seed=seed)
                t0 = time.perf_counter()
                h = fit(model, train, val, config)
                rows.append({"val": h["best_val_acc"], "test": evaluate(model, *test)["acc"],
                             "seconds": time.perf_counter() - t0, "peak_mib": peak_mib(args.device)})
        except Exception as e:  # e.g. fp16 on a CPU (fit says it needs CUDA): record it, try the next
            out[precision] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        spread = lambda k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else float("nan")  # noqa: E731
        out[precision] = {"val": statistics.fmean(r["val"] for r in rows), "val_std": spread("val"),
                          "test": statistics.fmean(r["test"] for r in rows), "test_std": spread("test"),
                          "seconds": statistics.fmean(r["seconds"] for r in rows),
                          "peak_mib": rows[-1]["peak_mib"], "seeds": len(rows)}
    return out


def step_ensemble(args, train, val) -> dict:
    """``benchmarks/ensemble.py``'s comparison: K serial ``fit`` runs vs one ``fit_ensemble``, per method."""
    import importlib.util

    from mmcourse.fusion.zoo import RECIPE
    from mmcourse.train import FitConfig
    spec = importlib.util.spec_from_file_location("bench_ensemble", ROOT / "benchmarks" / "ensemble.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = FitConfig(**{**RECIPE.__dict__, "epochs": args.ensemble_epochs, "device": args.device})
    out = {}
    for method in ("image_only", "late"):
        try:
            out[method] = {**bench.compare(method, list(range(args.ensemble_seeds)), train, val, config,
                                           args.ensemble_rounds), "seeds": args.ensemble_seeds}
        except Exception as e:  # e.g. a vmap rule missing on this device: record it, try the next
            out[method] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return out


def step_notebooks(args) -> dict:
    """Execute notebooks into a temp folder (never in place) within the time box."""
    folder = Path(args.notebook_dir)
    names = sorted(p.name for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        wanted = [w.strip() for w in args.notebooks.split(",") if w.strip()]
        names = [n for n in names if any(n.startswith(w) for w in wanted)]
    env = {**os.environ, "MMCOURSE_QUICK": "1" if args.quick else "0", "MMCOURSE_DEVICE": args.device}
    out, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            left = args.budget - (time.perf_counter() - start)
            if left < 30:
                out[name] = {"status": "not run (time box)", "seconds": 0.0, "device_line": ""}
                continue
            cmd = [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", str(folder / name),
                   "--output-dir", tmp, f"--ExecutePreprocessor.timeout={args.cell_timeout}"]
            t0 = time.perf_counter()
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=min(left, args.notebook_timeout))
                status = "ok" if run.returncode == 0 else "failed: " + _last_error(run.stderr)
            except subprocess.TimeoutExpired:
                status = f"timed out after {min(left, args.notebook_timeout):.0f} s"
            out[name] = {"status": status, "seconds": time.perf_counter() - t0,
                         "device_line": _device_line(Path(tmp) / name)}
    return out


def _last_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if "Error" in ln or "Exception" in ln]
    return (lines[-1] if lines else stderr.strip().splitlines()[-1] if stderr.strip() else "?")[:160]


def _device_line(path: Path) -> str:
    """The 'mmcourse | device: ...' line the notebook's set-up cell printed, if it ran that far."""
    if not path.exists():
        return ""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            for line in "".join(o.get("text", "")).splitlines():
                if line.startswith("mmcourse | device:"):
                    return line.split(" | python")[0]
    return ""


def describe_device(device: str) -> str:
    """e.g. 'cuda (NVIDIA H200, 1 GPU(s)) | torch 2.x | CUDA 13.0'."""
    if device == "cuda":
        return (f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s)) | torch "
                f"{torch.__version__} | CUDA {torch.version.cuda}")
    return f"cpu ({platform.processor() or platform.machine()}) | torch {torch.__version__}"


def render(results: dict, args, seconds: float, device_text: str) -> str:
    """The Markdown report of whatever steps have finished (or failed) so far."""
    head = (f"# GPU check\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | device: {device_text} | "
            f"notebooks: {'quick' if args.quick else 'full'} mode | total {seconds:.0f} s"
            + ("\n\n**Dry run on the CPU (tiny sizes): tests the report, measures nothing about GPUs.**"
               if args.device != "cuda" else ""))
    parts = [head]
    for step, value in results.items():
        parts.append(f"## {step}\n")
        if "failed" in value:
            parts.append(f"FAILED after {value['seconds']:.0f} s: {value['failed']}\n")
            continue
        parts.append(SECTIONS[step](value, args))
    return "\n".join(parts) + "\n"


def _throughput_md(v, args) -> str:
    base = v.get("fit@cpu", {}).get("samples_per_s")
    rows = [f"| {k.replace('@', ' on ')} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f}x | {r['peak_mib']} |"
            for k, r in v.items() if isinstance(r, dict)]
    ratio = v[f"fit@{args.device}"]["samples_per_s"] / v[f"per-sample loop@{args.device}"]["samples_per_s"]
    return ("gated model, batch %d, %d epoch(s) after a warm-up epoch\n\n| loop | samples/s | vs fit on cpu | peak MiB |\n"
            "|---|---|---|---|\n%s\n\nfit vs the per-sample loop on %s: **%.2fx**\n"
            % (args.batch_size, args.epochs, "\n".join(rows), args.device, ratio))


def _live_md(v, args) -> str:
    return (f"model on {v['model_on']}; {v['status']} (wall {v['seconds']:.1f} s); val acc {v['val_acc']:.3f}; "
            f"peak MiB {v['peak_mib']}\n")


def _torchrun_md(v, args) -> str:
    return (f"{v['processes']} process(es), backend {v['backend']}: `{v['last_line']}` "
            f"({'round-off' if v['max_param_diff'] < 1e-5 else 'NOT round-off'}); median step {v['step_ms']:.2f} ms, "
            f"all-reduce of {v['gradient_bytes']:,} bytes {v['allreduce_ms']:.3f} ms; wall {v['seconds']:.0f} s\n")


def _precision_md(v, args) -> str:
    rows = []
    for p, r in v.items():
        if "error" in r:
            rows.append(f"| {p} | not run: {r['error']} | | | |")
        else:
            pm = lambda m, sd: f"{m:.3f}" if sd != sd else f"{m:.3f} ± {sd:.3f}"  # noqa: E731 (no ± for 1 seed)
            rows.append(f"| {p} | {pm(r['val'], r['val_std'])} | {pm(r['test'], r['test_std'])} | "
                        f"{r['seconds']:.1f} | {r['peak_mib']} |")
    return (f"late fusion, {args.epochs} epochs, {args.seeds} seed(s), each kept at its best-val epoch\n\n"
            "| precision | val acc (mean ± std) | test acc | s per run | peak MiB |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def _ensemble_md(v, args) -> str:
    said = {"a faster": "ensemble faster", "b faster": "serial faster", "about the same": "about the same",
            "can't tell": "can't tell"}
    rows, faster = [], []  # faster: per method measured, did the ensemble win every round
    for method, r in v.items():
        if "error" in r:
            rows.append(f"| {method} | not run: {r['error']} | | | | |")
            continue
        faster.append(r["verdict"] == "a faster")
        rounds = ", ".join(f"{b / a:.2f}" for a, b in zip(r["ensemble_s"], r["serial_s"]))
        rows.append(f"| {method} | {r['seeds']} | {statistics.median(r['serial_s']):.1f} | "
                    f"{statistics.median(r['ensemble_s']):.1f} | **{r['ratio']:.2f}x** ({rounds}) | "
                    f"{said[r['verdict']]} | {r['max_weight_diff']:.1e} |")
    errors = [method for method, r in v.items() if "error" in r]
    if errors:
        advice = (f"the ensemble failed for {', '.join(errors)}: pass `run_grid(..., ensemble=False)` on this GPU "
                  "until that is fixed")
    elif all(faster):
        advice = "the ensemble won every round for every method: keep `run_grid`'s default (ensemble on CUDA)"
    else:
        advice = ("the ensemble did not win every round for every method: consider `run_grid(..., ensemble=False)` "
                  "on this GPU, or changing the default")
    return (f"zoo.RECIPE ({args.ensemble_epochs} epochs), {args.ensemble_rounds} interleaved rounds: K seeds by "
            "`fit` one after another vs one vmapped `fit_ensemble`\n\n| method | K | serial s | ensemble s | "
            "serial / ensemble (per round) | verdict | max weight diff |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + f"\n\n{advice}\n")


def _notebooks_md(v, args) -> str:
    rows = [f"| {n} | {r['status']} | {r['seconds']:.0f} | {r['device_line']} |" for n, r in v.items()]
    ok = sum(r["status"] == "ok" for r in v.values())
    return (f"{ok} of {len(v)} ran without error (time box {args.budget} s)\n\n| notebook | status | s | set-up line |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")


SECTIONS = {"throughput": _throughput_md, "LiveTrainer": _live_md, "torchrun": _torchrun_md,
            "precision": _precision_md, "ensemble": _ensemble_md, "notebooks": _notebooks_md}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run with tiny sizes")
    p.add_argument("--quick", action="store_true", help="notebooks in quick mode and fewer epochs")
    p.add_argument("--notebooks", default=None, help="comma-separated prefixes, e.g. 05,12 (default: all)")
    p.add_argument("--budget", type=float, default=900, help="seconds for all notebooks together")
    p.add_argument("--notebook-timeout", type=float, default=600)
    p.add_argument("--cell-timeout", type=int, default=600)
    p.add_argument("--step-timeout", type=float, default=300)
    p.add_argument("--out", default=str(ROOT / "build" / "gpu-check.md"))
    p.add_argument("--notebook-dir", default=str(ROOT / "notebooks"), help=argparse.SUPPRESS)  # tests
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    dry = args.device == "cpu"
    args.epochs = 1 if dry else (2 if args.quick else 5)
    args.seeds, args.batch_size = (1, 64) if dry else (2 if args.quick else 3, 128)
    args.limit = 256 if dry else None
    args.ensemble_seeds, args.ensemble_rounds = (2, 2) if dry else (5, 3)
    args.ensemble_epochs = 1 if dry else (2 if args.quick else 6)  # 6: zoo.RECIPE's full-mode epochs
    train, val, test = data(args.limit)
    steps = {"throughput": lambda: step_throughput(args, train), "LiveTrainer": lambda: step_live(args, train, val),
             "torchrun": lambda: step_torchrun(args), "precision": lambda: step_precision(args, train, val, test),
             "ensemble": lambda: step_ensemble(args, train, val)}
    if not dry or args.notebooks:
        steps["notebooks"] = lambda: step_notebooks(args)
    out, results, start, device_text = Path(args.out), {}, time.perf_counter(), describe_device(args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, step in steps.items():
        t0 = time.perf_counter()
        print(f"gpu-check: {name} ...", flush=True)
        try:
            results[name] = step()
        except Exception as e:  # record it and go on: the other steps still say something
            results[name] = {"failed": f"{type(e).__name__}: {str(e)[:300]}", "seconds": time.perf_counter() - t0}
        out.write_text(render(results, args, time.perf_counter() - start, device_text))
    print(out.read_text())
    failed = [k for k, v in results.items() if "failed" in v]
    failed += [n for n, r in results.get("notebooks", {}).items() if isinstance(r, dict) and r["status"].startswith("failed")]
    print(f"gpu-check: report in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; "
          f"{len(results) - len(failed)} of {len(results)} steps ran" + (f", failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
