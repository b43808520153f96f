"""Exercise checkers for notebook 06 (loss weighting, modality imbalance, OGM-GE).

Reference solutions: ``solutions.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, matches, scalar


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@exercise(task='(out, y, lambdas) -> scalar: the auxiliary loss of section 7 for out = {"logits": '
               '(B, C), "aux": {m: (B, C)}}, without AuxLoss',
          hints=("The loss has one term for the fused head and one term per modality's head. "
                 "Which loss does each head get, and with what weight?",
                 "Every head gets a cross-entropy against the same labels y; the fused term has "
                 "weight 1, the term of modality m has weight lambdas[m].",
                 "Loop over the modalities in lambdas (a modality missing from lambdas has weight "
                 "0), accumulate the weighted cross-entropies, and add the fused one."),
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
        try:
            got = attempt(fn, out, y.clone(), dict(lam))
        except KeyError as e:
            raise Wrong(f"with lambdas={lam} your code raised KeyError: {e}. A modality missing "
                        "from lambdas has weight 0.") from e
        got = scalar(got, f"the loss for lambdas={lam}")
        mistakes = ((want - fused, "you left out the fused loss L_fused (its weight is 1)."),
                    (fused + sum(ce.values()), "you ignored the lambdas: each modality's loss is "
                                               "multiplied by its λ_m."),
                    (fused + (want - fused) / len(lam), "you averaged the auxiliary terms; the "
                                                        "formula sums them."))
        for value, message in mistakes:
            if not matches(want, value) and matches(got, value):
                raise Wrong(message)
        expect_close(got, want, f"the loss for lambdas={lam}")


@exercise(task="(contrib, y, alpha) -> {m: coefficient}: the OGM coefficients of section 4 for two "
               "modalities' (B, C) logits",
          hints=("First measure how well each modality alone does on the batch: section 4's "
                 "score s_m, from its softmax probability of the true class.",
                 "s_m sums, over the batch, the softmax probability that modality m gives to the "
                 "true label y. The ratio rho compares the larger score to the smaller one.",
                 "Only the modality with the larger score is slowed down, and only when rho > 1; "
                 "use section 4's tanh formula for it, and 1 for the other."),
          success="your coefficients match OGM (Peng et al. 2022).")
def ogm_coefficient(fn) -> None:
    """Check ``fn(contrib, y, alpha) -> {m: coefficient}`` for two modalities' (B, C) logits."""
    g = _gen(61)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    rows = torch.arange(6)
    for strong, alpha in (("audio", 0.5), ("image", 0.1)):
        contrib = {m: torch.randn(6, 3, generator=g, dtype=torch.float64) for m in ("audio", "image")}
        contrib[strong] = contrib[strong] + 3 * F.one_hot(y, 3)  # this modality is clearly better
        s = {m: v.softmax(-1)[rows, y].sum().item() for m, v in contrib.items()}
        weak = "image" if strong == "audio" else "audio"
        rho = s[strong] / s[weak]
        want = {strong: 1 - math.tanh(alpha * rho), weak: 1.0}
        got = attempt(fn, contrib, y, alpha)
        if not isinstance(got, dict) or set(got) != set(want):
            raise Wrong(f"return a dict with one coefficient per modality, keys {sorted(want)}.")
        got = {m: scalar(v, f"the coefficient of {m!r}") for m, v in sorted(got.items())}
        if abs(got[weak].item() - 1.0) > 1e-6:
            raise Wrong(f"only the dominant modality ({strong!r} here) is slowed down; the other keeps 1.")
        logit_rho = (contrib[strong][rows, y].sum() / contrib[weak][rows, y].sum()).item()
        mistakes = ((math.tanh(alpha * rho), "the coefficient must *shrink* as rho grows: one "
                                             "minus the tanh term."),
                    (1 - math.tanh(alpha / rho), "rho is the dominant modality's score over the "
                                                 "other's, so rho > 1."),
                    (1 - math.tanh(alpha * logit_rho), "s_m sums softmax *probabilities* of the "
                                                       "true class, not logits."))
        for value, message in mistakes:
            if matches(got[strong], value):
                raise Wrong(message)
        for m in want:
            expect_close(got[m], torch.tensor(want[m]), f"the coefficient of {m!r}")
