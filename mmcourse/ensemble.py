"""Train one model per seed as *one* vmapped model: K seeds, one forward, one backward, one step.

A results table needs every method trained over several seeds. Trained one after another, K small
models make K x the same small kernel launches; ``torch.func`` can instead stack the K models'
weights along a new leading axis and ``vmap`` one model's forward over it (the "model ensembling"
recipe of the torch.func docs: ``stack_module_state`` + ``functional_call`` + ``vmap``):

    params[name]: (K, *shape)     inputs: (K, B, ...)  →  logits (K, B, C)  →  losses (K,)

The K models never mix: the loss is the sum of the K per-model losses, so each slice of a stacked
gradient is exactly that model's gradient, and AdamW and SGD act element by element, so one
optimizer over the stacked tensors is K independent ones (weight decay too). Gradient clipping is
the one per-model operation (a norm over all of one model's gradients): ``clip_per_model``.

``fit_ensemble`` reproduces, per seed, what ``mmcourse.train.fit`` does with ``config.seed`` set
to that seed: the same initial weights (``seed_everything(seed); build()``), the same batch order
(each seed's own generator), the same optimizer, schedule, validation and best-epoch selection.
Whether it is faster depends on the device: ``benchmarks/ensemble.py`` measures it, and
``make gpu-check`` on a GPU; ``zoo.run_grid`` uses it by default on CUDA.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from mmcourse.fusion.base import Fusion
from mmcourse.runtime import bf16_supported, choose_precision, pick_device, seed_everything
from mmcourse.guards import MAX_WEIGHT, check_config, check_not_test, check_split, loss_blow_up
from mmcourse.train import FitConfig, take, to_device

def check_seeds(seeds) -> list[int]:
    """The seeds as a list of distinct ints; ``ValueError`` naming the fix otherwise."""
    seeds = list(seeds) if isinstance(seeds, (list, tuple, range)) else seeds
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"seeds={seeds!r}: pass a non-empty list of integer seeds, e.g. seeds=[0, 1, 2]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds={seeds!r}: every seed must be an int, e.g. seeds=[0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r} repeats a seed: the same seed trains the same model twice; "
                         f"pass distinct seeds, e.g. {sorted(set(seeds))}")
    return seeds


def _check_config(config: FitConfig, device: torch.device) -> None:
    """``fit``'s config checks, plus ``ValueError`` for settings the ensemble does not train as ``fit`` would."""
    check_config(config)
    if config.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'adamw' or 'sgd'")
    if choose_precision(device.type, bf16_supported(device), config.precision)[0] is not None:
        raise ValueError(f"FitConfig.precision={config.precision!r}: fit_ensemble trains in float32 only; "
                         "use precision='fp32', or train each seed with mmcourse.train.fit for mixed precision")
    if config.compile:
        raise ValueError("FitConfig.compile=True: fit_ensemble does not compile its vmapped model; use compile=False")


def _present(fusion: Fusion, feats: dict[str, Tensor]) -> list[str]:
    """``Fusion.check`` without its NaN test, which is an ``if`` on data that ``vmap`` cannot run.
    The inputs were checked outside ``vmap`` (a plain forward); NaN features give a NaN loss, which
    ``fit_ensemble`` treats as a divergence of that seed."""
    return [k for k in fusion.keys if k in feats]


def stack_models(models: list[nn.Module]) -> tuple[dict[str, Tensor], dict[str, Tensor], nn.Module]:
    """``(params, buffers, skeleton)``: each parameter and buffer of the K models stacked, (K, *shape).

    ``params`` are new leaf tensors (those that required grad still do); ``skeleton`` is a copy of
    ``models[0]`` on the meta device (no memory) that ``functional_call`` runs with a slice.
    """
    shapes = {tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in models}
    if len(shapes) != 1:
        raise ValueError("the models differ in architecture (their state_dict names or shapes); build() must "
                         "return the same architecture for every seed")
    params, buffers = stack_module_state(models)  # {name: (K, *shape)}
    skeleton = copy.deepcopy(models[0]).to("meta")
    for m in skeleton.modules():
        if isinstance(m, Fusion):
            m.check = partial(_present, m)  # an instance attribute: only this private copy changes
    return params, buffers, skeleton


def _logits(skeleton: nn.Module, params: dict, buffers: dict, x) -> Tensor:
    """One model (one slice of the stack): inputs (B, ...) → logits (B, C)."""
    out = functional_call(skeleton, (params, buffers), (x,))
    return out["logits"] if isinstance(out, dict) else out


