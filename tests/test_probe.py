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
