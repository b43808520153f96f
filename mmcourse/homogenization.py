"""Measuring homogenization: similar representations (CKA) and shared failures (outcome H).

Taught in ``notebooks/04_homogenization.ipynb``. Linear CKA lives in ``mmcourse.cka``, the
lesson's image deployers in ``mmcourse.deployers``; both are re-exported here.

- Linear CKA (Kornblith et al. 2019, eq. 5), 1 for identical representations and invariant to
  rotations and isotropic scaling: ``mmcourse.cka`` (its docstring derives it).

- Outcome homogenization (Bommasani et al. 2022, "Picking on the same person"): for k models
  judged on the same n examples, with ``errors[i, j]`` True when model i gets example j wrong,

      H = P(all k models wrong) / Πᵢ P(model i wrong).

  H = 1 when failures are independent; H > 1 means the models fail *together* (homogenized),
  the same people are failed by every system; H < 1 means they fail on different examples.
  ``bootstrap_interval`` resamples the n examples to give a percentile interval.

- H depends on the error rates pᵢ: at most H_max = minᵢ pᵢ / Πᵢ pᵢ (every failure of the best
  model shared by all), which grows as the models get more accurate. Two worlds with the same
  P(all wrong) but lower error rates have a larger H. ``normalised_homogenization`` rescales H
  to its own range, H̃ = (H − 1) / (H_max − 1) = (P(all) − Πpᵢ) / (min pᵢ − Πpᵢ): 0 for
  independent failures, 1 for the most overlap these rates allow, whatever the rates (a
  normalisation of the range, like κ/κ_max, not a model of how failures change with accuracy).
  ``bootstrap_difference`` compares two worlds judged on the same examples (a paired bootstrap).

- ``simulate_h`` is the lesson's what-makes-H-large simulation; it sizes the simulated test set so
  that enough examples fail all k models, and declines to report H when too few do.
"""

from __future__ import annotations

import numpy as np

from mmcourse.cka import _as_matrix, linear_cka, pairwise_cka  # re-exported
from mmcourse.deployers import (TARGET, _fit_steps, add_trigger, deployer_rows, image_deployer,  # re-exported
                                supervised_base)


def _as_errors(errors) -> np.ndarray:
    if hasattr(errors, "detach"):
        errors = errors.detach().cpu().numpy()
    if isinstance(errors, (list, tuple)):
        if len(errors) == 0:
            raise ValueError("errors is empty; pass a (k, n) boolean matrix, one row per model")
        sizes = [len(np.ravel(e)) for e in errors]
        if len(set(sizes)) != 1:
            raise ValueError(f"every model must be judged on the same n examples, got n per "
                             f"model = {sizes}")
        errors = np.stack([np.ravel(e) for e in errors])
    E = np.asarray(errors)
    if E.ndim != 2:
        raise ValueError(f"errors must be (k models, n examples), got shape {E.shape}")
    if E.size == 0:
        raise ValueError(f"errors is empty (shape {E.shape}); pass a (k, n) boolean matrix")
    if E.dtype != bool:
        if not np.isin(E, (0, 1)).all():
            raise ValueError("errors must be boolean (True = model got the example wrong); "
                             "pass (predictions != labels), not predictions")
        E = E.astype(bool)
    return E


def _rates(E: np.ndarray) -> tuple[np.ndarray, float]:
    rates = E.mean(1)  # (k,) each model's error rate
    if (rates == 0).any():
        bad = np.flatnonzero(rates == 0).tolist()
        raise ValueError(f"model(s) {bad} make no errors on these {E.shape[1]} examples, so H = "
                         "0/0 is undefined; use more (or harder) test examples")
    return rates, float(E.all(0).mean())


def outcome_homogenization(errors) -> float:
    """H = P(all k models wrong) / Πᵢ P(model i wrong); 1 = independent, > 1 = homogenized.

    Args:
        errors: (k, n) boolean, ``errors[i, j]`` True when model i gets example j wrong (a list
            of k length-n vectors works too).
    """
    rates, p_all = _rates(_as_errors(errors))
    return float(p_all / np.prod(rates))


def normalised_homogenization(errors) -> float:
    """H̃ = (P(all wrong) − Πᵢ pᵢ) / (minᵢ pᵢ − Πᵢ pᵢ) = (H − 1) / (H_max − 1).

    Where the joint failures sit between independence (0) and the most overlap the error rates
    allow (1: every failure of the most accurate model is made by all); negative when the models
    fail on different examples. Unlike H, its range does not depend on the error rates.

    Args:
        errors: (k, n) boolean as for ``outcome_homogenization``, k ≥ 2.
    """
    E = _as_errors(errors)
    if len(E) < 2:
        raise ValueError(f"normalised homogenization compares k ≥ 2 models, got k = {len(E)}")
    rates, p_all = _rates(E)
    span = rates.min() - np.prod(rates)
    if span <= 0:
        raise ValueError("every model but one is wrong on every example, so the independent and the "
                         "maximal overlap coincide and H̃ is undefined")
    return float((p_all - np.prod(rates)) / span)