def _loss(skeleton: nn.Module, params: dict, buffers: dict, x, y: Tensor) -> Tensor:
    """One model's mean cross-entropy on its batch, in float32 as ``fit``'s default loss: () scalar."""
    return F.cross_entropy(_logits(skeleton, params, buffers, x).float(), y)


def clip_per_model(grads: list[Tensor], max_norm: float) -> Tensor:
    """``clip_grad_norm_`` applied to each of the K stacked models separately, in place.

    Args:
        grads: the stacked gradients, each (K, *shape).

    Returns:
        (K,) each model's total gradient norm before clipping: ‖(‖g_1[k]‖, ‖g_2[k]‖, …)‖₂, scaled
        by min(1, max_norm / (norm + 1e-6)) as torch does.
    """
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (K, P) → (K,)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (K,)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))  # (K, 1, ...) broadcast over each slice
    return norms


def _optimizer(params: list[Tensor], config: FitConfig) -> torch.optim.Optimizer:
    """``fit``'s optimizer, over the stacked tensors (element-wise maths: K independent ones)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    try:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _slice(stacked: dict[str, Tensor], k: int, keys) -> dict[str, Tensor]:
    """Model k's own state_dict (copies) from stacked tensors: {name: (*shape)}."""
    return {name: stacked[name][k].detach().clone() for name in keys}


def _blow_up(losses: list[float], init_loss: float, classes: int, peak: float) -> str | None:
    """``fit``'s blow-up rule for one seed, given its largest |weight| ``peak``."""
    return loss_blow_up(losses, init_loss, classes) or (None if peak <= MAX_WEIGHT else f"a weight reached {peak:.3g}")


