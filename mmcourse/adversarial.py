"""Adversarial examples: FGSM and PGD under an L∞ budget, on a chosen subset of modalities.

Taught in ``notebooks/10_evaluation.ipynb`` (section 7). With L(x) the cross-entropy of the true
label, summed over the batch (so each example's gradient is its own):

- **FGSM** (Goodfellow, Shlens & Szegedy 2015, eq. 3): one step to the corner of the ball,
  x' = x + ε·sign(∇ₓL(x)).
- **PGD** (Madry et al. 2018, eq. 2): start at x₀ (or, with ``random_start``, at a uniform point
  of the ball) and repeat x ← Π(x + α·sign(∇ₓL(x))), Π the projection onto the ball
  {‖x − x₀‖∞ ≤ ε} intersected with the valid input range (a clamp, since both are boxes).
  Every example keeps the iterate with the highest loss, so more steps never weaken it.

**Which modalities move.** A multimodal input is ``dict[str, Tensor]``; only the modalities named
in ``attacked`` are perturbed, the others are passed through unchanged.

**Units of ε.** Pixels and MFCCs live on different scales, so ε is measured per modality in units
of a scale σ_m: every entry of x_m moves by at most ε·σ_m. ``InputSpace`` holds σ_m, the valid
range and whether the modality has zero-padded frames. ``av_spaces`` defines them for AV-digits:

- image: σ = std of the training pixels; valid range [0, 1] (grey levels; the hard images are
  clipped to it too), so the attack is clipped there;
- audio: σ = std of the training MFCC values over real frames. The MFCCs are standardised and
  noised (``mmcourse/data/av.py``), so no range is invalid and nothing is clipped; but padded
  frames are exactly zero and the encoder reads that as "no frame": they stay zero.

The model is put in eval mode during an attack (batch norm uses its running statistics, the same
function that is evaluated) and restored after; gradients are taken with ``torch.autograd.grad``
with respect to the inputs only, so no parameter's ``.grad`` is touched.

Shapes: inputs ``{m: (N, ...)}``, labels (N,) int64, logits (N, C).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.train import logits_of, num_rows


@dataclass(frozen=True)
class InputSpace:
    """Where one modality's inputs live, and the size of one unit of ε."""

    scale: float = 1.0  # σ_m: an ε-attack moves every entry by at most ε·σ_m
    low: float = -math.inf  # valid range; ±inf means unbounded (nothing is clipped)
    high: float = math.inf
    padded_frames: bool = False  # (N, T, F) with all-zero padding frames that must stay zero

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"InputSpace.scale={self.scale!r}: needs a finite number > 0 (the modality's std)")
        if not self.low < self.high:
            raise ValueError(f"InputSpace range [{self.low}, {self.high}] is empty; need low < high")


def av_spaces(train_inputs: dict[str, Tensor]) -> dict[str, InputSpace]:
    """The AV-digits threat model: ``{"audio": …, "image": …}`` with σ from the *training* inputs.

    Args:
        train_inputs: ``{"audio": (N, T, 13), "image": (N, 1, 28, 28)}`` (e.g. ``train.inputs``).
    """
    audio, image = train_inputs["audio"], train_inputs["image"]
    real = audio.abs().sum(-1) > 0  # (N, T) real frames
    return {"audio": InputSpace(scale=float(audio[real].std()), padded_frames=True),
            "image": InputSpace(scale=float(image.std()), low=0.0, high=1.0)}


def _budget(eps) -> float:
    """ε as a Python float: a number, a numpy scalar or a one-element tensor/array (``.item()``)."""
    if isinstance(eps, (Tensor, np.ndarray)):
        if (eps.size if isinstance(eps, np.ndarray) else eps.numel()) != 1:
            kind = "a tensor" if isinstance(eps, Tensor) else "an array"
            raise ValueError(f"eps must be a Python float (one budget), got {kind} of shape {tuple(eps.shape)}; "
                             "loop over the budgets (accuracy_curves takes a grid of them)")
        value = eps.item()
    else:
        value = eps
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"eps={eps!r}: the budget must be a finite number >= 0 (in units of each modality's scale)")
    return float(value)


