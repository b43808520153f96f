"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (lesson 06).

Peng et al., CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation":
when one modality dominates (score ratio ρ > 1), its encoder's gradients are scaled by
k = 1 − tanh(α·ρ) (``ogm_coefficients``) and, for GE, Gaussian noise is added. Scaling a gradient
only changes the step of an optimizer whose update follows the gradient's scale (SGD with
momentum, as in the paper); Adam/AdamW divide the scale out, so ``OGMGE`` warns there.
``UpdateSize`` measures the per-step update norms that show it. Used through
``mmcourse.balance.run_balanced``; taught in notebooks/06_loss_weighting.ipynb.
Shapes: B batch, C classes, D features.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

def ogm_coefficients(contrib: dict[str, Tensor], labels: Tensor, alpha: float) -> tuple[dict, dict]:
    """OGM coefficients k_m for one batch (Peng et al. 2022, eqs. 6 and 9-10).

    s_m = Σ_i softmax(contrib_m)_i[y_i]; ρ_m = s_m / mean of the other modalities' s (for two
    modalities: s_dominant / s_other); k_m = 1 − tanh(α ρ_m) if ρ_m > 1 else 1.

    Args:
        contrib: {m: (B, C)} each modality's share of the fused logits.
        labels: (B,) int64.
    Returns:
        (coefficients {m: float}, scores {m: float}).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if len(contrib) < 2:
        raise ValueError(f"OGM-GE needs at least two modalities, got {sorted(contrib)}")
    scores = {k: v.detach().softmax(-1).gather(1, labels[:, None]).sum().item()  # (B, 1) → scalar
              for k, v in sorted(contrib.items())}
    coeffs = {}
    for k, s in scores.items():
        others = [v for j, v in scores.items() if j != k]
        rho = s / max(sum(others) / len(others), 1e-12)
        coeffs[k] = 1.0 - math.tanh(alpha * rho) if rho > 1 else 1.0
    return coeffs, scores


def modulated_parameters(encoder: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight tensors OGM-GE scales and noises: every parameter with ``ndim >= 2``.

    The reference code touches the encoders' 4-D conv weights only (its ResNet-18 encoders are
    conv + batch norm), skipping biases and norm scales. Our encoders also end in a linear layer and
    the audio one uses 1-D convs, so the analogue is every conv/linear weight (ndim >= 2).
    """
    return [(n, p) for n, p in encoder.named_parameters() if p.ndim >= 2]


