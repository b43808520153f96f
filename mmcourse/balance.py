"""Modality imbalance: auxiliary losses L = L_fused + Σ_m λ_m L_m, probes, and OGM-GE (lesson 06).

The textbook story (Wang et al. 2020; Peng et al. 2022): when two modalities are trained jointly,
the one that lowers the loss faster *dominates*; the fused loss is soon small, so the other
encoder receives little gradient and can end up under-trained compared with the same encoder
trained alone. Lesson 06 measures whether that happens on AV-digits. The tools:

- ``AuxHeadClassifier`` + ``AuxLoss``: a unimodal head per encoder and
  L = L_fused + Σ_m λ_m L_m, so every encoder gets its own learning signal.
- ``probe_encoders`` / ``imbalance``: how good each encoder's features are, measured by a linear
  probe (``mmcourse.probe``) on frozen features, inside the fused model vs trained alone.
- ``OGMGE`` (in ``mmcourse.ogm``, re-exported here): on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR
  2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation"), a ``fit`` hook. It
  scales gradients, so it needs an optimizer whose step follows the gradient's scale (SGD with
  momentum, as in the paper), not Adam/AdamW; ``UpdateSize`` measures the steps to show it.
- ``run_balanced`` / ``run_unimodal``: one seeded experiment, best epoch chosen on validation.
- ``experiment`` / ``run_experiments``: the lesson's grid with ``zoo.RECIPE`` (the protocol of
  lesson 05), every training cached by fingerprint and the uncached ones trained in parallel
  processes (``mmcourse.parallel.run_many``). The encoders alone are lesson 05's own
  ``audio_only`` / ``image_only`` runs (``zoo.run``: the same checkpoint files).
The λ sliders are ``mmcourse.widgets.lambda_panel``. Taught in notebooks/06_loss_weighting.ipynb.
Shapes: B batch, C classes, D features, M modalities.
"""
from __future__ import annotations

import math
import time
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.fusion import ConcatFusion, LateFusion, MultimodalClassifier
from mmcourse.fusion.base import Fusion
from mmcourse.fusion.zoo import RECIPE, build_av_encoders
from mmcourse.losses import weighted_loss
from mmcourse.probe import encode, fit_linear_probe
from mmcourse.train import FitConfig, evaluate, fit


# ------------------------------------------------------------------------------- building blocks
def check_lambdas(lambdas: dict[str, float], modalities) -> dict[str, float]:
    """Validate λ: known modalities only, finite and ≥ 0. Missing modalities get λ = 0."""
    modalities = sorted(modalities)
    unknown = sorted(set(lambdas) - set(modalities))
    if unknown:
        raise KeyError(f"unknown modality {unknown} in lambdas; this model has {modalities}")
    for k, v in lambdas.items():
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"lambda for {k!r} must be a finite number >= 0, got {v}")
    return {k: float(lambdas.get(k, 0.0)) for k in modalities}


def unimodal_contributions(fusion: Fusion, feats: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each modality's share of the fused logits, {m: (B, C)}, as OGM-GE scores them.

    For a *linear* concat head, logits = Σ_m W_m f_m + b exactly, so modality m contributes
    W_m f_m + b / M (the split used in the OGM-GE reference code). For late fusion it is each
    head's own logits. Other fusions mix modalities non-linearly and have no such split.
    """
    if isinstance(fusion, ConcatFusion) and isinstance(fusion.net, nn.Linear):
        W, b, M = fusion.net.weight, fusion.net.bias, len(fusion.keys)
        out, start = {}, 0
        for k in fusion.keys:  # columns of W follow the sorted concat order
            d = fusion.dims[k]
            out[k] = feats[k] @ W[:, start:start + d].T + b / M  # (B, D_m) @ (D_m, C) → (B, C)
            start += d
        return out
    if isinstance(fusion, LateFusion):
        return fusion.unimodal_logits(feats)
    raise TypeError(f"no per-modality split for {type(fusion).__name__}; use ConcatFusion(hidden=None) "
                    "(a linear head) or LateFusion with OGM-GE")


class AuxHeadClassifier(nn.Module):
    """A ``MultimodalClassifier`` plus one linear head per encoder.

    Args:
        encoders: ``nn.ModuleDict`` modality → encoder producing (B, D_m).
        fusion: a fusion module whose ``dims`` match; its output is the fused logits (B, C).
        num_classes: C, for the auxiliary heads.

    ``forward(inputs)`` returns ``{"logits": (B, C), "aux": {m: (B, C)}, "contrib": {m: (B, C)}}``;
    ``contrib`` (for OGM-GE) is present when the fusion has a per-modality split.
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: Fusion, num_classes: int):
        super().__init__()
        self.core = MultimodalClassifier(encoders, fusion)
        self.encoders, self.fusion = self.core.encoders, self.core.fusion
        self.aux = nn.ModuleDict({k: nn.Linear(d, num_classes) for k, d in fusion.dims.items()})

    def forward(self, inputs: dict[str, Tensor]) -> dict:
        feats = self.core.features(inputs)  # {m: (B, D_m)}
        out = {"logits": self.fusion(feats), "aux": {k: self.aux[k](feats[k]) for k in feats}}
        try:
            out["contrib"] = unimodal_contributions(self.fusion, feats)
        except TypeError:
            pass
        return out


