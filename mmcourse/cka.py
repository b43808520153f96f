"""Linear CKA: how similar two representations of the same examples are (Kornblith et al. 2019).

Taught in ``notebooks/04_homogenization.ipynb`` (shared representations); re-exported by
``mmcourse.homogenization``.

Linear CKA (Kornblith et al. 2019, eq. 5): with X (n×d₁), Y (n×d₂) column-centred,

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)   ∈ [0, 1].

It is 1 for identical representations and invariant to orthogonal transforms and isotropic
scaling of either one, so two networks whose features differ only by a rotation score 1.
When d > n the same value is computed from the n×n Gram matrices: ‖YᵀX‖²_F = tr(K L).
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
