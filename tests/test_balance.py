"""Tests for mmcourse.balance (notebook 06): aux loss, OGM-GE, probes, widget, exercise checkers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse import balance as B
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


def _dominant_audio_setup(ge):
    """Gradients of a tiny model after backward, with audio forced dominant (confident, right)."""
    torch.manual_seed(0)
    model = B.build_model(dim=8, image_width=2, audio_hidden=4)
    x, y = _tiny_data(10)
    ogm = B.OGMGE(alpha=0.5, ge=ge)
    wrapped = ogm.wrap(B.AuxLoss({"audio": 1.0, "image": 1.0}, ["audio", "image"]))
    out = model(x)
    out["contrib"] = {"audio": 5 * F.one_hot(y, 10).double(), "image": torch.zeros(10, 10, dtype=torch.float64)}
    loss = wrapped(out, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    loss.backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return model, ogm, State(model, opt, FitConfig(optimizer="sgd"), torch.device("cpu"), {}), before


def test_ogm_scales_only_the_dominant_encoders_weights():
    model, ogm, state, before = _dominant_audio_setup(ge=False)
    ogm.on_after_backward(state)
    c = ogm.log["coeff"]["audio"][0]
    s_a = 10 * math.exp(5) / (math.exp(5) + 9)  # p(true) = e^5 / (e^5 + 9) on each of 10 rows
    assert math.isclose(c, 1 - math.tanh(0.5 * s_a / 1.0), rel_tol=1e-9)  # image uniform: s_i = 10 · 0.1
    assert ogm.log["coeff"]["image"][0] == 1.0 and ogm.log["active"] == [True]
    scaled = []
    for n, p in model.named_parameters():
        if n not in before:
            continue
        # as in the reference code: only the dominant encoder's weights (ndim >= 2), not biases/norms
        is_weight = n.startswith("core.encoders.audio") and p.ndim >= 2
        torch.testing.assert_close(p.grad, before[n] * c if is_weight else before[n], msg=n)
        scaled += [n] if is_weight else []
    assert {"core.encoders.audio.conv1.weight", "core.encoders.audio.proj.weight"} <= set(scaled)
    assert state.extra["ogm"]["coeff"]["audio"] == [c]


def test_ogm_ge_adds_noise_to_every_encoders_weights_only():
    model, ogm, state, before = _dominant_audio_setup(ge=True)
    ogm.on_after_backward(state)
    c = ogm.log["coeff"]["audio"][0]
    for n, p in model.named_parameters():
        if n not in before:
            continue
        if n.startswith("core.encoders.") and p.ndim >= 2:  # k g + N(0, std(g)²), std of the unscaled g
            k = c if n.startswith("core.encoders.audio") else 1.0
            noise = p.grad - k * before[n]
            assert not torch.allclose(noise, torch.zeros_like(noise)), n
            if noise.numel() >= 200:
                assert 0.6 < noise.std().item() / before[n].std().item() < 1.4, n
        else:  # biases, norms, fusion head and aux heads untouched
            torch.testing.assert_close(p.grad, before[n], msg=n)


def test_ogm_modulates_only_inside_its_epoch_window():
    model, ogm, state, before = _dominant_audio_setup(ge=True)
    ogm.epochs = (1, 3)
    state.epoch = 3  # [1, 3) is half-open: epoch 3 is outside
    ogm.on_after_backward(state)
    for n, p in model.named_parameters():
        if n in before:
            torch.testing.assert_close(p.grad, before[n], msg=n)
    assert ogm.log["active"] == [False] and ogm.log["coeff"]["audio"][0] < 1  # still logged
    assert [ogm.active(e) for e in range(4)] == [False, True, True, False]
    with pytest.raises(ValueError, match="epochs"):
        B.OGMGE(epochs=(3, 1))


def test_adam_step_ignores_gradient_scale_sgd_does_not():
    """Why OGM needs SGD: one step's update ‖Δθ‖ with the gradient scaled by k = 0.3."""
    def step(opt_name, k):
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(20, 5, dtype=torch.float64))
        opt = (torch.optim.AdamW([w], lr=0.01, weight_decay=0.0) if opt_name == "adamw"
               else torch.optim.SGD([w], lr=0.01, momentum=0.9))
        before, g = w.detach().clone(), torch.linspace(-1, 1, 100, dtype=torch.float64).reshape(20, 5) + 0.01
        for _ in range(3):  # the same gradient three times: Adam's m/√v is then exactly scale-free
            w.grad = k * g
            opt.step()
        return (w.detach() - before).norm().item()
    assert math.isclose(step("adamw", 0.3), step("adamw", 1.0), rel_tol=1e-5)
    assert math.isclose(step("sgd", 0.3), 0.3 * step("sgd", 1.0), rel_tol=1e-12)


def test_ogm_warns_under_adamw_not_under_sgd():
    x, y = _tiny_data(40)
    small = dict(dim=8, image_width=2, audio_hidden=4)
    with pytest.warns(UserWarning, match="invariant to the scale of the gradient"):
        B.run_balanced((x, y), (x, y), ogm=B.OGMGE(alpha=0.3), epochs=1, probe=False,
                       model=B.build_model(**small), optimizer="adamw")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        B.run_balanced((x, y), (x, y), ogm=B.OGMGE(alpha=0.3), epochs=1, probe=False,
                       model=B.build_model(**small), optimizer="sgd", lr=0.05)


