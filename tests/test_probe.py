"""Tests of mmcourse.probe: the linear probe fits separable features, errors name the fix."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.probe import encode, fit_linear_probe


def test_fit_linear_probe_separable_and_errors():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    X = 5 * torch.eye(3)[y] + 0.1 * torch.randn(60, 3, generator=g) + 7.0  # shifted: standardising matters
    probe = fit_linear_probe(X, y)
    assert probe.score(X, y) == 1.0 and probe(X).shape == (60, 3)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_linear_probe(X[:10], y[:9])


def test_probe_reads_held_out_features_of_separable_classes():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    X = torch.randn(60, 4, generator=g) + 4 * F.one_hot(y, 4).float()
    assert fit_linear_probe(X[:40], y[:40]).score(X[40:], y[40:]) == 1.0


def test_encode_batches_in_eval_mode_and_restores_training_mode():
    enc = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.9))
    x = torch.randn(10, 3)
    out = encode(enc, x, batch_size=4)
    assert out.shape == (10, 2) and not out.requires_grad
    assert torch.allclose(out, enc[0](x).detach())  # dropout off: eval mode
    assert enc.training


def test_pixel_baseline_selects_the_penalty_on_validation_never_on_test():
    from mmcourse.probe import fit_linear_probe, pixel_baseline

    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    images = torch.randn(300, 1, 4, 4, generator=g) + y[:, None, None, None] * 0.4  # (N, 1, 4, 4)
    train, val, test = (images[:100], y[:100]), (images[100:200], y[100:200]), (images[200:], y[200:])
    out = pixel_baseline(train, val, test, weight_decays=(1e-4, 1.0))
    by_hand = {wd: fit_linear_probe(train[0].flatten(1), train[1], 3, weight_decay=wd).score(val[0].flatten(1), val[1])
               for wd in (1e-4, 1.0)}
    assert out["val_by_penalty"] == pytest.approx(by_hand)
    assert out["weight_decay"] == max(by_hand, key=by_hand.get) and out["val_acc"] == max(by_hand.values())
    wd = out["weight_decay"]
    expected = fit_linear_probe(train[0].flatten(1), train[1], 3, weight_decay=wd).score(test[0].flatten(1), test[1])
    assert out["test_acc"] == pytest.approx(expected)
    shuffled = pixel_baseline(train, val, (test[0], test[1][torch.randperm(100, generator=g)]), weight_decays=(1e-4, 1.0))
    assert shuffled["weight_decay"] == wd and shuffled["val_acc"] == out["val_acc"]  # test labels choose nothing
    with pytest.raises(ValueError, match="at least one penalty"):
        pixel_baseline(train, val, test, weight_decays=())