class AuxLoss:
    """L = L_fused + Σ_m λ_m L_m, all cross-entropies; a ``loss_fn`` for ``fit``.

    Args:
        lambdas: {modality: λ_m ≥ 0}; a modality left out gets λ = 0.
        modalities: the model's modalities (to reject unknown keys early).
    """

    def __init__(self, lambdas: dict[str, float], modalities):
        self.lambdas = check_lambdas(lambdas, modalities)

    def __call__(self, out: dict, y: Tensor) -> Tensor:
        losses = {"fused": F.cross_entropy(out["logits"].float(), y)}  # scalar
        losses |= {k: F.cross_entropy(out["aux"][k].float(), y) for k in self.lambdas}
        return weighted_loss(losses, {"fused": 1.0, **self.lambdas})

    def __repr__(self) -> str:
        return f"AuxLoss(lambdas={self.lambdas})"


def build_model(num_classes: int = 10, dim: int = 32, image_width: int = 8, audio_hidden: int = 32,
                fusion: str = "concat") -> AuxHeadClassifier:
    """The lesson's model: image CNN + audio CNN → (B, dim) each → linear concat (or late) head."""
    encoders = build_av_encoders(("audio", "image"), dim, image_width, audio_hidden)
    dims = {"audio": dim, "image": dim}
    fuse = ConcatFusion(dims, num_classes, hidden=None) if fusion == "concat" else LateFusion(dims, num_classes)
    return AuxHeadClassifier(encoders, fuse, num_classes)


def build_unimodal(modality: str, num_classes: int = 10, dim: int = 32, image_width: int = 8,
                   audio_hidden: int = 32) -> nn.Sequential:
    """The same encoder trained alone: encoder → linear, on (B, ...) inputs of one modality."""
    encoder = build_av_encoders((modality,), dim, image_width, audio_hidden)[modality]
    return nn.Sequential(encoder, nn.Linear(dim, num_classes))


# ------------------------------------------------------------------------------ measuring imbalance
def probe_encoders(encoders: dict[str, nn.Module], train, test) -> dict[str, float]:
    """Linear-probe accuracy of each encoder: ``train``/``test`` are (inputs dict, labels)."""
    return {k: fit_linear_probe(encode(enc, train[0][k]), train[1]).score(encode(enc, test[0][k]), test[1])
            for k, enc in sorted(encoders.items())}


def imbalance(fused: AuxHeadClassifier, alone: dict[str, nn.Module], train, test) -> dict[str, dict]:
    """Probe accuracy of each encoder inside the fused model vs trained alone.

    Returns:
        {m: {"inside": acc, "alone": acc, "gap": alone - inside}}; a large positive gap means
        the fused model left that encoder under-trained.
    """
    inside = probe_encoders(dict(fused.encoders.items()), train, test)
    solo = probe_encoders(alone, train, test)
    return {k: {"inside": inside[k], "alone": solo[k], "gap": solo[k] - inside[k]} for k in sorted(solo)}


# ------------------------------------------------------------------------------------- OGM-GE
# OGM-GE lives in mmcourse.ogm (one concept per module); re-exported here for the lesson's imports.
from mmcourse.ogm import (ADAM_WARNING, OGMGE, UpdateSize, modulated_parameters,  # noqa: E402,F401
                          ogm_coefficients, scale_invariant)


# --------------------------------------------------------------------------- one experiment
def subset(data, n: int | None):
    """The first ``n`` rows of ``(inputs dict, labels)`` (AV-digits splits are already shuffled)."""
    inputs, labels = data
    n = len(labels) if n is None else min(n, len(labels))
    return {k: v[:n] for k, v in sorted(inputs.items())}, labels[:n]