def _check(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, eps: float, attacked) -> list[str]:
    """Validate the arguments of an attack; return the attacked modalities, sorted."""
    if isinstance(attacked, str):
        attacked = [attacked]
    attacked = sorted(set(attacked))
    if not attacked:
        raise ValueError("attacked is empty: name at least one modality to perturb, e.g. attacked=['image']")
    unknown = [m for m in attacked if m not in inputs]
    if unknown:
        raise KeyError(f"cannot attack {unknown}: the inputs have only {sorted(inputs)}")
    _budget(eps)
    for k, x in inputs.items():
        if not torch.isfinite(x).all():
            raise ValueError(f"{k!r} inputs contain NaN or inf; clean them (e.g. torch.nan_to_num) before attacking")
    if len(labels) != num_rows(inputs):
        raise ValueError(f"{len(labels)} labels for {num_rows(inputs)} input rows; pass one label per row")
    return attacked


def _loss(model: nn.Module, x: dict[str, Tensor], labels: Tensor) -> Tensor:
    """Per-example cross-entropy (B,), in float32 at least (float64 stays float64 for the tests)."""
    z = logits_of(model(x))  # (B, C)
    return F.cross_entropy(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, labels, reduction="none")


def input_gradient(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor,
                   attacked) -> tuple[Tensor, dict[str, Tensor]]:
    """∇ₓ of the summed cross-entropy wrt the attacked modalities, model as it is (no mode change).

    Returns:
        (per-example loss (B,), ``{m: (B, ...)}`` for every attacked m). Parameters get no ``.grad``.
    """
    x = {k: v.detach().requires_grad_(k in attacked) for k, v in sorted(inputs.items())}
    loss = _loss(model, x, labels)  # (B,)
    grads = torch.autograd.grad(loss.sum(), [x[m] for m in attacked], allow_unused=True)
    return loss.detach(), {m: torch.zeros_like(x[m]) if g is None else g for m, g in zip(attacked, grads)}


def _project(x: Tensor, x0: Tensor, radius: float, space: InputSpace) -> Tensor:
    """Π: into the box |x − x₀| ≤ radius, then into [low, high]; padded frames back to zero."""
    x = torch.minimum(torch.maximum(x, x0 - radius), x0 + radius).clamp(space.low, space.high)
    if space.padded_frames:
        x = x * (x0.abs().sum(-1, keepdim=True) > 0)  # (B, T, 1): padding of x₀ stays exactly zero
    return x


def perturb(model: nn.Module, x0: dict[str, Tensor], y: Tensor, eps: float, attacked, method: str = "pgd",
            spaces: dict[str, InputSpace] | None = None, steps: int = 10, alpha: float = 2.5,
            random_start: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """One batch's adversarial inputs, on the batch's device (``attack`` documents the arguments).

    The model is evaluated in eval mode and given back in the mode it was in.
    """
    attacked, eps = _check(model, x0, y, eps, attacked), _budget(eps)
    if method not in ("fgsm", "pgd"):
        raise ValueError(f"unknown method {method!r}; use 'fgsm' or 'pgd'")
    if method == "pgd" and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or not alpha > 0):
        raise ValueError(f"PGD needs steps >= 1 and alpha > 0, got steps={steps!r}, alpha={alpha!r}")
    spaces = {m: (spaces or {}).get(m, InputSpace()) for m in attacked}
    radius = {m: eps * spaces[m].scale for m in attacked}  # ε·σ_m in the modality's own units
    was_training = model.training
    model.eval()
    try:
        if method == "fgsm":  # x' = x + ε·sign(∇ₓL), then clipped to the valid range
            _, grad = input_gradient(model, x0, y, attacked)
            return {**x0, **{m: _project(x0[m] + radius[m] * grad[m].sign(), x0[m], radius[m], spaces[m])
                             for m in attacked}}
        x = dict(x0)
        if random_start:
            for m in attacked:
                u = torch.rand(x0[m].shape, generator=generator).to(x0[m].device) * 2 - 1  # U(−1, 1)
                x[m] = _project(x0[m] + radius[m] * u, x0[m], radius[m], spaces[m])
        best, best_loss = dict(x), None
        for step in range(steps + 1):
            if step < steps:
                loss, grad = input_gradient(model, x, y, attacked)
            else:  # the final iterate is only scored
                with torch.no_grad():
                    loss = _loss(model, x, y)  # (B,)
            if best_loss is None:
                best_loss = loss
            better = loss > best_loss  # (B,): every example keeps its highest-loss iterate
            for m in attacked:
                best[m] = torch.where(better.view(-1, *[1] * (x[m].dim() - 1)), x[m], best[m])
            best_loss = torch.maximum(loss, best_loss)
            if step < steps:  # x ← Π(x + α·sign(∇ₓL)), α = alpha·ε/steps
                x = {**x, **{m: _project(x[m] + alpha / steps * radius[m] * grad[m].sign(), x0[m], radius[m],
                                         spaces[m]) for m in attacked}}
        return {k: v.detach() for k, v in best.items()}
    finally:
        model.train(was_training)


