"""Tests of mmcourse.train: determinism, hooks, early stopping, dict inputs, errors."""

import pytest
import torch
from torch import nn

from mmcourse.train import FitConfig, evaluate, fit, predict, take


def toy(n=64, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y


def trained(seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    X, y = toy()
    history = fit(model, (X, y), (X, y), FitConfig(epochs=3, batch_size=8, lr=0.1, device="cpu", seed=seed, **kw))
    return model, history


def test_fit_is_deterministic_on_cpu():
    (m1, h1), (m2, h2) = trained(), trained()
    assert torch.equal(m1.weight, m2.weight)
    assert h1["train_loss"] == h2["train_loss"]


def test_fit_learns_a_separable_toy_problem():
    model, history = trained()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.9
    assert len(history["samples_per_s"]) == 3 and min(history["samples_per_s"]) > 0


def test_stop_flag_ends_training_within_one_batch_and_model_still_evaluates():
    class StopAtThree:
        def on_batch_end(self, state):
            if state.step == 3:
                state.stop = True

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    X, y = toy()
    seen = []
    hook = type("Count", (), {"on_batch_end": lambda self, s: seen.append(s.step)})()
    fit(model, (X, y), config=FitConfig(epochs=5, batch_size=8, device="cpu"), callbacks=[StopAtThree(), hook])
    assert seen == [1, 2, 3]
    assert 0.0 <= evaluate(model, X, y)["acc"] <= 1.0


def test_early_stopping_restores_the_best_epoch():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    X, y = toy()
    snapshots = []
    recorder = type("Rec", (), {"on_epoch_end": lambda self, s: snapshots.append(
        {k: v.clone() for k, v in s.model.state_dict().items()})})()
    # Validate on flipped labels: the better the model learns, the worse it scores, so the best
    # validation epoch is an early one and patience stops the run.
    history = fit(model, (X, y), (X, 1 - y), FitConfig(epochs=20, batch_size=8, lr=0.5, patience=2,
                                                         device="cpu"), callbacks=[recorder])
    best = history["best_epoch"]
    assert history.get("stopped_early") and len(history["val_acc"]) == best + 3
    assert torch.equal(model.weight, snapshots[best]["weight"])


def test_dict_inputs_and_dict_outputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            assert list(x) == ["audio", "image"]  # sorted keys reach the model
            return {"logits": self.a(x["audio"]) + self.b(x["image"])}

    X, y = toy()
    inputs = {"image": X[:, 2:], "audio": X[:, :2]}
    model = Two()
    fit(model, (inputs, y), config=FitConfig(epochs=1, batch_size=16, device="cpu"))
    assert predict(model, inputs).shape == (64, 2)
    assert take(inputs, torch.tensor([0, 5]))["audio"].shape == (2, 2)


def test_errors_name_the_fix():
    X, y = toy()
    with pytest.raises(ValueError, match="labels"):
        fit(nn.Linear(4, 2), (X, y[:10]), config=FitConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="same number of rows"):
        fit(nn.Linear(4, 2), ({"a": X, "b": X[:10]}, y), config=FitConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="adamw"):
        fit(nn.Linear(4, 2), (X, y), config=FitConfig(epochs=1, optimizer="rmsprop", device="cpu"))
    with pytest.raises(ValueError, match="'tpu' is not a device name"):
        fit(nn.Linear(4, 2), (X, y), config=FitConfig(epochs=1, device="tpu"))


def test_predict_works_on_a_model_without_parameters():
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    X = torch.randn(5, 2, 3)
    assert predict(model, X).shape == (5, 6)


def test_validation_selects_the_best_epoch_even_without_patience():
    """With val data, fit returns the best-val epoch's weights (select on validation, not the last)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    X, y = toy()
    snapshots = []
    recorder = type("Rec", (), {"on_epoch_end": lambda self, s: snapshots.append(
        {k: v.clone() for k, v in s.model.state_dict().items()})})()
    history = fit(model, (X, y), (X, y), FitConfig(epochs=6, batch_size=8, lr=2.0, device="cpu"),
                  callbacks=[recorder])
    best = history["best_epoch"]
    assert history["best_val_acc"] == max(history["val_acc"])
    assert best == history["val_acc"].index(max(history["val_acc"]))
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[best][k])
    torch.manual_seed(0)
    last = nn.Linear(4, 2)
    fit(last, (X, y), (X, y), FitConfig(epochs=6, batch_size=8, lr=2.0, device="cpu", restore_best=False))
    assert torch.equal(last.weight, snapshots[-1]["weight"])


def test_fit_refuses_a_test_split_as_validation_data():
    from mmcourse.data import load_av_digits

    test, val = load_av_digits("test"), load_av_digits("val")
    feats = {s.split: s.inputs["audio"].mean(1) for s in (test, val)}  # (N, 13)
    model = nn.Linear(13, 10)
    fit(model, (feats["val"], val.labels), (feats["val"], val.labels), FitConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="test split"):
        fit(model, (feats["val"], val.labels), (feats["test"], test.labels), FitConfig(epochs=1, device="cpu"))


@pytest.mark.parametrize("change, match", [
    ({"epochs": 0}, "epochs=0"), ({"epochs": -2}, "epochs=-2"), ({"batch_size": 0}, "batch_size=0"),
    ({"epochs": 2.5}, "epochs=2.5"), ({"lr": 0.0}, "lr=0.0"), ({"lr": float("nan")}, "lr=nan"),
    ({"patience": 0}, "patience=0"),
])
def test_configs_that_cannot_train_raise_naming_the_field(change, match):
    X, y = toy()
    with pytest.raises(ValueError, match=match):
        fit(nn.Linear(4, 2), (X, y), config=FitConfig(device="cpu", **change))


def test_bad_data_raises_naming_the_problem_and_fix():
    X, y = toy()
    bad = X.clone()
    bad[3, 1] = float("nan")
    cases = [
        (((X[:0], y[:0]), None), "train data is empty"),
        (((X, y), (X[:0], y[:0])), "val data is empty.*val=None"),
        (((bad, y), None), "1 NaN/inf.*nan_to_num"),
        (((X, y.float()), None), "int64 class indices.*labels.long"),
        (((X, y[:-1]), None), "64 input rows but 63 labels"),
        (((X, y - 5), None), "class indices 0 .. C-1"),
        (({"a": X, "b": X[:-1]}, y), "same number of rows"),
    ]
    for args, match in cases:
        if isinstance(args[0], dict):
            train, val = (args[0], args[1]), None
        else:
            train, val = args
        with pytest.raises(ValueError, match=match):
            fit(nn.Linear(4, 2), train, val, FitConfig(epochs=1, device="cpu"))


def test_divergence_warns_once_and_stops_before_ruining_the_weights():
    X, y = toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    with pytest.warns(RuntimeWarning, match="diverged") as rec:
        # a squared loss under SGD at lr 100 grows geometrically to inf within a few steps
        history = fit(model, (X, y), (X, y), FitConfig(epochs=30, batch_size=8, lr=100.0, optimizer="sgd",
                                                       device="cpu"), loss_fn=lambda out, _: (out ** 2).mean())
    assert len([w for w in rec if "diverged" in str(w.message)]) == 1
    assert history["diverged"] is True and len(history["train_loss"]) < 30
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_precision_auto_on_cpu_gives_exactly_the_fp32_result():
    (m32, h32), (mauto, hauto) = trained(precision="fp32"), trained(precision="auto")
    assert torch.equal(m32.weight, mauto.weight) and torch.equal(m32.bias, mauto.bias)
    assert h32["train_loss"] == hauto["train_loss"] and h32["val_acc"] == hauto["val_acc"]


def test_unknown_precision_names_the_field():
    X, y = toy()
    with pytest.raises(ValueError, match="precision='half'"):
        fit(nn.Linear(4, 2), (X, y), config=FitConfig(device="cpu", precision="half"))
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU"):
        fit(nn.Linear(4, 2), (X, y), config=FitConfig(device="cpu", precision="fp16"))


def test_float16_path_scales_the_loss_and_hooks_see_true_gradients(monkeypatch):
    """The T4 path (float16 autocast + GradScaler) exercised on the CPU: training still learns,
    and on_after_backward sees unscaled gradients (GradScaler starts at a scale of 65,536)."""
    import mmcourse.train as train_module

    class GradNorms:
        def __init__(self):
            self.norms = []

        def on_after_backward(self, state):
            self.norms.append(torch.cat([p.grad.flatten() for p in state.model.parameters()]).norm().item())

    def run():
        torch.manual_seed(0)
        model, hook, (X, y) = nn.Linear(4, 2), GradNorms(), toy()
        history = fit(model, (X, y), None, FitConfig(epochs=3, batch_size=8, lr=0.1, device="cpu"), callbacks=[hook])
        return history, hook.norms

    h32, n32 = run()
    monkeypatch.setattr(train_module, "choose_precision", lambda *args: (torch.float16, True))
    h16, n16 = run()
    assert h16["train_loss"][-1] < h16["train_loss"][0]
    torch.testing.assert_close(torch.tensor(n16[:5]), torch.tensor(n32[:5]), rtol=0.02, atol=1e-3)
    torch.testing.assert_close(torch.tensor(h16["train_loss"]), torch.tensor(h32["train_loss"]), rtol=0.05, atol=0.01)


def test_onecycle_schedule_warms_up_peaks_and_anneals():
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    model = nn.Linear(3, 2)
    lrs = []

    class Record:
        def on_after_backward(self, state):
            lrs.append(state.optimizer.param_groups[0]["lr"])

    fit(model, (x, y), config=FitConfig(epochs=5, batch_size=8, lr=1e-2, schedule="onecycle", device="cpu"),
        callbacks=[Record()])
    assert len(lrs) == 40
    assert lrs[0] == pytest.approx(1e-2 / 25)  # OneCycleLR's default div_factor
    assert max(lrs) == pytest.approx(1e-2, rel=1e-3) and lrs.index(max(lrs)) == 11  # peak at 30 % of 40 steps
    assert lrs[-1] < 1e-4  # annealed to ~0
    const = []

    class RecordConst:
        def on_after_backward(self, state):
            const.append(state.optimizer.param_groups[0]["lr"])

    fit(nn.Linear(3, 2), (x, y), config=FitConfig(epochs=1, batch_size=8, lr=1e-2, device="cpu"), callbacks=[RecordConst()])
    assert const == [1e-2] * 8


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule='cosine'.*onecycle"):
        fit(nn.Linear(3, 2), (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])),
            config=FitConfig(epochs=1, schedule="cosine", device="cpu"))