def scale_invariant(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers whose step is (nearly) invariant to a constant gradient scale (Adam family)."""
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam,
                                  torch.optim.Adamax, torch.optim.Adagrad, torch.optim.RMSprop))


ADAM_WARNING = ("OGM/OGM-GE under {name}: the update of {name} is (nearly) invariant to the scale of the "
                "gradient (m / sqrt(v) cancels a constant factor k), so OGM's coefficient barely "
                "changes the dominant encoder's step. The paper and its code use SGD with momentum "
                "0.9: pass optimizer='sgd'.")


class OGMGE:
    """On-the-fly gradient modulation (+ generalisation enhancement) as a ``fit`` hook.

    Use: ``ogm = OGMGE(alpha=0.5); fit(model, ..., loss_fn=ogm.wrap(loss), callbacks=[ogm],
    config=FitConfig(optimizer="sgd"))``. ``wrap`` remembers each batch's per-modality
    contributions and labels; ``on_after_backward`` (between ``backward`` and the optimizer step)
    then changes the gradient g of every modulated weight (``modulated_parameters``) of encoder m:

    - OGM: g ← k_m g, with k_m from ``ogm_coefficients`` (k < 1 only for the dominant modality);
    - OGM-GE: g ← k_m g + ε, ε ~ N(0, std(g)²) elementwise, std of the *unscaled* g, added to
      **every** encoder's weights (k = 1 included), as in the reference code.

    As the reference code (GeWu-Lab/OGM-GE_CVPR2022, ``main.py``): weights only (no biases or
    norms), noise on all encoders, noise std taken before scaling, modulation only inside an
    epoch window. Deviations: (1) weights = conv *and* linear weights (``modulated_parameters``);
    (2) the window [start, end) is half-open, the reference's ``modulation_starts <= epoch <=
    modulation_ends`` inclusive (default epochs 0-50 of 100); our default ``end=None`` modulates
    every epoch: pass ``epochs=(0, n_epochs // 2)`` for the paper's schedule.

    **Use SGD.** The paper and its code train with SGD, momentum 0.9 (plus weight decay 1e-4 and
    a step learning-rate decay, which ``run_balanced`` does not use). Adam/AdamW divide each step
    by a running RMS of the gradient, so a factor k on the gradient cancels out: the hook warns
    (``UserWarning``) the first time it runs under such an optimizer.

    Args:
        alpha: modulation strength α (the paper uses 0.1–0.8, depending on the data set).
        ge: add the Gaussian noise (OGM-GE) or not (plain OGM).
        epochs: modulate only in epochs [start, end); ``end=None``: to the end of training.
    Records per step in ``self.log`` and ``state.extra["ogm"]``: step, epoch, active (modulation
    on?), coeff/score per modality (coeff as computed, also outside the window).
    """

    def __init__(self, alpha: float = 0.5, ge: bool = True, epochs: tuple[int, int | None] = (0, None)):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        start, end = epochs
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"epochs must be (start, end) with 0 <= start <= end (or end=None), got {epochs}")
        self.alpha, self.ge, self.epochs = alpha, ge, (start, end)
        self.log = {"step": [], "epoch": [], "active": [], "coeff": {}, "score": {}}
        self._last, self._warned = None, False

    def wrap(self, loss_fn):
        """A loss_fn that first records the batch's contributions and labels for the hook."""
        def recorded(out, y):
            if not isinstance(out, dict) or "contrib" not in out:
                raise KeyError("OGM-GE needs the model output's 'contrib' {m: (B, C)}; use AuxHeadClassifier "
                               "with ConcatFusion(hidden=None) or LateFusion")
            self._last = ({k: v.detach() for k, v in out["contrib"].items()}, y.detach())
            return loss_fn(out, y)
        return recorded

    def active(self, epoch: int) -> bool:
        """Is epoch ``epoch`` inside the modulation window [start, end)?"""
        start, end = self.epochs
        return epoch >= start and (end is None or epoch < end)

    def on_after_backward(self, state) -> None:
        if self._last is None:
            raise RuntimeError("OGMGE saw no batch: pass loss_fn=ogm.wrap(your_loss) to fit")
        if not self._warned and scale_invariant(state.optimizer):
            warnings.warn(ADAM_WARNING.format(name=type(state.optimizer).__name__), UserWarning, stacklevel=2)
            self._warned = True
        coeffs, scores = ogm_coefficients(*self._last, alpha=self.alpha)
        active = self.active(state.epoch)
        if active:
            for k, c in coeffs.items():
                for _, p in modulated_parameters(state.model.encoders[k]):
                    if p.grad is None:
                        continue
                    std = p.grad.std().item()  # of the unscaled gradient, as in the reference
                    p.grad.mul_(c)  # k_m g (a no-op for the non-dominant modality, k = 1)
                    if self.ge:  # GE: + N(0, std(g)²) on every encoder's weights
                        p.grad.add_(torch.randn_like(p.grad) * (std + 1e-8))
        for log in (self.log, state.extra.setdefault("ogm", {"step": [], "epoch": [], "active": [],
                                                             "coeff": {}, "score": {}})):
            log["step"].append(state.step)
            log["epoch"].append(state.epoch)
            log["active"].append(active)
            for k in coeffs:
                log["coeff"].setdefault(k, []).append(coeffs[k])
                log["score"].setdefault(k, []).append(scores[k])

    def __repr__(self) -> str:
        return f"OGMGE(alpha={self.alpha}, ge={self.ge}, epochs={self.epochs})"


class UpdateSize:
    """A ``fit`` hook that measures each encoder's step ‖Δθ‖ = ‖θ_after − θ_before‖ per optimizer step.

    θ is the encoder's modulated weights (``modulated_parameters``), the tensors OGM scales, so
    the ratio of mean step sizes with and without OGM shows whether the modulation reaches the
    weights at all. ``log`` = {"epoch": [...], m: [‖Δθ_m‖ per step]}.
    """

    def __init__(self):
        self.log, self._before = {"epoch": []}, None

    @classmethod
    def from_log(cls, log: dict) -> "UpdateSize":
        """An ``UpdateSize`` holding a recorded ``log`` (e.g. kept with a cached checkpoint)."""
        us = cls()
        us.log = {k: list(v) for k, v in log.items()}
        return us

    def _flat(self, model) -> dict[str, Tensor]:
        return {k: torch.cat([p.detach().flatten() for _, p in modulated_parameters(enc)]).clone()
                for k, enc in sorted(model.encoders.items())}  # {m: (P_m,)}

    def on_after_backward(self, state) -> None:  # parameters are still those before the step
        self._before = self._flat(state.model)

    def on_batch_end(self, state) -> None:
        after = self._flat(state.model)
        self.log["epoch"].append(state.epoch)
        for k, v in after.items():
            self.log.setdefault(k, []).append((v - self._before[k]).norm().item())

    def mean(self, modality: str, epochs=None) -> float:
        """Mean ‖Δθ‖ of one encoder over all steps, or over the steps of epochs in ``epochs``."""
        vals = [v for e, v in zip(self.log["epoch"], self.log[modality]) if epochs is None or e in epochs]
        return sum(vals) / max(len(vals), 1)
