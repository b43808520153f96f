"""One rule for "better / not resolved" across the course: a paired t-test over seeds.

Two methods trained with the same seeds (same initial weights where the architecture allows, same
batch order, same data) give per-seed results a₁…aₙ and b₁…bₙ. The paired differences
dᵢ = aᵢ − bᵢ remove what the seeds share, and

    t = mean(d) / (sd(d) / √n),   n − 1 degrees of freedom  (Student 1908; the paired t-test)

says whether the mean difference is larger than the seeds' own variation. At level α (5 %) the
verdict is ``"a"`` or ``"b"`` when the two-sided p-value is below α, else ``"not resolved"``:
*with these seeds the data cannot tell*, never "no effect". Under the null (no difference) the
rule says "better" in α of experiments (``tests/test_stats.py`` checks it by simulation).

When several methods are ranked at once (lesson 05's 12 methods), every pair is tested and the
p-values are adjusted with Holm's step-down method (Holm 1979) over all k(k−1)/2 pairs, so the
chance of *any* false "better" stays at α for the whole table, not α per comparison. (Adjusting
only the k − 1 comparisons with the best is not enough: the best is picked after looking, which
gave 12 % false "below best" among 11 equal methods in a simulation.)

With fewer than 2 seeds nothing can be resolved. With differences that are all equal (sd 0) the
verdict follows the sign of the difference (every seed agrees exactly), or "not resolved" at 0.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _st

VERDICTS = ("a", "b", "not resolved")


def _pair(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired results need the same seeds in the same order: got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("results contain NaN/inf; a diverged run has no accuracy to compare: rerun or drop that seed")
    return a - b


def paired_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> dict:
    """The paired t-test of ``a`` vs ``b`` (per-seed results, same seeds, same order).

    Returns:
        ``{"n", "mean_diff", "low", "high", "p"}``: the mean of a − b, its (1 − α) confidence
        interval from the t distribution, and the two-sided p-value (NaN with n < 2).
    """
    d = _pair(a, b)
    n, mean = len(d), float(d.mean()) if len(d) else float("nan")
    if n < 2:
        return {"n": n, "mean_diff": mean, "low": float("nan"), "high": float("nan"), "p": float("nan")}
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # every seed moved by exactly the same amount
        p = 1.0 if mean == 0 else 0.0
        return {"n": n, "mean_diff": mean, "low": mean, "high": mean, "p": p}
    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * _st.t.sf(abs(t), n - 1))
    half = float(_st.t.ppf(1 - alpha / 2, n - 1) * se)
    return {"n": n, "mean_diff": mean, "low": mean - half, "high": mean + half, "p": p}


def paired_verdict(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> str:
    """``"a"`` (a better), ``"b"`` (b better) or ``"not resolved"``, by the paired t-test at ``alpha``.

    Args:
        a, b: per-seed results of two methods (higher is better), same seeds in the same order.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: use a level between 0 and 1, e.g. 0.05")
    r = paired_test(a, b, alpha)
    if not r["p"] < alpha:  # NaN (n < 2) is not below alpha either
        return "not resolved"
    return "a" if r["mean_diff"] > 0 else "b"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and counts as 1)."""
    p = np.asarray(p_values, dtype=float)
    filled = np.where(np.isnan(p), 1.0, p)
    order = np.argsort(filled)
    m, adjusted, running = len(p), np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * filled[i]))
        adjusted[i] = running
    return [float("nan") if math.isnan(q) else float(a) for q, a in zip(p, adjusted)]


def versus_best(results: dict[str, Sequence[float]], alpha: float = 0.05) -> dict[str, str]:
    """Each method against the one with the highest mean, Holm-adjusted over all pairs of methods.

    Args:
        results: ``{method: per-seed results}``, every list over the same seeds in the same order.

    Returns:
        ``{method: verdict}`` with ``"best"`` for the top mean, ``"below best"`` when the best is
        better at family-wise level ``alpha``, and ``"not resolved"`` when the seeds cannot tell it
        from the best.
    """
    if not results:
        raise ValueError("no methods to compare")
    means = {m: float(np.mean(v)) for m, v in results.items()}
    best = max(means, key=means.get)
    names = list(results)
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
    tests = [paired_test(results[x], results[y], alpha) for x, y in pairs]
    adjusted = dict(zip(pairs, holm([t["p"] for t in tests])))
    out = {best: "best"}
    for m in names:
        if m != best:
            p = adjusted.get((best, m), adjusted.get((m, best)))
            out[m] = "below best" if p < alpha and means[best] > means[m] else "not resolved"
    return out


def say(a_name: str, b_name: str, a: Sequence[float], b: Sequence[float], alpha: float = 0.05,
        scale: float = 100.0, unit: str = " points", runs: str = "seeds") -> str:
    """One sentence for a comparison: the verdict, the mean difference and its interval.

    E.g. "late better than concat by +1.2 points (95% CI +0.4 to +2.0, paired t over 5 seeds)" or
    "late vs concat: not resolved with 5 seeds (+0.3 points, 95% CI -0.5 to +1.1)".
    """
    r, v = paired_test(a, b, alpha), paired_verdict(a, b, alpha)
    level = f"{100 * (1 - alpha):.0f}%"
    ci = (f"{level} CI {scale * r['low']:+.1f} to {scale * r['high']:+.1f}" if r["n"] >= 2 else "one seed: no interval")
    diff = f"{scale * r['mean_diff']:+.1f}{unit}"
    if v == "not resolved":
        return f"{a_name} vs {b_name}: not resolved with {r['n']} {runs} ({diff}, {ci})"
    winner, loser = (a_name, b_name) if v == "a" else (b_name, a_name)
    if v == "b":  # state the difference and its interval as winner − loser
        shown = f"{-scale * r['mean_diff']:+.1f}{unit}"
        ci = f"{level} CI {-scale * r['high']:+.1f} to {-scale * r['low']:+.1f}"
    else:
        shown = diff
    return f"{winner} better than {loser} by {shown} ({ci}, paired t over {r['n']} {runs})"