def failure_summary(errors) -> dict[str, float]:
    """Every number needed to read H, each beside its independence baseline.

    Returns a dict: ``P(all wrong)`` and its value under independence ``Π p_i``; ``H``; its
    ceiling ``H_max = min p / Π p``; the share of the most accurate model's failures that all
    models make, ``P(all)/min p``, beside its value under independence (the product of the
    *other* models' rates) and their ratio, which is H again: that share is no freer of the
    error rates than H is; and ``H̃`` (``normalised_homogenization``).
    """
    E = _as_errors(errors)
    rates, p_all = _rates(E)
    prod, best = float(np.prod(rates)), float(rates.min())
    share, share_indep = p_all / best, prod / best
    return {"P(all wrong)": p_all, "Π p_i": prod, "H": p_all / prod, "H_max": best / prod,
            "P(all)/min p": share, "P(all)/min p if indep.": share_indep,
            "ratio to indep.": share / share_indep, "H̃": normalised_homogenization(E)}


def _statistic(rates: np.ndarray, p_all: np.ndarray, statistic: str):
    """Vectorised H, H̃ or P(all) from rates (..., k) and P(all wrong) (...).

    Returns:
        (values, defined): two arrays of shape (...).
    """
    prod = rates.prod(-1)
    ok = (rates > 0).all(-1)
    if statistic == "joint":
        return p_all, np.ones_like(ok)
    if statistic == "H":
        return p_all / np.where(ok, prod, 1.0), ok
    span = rates.min(-1) - prod
    ok &= span > 0
    return (p_all - prod) / np.where(ok, span, 1.0), ok


def _resample(E: np.ndarray, groups: list[slice], n_boot: int, seed: int):
    """Bootstrap the n examples (columns of E) ``n_boot`` times; score each group of rows.

    Only each column's failure pattern matters, so instead of materialising (k, n_boot, n) we
    draw how often each distinct pattern occurs: resampling n columns with replacement is a
    multinomial over the patterns with their observed frequencies (same distribution, far cheaper).

    Returns:
        for each group of rows: its rates (n_boot, k_group) and P(all of them wrong) (n_boot,).
    """
    k, n = E.shape
    if k <= 62:  # one integer code per column is much faster than np.unique(axis=0)
        codes, counts = np.unique((E.T.astype(np.int64) << np.arange(k)).sum(1), return_counts=True)
        patterns = (codes[:, None] >> np.arange(k)) & 1 == 1  # (m, k) distinct columns
    else:
        patterns, counts = np.unique(E.T, axis=0, return_counts=True)  # (m, k), (m,)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot)  # (n_boot, m)
    out = []
    for rows in groups:
        P = patterns[:, rows]  # (m, k_group)
        out.append((draws @ P.astype(np.float64) / n, draws @ P.all(1).astype(np.float64) / n))
    return out


def joint_failure_rate(errors) -> float:
    """P(all k models wrong): the share of examples every model gets wrong (H's numerator)."""
    return float(_as_errors(errors).all(0).mean())


# the statistics ``bootstrap_interval`` and ``bootstrap_difference`` can resample
STATISTICS = {"H": outcome_homogenization, "normalised": normalised_homogenization,
              "joint": joint_failure_rate}


