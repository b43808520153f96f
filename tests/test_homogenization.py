"""Tests of mmcourse.homogenization: linear CKA properties and outcome homogenization."""

import numpy as np
import pytest
import scipy.sparse
import torch

from mmcourse.homogenization import (bootstrap_interval, linear_cka, outcome_homogenization,
                                     pairwise_cka)


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


# ----------------------------------------------------- reference solutions of notebook 04's exercises
def cka_from_gram_solution(K, L):
    n = len(K)
    C = torch.eye(n, dtype=K.dtype) - torch.ones(n, n, dtype=K.dtype) / n
    Kc, Lc = C @ K @ C, C @ L @ C
    return ((Kc * Lc).sum() / (Kc.norm() * Lc.norm())).item()


def attack_success_rate_solution(preds, labels, target):
    keep = labels != target
    return (preds[keep] == target).double().mean().item()


def test_checkers_notebook_04(capsys):
    from mmcourse import check
    assert check.cka_from_gram(cka_from_gram_solution) is True
    assert check.attack_success_rate(attack_success_rate_solution) is True

    def stub(*args):
        raise NotImplementedError

    assert check.cka_from_gram(stub) is None and check.attack_success_rate(stub) is None
    assert check.cka_from_gram(lambda K, L: ((K * L).sum() / (K.norm() * L.norm())).item()) is False
    assert check.attack_success_rate(lambda p, l, t: (p == t).double().mean().item()) is False
    assert "not yet solved" in capsys.readouterr().out
