"""Tests for mmcourse.balance (notebook 06): aux loss, OGM-GE, probes, widget, exercise checkers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse import balance as B
from mmcourse import check
from mmcourse.train import State, FitConfig
from mmcourse.widgets import lambda_panel


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: on a busy 2-core CPU a second intra-op thread only adds waiting (10x here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    audio = torch.randn(n, 12, 13, generator=g) + y[:, None, None] * 0.3
    image = torch.randn(n, 1, 28, 28, generator=g) * 0.5 + y[:, None, None, None] * 0.1
    return {"audio": audio, "image": image}, y


def test_aux_model_shapes_and_loss_matches_formula():
    torch.manual_seed(0)
    model = B.build_model(dim=8, image_width=2, audio_hidden=4)
    x, y = _tiny_data(6)
    out = model(x)
    assert out["logits"].shape == (6, 10)
    assert {k: v.shape for k, v in out["aux"].items()} == {"audio": (6, 10), "image": (6, 10)}
    lam = {"audio": 0.3, "image": 1.7}
    want = (F.cross_entropy(out["logits"], y) + 0.3 * F.cross_entropy(out["aux"]["audio"], y)
            + 1.7 * F.cross_entropy(out["aux"]["image"], y))
    torch.testing.assert_close(B.AuxLoss(lam, ["audio", "image"])(out, y), want)
    # the linear concat head splits exactly into per-modality contributions
    torch.testing.assert_close(sum(out["contrib"].values()), out["logits"])


def test_lambda_errors():
    with pytest.raises(KeyError, match="text"):
        B.AuxLoss({"text": 1.0}, ["audio", "image"])
    with pytest.raises(ValueError, match=">= 0"):
        B.AuxLoss({"audio": -0.5}, ["audio", "image"])
    with pytest.raises(ValueError, match="finite"):
        B.check_lambdas({"image": float("nan")}, ["audio", "image"])
    with pytest.raises(KeyError, match="unknown modality"):
        B.build_unimodal("text")
    with pytest.raises(ValueError, match="alpha"):
        B.OGMGE(alpha=-1)
    with pytest.raises(TypeError, match="ConcatFusion"):
        from mmcourse.fusion import GatedFusion
        B.unimodal_contributions(GatedFusion({"audio": 3, "image": 3}, 4), {})


def test_ogm_coefficient_hand_computed_float64():
    # audio: p(true) = 0.9, 0.8 → s_a = 1.7; image: uniform over 2 classes → s_i = 1.0
    y = torch.tensor([0, 1])
    audio = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64))
    image = torch.zeros(2, 2, dtype=torch.float64)
    coeffs, scores = B.ogm_coefficients({"image": image, "audio": audio}, y, alpha=0.5)
    assert math.isclose(scores["audio"], 1.7, rel_tol=1e-12) and math.isclose(scores["image"], 1.0)
    assert math.isclose(coeffs["audio"], 1 - math.tanh(0.5 * 1.7), rel_tol=1e-12)
    assert coeffs["image"] == 1.0


def _state_after_backward(model, x, y, ogm):
    loss = ogm.wrap(B.AuxLoss({}, ["audio", "image"]))(model(x), y)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    loss.backward()
    return State(model, opt, FitConfig(), torch.device("cpu"), {})


def test_ogm_scales_only_the_dominant_encoder():
    torch.manual_seed(0)
    model = B.build_model(dim=8, image_width=2, audio_hidden=4)
    x, y = _tiny_data(10)
    with torch.no_grad():  # make audio dominant: its contribution points at the true class
        model.fusion.net.weight[:, :8] = 0.0
        model.fusion.net.weight[:, 8:] = 0.0
    model.encoders["audio"].proj.bias.data.zero_()
    ogm = B.OGMGE(alpha=0.5, ge=False)
    # force the contributions: audio confident and right, image uniform
    wrapped = ogm.wrap(B.AuxLoss({"audio": 1.0, "image": 1.0}, ["audio", "image"]))
    out = model(x)
    out["contrib"] = {"audio": 5 * F.one_hot(y, 10).double(), "image": torch.zeros(10, 10, dtype=torch.float64)}
    loss = wrapped(out, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    loss.backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    state = State(model, opt, FitConfig(), torch.device("cpu"), {})
    ogm.on_after_backward(state)
    c = ogm.log["coeff"]["audio"][0]
    assert 0 < c < 1 and ogm.log["coeff"]["image"][0] == 1.0
    for n, p in model.named_parameters():
        if n not in before:
            continue
        want = before[n] * c if n.startswith("core.encoders.audio") else before[n]
        torch.testing.assert_close(p.grad, want, msg=n)
    assert state.extra["ogm"]["coeff"]["audio"] == [c]


def test_ogm_ge_adds_noise_only_to_modulated_encoder():
    torch.manual_seed(1)
    model = B.build_model(dim=8, image_width=2, audio_hidden=4)
    x, y = _tiny_data(10)
    ogm = B.OGMGE(alpha=0.5, ge=True)
    state = _state_after_backward(model, x, y, ogm)
    coeffs, _ = B.ogm_coefficients(*ogm._last, alpha=0.5)
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    ogm.on_after_backward(state)
    dom = min(coeffs, key=coeffs.get)
    for n, p in model.named_parameters():
        if n in before and not n.startswith(f"core.encoders.{dom}"):
            torch.testing.assert_close(p.grad, before[n])
    if coeffs[dom] < 1:
        w = model.encoders[dom]
        changed = [not torch.allclose(p.grad, before[f"core.encoders.{dom}." + n] * coeffs[dom])
                   for n, p in w.named_parameters() if p.grad.ndim >= 2]
        assert any(changed)


def test_run_balanced_with_ogm_and_imbalance_smoke():
    x, y = _tiny_data(40)
    data = (x, y)
    ogm = B.OGMGE(alpha=0.3)
    r = B.run_balanced(data, data, lambdas={"image": 1.0}, ogm=ogm, epochs=1, model=B.build_model(dim=8, image_width=2, audio_hidden=4))
    assert 0 <= r["fused"] <= 1 and set(r["probe"]) == {"audio", "image"}
    assert len(ogm.log["coeff"]["audio"]) == len(ogm.log["step"]) >= 1
    alone = {"audio": B.build_unimodal("audio", dim=8, audio_hidden=4)[0], "image": B.build_unimodal("image", dim=8, image_width=2)[0]}
    gaps = B.imbalance(r["model"], alone, data, data)
    assert set(gaps["image"]) == {"inside", "alone", "gap"}


def test_widget_headless(capsys):
    x, y = _tiny_data(40)
    panel = lambda_panel((x, y), (x, y), n_train=40, epochs=1)
    assert "λ" in capsys.readouterr().out  # prints its initial state without a frontend
    first = panel.status.value
    panel.sliders["image"].value = 1.5
    panel.button.click()
    assert panel.status.value != first and "1.5" in panel.status.value
    assert len(panel.runs) == 2 and panel.runs[-1]["lambdas"]["image"] == 1.5


# reference solutions of the notebook's exercises
def _aux_loss_solution(out, y, lambdas):
    return F.cross_entropy(out["logits"], y) + sum(v * F.cross_entropy(out["aux"][m], y) for m, v in lambdas.items())


def _ogm_solution(contrib, y, alpha):
    s = {m: v.softmax(-1)[torch.arange(len(y)), y].sum().item() for m, v in contrib.items()}
    dom, other = sorted(s, key=s.get, reverse=True)
    rho = s[dom] / s[other]
    return {dom: 1 - math.tanh(alpha * rho) if rho > 1 else 1.0, other: 1.0}


def test_checkers_accept_solutions_and_reject_wrong(capsys):
    assert check.aux_loss(_aux_loss_solution) is True
    assert check.aux_loss(lambda out, y, lam: sum(v * F.cross_entropy(out["aux"][m], y) for m, v in lam.items())) is False
    assert check.aux_loss(lambda out, y, lam: None) is None
    assert check.ogm_coefficient(_ogm_solution) is True
    assert check.ogm_coefficient(lambda c, y, a: {m: 1 - math.tanh(a) for m in c}) is False

    def stub(c, y, a):
        raise NotImplementedError
    assert check.ogm_coefficient(stub) is None
    assert "not yet solved" in capsys.readouterr().out
