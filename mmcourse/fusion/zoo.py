"""Build and train AV-digits models for any fusion method, the same way for every method.

``build_av_model("late")`` gives encoders (image CNN, audio 1-D CNN) + that fusion (``"serial"`` and
``"hybrid"`` link the encoders: ``mmcourse.fusion.serial``); ``run`` trains
it with ``mmcourse.train.fit`` and reports test accuracy, parameter count and wall time, so the
lesson's results table compares methods on equal terms (same encoders, data, epochs, seeds).

Every run is selected on validation (``fit`` ends on the best-val epoch's weights; the test split
is evaluated once, after) and seeded: the same method, data, config and seed give the same
weights and accuracy again on the same machine and thread count. ``summarize`` turns runs into a
table of mean ± std over seeds; whether one method is better than another is decided by the
course's one statistics rule, ``mmcourse.stats`` (a paired t-test over the same seeds).
"""

from __future__ import annotations

import time

import pandas as pd
from torch import nn

from mmcourse.encoders import AudioEncoder, ImageEncoder
from mmcourse.fusion import METHODS
from mmcourse.fusion.base import MultimodalClassifier
from mmcourse.fusion.serial import KINDS, serial_av_model
from mmcourse.runtime import pick_device, quick, seed_everything
from mmcourse.train import FitConfig, evaluate, fit

UNIMODAL = ("audio_only", "image_only")

# The course's one recipe for AV-digits models (lessons 05, 06, 09, 10, 12 and the benchmarks):
# 6 epochs of AdamW with a one-cycle schedule (warm-up to 5e-3, then anneal), batch 64, best epoch
# on validation. Measured against the earlier 8 flat epochs at 3e-3: every method's mean test
# accuracy equal or higher in 25 % fewer epochs (benchmarks/train_grid.py).
RECIPE = FitConfig(epochs=quick(6, 2), batch_size=64, lr=5e-3, schedule="onecycle")


def build_av_encoders(modalities=("audio", "image"), dim: int = 32, image_width: int = 8,
                      audio_hidden: int = 32) -> nn.ModuleDict:
    """The course's AV-digits encoders, each (B, ...) → (B, dim), built in sorted key order.

    audio: 1-D CNN over MFCC frames (``AudioEncoder``); image: small CNN (``ImageEncoder``).
    Building in a fixed order keeps initial weights the same for the same seed everywhere.
    """
    make = {"audio": lambda: AudioEncoder(dim, hidden=audio_hidden), "image": lambda: ImageEncoder(dim, width=image_width)}
    unknown = set(modalities) - set(make)
    if unknown:
        raise KeyError(f"unknown modality {sorted(unknown)}; use some of {sorted(make)}")
    return nn.ModuleDict({k: make[k]() for k in sorted(modalities)})


def build_av_model(method: str, dim: int = 32, image_width: int = 8, audio_hidden: int = 32,
                   **fusion_options) -> MultimodalClassifier:
    """encoders → fusion for AV-digits.

    Args:
        method: a key of ``mmcourse.fusion.METHODS`` (parallel fusion), ``"serial"`` / ``"hybrid"``
            (audio conditions the image CNN's mid-level maps; ``serial_av_model``, whose options
            ``after``, ``hidden`` pass through), or ``"audio_only"`` / ``"image_only"`` (one encoder
            and a linear head, through ``ConcatFusion(hidden=None)``).
        dim: D, every encoder's output size.
    """
    if method not in METHODS and method not in KINDS and method not in UNIMODAL:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS) + list(KINDS) + list(UNIMODAL)}")
    encoders = build_av_encoders(("audio", "image"), dim, image_width, audio_hidden)  # both, even for one: same init
    if method in KINDS:
        return serial_av_model(method, encoders, 10, **fusion_options)
    if method in UNIMODAL:
        keep = method.removesuffix("_only")
        return MultimodalClassifier(nn.ModuleDict({keep: encoders[keep]}),
                                    METHODS["concat"]({keep: dim}, 10, hidden=None))
    fusion = METHODS[method]({k: dim for k in encoders}, 10, **fusion_options)
    return MultimodalClassifier(encoders, fusion)


def modalities_of(model: MultimodalClassifier) -> list[str]:
    return sorted(model.encoders.keys())


class _NotCached(Exception):
    pass


def _refuse(_model):
    raise _NotCached


