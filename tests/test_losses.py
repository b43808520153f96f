"""mmcourse.losses: values vs torch, hand gradients vs autograd (float64), stability, errors."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck
from torch.testing import assert_close

from mmcourse import losses as L
from mmcourse.check import with_hand_backward

SETTINGS = settings(max_examples=25, deadline=None)
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)


def _binary(shape, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 2, shape, generator=g).double()
    return z, y


def _classes(B, C, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, generator=g, dtype=torch.float64) * 4, torch.randint(0, C, (B,), generator=g)


# ---------------------------------------------------------------------------------- values
def test_sigmoid_hand_values_and_extremes():
    z = torch.tensor([0.0, 2.0, -1e4, 1e4])
    assert_close(L.sigmoid(z), torch.tensor([0.5, 1 / (1 + torch.exp(torch.tensor(-2.0))), 0.0, 1.0]))


def test_bce_hand_value():
    # -(log 0.8 + log 0.5) / 2 for p = (0.8, 0.5), y = (1, 0)
    p, y = torch.tensor([0.8, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    expected = -(torch.log(torch.tensor(0.8, dtype=torch.float64)) + torch.log(torch.tensor(0.5, dtype=torch.float64))) / 2
    assert_close(L.bce(p, y), expected)


@SETTINGS
@given(shapes, seeds)
def test_losses_match_torch(shape, seed):
    z, y = _binary(shape, seed)
    assert_close(L.bce(torch.sigmoid(z), y), F.binary_cross_entropy(torch.sigmoid(z), y))
    assert_close(L.bce_with_logits(z, y), F.binary_cross_entropy_with_logits(z, y))
    assert_close(L.sigmoid(z), torch.sigmoid(z))


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 6), seeds)
def test_softmax_losses_match_torch(B, C, seed):
    z, y = _classes(B, C, seed)
    assert_close(L.log_softmax(z), torch.log_softmax(z, dim=-1))
    assert_close(L.softmax_ce(z, y), F.cross_entropy(z, y))


# ---------------------------------------------------------------------------------- gradients
@SETTINGS
@given(shapes, seeds)
def test_binary_gradients_match_autograd(shape, seed):
    z, y = _binary(shape, seed)
    z.requires_grad_()
    F.binary_cross_entropy_with_logits(z, y).backward()
    assert_close(L.bce_grad_logit(z.detach(), y), z.grad)
    p = torch.sigmoid(z.detach()).clamp(1e-6, 1 - 1e-6).requires_grad_()
    F.binary_cross_entropy(p, y).backward()
    assert_close(L.bce_grad_prob(p.detach(), y), p.grad)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 6), seeds)
def test_softmax_ce_grad_matches_autograd(B, C, seed):
    z, y = _classes(B, C, seed)
    z.requires_grad_()
    F.cross_entropy(z, y).backward()
    grad = L.softmax_ce_grad(z.detach(), y)
    assert_close(grad, z.grad)
    assert_close(grad.sum(1), torch.zeros(B, dtype=torch.float64))  # rows sum to zero


def test_squared_error_logit_gradient_vanishes_where_cross_entropy_does_not():
    # notebook 02 §3: d/dz ½(σ(z) − y)² = (σ − y) σ (1 − σ), checked against autograd in float64
    z = torch.linspace(-30, 30, 121, dtype=torch.float64, requires_grad=True)  # includes z = 0 exactly
    y = torch.ones_like(z)
    (0.5 * (torch.sigmoid(z) - y) ** 2).sum().backward()
    s = torch.sigmoid(z.detach())
    assert_close(z.grad, (s - 1) * s * (1 - s))
    z.grad = None
    (L.bce_with_logits(z, y) * len(z)).backward()  # the mean × N: per-example gradients
    assert_close(z.grad, s - 1)
    confidently_wrong = z.detach() < -10  # y = 1, σ(z) < 5e-5
    assert (s[confidently_wrong] - 1).abs().min() > 0.9999  # CE: |σ − y| → 1
    assert ((s - 1) * s * (1 - s))[confidently_wrong].abs().max() < 5e-5  # MSE: → 0


def test_bce_with_logits_autograd_is_exact_at_zero_logit():
    # max(z, 0) as clamp would give a one-sided derivative at z = 0; (z + |z|)/2 gives σ(0) - y
    for y in (0.0, 1.0, 0.25):
        z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        L.bce_with_logits(z, torch.tensor([y], dtype=torch.float64)).backward()
        assert_close(z.grad, torch.tensor([0.5 - y], dtype=torch.float64))


def test_cross_entropy_is_the_negative_log_likelihood_and_entropy_plus_kl():
    zc, yc = _classes(6, 4, 3)
    assert_close(L.softmax_ce(zc, yc), -torch.distributions.Categorical(logits=zc).log_prob(yc).mean())
    z, y = _binary((5,), 4)
    assert_close(L.bce_with_logits(z, y), -torch.distributions.Bernoulli(logits=z).log_prob(y).mean())
    p, q = torch.softmax(zc, 1), torch.softmax(zc.flip(0), 1)  # (6, 4) target and model distributions
    cross = -(p * q.log()).sum(1)
    entropy, kl = -(p * p.log()).sum(1), (p * (p / q).log()).sum(1)
    assert_close(cross, entropy + kl)
    assert (kl >= 0).all()
    for C in (2, 10):  # the uniform guess costs ln C
        assert_close(L.softmax_ce(torch.zeros(3, C, dtype=torch.float64), torch.zeros(3, dtype=torch.long)),
                     torch.tensor(C, dtype=torch.float64).log())


def test_gradcheck_every_differentiable_loss():
    z, y = _binary((3, 2), 0)
    z.requires_grad_()
    p = torch.sigmoid(z.detach()).requires_grad_()
    zc, yc = _classes(4, 3, 1)
    zc.requires_grad_()
    assert gradcheck(L.sigmoid, (z,))
    assert gradcheck(lambda z: L.bce_with_logits(z, y), (z,))
    assert gradcheck(lambda p: L.bce(p, y), (p,))
    assert gradcheck(L.log_softmax, (zc,))
    assert gradcheck(lambda z: L.softmax_ce(z, yc), (zc,))
    lam = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a, b, l: L.weighted_loss([a.sum(), b.sum()], l), (z, p, lam))


def test_hand_gradients_pass_gradcheck_as_backward():
    """Use each hand gradient as the backward of an autograd Function and gradcheck that."""
    z, y = _binary((5,), 3)
    zc, yc = _classes(3, 4, 4)

    hand = with_hand_backward

    assert gradcheck(hand(lambda z: L.bce_with_logits(z, y), lambda z: L.bce_grad_logit(z, y)),
                     (z.requires_grad_(),))
    p = torch.sigmoid(z.detach()).requires_grad_()
    assert gradcheck(hand(lambda p: L.bce(p, y), lambda p: L.bce_grad_prob(p, y)), (p,))
    assert gradcheck(hand(lambda z: L.softmax_ce(z, yc), lambda z: L.softmax_ce_grad(z, yc)),
                     (zc.requires_grad_(),))


# ---------------------------------------------------------------------------------- stability
def test_stable_forms_finite_at_huge_logits():
    z = torch.tensor([-1e4, 1e4, -1e4, 1e4])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert torch.isfinite(L.bce_with_logits(z, y))
    assert_close(L.bce_with_logits(z, y), torch.tensor(1e4 / 2))  # two wrong by 1e4, two right
    assert torch.isfinite(L.bce_grad_logit(z, y)).all()
    zc = torch.tensor([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]])
    yc = torch.tensor([2, 0])
    assert torch.isfinite(L.log_softmax(zc)).all()
    assert torch.isfinite(L.softmax_ce(zc, yc))
    assert torch.isfinite(L.softmax_ce_grad(zc, yc)).all()


def test_naive_forms_blow_up():
    p = L.sigmoid(torch.tensor([40.0]))  # rounds to exactly 1 in float32
    assert torch.isinf(L.bce(p, torch.tensor([0.0])))
    assert torch.isinf(L.bce_grad_prob(p, torch.tensor([0.0]))).all()


# ---------------------------------------------------------------------------------- training
def test_weighted_loss_dict_and_list():
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    assert_close(L.weighted_loss({"image": a, "audio": b}, {"audio": 0.5, "image": 2.0}), torch.tensor(5.5))
    assert_close(L.weighted_loss([a, b], [1.0, 1.0]), torch.tensor(5.0))


def test_sgd_step_equals_torch_optim():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    F.cross_entropy(model(x), y).backward()
    ours = [p.detach().clone() for p in model.parameters()]
    L.sgd_step(ours, [p.grad for p in model.parameters()], lr=0.1)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for a, b in zip(ours, model.parameters()):
        assert_close(a, b.detach(), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- errors
def test_errors():
    p, y = torch.tensor([0.2, 0.9]), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        L.bce(p, y[:1])
    with pytest.raises(ValueError, match="same shape"):
        L.bce_with_logits(p, y[None])
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        L.bce(torch.tensor([1.5, 0.2]), y)
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        L.bce_grad_prob(torch.tensor([-0.1, 0.2]), y)
    with pytest.raises(ValueError, match=r"binary labels must lie in \[0, 1\]"):
        L.bce_with_logits(p, torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"binary labels"):
        L.bce_grad_logit(p, torch.tensor([-1.0, 0.0]))
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        L.softmax_ce(z, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        L.softmax_ce_grad(z, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integer class indices"):
        L.softmax_ce(z, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must be \(B,\)"):
        L.softmax_ce(z, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"logits must be \(B, C\)"):
        L.softmax_ce(torch.zeros(3), torch.tensor([0]))
    with pytest.raises(ValueError, match="scalar"):
        L.log_softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match="same keys"):
        L.weighted_loss({"image": torch.tensor(1.0)}, {"audio": 1.0})
    with pytest.raises(ValueError, match="both as dicts"):
        L.weighted_loss({"image": torch.tensor(1.0)}, [1.0])
    with pytest.raises(ValueError, match="one lambda per loss"):
        L.weighted_loss([torch.tensor(1.0)], [1.0, 2.0])
    with pytest.raises(ValueError, match="must be a scalar"):
        L.weighted_loss([torch.ones(2)], [1.0])
    w = torch.zeros(2)
    with pytest.raises(ValueError, match="one gradient per parameter"):
        L.sgd_step([w], [], lr=0.1)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        L.sgd_step([w], [w], lr=0.0)
    with pytest.raises(ValueError, match="is None"):
        L.sgd_step([w], [None], lr=0.1)
    with pytest.raises(ValueError, match="same shape"):
        L.sgd_step([w], [torch.zeros(3)], lr=0.1)


def test_degenerate_inputs_raise_naming_the_fix():
    z = torch.zeros(0, 3)
    with pytest.raises(ValueError, match="empty"):
        L.softmax_ce(z, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        L.bce_with_logits(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        L.bce_with_logits(torch.zeros(2), torch.tensor([1.0, float("nan")]))
    for bad in (float("nan"), -0.5, float("inf")):
        with pytest.raises(ValueError, match="finite number >= 0"):
            L.weighted_loss({"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, {"a": 1.0, "b": bad})
    assert L.weighted_loss([torch.tensor(1.0), torch.tensor(2.0)], [0.0, 0.5]).item() == 1.0
