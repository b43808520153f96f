"""The AV-digits training grid: the course's earlier path vs today's, on identical work, and the floor.

    python benchmarks/train_grid.py [--methods late concat image_only] [--seeds 2] [--rounds 2]

Earlier path (until issue 19): the image CNN ran three convs at 28/14/7 pixels and averaged the
maps (global average pooling), 8 epochs at a flat 3e-3, every run one after another in one process.
Today's path: ``ImageEncoder`` (strided first conv, flatten), ``zoo.RECIPE`` (6 epochs one-cycle),
``zoo.run_grid`` with one worker process per core. Both train the same methods × seeds on the same
hard AV-digits splits, without the checkpoint cache, in interleaved rounds (old, new, new, old, …)
so machine load hits both alike; the verdict comes from ``throughput.compare_rounds``.

It prints, in one run: seconds per grid for each path and their ratio per round; mean test accuracy
per method for each; FLOP per training step (``torch.utils.flop_counter``), the achieved GFLOP/s,
and the floor: the grid's FLOP divided by a measured fp32 matmul rate per core × cores.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mmcourse.data import load_av_digits
from mmcourse.encoders import ImageEncoder
from mmcourse.fusion import zoo
from mmcourse.parallel import available_cpus, run_many
from mmcourse.throughput import compare_rounds
from mmcourse.train import FitConfig

OLD_CONFIG = FitConfig(epochs=8, batch_size=64, lr=3e-3, device="cpu")


class EarlierImageEncoder(ImageEncoder):
    """The image CNN before issue 19: conv(1→w) → conv(w→2w, s2) → conv(2w→4w, s2) → GAP → linear."""

    def __init__(self, out_dim: int = 64, width: int = 8):
        super().__init__(out_dim, width)

        def block(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(block(1, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 4w)
        self.proj = nn.Linear(4 * width, out_dim)


def earlier_run(method, train, val, test, seed):
    """zoo.run with the earlier image encoder and recipe (for this benchmark only)."""
    original = zoo.ImageEncoder
    zoo.ImageEncoder = EarlierImageEncoder
    try:
        return zoo.run(method, train, val, test, OLD_CONFIG, seed=seed)
    finally:
        zoo.ImageEncoder = original


def _slim(r):
    return {k: r[k] for k in ("method", "seed", "test_acc", "seconds")}


def earlier_job(**kw):
    return _slim(earlier_run(**kw))


def new_job(**kw):
    return _slim(zoo.run(**kw, config=FitConfig(**{**zoo.RECIPE.__dict__, "device": "cpu"})))


def flop_per_step(encoder_cls, method: str, batch) -> float:
    original = zoo.ImageEncoder
    zoo.ImageEncoder = encoder_cls
    try:
        model = zoo.build_av_model(method)
    finally:
        zoo.ImageEncoder = original
    keys = zoo.modalities_of(model)
    x, y = {k: batch[0][k][:64] for k in keys}, batch[1][:64]
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["late", "concat", "image_only"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tr, va, te = (load_av_digits(s) for s in ("train", "val", "test"))
    jobs = [dict(method=m, train=tr, val=va, test=te, seed=s) for m in args.methods for s in range(args.seeds)]
    cores = available_cpus()
    times = {"earlier": [], "today": []}
    accs = {"earlier": {}, "today": {}}
    for r in range(args.rounds):
        order = ["earlier", "today"] if r % 2 == 0 else ["today", "earlier"]
        for path in order:
            t0 = time.perf_counter()
            if path == "earlier":  # one process, one run after another (the kernel's default threads)
                results = [earlier_job(**j) for j in jobs]
            else:
                results = run_many(new_job, jobs, progress=False)
            times[path].append(time.perf_counter() - t0)
            for res in results:
                accs[path].setdefault(res["method"], []).append(res["test_acc"])
            print(f"round {r}: {path:8s} {times[path][-1]:6.1f} s", flush=True)
    cmp = compare_rounds(times["today"], times["earlier"])
    print(f"\n{len(jobs)} trainings per grid ({len(args.methods)} methods x {args.seeds} seeds), {cores} cores")
    print(f"earlier path / today's path, per round: {[round(b / a, 2) for a, b in zip(times['today'], times['earlier'])]}"
          f" -> median {cmp['ratio']:.2f}x ({cmp['verdict'].replace('a faster', 'today faster').replace('b faster', 'earlier faster')})")
    print("mean test accuracy (hard AV-digits):")
    for m in args.methods:
        e, t = accs["earlier"][m], accs["today"][m]
        print(f"  {m:12s} earlier {sum(e) / len(e):.3f}   today {sum(t) / len(t):.3f}")
    batch = ({k: v for k, v in tr.inputs.items()}, tr.labels)
    steps = math.ceil(len(tr) / 64)
    ceiling = matmul_gflops()
    for path, enc, cfg in (("earlier", EarlierImageEncoder, OLD_CONFIG), ("today", ImageEncoder, zoo.RECIPE)):
        flop = sum(flop_per_step(enc, j["method"], batch) for j in jobs) * steps * cfg.epochs
        achieved = flop / 1e9 / min(times[path])
        floor = flop / 1e9 / (ceiling * cores)
        print(f"{path:8s}: {flop / 1e12:.2f} TFLOP of training, best round {min(times[path]):.1f} s = "
              f"{achieved:.1f} GFLOP/s; floor at the matmul rate ({ceiling:.0f} GFLOP/s per core x {cores}) "
              f"{floor:.1f} s -> {min(times[path]) / floor:.1f}x above it")


if __name__ == "__main__":
    main()