def run(method: str, train, val, test, config: FitConfig = RECIPE, seed: int = 0, cache: bool = False,
        cached_only: bool = False, **options) -> dict:
    """Train one method on AV-digits splits, selected on validation, and evaluate it on test.

    Args:
        train, val, test: ``AVDigits`` splits (``mmcourse.data.load_av_digits``); ``train`` may
            be a subset given as ``(inputs, labels)``.
        seed: seeds everything (``seed_everything``: initial weights, batch order, dropout) and
            picks deterministic kernels, so a re-run repeats exactly on the same machine.
        cache: load the trained model from the checkpoint cache (``checkpoint.load_or_train``)
            when one matches method, options, config (device aside), seed and the train/val data;
            else train and save it. The history and training seconds are kept with it.
        cached_only: with ``cache``, return ``None`` instead of training when nothing matches.

    Returns:
        ``{"method", "seed", "test_acc", "val_acc", "best_epoch", "params", "seconds", "history",
        "model", "loaded"}``: ``val_acc`` is the best validation accuracy, whose epoch's weights the
        model holds (``config.restore_best``); ``test_acc`` is that model's accuracy on test;
        ``seconds`` the training time (of the original run when ``loaded``).
    """
    return _run(method, train, val, test, config, seed, cache, cached_only, options)


def _pick(split, keys):
    """``(inputs restricted to keys, labels)`` from an ``AVDigits`` split or an ``(inputs, labels)`` pair."""
    inputs, labels = split if isinstance(split, tuple) else (split.inputs, split.labels)
    return {k: inputs[k] for k in keys}, labels


def _run(method, train, val, test, config, seed, cache, cached_only, options, trained=None) -> dict | None:
    """``run``; with ``trained = {"model", "history", "seconds"}`` (one seed of ``fit_ensemble``) its
    weights and history stand in for training, and are saved under the key ``run`` would use."""
    seed_everything(seed)
    model = build_av_model(method, **options)
    keys = modalities_of(model)
    config = FitConfig(**{**config.__dict__, "seed": seed})

    def train_fn(m):
        if trained is not None:
            m.load_state_dict(trained["model"].state_dict())
            return {**trained["history"], "train_seconds": trained["seconds"]}
        t0 = time.perf_counter()
        history = fit(m, _pick(train, keys), _pick(val, keys), config)
        return {**history, "train_seconds": time.perf_counter() - t0}

    if cache:
        from mmcourse.checkpoint import load_or_train

        key = {"method": method, "options": options, "config": {**config.__dict__, "device": None},
               "train": _pick(train, keys), "val": _pick(val, keys)}
        try:
            model, info = load_or_train(f"zoo-{method}-seed{seed}", model, _refuse if cached_only else train_fn,
                                        key=key, verbose=False, return_info=True)
        except _NotCached:
            return None
        history, loaded = dict(info["result"]), info["loaded"]
    else:
        history, loaded = train_fn(model), False
    seconds = history.pop("train_seconds")
    return {"method": method, "seed": seed, "test_acc": evaluate(model, *_pick(test, keys))["acc"],
            "val_acc": history.get("best_val_acc", float("nan")), "best_epoch": history.get("best_epoch", -1),
            "params": sum(p.numel() for p in model.parameters()), "seconds": seconds,
            "history": history, "model": model.eval(), "loaded": loaded}


def run_ensemble(method: str, seeds, train, val, test, config: FitConfig = RECIPE, cache: bool = False,
                 **options) -> list[dict]:
    """``[run(method, ..., seed=s) for s in seeds]``, the seeds trained together as one vmapped model.

    ``mmcourse.ensemble.fit_ensemble`` gives each seed the initial weights, batch order, optimizer
    and best-epoch selection ``run`` gives it, so the models equal ``run``'s to round-off (not bit
    for bit). With ``cache`` each is saved under the key ``run`` uses, so ``run(..., cache=True)``
    loads it later; ``seconds`` is each seed's share of the ensemble's training time.
    """
    from mmcourse.ensemble import fit_ensemble

    keys = modalities_of(build_av_model(method, **options))
    t0 = time.perf_counter()
    models, histories = fit_ensemble(lambda: build_av_model(method, **options), seeds, _pick(train, keys),
                                     _pick(val, keys), config)
    seconds = (time.perf_counter() - t0) / len(models)
    return [_run(method, train, val, test, config, s, cache, False, options,
                 trained={"model": m, "history": h, "seconds": seconds})
            for s, m, h in zip(seeds, models, histories)]


