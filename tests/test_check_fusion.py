"""The lesson-05 exercise checkers accept a right answer and reject wrong ones."""

import torch

from mmcourse import check


def test_weighted_sum_checker():
    assert check.weighted_sum(lambda f, w: sum(w[k] * f[k] for k in sorted(f))) is True
    assert check.weighted_sum(lambda f, w: sum(f.values())) is False
    assert check.weighted_sum(lambda f, w: sum(w[k] * f[k] for k in f) / sum(w.values())) is False
    assert check.weighted_sum(lambda f, w: None) is None


def test_outer_with_one_checker():
    def right(a, b):
        one = torch.ones(len(a), 1, dtype=a.dtype)
        a, b = torch.cat([a, one], 1), torch.cat([b, one], 1)
        return (a[:, :, None] * b[:, None, :]).flatten(1)

    assert check.outer_with_one(right) is True
    assert check.outer_with_one(lambda a, b: (a[:, :, None] * b[:, None, :]).flatten(1)) is False
    assert check.outer_with_one(lambda a, b: None) is None
