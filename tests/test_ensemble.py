"""mmcourse.ensemble: K seeds trained as one vmapped model equal K runs of ``fit`` (float64, to
round-off): weights (BatchNorm buffers included), histories, best epochs; clipping per model; a
diverging seed stops alone; clear errors. And ``zoo.run_grid(ensemble=True)``: same results as
the serial path, cache entries that ``run`` loads."""

import warnings

import pytest
import torch
from torch import nn

from mmcourse.ensemble import clip_per_model, fit_ensemble
from mmcourse.fusion.zoo import build_av_model
from mmcourse.runtime import seed_everything
from mmcourse.train import FitConfig, fit

SEEDS = [0, 1, 2]


def _splits(keys, n_train=256, n_val=128, dtype=torch.float64):
    from mmcourse.data import load_av_digits
    cut = lambda d, n: ({k: d.inputs[k][:n].to(dtype) for k in keys}, d.labels[:n])  # noqa: E731
    return cut(load_av_digits("train"), n_train), cut(load_av_digits("val"), n_val)


def _keys(method):
    return [method.removesuffix("_only")] if method.endswith("_only") else ["audio", "image"]


def _serial(build, seeds, train, val, config):
    out = []
    for s in seeds:
        seed_everything(s)
        model = build()
        out.append((model, fit(model, train, val, FitConfig(**{**config.__dict__, "seed": s}))))
    return out


def _assert_same(ensemble, serial, atol=1e-10):
    models, histories = ensemble
    for k, ((model, h), m, e) in enumerate(zip(serial, models, histories)):
        a, b = model.state_dict(), m.state_dict()
        assert list(a) == list(b)
        for name in a:  # parameters and BatchNorm running stats / num_batches_tracked
            torch.testing.assert_close(b[name], a[name], atol=atol, rtol=0, msg=f"seed {k}: {name}")
        # the loss is float32 in both (fit's default loss casts the logits): round-off of float32
        torch.testing.assert_close(e["train_loss"], h["train_loss"], rtol=1e-6, atol=0)
        torch.testing.assert_close(e["val_loss"], h["val_loss"], rtol=1e-6, atol=0)
        assert e["val_acc"] == h["val_acc"]  # counts of right answers: no round-off
        for key in ("best_epoch", "best_val_acc", "diverged", "stopped_early"):
            assert e.get(key) == h.get(key), (k, key)
        assert len(e["seconds"]) == len(h["seconds"]) and not m.training


@pytest.mark.parametrize("method,config", [
    ("late", FitConfig(epochs=3, batch_size=64, lr=5e-3, device="cpu")),
    ("image_only", FitConfig(epochs=3, batch_size=48, lr=5e-3, schedule="onecycle", weight_decay=1e-2,
                             device="cpu")),  # batch 48: a short last batch
    ("audio_only", FitConfig(epochs=4, batch_size=64, lr=3e-2, patience=1, restore_best=False, device="cpu")),
])
def test_ensemble_equals_fit_per_seed_in_float64(method, config):
    train, val = _splits(_keys(method))
    build = lambda: build_av_model(method).double()  # noqa: E731
    _assert_same(fit_ensemble(build, SEEDS, train, val, config), _serial(build, SEEDS, train, val, config))


def test_sgd_weight_decay_and_grad_clip_per_model_without_val():
    train, _ = _splits(["image"], n_train=192)
    config = FitConfig(epochs=2, batch_size=64, lr=0.05, optimizer="sgd", weight_decay=1e-3, grad_clip=0.3,
                       device="cpu")
    build = lambda: build_av_model("image_only").double()  # noqa: E731
    models, histories = fit_ensemble(build, [3, 7], train, None, config)
    serial = _serial(build, [3, 7], train, None, config)
    _assert_same((models, histories), serial)
    assert "best_epoch" not in histories[0]


