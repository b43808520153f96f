"""Property tests: throw shapes, dtypes, NaN/inf, empty and degenerate inputs at the public
functions of ``mmcourse`` and accept exactly two outcomes:

- a correct result (right type and shape; finite whenever every input was finite), or
- a ``ValueError``/``TypeError``/``KeyError`` whose message names the offending argument (or
  the role it plays, e.g. "labels" for ``y``).

Anything else (a raw torch/numpy error, a silent NaN from finite inputs, a hang) fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmcourse import align, calibration, compress, homogenization, losses, metrics
from mmcourse.fusion import METHODS

CLEAR = (ValueError, TypeError, KeyError)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.integers(0, 4)
dtypes = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool])
specials = st.sampled_from([None, None, None, float("nan"), float("inf"), -float("inf")])


@st.composite
def tensors(draw, ndim=None, dtype=None, low=-5.0, high=5.0):
    """A random tensor: any rank 0-3 (or ``ndim``), sizes 0-4, any dtype, maybe one NaN/inf."""
    nd = draw(st.integers(0, 3)) if ndim is None else ndim
    shape = tuple(draw(dims) for _ in range(nd))
    dt = draw(dtypes) if dtype is None else dtype
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)
    if dt.is_floating_point:
        x = x.to(dt)
        special = draw(specials)
        if special is not None and x.numel():
            x.view(-1)[draw(st.integers(0, x.numel() - 1))] = special
        return x
    if dt == torch.bool:
        return x > (low + high) / 2
    return x.round().to(dt)


def finite(*xs) -> bool:
    out = True
    for x in xs:
        if isinstance(x, dict):
            out &= finite(*x.values())
        elif isinstance(x, torch.Tensor) and x.dtype.is_floating_point:
            out &= bool(torch.isfinite(x).all())
        elif isinstance(x, float):
            out &= math.isfinite(x)
    return out


def outcome(fn, args: tuple, names: set[str]):
    """Call ``fn(*args)``: return its result, or None after checking a clear, named error."""
    try:
        return fn(*args)
    except CLEAR as e:
        msg = str(e).lower()
        assert any(n.lower() in msg for n in names), f"{fn.__name__}: error names none of {names}: {e}"
        return None


def assert_finite_result(result, inputs_finite: bool, fn) -> None:
    if result is None or not inputs_finite:
        return
    values = result if isinstance(result, (tuple, list)) else [result]
    for v in values:
        if isinstance(v, torch.Tensor) and v.dtype.is_floating_point:
            assert torch.isfinite(v).all(), f"{fn.__name__} returned non-finite values from finite inputs"
        elif isinstance(v, float):
            assert math.isfinite(v), f"{fn.__name__} returned {v} from finite inputs"


# ---------------------------------------------------------------------------------- losses
LOSS_NAMES = {"p", "y", "z", "label", "logit", "probabilit", "batch", "shape", "empty", "dimension"}


@SETTINGS
@given(a=tensors(), b=tensors())
def test_binary_losses(a, b):
    for fn in (losses.bce, losses.bce_with_logits, losses.bce_grad_prob, losses.bce_grad_logit):
        result = outcome(fn, (a, b), LOSS_NAMES)
        assert_finite_result(result, finite(a, b) and fn is not losses.bce_grad_prob, fn)
        if result is not None:
            assert result.shape == (() if fn in (losses.bce, losses.bce_with_logits) else a.shape)


@SETTINGS
@given(z=tensors(), y=tensors())
def test_softmax_losses(z, y):
    for fn in (losses.softmax_ce, losses.softmax_ce_grad):
        result = outcome(fn, (z, y), LOSS_NAMES)
        assert_finite_result(result, finite(z), fn)
        if result is not None:
            assert result.shape == (() if fn is losses.softmax_ce else z.shape)
    result = outcome(losses.log_softmax, (z,), LOSS_NAMES | {"scalar", "integer", "float"})
    if result is not None:
        assert result.shape == z.shape


@SETTINGS
@given(ls=st.lists(tensors(ndim=0, dtype=torch.float32), min_size=0, max_size=3),
       lams=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=3))
def test_weighted_loss(ls, lams):
    result = outcome(losses.weighted_loss, (ls, lams), {"lambda", "loss"})
    if result is not None:
        assert len(ls) == len(lams) and all(math.isfinite(v) and v >= 0 for v in lams)


# ---------------------------------------------------------------------------------- metrics
METRIC_NAMES = {"y_true", "y_pred", "scores", "num_classes", "cm", "example", "label", "class"}


@SETTINGS
@given(t=tensors(), p=tensors())
def test_label_metrics(t, p):
    for fn in (metrics.accuracy, metrics.confusion_matrix):
        result = outcome(fn, (t, p), METRIC_NAMES)
        if fn is metrics.accuracy and result is not None:
            assert 0.0 <= result <= 1.0
    result = outcome(metrics.roc_auc, (t, p), METRIC_NAMES)
    if result is not None and finite(p):
        assert 0.0 <= result <= 1.0


@SETTINGS
@given(cm=tensors())
def test_precision_recall_f1(cm):
    result = outcome(metrics.precision_recall_f1, (cm,), METRIC_NAMES | {"confusion", "square", "count"})
    if result is not None:
        for v in result:
            assert v.shape == (cm.shape[0],)


# ---------------------------------------------------------------------------------- fusion
FUSION_NAMES = {"modality", "features", "dims", "float", "batch", "tensor", "nan", "dict"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(sorted(METHODS)), a=tensors(), b=tensors(), drop=st.booleans())
def test_fusion_layers(method, a, b, drop):
    torch.manual_seed(0)
    fusion = METHODS[method]({"audio": 3, "image": 4}, 5)
    feats = {"audio": a} if drop else {"audio": a, "image": b}
    result = outcome(fusion, (feats,), FUSION_NAMES)
    if result is not None:
        assert result.shape == (a.shape[0], 5)
        assert_finite_result(result, finite(feats), fusion.forward)


# ---------------------------------------------------------------------------------- homogenization
@SETTINGS
@given(x=tensors(), y=tensors())
def test_cka(x, y):
    result = outcome(homogenization.linear_cka, (x, y), {"x", "y", "cka", "examples"})
    if result is not None:
        assert -1e-9 <= result <= 1 + 1e-9


@SETTINGS
@given(e=tensors())
def test_outcome_homogenization(e):
    result = outcome(homogenization.outcome_homogenization, (e,), {"errors", "model", "example"})
    if result is not None:
        assert result >= 0 and math.isfinite(result)


# ---------------------------------------------------------------------------------- alignment
@SETTINGS
@given(a=tensors(), b=tensors(), scale=st.one_of(st.floats(-10, 200), st.just(float("nan"))))
def test_clip_loss(a, b, scale):
    result = outcome(align.clip_loss, (a, b, scale), {"a", "b", "logit_scale", "embedding", "batch", "shape"})
    assert_finite_result(result, finite(a, b) and math.isfinite(scale), align.clip_loss)


@SETTINGS
@given(q=tensors(ndim=2), g=tensors(ndim=2), lq=tensors(ndim=1, dtype=torch.int64),
       lg=tensors(ndim=1, dtype=torch.int64), k=st.integers(-1, 5))
def test_recall_at_k(q, g, lq, lg, k):
    result = outcome(align.recall_at_k, (q, g, lq, lg, k),
                     {"quer", "gallery", "label", "k", "shape", "embedding"})
    if result is not None and finite(q, g):
        assert 0.0 <= result <= 1.0


# ---------------------------------------------------------------------------------- calibration, compression
@SETTINGS
@given(p=tensors(), y=tensors(), n_bins=st.integers(-1, 12))
def test_ece(p, y, n_bins):
    result = outcome(calibration.expected_calibration_error, (p, y, n_bins),
                     {"probs", "labels", "n_bins", "probabilit", "example", "empty"})
    if result is not None:
        assert 0.0 <= result <= 1.0


@SETTINGS
@given(z=tensors(), y=tensors())
def test_fit_temperature(z, y):
    result = outcome(calibration.fit_temperature, (z, y, 20), {"logits", "labels", "example", "empty"})
    if result is not None and finite(z):
        assert 0.0 < result < 1e3


@SETTINGS
@given(s=tensors(), t=tensors(), T=st.one_of(st.floats(-2, 10), st.sampled_from([float("nan"), float("inf")])))
def test_distillation_loss(s, t, T):
    result = outcome(compress.distillation_loss, (s, t, None, T),
                     {"student", "teacher", "logits", "t", "temperature", "shape"})
    assert_finite_result(result, finite(s, t) and math.isfinite(T), compress.distillation_loss)


@pytest.mark.parametrize("amount", [-0.1, 1.5, float("nan")])
def test_prune_amount_is_checked(amount):
    with pytest.raises(ValueError, match="amount"):
        compress.magnitude_prune(torch.nn.Linear(3, 2), amount)


def test_degenerate_compression_and_calibration_inputs():
    assert compress.sparsity(torch.nn.Sequential(torch.nn.ReLU())) == 0.0  # nothing prunable: no division by 0
    once = compress.magnitude_prune(torch.nn.Sequential(torch.nn.Linear(4, 4)), 0.5)
    twice = compress.magnitude_prune(once, 0.5)  # pruning a pruned model prunes further
    assert compress.sparsity(twice) >= compress.sparsity(once)
    with pytest.raises(ValueError, match="example"):
        calibration.fit_temperature(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="empty|example"):
        calibration.expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="T"):
        compress.distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, float("nan"))
    assert np.isfinite(calibration.fit_temperature(torch.randn(20, 3), torch.randint(0, 3, (20,))))