def run_grid(methods, seeds, train, val, test, config: FitConfig = RECIPE, cache: bool = True,
             workers: int | None = None, verbose: bool = True, ensemble: bool | None = None,
             **options) -> list[dict]:
    """``run`` for every method × seed: cached runs load here, the rest train in parallel processes.

    Args:
        methods, seeds: the grid; results come back in the order ``for m in methods for s in seeds``.
        workers: training processes (``mmcourse.parallel.run_many``; ``None``: one per core, 1 on
            a GPU). Results are identical to training them one after another with one thread.
        ensemble: train the uncached seeds of each method together as one vmapped model
            (``run_ensemble``: ``run``'s models to round-off, which in float32 grows over a run into
            an equally valid, not identical, model). ``None``: on a CUDA GPU
            (``runtime.pick_device(config.device)``), where ``make gpu-check`` measures it; on a
            CPU it ran no faster than serial ``fit`` with one thread (1.00-1.02x, K=5, 2-core
            machine: ``benchmarks/ensemble.py``), so the one process per core there wins.

    Returns:
        ``run``'s dicts, one per (method, seed).

    Every run trains and is looked up with one torch thread (``parallel.one_thread``), as in the
    workers, so the checkpoint cache sees the same thread count whichever path trained it.
    """
    from mmcourse.parallel import one_thread, run_many

    methods, seeds = list(methods), list(seeds)
    jobs = [dict(method=m, train=train, val=val, test=test, config=config, seed=s, cache=cache, **options)
            for m in methods for s in seeds]
    t0 = time.perf_counter()
    with one_thread():
        results = [run(**job, cached_only=True) for job in jobs] if cache else [None] * len(jobs)
    todo = [i for i, r in enumerate(results) if r is None]
    device = pick_device(config.device).type
    if ensemble is None:
        ensemble = device == "cuda"
    groups = {}  # method → indices of its uncached seeds, trained as one ensemble when there are 2+
    for i in todo:
        groups.setdefault(jobs[i]["method"], []).append(i)
    together = [g for g in groups.values() if ensemble and len(g) > 1]
    for group in together:
        with one_thread():
            trained = run_ensemble(jobs[group[0]]["method"], [jobs[i]["seed"] for i in group], train, val, test,
                                   config, cache, **options)
        for i, r in zip(group, trained):
            results[i] = r
    alone = [i for i in todo if results[i] is None]
    for i, r in zip(alone, run_many(run, [jobs[i] for i in alone], workers=workers, device=device,
                                    desc=f"training {len(alone)} models")):
        results[i] = r
    if verbose:
        loaded = len(jobs) - len(todo)
        how = f" ({len(todo) - len(alone)} of them as {len(together)} vmapped ensemble(s))" if together else ""
        print(f"{len(jobs)} runs ({len(methods)} methods x {len(seeds)} seeds): {loaded} loaded from "
              f"the checkpoint cache, {len(todo)} trained{how}; {time.perf_counter() - t0:.1f} s")
    return results


def summarize(runs) -> pd.DataFrame:
    """One row per method over its seeds, best test mean first.

    Args:
        runs: dicts returned by ``run`` (any number of methods and seeds).

    Returns:
        A DataFrame indexed by method with ``test_mean``, ``test_std`` (sample std over seeds; NaN
        for one seed), ``val_mean``, ``seeds``, ``params``, ``train_s`` (mean seconds) and
        ``best_epoch`` (mean, 0-based: the epoch validation selected).
    """
    df = pd.DataFrame([{k: r[k] for k in ("method", "seed", "test_acc", "val_acc", "best_epoch", "params", "seconds")}
                       for r in runs])
    if df.empty:
        raise ValueError("no runs to summarize; pass the dicts that zoo.run returns")
    return (df.groupby("method", sort=False)
              .agg(test_mean=("test_acc", "mean"), test_std=("test_acc", "std"), val_mean=("val_acc", "mean"),
                   seeds=("seed", "nunique"), params=("params", "first"), train_s=("seconds", "mean"),
                   best_epoch=("best_epoch", "mean"))
              .sort_values("test_mean", ascending=False))