def fit_ensemble(build, seeds, train, val=None, config: FitConfig | None = None
                 ) -> tuple[list[nn.Module], list[dict]]:
    """Train one ``build()`` model per seed, all K at once as one vmapped model.

    Args:
        build: ``build()`` returns a fresh model; it is called right after ``seed_everything(seed)``,
            so seed k's initial weights are those ``seed_everything(seed); build()`` gives.
        seeds: K distinct ints. Seed k's batch order comes from ``torch.Generator().manual_seed(seed)``,
            as in ``fit`` with ``config.seed = seed`` (``config.seed`` itself is ignored).
        train, val: ``(inputs, labels)``: a (N, ...) tensor or dict of them, labels (N,) int64.
        config: ``fit``'s ``FitConfig``; fp32 only, no ``compile``.

    Returns:
        ``(models, histories)``: K ordinary ``nn.Module``s in eval mode, each holding its selected
        weights (the best-val epoch's with ``restore_best``), and K histories shaped like ``fit``'s
        (``train_loss``, ``val_loss``, ``val_acc``, ``seconds``, ``samples_per_s``, ``best_epoch``,
        ``best_val_acc``, ``diverged``, ``stopped_early`` when patience ran out). ``seconds`` is
        each seed's share of the ensemble's epoch time (epoch wall time / K), so summed over the
        seeds it is the wall time, and ``samples_per_s`` the ensemble's throughput.

    Per seed this is ``fit``: inputs are gathered per seed, (K, B, ...); BatchNorm running
    statistics are stacked buffers, updated per seed; validation and best-epoch selection and
    patience are per seed. Two differences: dropout masks are drawn from the global generator
    for all K at once (``randomness="different"``), so they cannot match a serial run's (the
    course's zoo models have no dropout); and rounding differs in the last bits (batched kernels
    sum in another order), so results match ``fit`` to round-off, not bit for bit. In float64 that
    stays ~1e-13 over the recipe's 6 epochs; in float32 it grows over a run, as between two thread
    counts (image_only, full recipe: weights up to 0.23 apart, val accuracy within 3 points): an
    equally valid run, not the same one.

    A seed whose loss turns NaN/inf, blows up (``fit``'s rule) or whose validation outputs turn
    non-finite stops there; the others go on. It warns naming the seed, marks ``diverged`` and
    keeps the weights ``fit`` would keep (its best-val epoch's, else the last finite step's, else
    those from before the epoch that blew up).

    Raises:
        ValueError: no seeds, a repeated seed, models of different architectures, a config the
            ensemble does not train as ``fit`` would (mixed precision, compile), bad splits, or
            labels the model has no output for.
    """
    config, seeds = config or FitConfig(), check_seeds(seeds)
    device = pick_device(config.device)
    _check_config(config, device)
    check_split("train", train)
    train = (train[0], torch.as_tensor(train[1]).long())
    if val is not None:
        check_split("val", val)
        check_not_test(*val)
        val = (val[0], torch.as_tensor(val[1]).long())
    models = []
    for seed in seeds:
        seed_everything(seed)
        models.append(build().to(device))
    K, X, y = len(seeds), to_device(train[0], device), train[1].to(device)
    n = len(y)
    with torch.no_grad():  # a plain forward of each: the model's own input checks, and its number of classes
        outs = [m.eval()(take(X, torch.arange(min(n, 2), device=device))) for m in models]
        C = (outs[0]["logits"] if isinstance(outs[0], dict) else outs[0]).shape[1]
    top = max(int(y.max()), int(val[1].max()) if val is not None else 0)
    if top >= C:
        raise ValueError(f"labels go up to {top} but the model outputs {C} logits per example: give its last "
                         f"layer {top + 1} outputs, or relabel the data to 0 .. {C - 1}")
    params, buffers, skeleton = stack_models([m.train() for m in models])
    stacked, keys = {**params, **buffers}, list(models[0].state_dict())
    names = [name for name, p in params.items() if p.requires_grad]
    if not names:
        raise ValueError("the model has no trainable parameters (requires_grad=False everywhere): nothing to fit")
    trainable = [params[name] for name in names]
    opt = _optimizer(trainable, config)
    sched = None
    if config.schedule == "onecycle":  # one step per optimizer step, as fit: the same for every seed
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr,
                                                    total_steps=config.epochs * math.ceil(n / config.batch_size))
    train_loss = vmap(partial(_loss, skeleton), in_dims=(0, 0, 0, 0), randomness="different")
    val_logits = vmap(partial(_logits, skeleton), in_dims=(0, 0, None), randomness="different")
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    runs, step = [_Seed(s) for s in seeds], 0
    for epoch in range(config.epochs):
        training = [r.live for r in runs]  # (K,) bools: the seeds this epoch trains
        if not any(training):
            break
        fallback = {name: t.detach().clone() for name, t in stacked.items()}  # what a blow-up falls back to
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (K, N): seed k's own order
        total, seen = [0.0] * K, [0] * K
        skeleton.train()
        t0 = time.perf_counter()
        for idx in order.split(config.batch_size, dim=1):  # (K, B)
            idx = idx.to(device)
            losses = train_loss(params, buffers, take(X, idx), y[idx])  # inputs (K, B, ...) → (K,)
            values = losses.detach().tolist()  # one sync for the K models
            for k, r in enumerate(runs):
                if r.live and not math.isfinite(values[k]):  # stop before the step ruins its weights
                    r.stop(f"the training loss became {values[k]} at epoch {epoch}, step {step}", step)
                    r.at_nan = _slice(stacked, k, keys)
            if not any(r.live for r in runs):
                break
            _update(opt, sched, trainable, losses, [r.live for r in runs], config.grad_clip)
            for k, r in enumerate(runs):
                if r.live:
                    r.init_loss = values[k] if step == 0 else r.init_loss
                    total[k], seen[k] = total[k] + values[k] * idx.shape[1], seen[k] + idx.shape[1]
            step += 1
        seconds = (time.perf_counter() - t0) / K  # each seed's share of the epoch
        peaks = torch.stack([p.detach().abs().flatten(1).amax(1) for p in trainable], 1).amax(1).tolist()  # (K,)
        for k, r in enumerate(runs):
            if training[k] and seen[k]:
                r.history["train_loss"].append(total[k] / seen[k])
                r.history["seconds"].append(seconds)
                r.history["samples_per_s"].append(seen[k] / seconds)
                if r.why is None and (blown := _blow_up(r.history["train_loss"], r.init_loss, C, peaks[k])):
                    r.stop(f"training blew up at epoch {epoch}: {blown}", step)
        if val is not None and any(r.live for r in runs):
            logits = _predict(skeleton, val_logits, params, buffers, val[0], device)  # (K, N_val, C)
            for k, r in enumerate(runs):
                if r.live:
                    r.validate(logits[k], val[1].cpu(), epoch, lambda: _slice(stacked, k, keys), config.patience)
        for k, r in enumerate(runs):
            if training[k] and r.why is not None:
                r.final = _fall_back(r, _slice(fallback, k, keys), names, config, epoch)
    for k, (r, model) in enumerate(zip(runs, models)):
        r.history["diverged"] = r.why is not None
        keep = r.best if config.restore_best and r.best is not None else r.final
        model.load_state_dict(keep if keep is not None else _slice(stacked, k, keys))
        model.eval()
    return models, [r.history for r in runs]


