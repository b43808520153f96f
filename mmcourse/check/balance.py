"""Exercise checkers for notebook 06 (loss weighting, modality imbalance, OGM-GE).

Reference solutions live in ``tests/test_balance.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@exercise(hint="L = F.cross_entropy(out['logits'], y) + sum over m of lambdas[m] * "
               "F.cross_entropy(out['aux'][m], y); a modality missing from lambdas has weight 0.",
          success="your loss equals L_fused + Σ λ_m L_m.")
def aux_loss(fn) -> None:
    """Check ``fn(out, y, lambdas) -> scalar`` with ``out = {"logits": (B, C), "aux": {m: (B, C)}}``."""
    g = _gen(60)
    out = {"logits": torch.randn(5, 4, generator=g, dtype=torch.float64),
           "aux": {m: torch.randn(5, 4, generator=g, dtype=torch.float64) for m in ("audio", "image")}}
    y = torch.tensor([0, 3, 1, 2, 3])
    ce = {m: F.cross_entropy(v, y) for m, v in out["aux"].items()}
    fused = F.cross_entropy(out["logits"], y)
    for lam in ({"audio": 0.5, "image": 2.0}, {"audio": 0.0, "image": 1.0}, {"image": 0.3}):
        want = fused + sum(v * ce[m] for m, v in lam.items())
        got = torch.as_tensor(attempt(fn, out, y.clone(), dict(lam)), dtype=torch.float64).reshape(())
        if torch.isclose(got, sum(v * ce[m] for m, v in lam.items())):
            raise Wrong("you left out the fused loss L_fused (its weight is 1).")
        expect_close(got, want, f"the loss for lambdas={lam}")


@exercise(hint="s_m = out[m].softmax(-1)[range(B), y].sum(); rho = s_dominant / s_other; the "
               "dominant modality (larger s) gets 1 - math.tanh(alpha * rho) when rho > 1, the other 1.0.",
          success="your coefficients match OGM (Peng et al. 2022).")
def ogm_coefficient(fn) -> None:
    """Check ``fn(contrib, y, alpha) -> {m: coefficient}`` for two modalities' (B, C) logits."""
    g = _gen(61)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    for strong, alpha in (("audio", 0.5), ("image", 0.1)):
        contrib = {m: torch.randn(6, 3, generator=g, dtype=torch.float64) for m in ("audio", "image")}
        contrib[strong] = contrib[strong] + 3 * F.one_hot(y, 3)  # this modality is clearly better
        s = {m: v.softmax(-1)[torch.arange(6), y].sum().item() for m, v in contrib.items()}
        weak = "image" if strong == "audio" else "audio"
        rho = s[strong] / s[weak]
        want = {strong: 1 - math.tanh(alpha * rho), weak: 1.0}
        got = attempt(fn, {m: v.clone() for m, v in contrib.items()}, y.clone(), alpha)
        if not isinstance(got, dict) or set(got) != set(want):
            raise Wrong(f"return a dict with one coefficient per modality, keys {sorted(want)}.")
        if abs(float(got[weak]) - 1.0) > 1e-6:
            raise Wrong(f"only the dominant modality ({strong!r} here) is slowed down; the other keeps 1.")
        for m in want:
            expect_close(torch.tensor(float(got[m])), torch.tensor(want[m]), f"coefficient of {m!r}")
