"""K seeds of one method: ``fit`` run K times one after another vs one vmapped ensemble (``fit_ensemble``).

    python benchmarks/ensemble.py [--device cpu|cuda] [--methods image_only late] [--seeds 5]
                                  [--rows 3500] [--epochs 6] [--rounds 3]

Identical work on both sides: the course recipe (``zoo.RECIPE``: batch 64, one-cycle AdamW), the
same K seeds, initial weights and batch orders, on the hard AV-digits train split (``--rows`` cuts
it), validated every epoch on the val split. Both run in this process with the same torch threads,
in interleaved rounds (``throughput.interleaved``) so machine load hits both alike, and the verdict
comes from ``throughput.compare_rounds``. It also prints the largest weight difference between
the two paths' models and their mean best-val accuracy, to show the work was the same.

On a CPU the course trains a grid with one process per core instead (``parallel.run_many``), which
this does not measure; ``benchmarks/train_grid.py`` does. ``make gpu-check`` runs ``compare`` on CUDA.

Measured (2026-12-03, the shared 2-core CPU, one thread, full recipe, K=5, 5 rounds):
image_only serial 7.1 s vs ensemble 6.7-7.1 s, ratio 1.02x (rounds 1.01-1.06x: "can't tell");
late 11.6-12.0 s vs 11.4-12.1 s, 1.00x (0.99-1.02x: "about the same"). On a CPU vmap buys
nothing: the batched convolutions do the same arithmetic, and launch overhead is small there.
Mean best val accuracy serial / ensemble: 0.685 / 0.682 (image_only), 0.896 / 0.898 (late).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mmcourse.ensemble import fit_ensemble
from mmcourse.fusion.zoo import RECIPE, build_av_model, modalities_of
from mmcourse.runtime import seed_everything
from mmcourse.throughput import compare_rounds, interleaved
from mmcourse.train import FitConfig, fit

SAID = {"a faster": "the ensemble is faster", "b faster": "serial fit is faster",
        "about the same": "about the same", "can't tell": "can't tell (the rounds disagree)"}


def splits(rows: int | None):
    """(train, val) as (inputs, labels), train cut to ``rows`` (``None``: all 3500)."""
    from mmcourse.data import load_av_digits
    tr, va = load_av_digits("train"), load_av_digits("val")
    return ({k: v[:rows] for k, v in tr.inputs.items()}, tr.labels[:rows]), (va.inputs, va.labels)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def compare(method: str, seeds: list[int], train, val, config: FitConfig, rounds: int = 3) -> dict:
    """Time K serial ``fit`` runs against one ``fit_ensemble`` of the same K seeds, interleaved.

    Returns:
        ``{"serial_s", "ensemble_s"}`` (seconds per round), ``compare_rounds``' ``ratio`` (serial /
        ensemble: > 1 means the ensemble is faster), ``low``, ``high``, ``verdict``, and
        ``max_weight_diff``, ``val_serial``, ``val_ensemble`` (mean best-val accuracy) from the last round.
    """
    keys = modalities_of(build_av_model(method))
    pick = lambda split: ({k: split[0][k] for k in keys}, split[1])  # noqa: E731
    train, val = pick(train), pick(val)
    build = lambda: build_av_model(method)  # noqa: E731
    last = {}

    def serial() -> float:
        _sync(config.device)
        t0 = time.perf_counter()
        out = []
        for s in seeds:
            seed_everything(s)
            model = build()
            out.append((model, fit(model, train, val, FitConfig(**{**config.__dict__, "seed": s}))))
        _sync(config.device)
        last["serial"] = out
        return time.perf_counter() - t0

    def ensemble() -> float:
        _sync(config.device)
        t0 = time.perf_counter()
        models, histories = fit_ensemble(build, seeds, train, val, config)
        _sync(config.device)
        last["ensemble"] = list(zip(models, histories))
        return time.perf_counter() - t0

    warm = FitConfig(**{**config.__dict__, "epochs": 1})  # first calls pay for kernels, vmap set-up, allocations
    small = ({k: v[:256] for k, v in train[0].items()}, train[1][:256])
    fit_ensemble(build, seeds[:2], small, val, warm)
    seed_everything(0)
    fit(build(), small, val, warm)
    times = interleaved({"serial": serial, "ensemble": ensemble}, rounds)
    result = {"serial_s": times["serial"], "ensemble_s": times["ensemble"],
              **compare_rounds(times["ensemble"], times["serial"])}
    diff = max((a.double() - b.double()).abs().max().item()
               for (ms, _), (me, _) in zip(last["serial"], last["ensemble"])
               for a, b in zip(ms.state_dict().values(), me.state_dict().values()) if a.is_floating_point())
    best = lambda runs: statistics.fmean(h.get("best_val_acc", float("nan")) for _, h in runs)  # noqa: E731
    return {**result, "max_weight_diff": diff, "val_serial": best(last["serial"]),
            "val_ensemble": best(last["ensemble"])}


def report(method: str, k: int, r: dict) -> str:
    """Lines for one method: seconds and ratio per round, the verdict, and the same-work check."""
    rounds = "  ".join(f"{s:.1f}/{e:.1f}={s / e:.2f}x" for s, e in zip(r["serial_s"], r["ensemble_s"]))
    return (f"{method}, K={k}: serial / ensemble s per round: {rounds}\n"
            f"  median ratio {r['ratio']:.2f}x (rounds {r['low']:.2f}-{r['high']:.2f}x): {SAID[r['verdict']]}\n"
            f"  same work: mean best val acc serial {r['val_serial']:.3f}, ensemble {r['val_ensemble']:.3f}; "
            f"largest weight difference {r['max_weight_diff']:.1e} (float32 round-off grown over the run)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--methods", nargs="+", default=["image_only", "late"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rows", type=int, default=None, help="train rows (default: all 3500)")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs, help=f"default: the recipe's {RECIPE.epochs}")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    config = FitConfig(**{**RECIPE.__dict__, "epochs": args.epochs, "device": args.device})
    train, val = splits(args.rows)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"{len(train[1])} train rows, {args.epochs} epochs, batch {config.batch_size}, {args.rounds} rounds")
    for method in args.methods:
        r = compare(method, list(range(args.seeds)), train, val, config, args.rounds)
        print(report(method, args.seeds, r), flush=True)


if __name__ == "__main__":
    main()