def test_update_size_is_lr_times_gradient_norm_on_first_sgd_step():
    torch.manual_seed(0)
    model = B.build_model(dim=8, image_width=2, audio_hidden=4)
    x, y = _tiny_data(10)
    us = B.UpdateSize()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = State(model, opt, FitConfig(optimizer="sgd"), torch.device("cpu"), {})
    F.cross_entropy(model(x)["logits"], y).backward()
    g = {k: torch.cat([p.grad.flatten() for _, p in B.modulated_parameters(model.encoders[k])]).norm().item()
         for k in ("audio", "image")}
    us.on_after_backward(state)
    opt.step()  # first momentum step: Δθ = −lr · g
    us.on_batch_end(state)
    for k in ("audio", "image"):
        assert math.isclose(us.log[k][0], 0.1 * g[k], rel_tol=1e-4)
        assert math.isclose(us.mean(k), us.log[k][0]) and math.isclose(us.mean(k, epochs={0}), us.log[k][0])


def test_run_balanced_with_ogm_and_imbalance_smoke():
    x, y = _tiny_data(40)
    data = (x, y)
    ogm, us = B.OGMGE(alpha=0.3), B.UpdateSize()
    r = B.run_balanced(data, data, lambdas={"image": 1.0}, ogm=ogm, epochs=2, val=data, optimizer="sgd", lr=0.05,
                       callbacks=[us], model=B.build_model(dim=8, image_width=2, audio_hidden=4))
    assert 0 <= r["fused"] <= 1 and set(r["probe"]) == {"audio", "image"}
    assert 0 <= r["val"] <= 1 and r["best_epoch"] in (0, 1)
    assert len(ogm.log["coeff"]["audio"]) == len(ogm.log["step"]) == len(us.log["audio"]) >= 2
    alone = {"audio": B.build_unimodal("audio", dim=8, audio_hidden=4)[0], "image": B.build_unimodal("image", dim=8, image_width=2)[0]}
    gaps = B.imbalance(r["model"], alone, data, data)
    assert set(gaps["image"]) == {"inside", "alone", "gap"}
    with pytest.raises(ValueError, match="optimizer"):
        B.run_balanced(data, data, epochs=1, optimizer="lion", model=B.build_model(dim=8, image_width=2, audio_hidden=4))


def test_widget_headless_every_number_follows_the_sliders():
    x, y = _tiny_data(40)
    panel = lambda_panel((x, y), (x, y), val=(x, y), n_train=40, epochs=1)
    assert "λ audio = 0, λ image = 0, seed 0" in repr(panel)  # shown without a frontend
    assert panel._repr_mimebundle_()["text/plain"] == repr(panel)
    assert all(s.style.description_width == "initial" for s in panel.sliders.values())
    panel.sliders["image"].value = 1.5  # a slider move retrains at once
    assert len(panel.runs) == 2 and panel.runs[-1]["lambdas"]["image"] == 1.5
    assert "λ image = 1.5" in panel.status.value and "λ image = 1.5" in repr(panel)
    assert f"fused test acc {panel.runs[-1]['fused']:.3f}" in repr(panel)
    panel.button.click()  # same λ's, next seed
    assert panel.runs[-1]["seed"] == 1 and "seed 1" in repr(panel) and len(panel.runs) == 3


# ------------------------------------------------------------ the lesson's grid: cached experiments
def _tiny_config():
    return FitConfig(epochs=1, batch_size=16, lr=5e-3, schedule="onecycle")


def test_experiment_trains_once_then_loads_the_same_results(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    data = _tiny_data(48)
    kw = dict(train=data, val=data, test=data, config=_tiny_config(), seed=3)
    first = B.experiment("fused", lambdas={"image": 1.0}, **kw)
    again = B.experiment("fused", lambdas={"image": 1.0}, **kw)
    assert first["loaded"] is False and again["loaded"] is True
    for k in ("fused", "val", "best_epoch", "probe", "aux"):
        assert again[k] == first[k], k
    assert again["steps"].log == first["steps"].log and len(first["steps"].log["audio"]) == 3  # 48 / 16 steps
    assert B.experiment("fused", cached_only=True, **{**kw, "seed": 4}) is None  # nothing cached for seed 4
    assert B.experiment("fused", cached_only=True, **kw) is None  # λ = 0: another setting, not cached
    assert len(list(tmp_path.glob("balance-aux-adamw-seed3-*.pt"))) == 1


def test_experiment_keeps_the_ogm_log_and_the_adamw_warning_with_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    data = _tiny_data(32)
    kw = dict(train=data, val=data, test=data, config=_tiny_config(), ogm={"alpha": 0.5, "ge": False, "epochs": (0, 1)})
    r = B.experiment("fused", **kw)
    loaded = B.experiment("fused", **kw)
    assert loaded["loaded"] and loaded["ogm"] == r["ogm"] and len(r["ogm"]["coeff"]["audio"]) == 2
    assert any("invariant" in w for w in loaded["warnings"])  # AdamW: OGMGE warned, and the warning is kept


def test_experiment_refuses_unknown_kinds_and_aux_settings_on_one_encoder():
    data = _tiny_data(16)
    with pytest.raises(ValueError, match="unknown kind 'video'"):
        B.experiment("video", data, data, data)
    with pytest.raises(ValueError, match="fused model only"):
        B.experiment("audio", data, data, data, lambdas={"audio": 1.0})


def test_run_experiments_in_this_process_equals_one_by_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    data = _tiny_data(32)
    jobs = [dict(kind="fused", train=data, val=data, test=data, config=_tiny_config(), seed=s, probe=False)
            for s in (0, 1)]
    runs = B.run_experiments(jobs, workers=1)
    assert "2 runs: 0 loaded from the checkpoint cache, 2 trained" in capsys.readouterr().out
    again = B.run_experiments(jobs, workers=1)
    assert "2 runs: 2 loaded from the checkpoint cache, 0 trained" in capsys.readouterr().out
    assert [r["fused"] for r in runs] == [r["fused"] for r in again] and [r["seed"] for r in runs] == [0, 1]