def _check_boot(statistic: str, level: float):
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; use one of {list(STATISTICS)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")


def bootstrap_interval(errors, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                       statistic: str = "H") -> tuple[float, float, float]:
    """H (or H̃ with ``statistic="normalised"``, P(all wrong) with ``"joint"``) with a percentile
    bootstrap interval.

    Resamples the n examples with replacement ``n_boot`` times (the models stay fixed); a
    resample in which the statistic is undefined (some model makes no error) is dropped.

    Returns:
        (value on all examples, lower, upper) for a ``level`` interval, e.g. 95 %.
    """
    E = _as_errors(errors)
    _check_boot(statistic, level)
    value = STATISTICS[statistic](E)
    [(rates, p_all)] = _resample(E, [slice(None)], n_boot, seed)
    hs, ok = _statistic(rates, p_all, statistic)
    if not ok.any():
        raise ValueError("in every bootstrap resample some model made no error; use more test examples")
    lo, hi = np.quantile(hs[ok], [(1 - level) / 2, (1 + level) / 2])
    return value, float(lo), float(hi)


def bootstrap_difference(errors_a, errors_b, statistic: str = "H", n_boot: int = 1000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Statistic(a) − statistic(b) for two groups of models judged on the *same* n examples.

    A paired bootstrap: each resample draws one set of examples and scores both groups on it,
    so the interval accounts for the hard examples the two groups share.

    Returns:
        (difference on all examples, lower, upper); an interval that contains 0 means this test
        set cannot tell the two groups apart.
    """
    A, B = _as_errors(errors_a), _as_errors(errors_b)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"a paired comparison needs the same examples: a has n = {A.shape[1]}, "
                         f"b has n = {B.shape[1]}")
    _check_boot(statistic, level)
    value = STATISTICS[statistic](A) - STATISTICS[statistic](B)
    ka = len(A)
    (ra, pa), (rb, pb) = _resample(np.concatenate([A, B]), [slice(0, ka), slice(ka, None)], n_boot, seed)
    sa, oka = _statistic(ra, pa, statistic)
    sb, okb = _statistic(rb, pb, statistic)
    ok = oka & okb
    if not ok.any():
        raise ValueError("the statistic is undefined in every bootstrap resample; use more test examples")
    lo, hi = np.quantile((sa - sb)[ok], [(1 - level) / 2, (1 + level) / 2])
    return float(value), float(lo), float(hi)


# ------------------------------------------------------------ the what-makes-H-large simulation
def _check_sim(k: int, p: float, s: float):
    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer ≥ 2 models, got {k}")
    if not 0 < p < 1:
        raise ValueError(f"error rate p must be in (0, 1), got {p}")
    if not 0 <= s <= 1:
        raise ValueError(f"shared fraction s must be in [0, 1], got {s}")


def simulate_errors(k: int, p: float, s: float, n: int = 2000, seed: int = 0) -> np.ndarray:
    """(k, n) errors of k models, each wrong on round(p·n) examples; a fraction s of each model's
    errors falls on one common "hard" set of round(p·n) examples, the rest anywhere else at random.
    """
    _check_sim(k, p, s)
    rng = np.random.default_rng(seed)
    n_err = int(round(p * n))
    n_shared = int(round(s * n_err))
    hard = rng.choice(n, n_err, replace=False)  # the common hard set
    E = np.zeros((k, n), dtype=bool)
    for i in range(k):
        E[i, rng.choice(hard, n_shared, replace=False)] = True
        rest = np.flatnonzero(~E[i])
        E[i, rng.choice(rest, n_err - n_shared, replace=False)] = True
    return E


def expected_joint_failure_rate(k: int, p: float, s: float) -> float:
    """Expected P(all k wrong) in ``simulate_errors`` (large n): a hard example is wrong for one
    model with probability s + (1 − s)·q, any other with q = (1 − s)p / (1 − sp), independently
    across models, so P(all) = p·(s + (1 − s)q)^k + (1 − p)·q^k (s = 0 gives p^k)."""
    _check_sim(k, p, s)
    q = (1 - s) * p / (1 - s * p)
    return p * (s + (1 - s) * q) ** k + (1 - p) * q ** k


def simulate_h(k: int, p: float, s: float, target_joint: int = 50, min_joint: int = 10,
               n_min: int = 2000, n_max: int = 400_000, n_boot: int = 300, seed: int = 0) -> dict:
    """Simulate, size and read H, refusing to report it from too few joint failures.

    H's numerator counts the examples all k models get wrong. With rare errors and many models
    that count is 0, 1 or 2 on a small test set, and H jumps between 0 and huge values. So the
    simulated set holds enough examples to expect ``target_joint`` joint failures (between
    ``n_min`` and ``n_max``), and when fewer than ``min_joint`` occur H is not reported at all.

    Returns:
        a dict with ``n``, ``joint`` (examples all k get wrong), ``expected_joint``, ``H``, ``lo``,
        ``hi`` (None when not reported), ``ceiling`` (1/p^(k−1)) and a one-line ``text``.
    """
    rate = expected_joint_failure_rate(k, p, s)
    n = int(min(max(np.ceil(target_joint / rate), n_min), n_max))
    E = simulate_errors(k, p, s, n=n, seed=seed)
    joint = int(E.all(0).sum())
    out = {"n": n, "joint": joint, "expected_joint": rate * n, "ceiling": 1 / p ** (k - 1),
           "H": None, "lo": None, "hi": None}
    ceiling = f"{out['ceiling']:,.0f}" if out["ceiling"] >= 100 else f"{out['ceiling']:.2f}"
    head = (f"{joint:,} of {n:,} simulated examples fail all {k} models "
            f"(independence predicts {n * p ** k:.1f})")
    if joint < min_joint:
        out["text"] = (f"{head}: too few joint failures to estimate H (fewer than {min_joint}), so "
                       f"it is not shown; raise p or s, or lower k. Its ceiling here would be "
                       f"1/p^(k-1) = {ceiling}.")
        return out
    H, lo, hi = bootstrap_interval(E, n_boot=n_boot, seed=seed)
    out.update(H=H, lo=lo, hi=hi)
    out["text"] = f"H = {H:,.2f} (95% {lo:,.2f}–{hi:,.2f}); {head}; ceiling 1/p^(k-1) = {ceiling}."
    return out
