"""mmcourse.check: cmp, the exercise machinery, and every lesson checker with reference solutions.

Each exercise gets a reference solution (accepted), a typical mistake (rejected) and the stub
(reported as not solved, without raising).
"""

import pytest
import torch

import mmcourse.check as check
from mmcourse.losses import sigmoid


def stub(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------- core
def test_cmp_prints_and_returns(capsys):
    assert check.cmp("same", torch.ones(3), torch.ones(3))
    assert "exact: True  | approx: True  | max abs diff: 0.0e+00" in capsys.readouterr().out
    assert check.cmp("rounded", torch.ones(3), torch.ones(3, dtype=torch.float64) + 1e-12, decimals=6)
    assert "| approx: True  | max abs diff: 0.000000" in capsys.readouterr().out
    assert not check.cmp("off", torch.ones(3), torch.ones(3) + 0.5)
    assert "approx: False" in capsys.readouterr().out
    with pytest.raises(ValueError, match="shapes differ"):
        check.cmp("bad", torch.ones(3), torch.ones(2))


def test_exercise_machinery(capsys):
    @check.exercise(hint="return 2")
    def two(fn):
        if check.attempt(fn) != 2:
            raise check.Wrong("not 2.")

    assert two(lambda: 2) is True
    assert two(lambda: 3) is False
    assert "not quite. not 2. Hint: return 2" in capsys.readouterr().out
    assert two(lambda: None) is None
    assert two(stub) is None
    assert capsys.readouterr().out.count("not yet solved") == 2
    assert two(lambda: 1 / 0) is False  # a crash is reported, not raised
    assert "ZeroDivisionError" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- reference solutions
def tanh_net_grads(x, y, P):
    h = torch.tanh(x @ P["W"].T + P["b"])  # (N, H)
    dz2 = (sigmoid(h @ P["w2"] + P["b2"]) - y) / len(y)  # (N,)
    da1 = dz2[:, None] * P["w2"] * (1 - h**2)  # (N, H)
    return {"W": da1.T @ x, "b": da1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum()}


def tanh_net_grads_sigmoid_derivative(x, y, P):  # the typical mistake: sigma' kept from the sigmoid net
    h = torch.tanh(x @ P["W"].T + P["b"])
    dz2 = (sigmoid(h @ P["w2"] + P["b2"]) - y) / len(y)
    da1 = dz2[:, None] * P["w2"] * h * (1 - h)
    return {"W": da1.T @ x, "b": da1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum()}


def f1_from_confusion(cm):
    tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    return 2 * tp / (2 * tp + fp + fn)


def bce_logit_grad_by_hand(z, y):
    return (sigmoid(z) - y) / z.numel()


def stable_log_softmax(z):
    m = z.max(dim=-1, keepdim=True).values
    return (z - m) - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


CASES = {
    "tanh_net_grads": (tanh_net_grads, tanh_net_grads_sigmoid_derivative),
    "f1_from_confusion": (f1_from_confusion, lambda cm: cm[1, 1] / (cm[1, 1] + cm[0, 1])),  # precision
    "bce_logit_grad_by_hand": (bce_logit_grad_by_hand, lambda z, y: torch.sigmoid(z) - y),  # forgot 1/N
    "stable_log_softmax": (stable_log_softmax, lambda z: z - z.exp().sum(-1, keepdim=True).log()),  # overflows
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_checker_accepts_right_rejects_wrong_reports_stub(name, capsys):
    checker = getattr(check, name)
    right, wrong = CASES[name]
    assert checker(right) is True
    assert checker(wrong) is False
    assert checker(stub) is None
    out = capsys.readouterr().out
    assert "[ok]" in out and "not quite" in out and "not yet solved" in out