def test_clip_per_model_is_clip_grad_norm_of_each_model():
    torch.manual_seed(0)
    grads = [torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)]
    grads[0][1] *= 1e-3  # model 1's norm is below max_norm: left alone
    expected = []
    for k in range(3):
        ps = [nn.Parameter(g[k].clone()) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g[k].clone()
        expected.append((nn.utils.clip_grad_norm_(ps, 1.0), [p.grad for p in ps]))
    norms = clip_per_model(grads, 1.0)
    for k, (norm, clipped) in enumerate(expected):
        torch.testing.assert_close(norms[k], norm)
        for g, c in zip(grads, clipped):
            torch.testing.assert_close(g[k], c)
    # by hand: model 0's gradients scaled to total norm 1
    total = torch.cat([g[0].flatten() for g in grads]).norm()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_a_diverging_seed_stops_alone_warns_and_keeps_what_fit_keeps():
    train, val = _splits(["image"], n_train=192)
    config = FitConfig(epochs=2, batch_size=64, lr=5e-3, device="cpu")

    def build():
        model = build_av_model("image_only").double()
        if torch.initial_seed() == 1:  # seed 1 only: one weight already blown up (fit's limit is 1e6)
            with torch.no_grad():
                model.fusion.net.weight[0, 0] = 2e6
        return model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ensemble = fit_ensemble(build, SEEDS, train, val, config)
    said = [str(w.message) for w in caught if "fit_ensemble" in str(w.message)]
    assert len(said) == 1 and "seed 1" in said[0] and "a weight reached" in said[0] and "initial weights" in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = _serial(build, SEEDS, train, val, config)
    assert [h["diverged"] for h in ensemble[1]] == [False, True, False]
    _assert_same(ensemble, serial)  # the others trained on, untouched; seed 1 holds what fit leaves


def test_bad_input_names_the_fix():
    train, val = _splits(["image"], n_train=64, n_val=64, dtype=torch.float32)
    build = lambda: build_av_model("image_only")  # noqa: E731
    cpu = FitConfig(epochs=1, device="cpu")
    with pytest.raises(ValueError, match="non-empty list"):
        fit_ensemble(build, [], train, val, cpu)
    with pytest.raises(ValueError, match=r"repeats a seed.*\[0, 1\]"):
        fit_ensemble(build, [0, 1, 0], train, val, cpu)
    with pytest.raises(ValueError, match="must be an int"):
        fit_ensemble(build, [0, True], train, val, cpu)
    with pytest.raises(ValueError, match="float32 only"):
        fit_ensemble(build, [0, 1], train, val, FitConfig(epochs=1, device="cpu", precision="bf16"))
    with pytest.raises(ValueError, match="compile=False"):
        fit_ensemble(build, [0, 1], train, val, FitConfig(epochs=1, device="cpu", compile=True))
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        fit_ensemble(build, [0, 1], train, val, FitConfig(epochs=1, device="cpu", optimizer="adam"))
    with pytest.raises(ValueError, match="schedule='cosine'"):
        fit_ensemble(build, [0, 1], train, val, FitConfig(epochs=1, device="cpu", schedule="cosine"))
    with pytest.raises(ValueError, match="epochs=0"):
        fit_ensemble(build, [0, 1], train, val, FitConfig(epochs=0, device="cpu"))
    with pytest.raises(ValueError, match="differ in architecture"):
        fit_ensemble(lambda: build_av_model("image_only", dim=8 + torch.initial_seed()), [0, 1], train, val, cpu)
    with pytest.raises(ValueError, match="labels.long"):
        fit_ensemble(build, [0, 1], (train[0], train[1].float()), val, cpu)
    with pytest.raises(ValueError, match="up to 12.*13 outputs"):
        fit_ensemble(build, [0, 1], (train[0], train[1].clone().fill_(12)), val, cpu)
    nan = {"image": train[0]["image"].clone()}
    nan["image"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf.*nan_to_num"):
        fit_ensemble(build, [0, 1], (nan, train[1]), val, cpu)
    from mmcourse.data import load_av_digits
    test = load_av_digits("test")
    with pytest.raises(ValueError, match="test split"):
        fit_ensemble(build, [0, 1], train, ({"image": test.inputs["image"]}, test.labels), cpu)


def test_run_grid_ensemble_gives_the_serial_results_and_cache_entries_run_loads(tmp_path, monkeypatch, capsys):
    from mmcourse.data import load_av_digits
    from mmcourse.fusion import zoo
    from mmcourse.parallel import one_thread

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    tr, va, te = (load_av_digits(s) for s in ("train", "val", "test"))
    small = ({k: v[:192] for k, v in tr.inputs.items()}, tr.labels[:192])
    cfg = FitConfig(epochs=2, batch_size=64, lr=5e-3, schedule="onecycle", device="cpu")
    grid = (["late", "image_only"], [0, 1], small, va, te, cfg)
    together = zoo.run_grid(*grid, ensemble=True)
    assert "4 trained (4 of them as 2 vmapped ensemble(s))" in capsys.readouterr().out
    serial = zoo.run_grid(*grid, cache=False, ensemble=False, workers=1)
    assert [(r["method"], r["seed"]) for r in together] == [(r["method"], r["seed"]) for r in serial]
    for a, b in zip(together, serial):
        # float32: batched kernels round differently in the last bits, so weights agree to ~1e-6,
        # and a test example sitting on a decision boundary could flip: allow one of 1000
        for name, p in a["model"].state_dict().items():
            torch.testing.assert_close(p, b["model"].state_dict()[name], atol=1e-4, rtol=0, msg=name)
        assert abs(a["test_acc"] - b["test_acc"]) <= 1 / len(te.labels)
        assert a["best_epoch"] == b["best_epoch"] and not a["loaded"] and a["seconds"] > 0
    again = zoo.run_grid(*grid, ensemble=False)  # every entry the ensemble saved loads under run's key
    assert "4 loaded from the checkpoint cache, 0 trained" in capsys.readouterr().out
    with one_thread():  # the thread count the grid trains and saves with
        one = zoo.run("late", small, va, te, cfg, seed=1, cache=True)
    assert one["loaded"] and one["test_acc"] == together[1]["test_acc"]
    for a, b in zip(together, again):
        assert b["loaded"] and a["test_acc"] == b["test_acc"] and a["history"]["val_acc"] == b["history"]["val_acc"]
        for p, q in zip(a["model"].state_dict().values(), b["model"].state_dict().values()):
            assert torch.equal(p, q)