@dataclass(eq=False)
class _Seed:
    """One seed's bookkeeping: what ``fit`` keeps in local variables for its one model."""

    seed: int
    history: dict = field(default_factory=lambda: {k: [] for k in ("train_loss", "val_loss", "val_acc", "seconds",
                                                                   "samples_per_s")})
    live: bool = True  # still training
    init_loss: float | None = None  # its untrained loss (step 0): the blow-up reference
    best_acc: float = -1.0
    best: dict | None = None  # its best-val epoch's state_dict
    bad: int = 0  # epochs since its best (patience)
    why: str | None = None  # why it diverged
    step: int = 0  # the step it stopped at
    at_nan: dict | None = None  # its weights when its loss turned NaN/inf: the last finite step's
    final: dict | None = None  # what it ends with when not its best (patience ran out, or diverged)

    def stop(self, why: str, step: int) -> None:
        self.why, self.step, self.live = why, step, False

    def validate(self, logits: Tensor, labels: Tensor, epoch: int, state, patience: int | None) -> None:
        """``fit``'s end of epoch: record val loss/accuracy of logits (N, C), keep the best, patience."""
        if not torch.isfinite(logits).all():
            return self.stop(f"the validation outputs became NaN/inf after epoch {epoch}", self.step)
        acc = (logits.argmax(-1) == labels).float().mean().item()
        self.history["val_loss"].append(F.cross_entropy(logits, labels).item())
        self.history["val_acc"].append(acc)
        if acc > self.best_acc:
            self.best_acc, self.bad, self.best = acc, 0, state()
            self.history["best_epoch"], self.history["best_val_acc"] = epoch, acc
        else:
            self.bad += 1
        if patience is not None and self.bad >= patience:
            self.history["stopped_early"], self.live, self.final = True, False, state()


def _update(opt, sched, trainable: list[Tensor], losses: Tensor, live: list[bool], max_norm: float | None) -> None:
    """One step for every live seed: ∂(Σ_k loss_k)/∂params[k] = ∂loss_k/∂params[k] (losses (K,))."""
    mask = torch.tensor(live, device=losses.device)  # (K,)
    opt.zero_grad(set_to_none=True)
    torch.where(mask, losses, torch.zeros_like(losses)).sum().backward()
    grads = [p.grad for p in trainable if p.grad is not None]
    if not all(live):
        for g in grads:
            g[~mask] = 0  # a stopped seed's slice: its NaN stays out of the step (its weights are kept aside)
    if max_norm:
        clip_per_model(grads, max_norm)
    opt.step()
    if sched is not None:
        sched.step()


@torch.no_grad()
def _predict(skeleton, val_logits, params, buffers, inputs, device, batch_size: int = 512) -> Tensor:
    """Every seed's logits on a whole split, in eval mode, in ``evaluate``'s batches: (K, N, C) float32 CPU."""
    skeleton.eval()
    n = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
    out = [val_logits(params, buffers, to_device(take(inputs, torch.arange(i, min(i + batch_size, n))), device))
           .float().cpu() for i in range(0, n, batch_size)]  # each (K, b, C)
    skeleton.train()
    return torch.cat(out, 1)  # (K, N, C)


def _fall_back(r: _Seed, before_epoch: dict, names: list[str], config: FitConfig, epoch: int) -> dict[str, Tensor]:
    """Seed ``r`` diverged: warn, and return the finite weights ``fit`` would have kept."""
    if config.restore_best and r.best is not None:
        state, kept = r.best, "it keeps the weights of its best epoch on validation before it diverged"
    elif r.at_nan is not None and torch.stack([r.at_nan[x].abs().max() for x in names]).max().item() <= MAX_WEIGHT:
        state, kept = r.at_nan, "it keeps the weights of its last finite step"
    else:
        state, kept = before_epoch, "it is reset to its weights from before the epoch that blew up"
        kept += " (its initial weights)" if epoch == 0 else ""
    cause = f"the run diverged (learning rate {config.lr:g} too high?)" if r.step else "before any update"
    warnings.warn(f"fit_ensemble: seed {r.seed}: {r.why}: {cause}. That seed stopped; {kept}; the other seeds go "
                  "on. Lower the learning rate (e.g. 10x) or set grad_clip (e.g. 1.0).", RuntimeWarning, stacklevel=3)
    return state