def run_balanced(train, test, lambdas: dict[str, float] | None = None, ogm: OGMGE | None = None,
                 epochs: int = 8, lr: float = 3e-3, seed: int = 0, n_train: int | None = None,
                 probe: bool = True, model: AuxHeadClassifier | None = None, val=None,
                 optimizer: str = "adamw", callbacks=()) -> dict:
    """Train the lesson's model once and measure it.

    Args:
        train, test: ``(inputs dict, labels)``; ``n_train`` keeps the first rows of train.
        lambdas: auxiliary weights λ_m (default none: plain fusion).
        ogm: an ``OGMGE`` hook, or None. With ``optimizer="adamw"`` it warns: Adam's step is
            (nearly) blind to the gradient scale OGM changes; the paper uses ``"sgd"``.
        val: ``(inputs dict, labels)`` for model selection: ``fit`` ends on the best-validation
            epoch's weights. Never pass the test split here.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum 0.9), see ``FitConfig``.
        callbacks: extra ``fit`` hooks (e.g. ``UpdateSize()``).
    Returns:
        {"fused": test acc, "val": best val acc (None without val), "best_epoch", "probe": {m: probe
        acc of the encoder inside}, "aux": {m: aux head acc}, "model", "history", "ogm" (the hook's
        log or None), "seconds"}.
    """
    torch.manual_seed(seed)
    model = model or build_model()
    loss = AuxLoss(lambdas or {}, model.fusion.keys)
    tr = subset(train, n_train)
    cfg = FitConfig(epochs=epochs, lr=lr, seed=seed, optimizer=optimizer)
    hooks = ([ogm] if ogm else []) + list(callbacks)
    t0 = time.perf_counter()
    history = fit(model, tr, val=val, config=cfg, loss_fn=ogm.wrap(loss) if ogm else loss, callbacks=hooks)
    seconds = time.perf_counter() - t0
    fused = evaluate(model, *test)["acc"]
    with torch.no_grad():
        model.eval()
        aux = model(test[0])["aux"]
    aux_acc = {k: (v.argmax(-1) == test[1]).float().mean().item() for k, v in aux.items()}
    probes = probe_encoders(dict(model.encoders.items()), tr, test) if probe else {}
    return {"fused": fused, "val": history.get("best_val_acc"), "best_epoch": history.get("best_epoch"),
            "probe": probes, "aux": aux_acc, "model": model, "history": history,
            "ogm": ogm.log if ogm else None, "seconds": seconds}


def run_unimodal(modality: str, train, test, epochs: int = 8, lr: float = 3e-3, seed: int = 0,
                 n_train: int | None = None, val=None, optimizer: str = "adamw") -> dict:
    """Train one encoder alone (encoder → linear); return test acc, its probe acc and the model.

    ``val`` (inputs dict, labels), if given, selects the best epoch (never the test split).
    """
    torch.manual_seed(seed)
    model = build_unimodal(modality)
    tr = subset(train, n_train)
    v = (val[0][modality], val[1]) if val is not None else None
    fit(model, (tr[0][modality], tr[1]), val=v, config=FitConfig(epochs=epochs, lr=lr, seed=seed, optimizer=optimizer))
    acc = evaluate(model, test[0][modality], test[1])["acc"]
    probe = probe_encoders({modality: model[0]}, tr, test)[modality]
    return {"acc": acc, "probe": probe, "model": model}


# ------------------------------------------------------------ the lesson's grid: cached, in parallel
KINDS = ("fused", "audio", "image")


class _NotCached(Exception):
    pass


def _refuse(_model):
    raise _NotCached


