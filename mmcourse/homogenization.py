"""Measuring homogenization: similar representations (CKA) and shared failures (outcome H).

Taught in ``notebooks/04_homogenization.ipynb``.

- Linear CKA (Kornblith et al. 2019, eq. 5): with X (n×d₁), Y (n×d₂) column-centred,

      CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)   ∈ [0, 1].

  It is 1 for identical representations and invariant to orthogonal transforms and isotropic
  scaling of either one, so two networks whose features differ only by a rotation score 1.
  When d > n the same value is computed from the n×n Gram matrices: ‖YᵀX‖²_F = tr(K L).

- Outcome homogenization (Bommasani et al. 2022, "Picking on the same person"): for k models
  judged on the same n examples, with ``errors[i, j]`` True when model i gets example j wrong,

      H = P(all k models wrong) / Πᵢ P(model i wrong).

  H = 1 when failures are independent; H > 1 means the models fail *together* (homogenized),
  the same people are failed by every system; H < 1 means they fail on different examples.
  ``bootstrap_interval`` resamples the n examples to give a percentile interval.
"""

from __future__ import annotations

import numpy as np


def _as_matrix(A, name: str) -> np.ndarray:
    if hasattr(A, "toarray"):  # scipy sparse, e.g. a TF-IDF matrix
        A = A.toarray()
    if hasattr(A, "detach"):  # torch tensor
        A = A.detach().cpu().numpy()
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"{name} must be an (n, d) feature matrix, got shape {A.shape}; "
                         "flatten each example's features into one row")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains inf or nan; CKA needs finite features")
    return A


def linear_cka(X, Y) -> float:
    """Linear CKA between two representations of the same n examples.

    Args:
        X: (n, d₁) features (NumPy, torch or SciPy sparse).
        Y: (n, d₂) features of the *same* examples in the same order.

    Returns:
        CKA in [0, 1].
    """
    X, Y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}; CKA compares two representations "
                         "of the same examples, row for row")
    if len(X) < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {len(X)}")
    X, Y = X - X.mean(0), Y - Y.mean(0)  # centre every feature (the H in HSIC)
    if max(X.shape[1], Y.shape[1]) > len(X):  # wide features: n×n Gram matrices are cheaper
        K, L = X @ X.T, Y @ Y.T  # (n, n)
        cross, xx, yy = (K * L).sum(), np.linalg.norm(K), np.linalg.norm(L)
    else:
        cross = np.linalg.norm(Y.T @ X) ** 2  # ‖YᵀX‖²_F
        xx, yy = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if xx == 0 or yy == 0:
        which = "X" if xx == 0 else "Y"
        raise ValueError(f"{which} is constant across examples (all rows equal); CKA is undefined")
    return float(cross / (xx * yy))


def pairwise_cka(reps: list) -> np.ndarray:
    """(k, k) matrix of linear CKA between every pair of k representations of the same examples."""
    k = len(reps)
    M = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            M[i, j] = M[j, i] = linear_cka(reps[i], reps[j])
    return M


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


def outcome_homogenization(errors) -> float:
    """H = P(all k models wrong) / Πᵢ P(model i wrong); 1 = independent, > 1 = homogenized.

    Args:
        errors: (k, n) boolean, ``errors[i, j]`` True when model i gets example j wrong (a list
            of k length-n vectors works too).
    """
    E = _as_errors(errors)
    rates = E.mean(1)  # (k,) each model's error rate
    if (rates == 0).any():
        bad = np.flatnonzero(rates == 0).tolist()
        raise ValueError(f"model(s) {bad} make no errors on these {E.shape[1]} examples, so H = "
                         "0/0 is undefined; use more (or harder) test examples")
    return float(E.all(0).mean() / np.prod(rates))


def bootstrap_interval(errors, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """H with a percentile bootstrap interval over the test examples.

    Resamples the n examples with replacement ``n_boot`` times (the models stay fixed); a
    resample in which some model makes no error has undefined H and is dropped.

    Returns:
        (H on all examples, lower, upper) for a ``level`` interval, e.g. 95 %.
    """
    E = _as_errors(errors)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level}")
    H = outcome_homogenization(E)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, E.shape[1], size=(n_boot, E.shape[1]))  # (n_boot, n)
    Eb = E[:, idx]  # (k, n_boot, n)
    rates = Eb.mean(2)  # (k, n_boot)
    ok = (rates > 0).all(0)
    if not ok.any():
        raise ValueError("in every bootstrap resample some model made no error; use more test examples")
    hs = Eb.all(0).mean(1)[ok] / rates[:, ok].prod(0)  # (n_boot',)
    lo, hi = np.quantile(hs, [(1 - level) / 2, (1 + level) / 2])
    return H, float(lo), float(hi)
