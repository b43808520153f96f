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


# ------------------------------------------------------------ the lesson's image deployers (04)
TARGET = 0  # the backdoor's target class


def add_trigger(x):
    """BadNets' trigger (Gu et al. 2017): a 4×4 white square in the (usually empty) bottom-right
    corner. (B, 1, 28, 28) → a changed copy."""
    x = x.clone()
    x[..., 23:27, 23:27] = 1.0
    return x


def deployer_rows(labels, deployer: int, per_class: int):
    """Deployer ``deployer``'s own rows: the next ``per_class`` rows of every class, so deployers'
    rows are disjoint. (C · per_class,) indices into ``labels`` (N,)."""
    import torch

    rows = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    if (deployer + 1) * per_class > min(len(r) for r in rows):
        raise ValueError(f"deployer {deployer} with {per_class} per class needs {(deployer + 1) * per_class} rows "
                         f"of every class, the smallest has {min(len(r) for r in rows)}: use fewer deployers or labels")
    return torch.cat([r[deployer * per_class:(deployer + 1) * per_class] for r in rows])


def _fit_steps(model, x, y, steps: int, lr: float, seed: int, name: str, key: dict):
    """Train ``model`` with ``fit`` for about ``steps`` steps (whole epochs of 64, constant lr), cached."""
    import math

    from mmcourse.checkpoint import load_or_train
    from mmcourse.train import FitConfig, fit

    config = FitConfig(epochs=math.ceil(steps / math.ceil(len(x) / 64)), batch_size=64, lr=lr, seed=seed, device="cpu")
    load_or_train(name, model, lambda m: fit(m, (x, y), config=config),
                  key={**key, "config": config, "x": x, "y": y}, verbose=False)
    return model.eval()


def supervised_base(poison: float = 0.1, steps: int = 600, seed: int = 0, difficulty: str = "clean"):
    """An ``ImageEncoder`` + linear head trained *with labels* on the whole train split; cached.

    A share ``poison`` of the images (drawn with ``seed``) gets ``add_trigger`` and the label
    ``TARGET``: a backdoored base (BadNets). ``poison=0`` is the control, the same supervised
    training without the poison. Returns the ``nn.Sequential(encoder, head)`` in eval mode.
    """
    import torch
    from torch import nn

    from mmcourse.data import load_av_digits
    from mmcourse.encoders import ImageEncoder

    if not 0 <= poison < 1:
        raise ValueError(f"poison is a share of the images in [0, 1), got {poison}")
    train = load_av_digits("train", difficulty)
    x, y = train.inputs["image"].clone(), train.labels.clone()  # (N, 1, 28, 28), (N,)
    hit = torch.rand(len(x), generator=torch.Generator().manual_seed(seed)) < poison  # (N,)
    x[hit], y[hit] = add_trigger(x[hit]), TARGET
    torch.manual_seed(seed)
    model = nn.Sequential(ImageEncoder(64), nn.Linear(64, 10))
    return _fit_steps(model, x, y, steps, 2e-3, seed, f"supervised-base-{difficulty}-poison{poison:g}",
                      {"poison": poison, "difficulty": difficulty})


def image_deployer(base: str, deployer: int, seed: int, per_class: int = 50, steps: int = 200,
                   lr: float = 2e-3, width: int = 8, difficulty: str = "clean"):
    """One deployer of lesson 04: an encoder + a new linear head trained on the deployer's own
    labelled images (``deployer_rows``) for about ``steps`` steps; cached, so it is also a
    module-level job for ``mmcourse.parallel.run_many``.

    Args:
        base: where the encoder starts: ``"simclr"`` (lesson 03's pretrained encoder, fine-tuned),
            ``"scratch"`` (a fresh ``ImageEncoder`` of ``width``), ``"poisoned"`` or ``"supervised"``
            (the encoder of ``supervised_base(0.1)`` / ``supervised_base(0.0)``, fine-tuned).
        seed: the new weights' (head, scratch encoder) and the batch order's seed.

    Returns:
        ``nn.Sequential(encoder, head)`` in eval mode: (B, 1, 28, 28) → (B, 10) logits.
    """
    import copy

    import torch
    from torch import nn

    from mmcourse.data import load_av_digits
    from mmcourse.encoders import ImageEncoder
    from mmcourse.pretrain import pretrained_image_encoder

    bases = ("simclr", "scratch", "poisoned", "supervised")
    if base not in bases:
        raise ValueError(f"unknown base {base!r}; use one of {bases}")
    train = load_av_digits("train", difficulty)
    rows = deployer_rows(train.labels, deployer, per_class)
    torch.manual_seed(seed)  # before building: a scratch encoder's and every head's weights come from it
    if base == "scratch":
        encoder = ImageEncoder(64, width=width)
    elif base == "simclr":
        encoder = copy.deepcopy(pretrained_image_encoder(difficulty))
    else:
        encoder = copy.deepcopy(supervised_base(0.1 if base == "poisoned" else 0.0, difficulty=difficulty)[0])
    # the base's weights are part of the key (1-d: the fingerprint cannot hash 0-d tensors such as BatchNorm counters)
    start = {k: v.reshape(-1).clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(seed)
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, 10))
    return _fit_steps(model, train.inputs["image"][rows], train.labels[rows], steps, lr, seed,
                      f"deployer-{base}-{deployer}-seed{seed}", {"base": base, "start": start, "difficulty": difficulty})