def attack(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, eps: float, attacked,
           method: str = "pgd", spaces: dict[str, InputSpace] | None = None, steps: int = 10,
           alpha: float = 2.5, random_start: bool = True, seed: int = 0,
           batch_size: int = 500) -> dict[str, Tensor]:
    """Adversarial inputs for ``model``, batch by batch on the model's device.

    Args:
        inputs: ``{m: (N, ...)}``; labels: (N,) int64, the true classes.
        eps: the L∞ budget ε ≥ 0, in units of each modality's ``InputSpace.scale``: a number, a
            numpy scalar or a 0-d tensor.
        attacked: a modality name or a list of them; only these are perturbed.
        method: ``"fgsm"`` (x + ε·sign ∇, one step) or ``"pgd"``.
        spaces: ``{m: InputSpace}``; a modality without one gets ``InputSpace()`` (σ = 1, unbounded).
        steps, alpha, random_start: PGD only; the step is alpha·ε/steps (default 2.5ε/steps: the
            ratio of Madry et al.'s CIFAR-10 challenge config, ε = 8 with 10 steps of 2).
        seed: seeds PGD's random start (a CPU generator, so every device draws the same start).

    Returns:
        ``{m: (N, ...)}`` on the CPU: the attacked modalities perturbed, the others as given.
    """
    _check(model, inputs, labels, eps, attacked)
    eps = _budget(eps)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    out = {k: [] for k in sorted(inputs)}
    for i in range(0, num_rows(inputs), batch_size):
        x0 = {k: v[i:i + batch_size].to(device) for k, v in sorted(inputs.items())}
        adv = perturb(model, x0, labels[i:i + batch_size].to(device), eps, attacked, method, spaces,
                      steps, alpha, random_start, g)
        for k in out:
            out[k].append(adv[k].cpu())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def correct(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, batch_size: int = 500) -> Tensor:
    """(N,) bool: which examples the model (in eval mode) classifies right."""
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    hits = [logits_of(model({k: v[i:i + batch_size].to(device) for k, v in sorted(inputs.items())}))
            .argmax(-1).cpu() == labels[i:i + batch_size].cpu() for i in range(0, num_rows(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(hits)


def robust_correct(model, inputs, labels, eps, attacked, method="pgd", spaces=None, **options) -> Tensor:
    """(N,) bool: right on the adversarial input (``attack``'s options pass through)."""
    return correct(model, attack(model, inputs, labels, eps, attacked, method, spaces, **options), labels)


def accuracy_curves(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, eps_grid, subsets,
                    methods=("fgsm", "pgd"), spaces=None, **options) -> pd.DataFrame:
    """Accuracy vs ε for every attacked subset and method.

    Args:
        eps_grid: budgets ε ≥ 0; at ε = 0 the ball is one point, so the clean accuracy is used.
        subsets: e.g. ``[["image"], ["audio"], ["audio", "image"]]`` (or single names).
        options: passed to ``attack`` (steps, alpha, random_start, seed, batch_size).

    Returns:
        long table, one row per (method, subset, ε): ``method``, ``attacked`` (e.g.
        ``"audio+image"``), ``eps``, ``acc``, and ``hits``, the (N,) bool correctness (for a bootstrap).
    """
    clean = correct(model, inputs, labels)
    rows = []
    for method in methods:
        for subset in subsets:
            name = "+".join(sorted([subset] if isinstance(subset, str) else subset))
            for eps in eps_grid:
                _check(model, inputs, labels, eps, subset)  # ε = 0 must be valid input too
                eps = _budget(eps)  # a grid given as a tensor yields 0-d tensors
                hits = (robust_correct(model, inputs, labels, eps, subset, method, spaces, **options)
                        if eps > 0 else clean)
                rows.append({"method": method, "attacked": name, "eps": float(eps),
                             "acc": hits.float().mean().item(), "hits": hits})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ the defence: adversarial training
class WithInputs(nn.Module):
    """Wrap a model for ``fit`` so the loss sees the batch: forward returns ``{"logits", "inputs"}``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, Tensor]) -> dict:
        return {"logits": logits_of(self.model(inputs)), "inputs": inputs}


def adversarial_loss(model: nn.Module, eps: float, attacked, spaces=None, mix: float = 0.5,
                     seed: int = 0, **options):
    """A ``fit`` loss for ``WithInputs(model)``: (1 − mix)·CE(x) + mix·CE(attack(x)) (Goodfellow et
    al. 2015, eq. 6). The default attack is FGSM from a random start with step 1.25ε ("fast"
    adversarial training, Wong, Rice & Kolter 2020): ``method="pgd", steps=1, alpha=1.25``.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix={mix!r}: the adversarial share of the loss must lie in [0, 1]")
    options = {"method": "pgd", "steps": 1, "alpha": 1.25, **options}
    g = torch.Generator().manual_seed(seed)

    def loss_fn(out: dict, labels: Tensor) -> Tensor:
        adv = perturb(model, out["inputs"], labels, eps, attacked, spaces=spaces, generator=g, **options)
        model.train()  # perturb restored the mode; say it: the step below trains
        clean = F.cross_entropy(out["logits"].float(), labels)
        return (1 - mix) * clean + mix * F.cross_entropy(logits_of(model(adv)).float(), labels)
    return loss_fn


class _NotCached(Exception):
    pass


def train_defended(eps: float, train, val, spaces: dict, config=None, seed: int = 0, mix: float = 0.5,
                   cached_only: bool = False):
    """Adversarially train lesson 09's teacher architecture (``compress.TEACHER``), cached by fingerprint.

    Each batch's loss is (1 − mix)·CE(x) + mix·CE(x'), x' a one-step attack from a random start on
    both modalities with step 1.25ε ("fast" adversarial training, Wong et al. 2020; ``adversarial_loss``).
    A module-level function, so ``mmcourse.parallel.run_many`` can train several ε in parallel.

    Args:
        eps: ε_train in units of each modality's σ (``spaces``).
        train, val: ``(inputs, labels)``; the best epoch is chosen on ``val`` (clean accuracy).
        config: default ``zoo.RECIPE`` (the teacher's recipe).
        cached_only: return None instead of training when no checkpoint matches.

    Returns:
        the trained model in eval mode, or None (``cached_only`` and nothing cached).
    """
    from mmcourse.checkpoint import load_or_train
    from mmcourse.compress import TEACHER
    from mmcourse.fusion.zoo import RECIPE, build_av_model
    from mmcourse.runtime import QUICK
    from mmcourse.train import FitConfig, fit

    config = FitConfig(**{**(RECIPE if config is None else config).__dict__, "seed": seed})
    torch.manual_seed(seed)
    net = build_av_model(**TEACHER)
    keys = sorted(train[0])
    loss_fn = adversarial_loss(net, eps, keys, spaces, mix=mix)
    key = {"teacher": TEACHER, "config": {**config.__dict__, "device": None}, "train": train, "val": val,
           "init_seed": seed, "defence": {"eps": eps, "mix": mix, "attack": "fgsm-rs, step 1.25 eps"},
           "spaces": {k: vars(s) for k, s in sorted(spaces.items())}}

    def refuse(_m):
        raise _NotCached

    try:
        net = load_or_train(f"av-teacher-advtrain-eps{eps:g}-{'quick' if QUICK else 'full'}", net,
                            refuse if cached_only else (lambda m: fit(WithInputs(m), train, val, config, loss_fn=loss_fn)),
                            key=key, verbose=False)
    except _NotCached:
        return None
    return net.eval()
