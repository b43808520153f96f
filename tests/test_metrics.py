"""mmcourse.metrics: hand-computed metrics agree with scikit-learn; errors name the fix."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from mmcourse import metrics as M

SETTINGS = settings(max_examples=25, deadline=None)


def test_hand_computed_binary_example():
    y_true = torch.tensor([1, 1, 1, 0, 0])
    y_pred = torch.tensor([1, 0, 1, 1, 0])
    cm = M.confusion_matrix(y_true, y_pred)
    assert cm.tolist() == [[1, 1], [1, 2]]  # [[TN, FP], [FN, TP]]
    p, r, f = M.precision_recall_f1(cm)
    assert_close(p[1].item(), 2 / 3)
    assert_close(r[1].item(), 2 / 3)
    assert_close(f[1].item(), 2 / 3)
    assert_close(M.accuracy(y_true, y_pred), 0.6)
    assert_close(M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75)


@SETTINGS
@given(st.integers(2, 6), st.integers(0, 2**16))
def test_match_sklearn(C, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, C, 40)
    y_pred = np.where(rng.random(40) < 0.6, y_true, rng.integers(0, C, 40))
    assert_close(M.accuracy(y_true, y_pred), skm.accuracy_score(y_true, y_pred))
    cm = M.confusion_matrix(y_true, y_pred, num_classes=C)
    assert cm.tolist() == skm.confusion_matrix(y_true, y_pred, labels=range(C)).tolist()
    p, r, f = M.precision_recall_f1(cm)
    sp, sr, sf, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(C), zero_division=0)
    for ours, theirs in ((p, sp), (r, sr), (f, sf)):
        assert_close(ours, torch.as_tensor(theirs, dtype=torch.float64))


@SETTINGS
@given(st.integers(0, 2**16))
def test_roc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, 30)]
    s = np.round(rng.normal(size=32) + y, 1)  # rounding makes ties
    fpr, tpr, thr = M.roc_curve(y, torch.tensor(s))
    sfpr, stpr, sthr = skm.roc_curve(y, s, drop_intermediate=False)
    assert_close(fpr, torch.tensor(sfpr, dtype=torch.float64))
    assert_close(tpr, torch.tensor(stpr, dtype=torch.float64))
    assert_close(thr[1:], torch.tensor(sthr[1:], dtype=torch.float64))
    assert_close(M.roc_auc(y, s), skm.roc_auc_score(y, s))


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="at least one example"):
        M.accuracy([], [])
    with pytest.raises(ValueError, match="1-D vector"):
        M.accuracy([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="threshold scores first"):
        M.confusion_matrix([0, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="num_classes large enough"):
        M.confusion_matrix([0, 3], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="square"):
        M.precision_recall_f1(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="both 0 and 1 present"):
        M.roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match=r"both be \(N,\)"):
        M.roc_curve([0, 1], [0.2, 0.3, 0.4])


def test_paired_sentence_follows_the_stats_rule():
    from mmcourse import stats
    from mmcourse.metrics import paired_sentence
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(400, generator=g) < 0.8).float()
    b = (torch.rand(400, generator=g) < 0.6).float()
    v, s = paired_sentence("A", "B", a, b)
    assert v == stats.paired_verdict(a.numpy(), b.numpy()) == "a"
    assert s.startswith("A better than B by +") and "paired t over 400 test pairs" in s
    v2, s2 = paired_sentence("B", "A", b, a)
    assert v2 == "b" and s2.startswith("A better than B by +")  # same winner, same positive gap
    same, s3 = paired_sentence("A", "A'", a, a.clone())
    assert same == "not resolved" and "not resolved with 400 test pairs" in s3
