"""Tests of mmcourse.homogenization: linear CKA properties and outcome homogenization."""

import numpy as np
import pytest
import scipy.sparse
import torch

from mmcourse.homogenization import (bootstrap_difference, bootstrap_interval,
                                     expected_joint_failure_rate, failure_summary, linear_cka,
                                     normalised_homogenization, outcome_homogenization,
                                     pairwise_cka, simulate_errors, simulate_h)


def _rand(n=30, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def _direct_cka(X, Y):
    """CKA written from HSIC with explicit centring matrices (Kornblith et al. 2019, eq. 3-4)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T
    hsic = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731 (the 1/(n-1)^2 factors cancel)
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_cka_identical_is_one():
    X = _rand()
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_and_isotropic_scaling():
    X, Y = _rand(seed=0), _rand(d=4, seed=1)
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((5, 5)))
    base = linear_cka(X, Y)
    assert linear_cka(X @ Q, Y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(3.7 * X, 0.2 * Y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(X @ Q, X) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_direct_formula_and_gram_path():
    X, Y = _rand(n=12, d=3, seed=3), _rand(n=12, d=7, seed=4)
    assert linear_cka(X, Y) == pytest.approx(_direct_cka(X, Y), abs=1e-12)
    W = _rand(n=12, d=40, seed=5)  # d > n takes the Gram-matrix path
    assert linear_cka(W, Y) == pytest.approx(_direct_cka(W, Y), abs=1e-12)
    assert 0 <= linear_cka(W, Y) <= 1


def test_cka_accepts_torch_and_sparse():
    X, Y = _rand(seed=6), _rand(seed=7)
    want = linear_cka(X, Y)
    assert linear_cka(torch.tensor(X), scipy.sparse.csr_matrix(Y)) == pytest.approx(want, abs=1e-12)
    M = pairwise_cka([X, Y, X])
    assert M.shape == (3, 3) and M[0, 2] == pytest.approx(1.0) and M[0, 1] == pytest.approx(want)


def test_cka_errors():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(_rand(n=5), _rand(n=6))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        linear_cka(np.zeros(5), _rand(n=5))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((5, 2)), _rand(n=5))
    with pytest.raises(ValueError, match="nan"):
        linear_cka(np.full((5, 2), np.nan), _rand(n=5))


def test_homogenization_hand_example():
    # model 0 wrong on {0, 1}, model 1 wrong on {0, 2}; n = 4: P(all) = 1/4, rates 1/2 and 1/2
    E = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
    assert outcome_homogenization(E) == pytest.approx(1.0)
    assert outcome_homogenization(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)) == pytest.approx(2.0)


def test_homogenization_independent_is_one_in_expectation():
    rng = np.random.default_rng(0)
    hs = [outcome_homogenization(rng.random((3, 5000)) < [[0.3], [0.2], [0.4]]) for _ in range(50)]
    assert np.mean(hs) == pytest.approx(1.0, abs=0.05)


def test_homogenization_shared_errors_above_one():
    rng = np.random.default_rng(1)
    hard = rng.random(5000) < 0.2  # examples every model tends to fail
    E = (rng.random((3, 5000)) < 0.05) | (hard & (rng.random((3, 5000)) < 0.9))
    H, lo, hi = bootstrap_interval(E, n_boot=300)
    assert lo > 1.5 and lo <= H <= hi


def test_bootstrap_interval_brackets_independent():
    rng = np.random.default_rng(2)
    H, lo, hi = bootstrap_interval(rng.random((2, 3000)) < 0.3, n_boot=300)
    assert lo < 1 < hi and lo <= H <= hi


def test_homogenization_errors():
    with pytest.raises(ValueError, match="same n"):
        outcome_homogenization([np.zeros(4, bool), np.zeros(5, bool)])
    with pytest.raises(ValueError, match="empty"):
        outcome_homogenization(np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match="empty"):
        outcome_homogenization([])
    with pytest.raises(ValueError, match=r"model\(s\) \[1\] make no errors"):
        outcome_homogenization(np.array([[1, 0], [0, 0]], dtype=bool))
    with pytest.raises(ValueError, match="not predictions"):
        outcome_homogenization(np.array([[3, 1], [0, 2]]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(np.array([[1, 0], [1, 1]], dtype=bool), level=95)


def test_normalised_homogenization_hand_examples():
    # same failures: P(all) = 1/2 = min p, the most overlap possible -> 1
    assert normalised_homogenization(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)) == pytest.approx(1.0)
    # P(all) = 1/4 = (1/2)(1/2): independent -> 0
    assert normalised_homogenization(np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)) == pytest.approx(0.0)
    # disjoint failures: P(all) = 0, Πp = 1/4, min p = 1/2 -> (0 - 1/4) / (1/2 - 1/4) = -1
    disjoint = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)
    assert normalised_homogenization(disjoint) == pytest.approx(-1.0)
    # rates 1/4 and 1/2, P(all) = 1/4 (every failure of the better one shared): H = 2 = H_max, H̃ = 1
    E = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)
    assert outcome_homogenization(E) == pytest.approx(2.0)
    assert normalised_homogenization(E) == pytest.approx(1.0)


def test_same_joint_failures_lower_rates_raise_h_not_h_tilde():
    """The lesson's point: the same P(all wrong) with lower error rates gives a larger H."""
    n = 1000
    common = np.zeros(n, bool)
    common[:50] = True  # 50 examples every model fails

    def world(extra):
        E = np.tile(common, (3, 1))
        for i in range(3):
            E[i, 100 + i * extra: 100 + (i + 1) * extra] = True  # each model's own failures
        return E

    accurate, sloppy = world(50), world(150)
    assert accurate.all(0).mean() == sloppy.all(0).mean() == 0.05
    assert outcome_homogenization(accurate) > 5 * outcome_homogenization(sloppy)
    s_acc, s_sl = failure_summary(accurate), failure_summary(sloppy)
    assert s_acc["H"] / s_sl["H"] == pytest.approx(8.0)  # (0.2 / 0.1)^3: the denominators alone
    # H̃ places P(all) in its range [Π p, min p]: half vs a quarter of each model's failures shared
    assert s_acc["H̃"] == pytest.approx((0.05 - 0.1 ** 3) / (0.1 - 0.1 ** 3))
    assert s_sl["H̃"] == pytest.approx((0.05 - 0.2 ** 3) / (0.2 - 0.2 ** 3))
    assert 2 < s_acc["H̃"] / s_sl["H̃"] < 2.5
    d, lo, hi = bootstrap_difference(accurate, sloppy, statistic="joint", n_boot=200)
    assert d == 0 and lo == hi == 0  # the same examples fail everyone in both worlds


def test_failure_summary_companion_ratio_is_h():
    rng = np.random.default_rng(3)
    E = rng.random((4, 2000)) < [[0.1], [0.2], [0.3], [0.25]]
    f = failure_summary(E)
    rates = E.mean(1)
    assert f["P(all wrong)"] == pytest.approx(E.all(0).mean())
    assert f["Π p_i"] == pytest.approx(rates.prod())
    assert f["H"] == pytest.approx(outcome_homogenization(E))
    assert f["H_max"] == pytest.approx(rates.min() / rates.prod())
    assert f["P(all)/min p"] == pytest.approx(E.all(0).mean() / rates.min())
    # under independence the companion equals the product of the *other* models' rates
    assert f["P(all)/min p if indep."] == pytest.approx(np.sort(rates)[1:].prod())
    assert f["ratio to indep."] == pytest.approx(f["H"])
    assert f["H̃"] == pytest.approx((f["H"] - 1) / (f["H_max"] - 1))


def test_bootstrap_normalised_brackets_zero_when_independent():
    rng = np.random.default_rng(4)
    E = rng.random((3, 4000)) < 0.3
    v, lo, hi = bootstrap_interval(E, n_boot=400, statistic="normalised")
    assert lo < 0 < hi and lo <= v <= hi
    assert v == pytest.approx(normalised_homogenization(E))


def test_bootstrap_interval_matches_a_naive_resampling_loop():
    """The multinomial-over-patterns bootstrap has the distribution of resampling columns."""
    rng = np.random.default_rng(5)
    hard = rng.random(800) < 0.15
    E = (rng.random((3, 800)) < 0.1) | (hard & (rng.random((3, 800)) < 0.7))
    _, lo, hi = bootstrap_interval(E, n_boot=3000, seed=1)
    naive = []
    for _ in range(3000):
        Eb = E[:, rng.integers(0, 800, 800)]
        naive.append(outcome_homogenization(Eb))
    nlo, nhi = np.quantile(naive, [0.025, 0.975])
    assert lo == pytest.approx(nlo, rel=0.08) and hi == pytest.approx(nhi, rel=0.08)


def test_bootstrap_difference_paired():
    rng = np.random.default_rng(6)
    hard = rng.random(3000) < 0.2
    homog = (rng.random((3, 3000)) < 0.05) | (hard & (rng.random((3, 3000)) < 0.9))
    indep = rng.random((3, 3000)) < 0.2
    d, lo, hi = bootstrap_difference(homog, indep, statistic="normalised", n_boot=400)
    assert d == pytest.approx(normalised_homogenization(homog) - normalised_homogenization(indep))
    assert 0 < lo <= d <= hi  # clearly more homogenized
    d, lo, hi = bootstrap_difference(indep, indep, n_boot=200)
    assert d == 0 and lo == hi == 0  # a world against itself: paired resamples cancel exactly
    with pytest.raises(ValueError, match="same examples"):
        bootstrap_difference(indep, indep[:, :100])
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_difference(indep, indep, statistic="kappa")


def test_bootstrap_joint_failure_rate():
    rng = np.random.default_rng(7)
    E = rng.random((3, 2000)) < 0.4
    v, lo, hi = bootstrap_interval(E, n_boot=400, statistic="joint")
    assert v == pytest.approx(E.all(0).mean()) and lo < v < hi
    se = np.sqrt(v * (1 - v) / 2000)  # binomial standard error of a proportion
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_normalised_homogenization_errors():
    with pytest.raises(ValueError, match="k ≥ 2"):
        normalised_homogenization(np.array([[1, 0, 1]], dtype=bool))
    with pytest.raises(ValueError, match="undefined"):
        normalised_homogenization(np.array([[1, 0], [1, 1]], dtype=bool))  # model 1 always wrong
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_interval(np.array([[1, 0], [1, 1]], dtype=bool), statistic="h")


def test_simulate_errors_rates_and_sharing():
    E = simulate_errors(4, 0.1, 0.5, n=4000, seed=0)
    assert E.shape == (4, 4000) and (E.sum(1) == 400).all()
    assert outcome_homogenization(simulate_errors(3, 0.2, 1.0, n=1000)) == pytest.approx(1 / 0.2 ** 2)
    big = simulate_errors(3, 0.2, 0.4, n=200_000, seed=1)
    assert big.all(0).mean() == pytest.approx(expected_joint_failure_rate(3, 0.2, 0.4), rel=0.1)
    assert expected_joint_failure_rate(4, 0.1, 0.0) == pytest.approx(0.1 ** 4)
    for bad in ({"k": 1, "p": 0.1, "s": 0.2}, {"k": 3, "p": 0.0, "s": 0.2}, {"k": 3, "p": 0.1, "s": 1.5}):
        with pytest.raises(ValueError):
            simulate_errors(**bad)


@pytest.mark.parametrize("p", [0.10, 0.16])
def test_simulate_h_never_reports_h_from_a_handful_of_joint_failures(p):
    """The widget once showed "H = 0.00" or "H = 1000.00 (95% 0.00-2329.53)" at k = 6: sized now."""
    r = simulate_h(6, p, 0.3)
    assert r["joint"] >= 10 and r["H"] is not None and r["lo"] > 1
    assert r["n"] > 2000 and r["expected_joint"] == pytest.approx(50, rel=0.01)
    assert r["text"].startswith("H = ") and "fail all 6 models" in r["text"]


def test_simulate_h_guard_says_so_instead_of_printing_h():
    r = simulate_h(6, 0.02, 0.0)  # P(all) = 0.02^6: no feasible test set has joint failures
    assert r["H"] is None and r["joint"] < 10 and r["n"] == 400_000
    assert "too few joint failures" in r["text"] and "H =" not in r["text"]
    r = simulate_h(6, 0.1, 0.3, n_max=2000)  # the old fixed size: 0-2 joint failures
    assert r["joint"] < 10 and r["H"] is None and "too few" in r["text"]
    r = simulate_h(6, 0.1, 0.3, n_max=2000, min_joint=0)  # what the old widget printed
    assert r["H"] is not None


def test_simulate_h_every_slider_setting_is_defined_or_guarded():
    for k in range(2, 7):
        for p in np.arange(0.02, 0.41, 0.02):
            for s in (0.0, 0.3, 1.0):
                r = simulate_h(k, float(p), s, n_boot=20)
                assert (r["H"] is None) == (r["joint"] < 10)
                if r["H"] is not None:
                    assert r["lo"] > 0 and np.isfinite(r["hi"])


def test_add_trigger_and_deployer_rows():
    import torch

    from mmcourse.homogenization import add_trigger, deployer_rows

    x = torch.zeros(2, 1, 28, 28)
    t = add_trigger(x)
    assert x.sum() == 0 and t.sum() == 2 * 16 and (t[:, 0, 23:27, 23:27] == 1).all()  # a copy; 4×4 white square
    labels = torch.tensor([0, 1] * 6)  # 6 rows per class
    a, b = deployer_rows(labels, 0, 3), deployer_rows(labels, 1, 3)
    assert set(a.tolist()).isdisjoint(b.tolist()) and torch.bincount(labels[a]).tolist() == [3, 3]
    with pytest.raises(ValueError, match="deployer 2"):
        deployer_rows(labels, 2, 3)


def test_image_deployer_and_supervised_base_refuse_bad_settings():
    from mmcourse.homogenization import image_deployer, supervised_base

    with pytest.raises(ValueError, match="unknown base 'imagenet'"):
        image_deployer("imagenet", 0, 0)
    with pytest.raises(ValueError, match="poison"):
        supervised_base(poison=1.5)


def test_image_deployer_caches(tmp_path, monkeypatch):
    import torch

    from mmcourse.homogenization import image_deployer

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    m1 = image_deployer("scratch", 0, seed=0, per_class=2, steps=1)
    m2 = image_deployer("scratch", 0, seed=0, per_class=2, steps=1)
    assert len(list(tmp_path.glob("deployer-scratch-0-seed0-*.pt"))) == 1
    for (k, v), w in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)
    assert m1(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