def experiment(kind: str, train, val, test, config: FitConfig = RECIPE, seed: int = 0,
               lambdas: dict[str, float] | None = None, ogm: dict | None = None, probe: bool = True,
               cached_only: bool = False) -> dict | None:
    """One training of lesson 06, loaded from the checkpoint cache when it was trained before.

    Args:
        kind: ``"fused"`` (``build_model``: encoders → linear concat head + aux heads, trained with
            ``AuxLoss``), or ``"audio"`` / ``"image"``: that encoder alone, which is lesson 05's
            ``zoo.run("<m>_only", ...)`` (same model, recipe and checkpoint file), plus its probe.
        train, val, test: ``(inputs dict, labels)``; val selects the best epoch, test is only scored.
        config: the ``FitConfig`` (default ``zoo.RECIPE``); ``seed`` replaces its seed.
        lambdas: λ_m of the auxiliary losses (fused only; default none: plain fusion).
        ogm: ``OGMGE``'s settings as a dict, e.g. ``{"alpha": 0.5, "ge": True, "epochs": (0, 3)}``.
        probe: fit the linear probes of the encoders (on train, scored on test).
        cached_only: return ``None`` instead of training when nothing cached matches.

    Returns:
        fused: ``{"kind", "seed", "fused": test acc, "val", "best_epoch", "probe": {m: acc}, "aux":
        {m: aux head acc}, "ogm": the hook's log or None, "steps": ``UpdateSize`` of the encoders,
        "warnings": messages raised while training, "seconds", "loaded"}``; one encoder: ``{"kind",
        "seed", "acc", "val", "best_epoch", "probe": acc, "seconds", "loaded"}``. No model: the
        results are plain values (cheap to send back from a worker process).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    if kind != "fused":
        if lambdas or ogm:
            raise ValueError(f"lambdas and ogm apply to the fused model only, not to kind={kind!r}")
        from mmcourse.fusion import zoo

        r = zoo.run(f"{kind}_only", train, val, test, config=config, seed=seed, cache=True, cached_only=cached_only)
        if r is None:
            return None
        acc = probe_encoders({kind: r["model"].encoders[kind]}, train, test)[kind] if probe else None
        return {"kind": kind, "seed": seed, "acc": r["test_acc"], "val": r["val_acc"], "best_epoch": r["best_epoch"],
                "probe": acc, "seconds": r["seconds"], "loaded": r["loaded"]}
    from mmcourse.checkpoint import load_or_train
    from mmcourse.runtime import seed_everything

    seed_everything(seed)
    model = build_model()
    cfg = FitConfig(**{**config.__dict__, "seed": seed})
    lam = check_lambdas(lambdas or {}, model.fusion.keys)
    ogm = None if ogm is None else {"alpha": float(ogm.get("alpha", 0.5)), "ge": bool(ogm.get("ge", True)),
                                    "epochs": list(ogm.get("epochs", (0, None)))}

    def train_fn(m):
        hook = OGMGE(ogm["alpha"], ogm["ge"], tuple(ogm["epochs"])) if ogm else None
        steps, loss = UpdateSize(), AuxLoss(lam, m.fusion.keys)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fit(m, train, val=val, config=cfg, loss_fn=hook.wrap(loss) if hook else loss,
                          callbacks=[h for h in (hook, steps) if h is not None])
        seconds = time.perf_counter() - t0
        m.eval()
        with torch.no_grad():
            aux = m(test[0])["aux"]  # {m: (N, C)}
        return {"diverged": bool(history.get("diverged")), "seconds": seconds, "history": history,
                "fused": evaluate(m, *test)["acc"], "val": history.get("best_val_acc"),
                "best_epoch": history.get("best_epoch"),
                "aux": {k: (v.argmax(-1) == test[1]).float().mean().item() for k, v in aux.items()},
                "probe": probe_encoders(dict(m.encoders.items()), train, test) if probe else {},
                "ogm": hook.log if hook else None, "steps": steps.log,
                "warnings": sorted({str(w.message) for w in caught})}

    what = "ogm-ge" if ogm and ogm["ge"] else "ogm" if ogm else "aux" if any(lam.values()) else "plain"
    key = {"kind": kind, "config": {**cfg.__dict__, "device": None}, "lambdas": lam, "ogm": ogm, "probe": probe,
           "train": train, "val": val, "measured_on": test}  # test: the measurements are kept with it
    try:
        _, info = load_or_train(f"balance-{what}-{cfg.optimizer}-seed{seed}", model,
                                _refuse if cached_only else train_fn, key=key, verbose=False, return_info=True)
    except _NotCached:
        return None
    r = dict(info["result"])
    return {"kind": kind, "seed": seed, **{k: r[k] for k in ("fused", "val", "best_epoch", "probe", "aux", "ogm",
                                                             "warnings", "seconds")},
            "steps": UpdateSize.from_log(r["steps"]), "loaded": info["loaded"]}


def run_experiments(jobs: list[dict], workers: int | None = None, verbose: bool = True) -> list[dict]:
    """``[experiment(**job) for job in jobs]``: cached runs load here, the rest train in parallel.

    Uncached jobs go to ``mmcourse.parallel.run_many`` (one torch thread per worker process; the
    results are those of training them one after another with one thread). Prints how many runs
    were loaded and trained, and the seconds it took.
    """
    from mmcourse.parallel import run_many

    t0 = time.perf_counter()
    results = [experiment(**job, cached_only=True) for job in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for i, r in zip(todo, run_many(experiment, [jobs[i] for i in todo], workers=workers, device=device,
                                   desc=f"training {len(todo)} models")):
        results[i] = r
    if verbose:
        print(f"{len(jobs)} runs: {len(jobs) - len(todo)} loaded from the checkpoint cache, {len(todo)} trained; "
              f"{time.perf_counter() - t0:.1f} s")
    return results
