"""Tests of mmcourse.stats: the paired t-test by hand, its false-positive rate and power by simulation."""

import numpy as np
import pytest
from scipy import stats as st

from mmcourse.stats import holm, paired_test, paired_verdict, say, versus_best


def test_paired_test_by_hand():
    a, b = [0.90, 0.88, 0.91, 0.87, 0.89], [0.86, 0.87, 0.88, 0.85, 0.88]
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    r = paired_test(a, b)
    assert r["mean_diff"] == pytest.approx(d.mean())
    assert r["p"] == pytest.approx(2 * st.t.sf(abs(t), 4))
    assert r["p"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (r["low"], r["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired_verdict(a, b) == "a" and paired_verdict(b, a) == "b"


def test_edge_cases():
    assert paired_verdict([0.9], [0.1]) == "not resolved"  # one seed resolves nothing
    assert paired_verdict([0.5, 0.6], [0.4, 0.5]) == "a"  # every seed agrees exactly (sd 0)
    assert paired_verdict([0.5, 0.6], [0.5, 0.6]) == "not resolved"
    with pytest.raises(ValueError, match="same seeds"):
        paired_verdict([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        paired_verdict([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="alpha"):
        paired_verdict([0.1, 0.2], [0.1, 0.3], alpha=5)


@pytest.mark.parametrize("n", [3, 5])
def test_false_positive_rate_under_the_null_is_alpha(n):
    rng = np.random.default_rng(0)
    trials = 4000
    seed_effect = rng.normal(0, 0.02, (trials, n))  # shared by both methods (same seeds)
    a = 0.8 + seed_effect + rng.normal(0, 0.01, (trials, n))
    b = 0.8 + seed_effect + rng.normal(0, 0.01, (trials, n))
    rate = np.mean([paired_verdict(x, y) != "not resolved" for x, y in zip(a, b)])
    assert abs(rate - 0.05) < 0.012  # binomial sd at 4000 trials: 0.0034


def test_power_on_a_known_effect():
    rng = np.random.default_rng(1)
    trials, n = 2000, 5
    a = 0.8 + 0.02 + rng.normal(0, 0.01, (trials, n))  # a better by 2 sd of the paired noise / sqrt(2)
    b = 0.8 + rng.normal(0, 0.01, (trials, n))
    verdicts = [paired_verdict(x, y) for x, y in zip(a, b)]
    d_over_sd = 0.02 / (0.01 * np.sqrt(2))
    power = 1 - st.nct.cdf(st.t.ppf(0.975, n - 1), n - 1, d_over_sd * np.sqrt(n))  # theory, upper tail
    assert abs(np.mean([v == "a" for v in verdicts]) - power) < 0.04
    assert np.mean([v == "b" for v in verdicts]) < 0.01


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, float("nan")])[0] == pytest.approx(1.0)


def test_versus_best_controls_the_family_wise_rate():
    rng = np.random.default_rng(2)
    trials, k, n = 600, 11, 5
    any_false = 0
    for _ in range(trials):
        shared = rng.normal(0, 0.02, n)
        res = {f"m{i}": 0.8 + shared + rng.normal(0, 0.01, n) for i in range(k)}  # 11 equal methods
        any_false += any(v == "below best" for v in versus_best(res).values())
    assert any_false / trials <= 0.05 + 0.02  # family-wise: any false "below best" among 11 equal methods


def test_say_names_the_verdict():
    assert say("late", "concat", [0.9, 0.91, 0.92], [0.85, 0.86, 0.88]).startswith("late better than concat by +4.7 points")
    assert "not resolved with 3 seeds" in say("a", "b", [0.9, 0.8, 0.85], [0.85, 0.86, 0.84])
    # b wins: the difference and its interval are both stated as winner − loser (positive)
    r = paired_test([0.85, 0.86, 0.88], [0.9, 0.91, 0.92])
    want = f"late better than concat by +4.7 points (95% CI {-100 * r['high']:+.1f} to {-100 * r['low']:+.1f}"
    assert say("concat", "late", [0.85, 0.86, 0.88], [0.9, 0.91, 0.92]).startswith(want) and "CI +" in want
