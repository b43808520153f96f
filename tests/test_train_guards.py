"""Tests of the guards in mmcourse.train.fit (and the data layer they rely on): blow-ups, test
data passed as validation data, bad grad_clip, labels the model cannot output, divergence inside
a fusion model, and data settings changed in a running kernel."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.fusion import ConcatFusion, MultimodalClassifier
from mmcourse.train import FitConfig, evaluate, fit


def toy(n=64, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y


def cfg(**kw):
    return FitConfig(**{"epochs": 3, "batch_size": 8, "device": "cpu", **kw})


def no_warnings(*args, **kwargs):
    """fit(...) with every warning turned into an error: a normal run must not trip a guard."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fit(*args, **kwargs)


def max_weight(model):
    return max(p.detach().abs().max().item() for p in model.parameters())


# --- 1. a blow-up to a huge *finite* loss is detected ------------------------------------------

def test_a_huge_finite_cross_entropy_is_a_blow_up_and_the_initial_weights_come_back():
    """AdamW at lr 1e30: the loss stays finite (~1e29) but the weights reach ~1e30."""
    X, y = toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(RuntimeWarning, match=r"blew up at epoch 0.*100x the untrained model's.*learning rate "
                                            r"1e\+30 too high.*initial weights.*grad_clip") as rec:
        history = fit(model, (X, y), None, cfg(lr=1e30))
    assert len(rec) == 1 and history["diverged"] is True and len(history["train_loss"]) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, initial[k])


def test_a_loss_ten_times_the_first_epochs_is_a_blow_up():
    """A custom loss (so no ln C reference) growing epoch after epoch under SGD + momentum."""
    X, y = toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    snapshots = []
    hook = type("Rec", (), {"on_epoch_end": lambda self, s: snapshots.append(
        {k: v.clone() for k, v in s.model.state_dict().items()})})()
    with pytest.warns(RuntimeWarning, match=r"blew up at epoch 1: .* over 10x epoch 0's.*end of epoch 0"):
        history = fit(model, (X, y), None, cfg(epochs=8, lr=1.0, optimizer="sgd"), callbacks=[hook],
                      loss_fn=lambda out, _: (out ** 2).mean())
    assert history["diverged"] is True and len(history["train_loss"]) == 2
    assert history["train_loss"][1] > 10 * history["train_loss"][0]
    assert len(snapshots) == 1 and torch.equal(model.weight, snapshots[0]["weight"])


def test_astronomic_weights_under_a_bounded_loss_are_a_blow_up():
    """A loss bounded in [0, 1] never explodes, but AdamW at lr 1e8 sends the weights to ~1e8."""
    X, y = toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    margin_loss = lambda out, t: torch.sigmoid(-(out[:, 1] - out[:, 0]) * (2 * t - 1)).mean()  # noqa: E731
    with pytest.warns(RuntimeWarning, match=r"blew up at epoch 0: a weight reached .*e\+0[89]"):
        history = fit(model, (X, y), None, cfg(lr=1e8), loss_fn=margin_loss)
    assert history["diverged"] is True and max_weight(model) < 10


def test_a_blow_up_with_validation_returns_the_best_epoch_before_it():
    X, y = toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    snapshots = []
    boost = type("Boost", (), {"on_epoch_end": lambda self, s: (
        snapshots.append({k: v.clone() for k, v in s.model.state_dict().items()}),
        [g.update(lr=1e30) for g in s.optimizer.param_groups])})()  # a learner turning the lr up live
    with pytest.warns(RuntimeWarning, match=r"blew up at epoch 1.*weights of epoch 0, the best on validation"):
        history = fit(model, (X, y), (X, y), cfg(lr=0.1), callbacks=[boost])
    assert history["best_epoch"] == 0 and len(history["val_acc"]) == 1 and len(history["train_loss"]) == 2
    assert torch.equal(model.weight, snapshots[0]["weight"])


def test_normal_runs_never_trip_the_blow_up_guard():
    X, y = toy()
    torch.manual_seed(0)
    no_warnings(nn.Linear(4, 2), (X, y), (X, y), cfg(epochs=20, lr=0.1))
    # unstandardised inputs: a large first loss that then falls is not a blow-up
    torch.manual_seed(0)
    history = no_warnings(nn.Linear(4, 2), (300 * X, y), None, cfg(epochs=10, lr=1e-2))
    assert history["train_loss"][0] > 10 and history["diverged"] is False
    # a loss that starts near 0 and grows 12x but by little (e.g. distillation from a copy) is not one
    values = iter(torch.linspace(1e-3, 0.2, 6 * 8).tolist())
    history = no_warnings(nn.Linear(4, 2), (X, y), None, cfg(epochs=6),
                          loss_fn=lambda out, t: out.sum() * 0 + next(values))
    assert history["train_loss"][-1] > 10 * history["train_loss"][0] and history["diverged"] is False


def test_the_course_protocol_on_av_digits_does_not_trip_a_guard():
    """The teacher's protocol of lessons 09-10 (lr 3e-3, batch 64) on a slice of the real data."""
    from mmcourse.data import load_av_digits
    from mmcourse.fusion.zoo import build_av_model

    tr, va = load_av_digits("train"), load_av_digits("val")
    torch.manual_seed(0)
    model = build_av_model("concat")
    history = no_warnings(model, ({k: v[:256] for k, v in tr.inputs.items()}, tr.labels[:256]),
                          ({k: v[:128] for k, v in va.inputs.items()}, va.labels[:128]),
                          cfg(epochs=2, batch_size=64, lr=3e-3))
    assert history["diverged"] is False and len(history["val_acc"]) == 2


# --- 2. slices, subsets and shuffles of a test split are refused as validation data ------------

@pytest.fixture(scope="module")
def splits():
    from mmcourse.data import load_av_digits
    return {s: load_av_digits(s) for s in ("train", "val", "test")}


def test_subsets_of_the_test_split_are_refused_as_validation_data(splits):
    tr, va, te = splits["train"], splits["val"], splits["test"]
    feats = {s: d.inputs["audio"].mean(1) for s, d in splits.items()}  # (N, 13) derived features
    train = (feats["train"][:200], tr.labels[:200])
    perm = torch.randperm(len(te), generator=torch.Generator().manual_seed(0))[:100]
    refused = [
        ((feats["test"], te.labels), "its labels are a test split's"),
        ((feats["test"][:200], te.labels[:200]), "run of 200 labels of a test split"),
        ((feats["test"][300:340], te.labels[300:340]), "run of 40 labels"),
        (({k: v[perm] for k, v in te.inputs.items()}, te.labels[perm]), "100 of its 100 rows are test examples"),
        (({k: v[::3] for k, v in te.inputs.items()}, te.labels[::3]), "334 of its 334 rows are test examples"),
        (({k: torch.cat([va.inputs[k][:50], te.inputs[k][:5]]) for k in te.inputs},
          torch.cat([va.labels[:50], te.labels[:5]])), "5 of its 55 rows are test examples"),
        ((te.inputs["image"][perm].flatten(1), te.labels[perm]), "100 of its 100 rows"),  # flattened
    ]
    for val, match in refused:  # refused up front, before the model ever sees the inputs
        with pytest.raises(ValueError, match=rf"come from a test split.*{match}.*pass the 'val' split"):
            fit(nn.Linear(13, 10), train, val, FitConfig(epochs=1, device="cpu"))


def test_train_and_val_subsets_are_accepted_as_validation_data(splits):
    from mmcourse.data import av

    tr, va = splits["train"], splits["val"]
    perm = torch.randperm(len(va), generator=torch.Generator().manual_seed(0))[:100]
    for d, rows in ((va, slice(None)), (va, slice(0, 200)), (va, perm), (tr, slice(0, 500)), (tr, slice(7, 47))):
        assert not av.is_test_labels(d.labels[rows]) and av.test_rows(d.inputs) == 0
        assert av.test_rows({k: v[rows] for k, v in d.inputs.items()}) == 0
    feats = va.inputs["audio"].mean(1)
    fit(nn.Linear(13, 10), (feats, va.labels), (feats[perm], va.labels[perm]), FitConfig(epochs=1, device="cpu"))


def test_clean_test_splits_and_other_seeds_are_marked_too(monkeypatch):
    from mmcourse.data import av, load_av_digits

    # marks left by tests that loaded splits under other SPLITS bounds in this process would
    # cover rows that are val here: start from none
    monkeypatch.setattr(av, "_TEST_LABELS", {})
    monkeypatch.setattr(av, "_TEST_ROWS", {})

    te, va = load_av_digits("test", "clean", seed=1), load_av_digits("val", "clean", seed=1)
    assert av.test_rows({"image": te.inputs["image"][10:20]}) == 10
    assert av.test_rows(va.inputs) == 0 and not av.is_test_labels(va.labels[:100])
    assert not av.is_test_labels(te.labels[:5])  # too short a run to tell from chance


# --- 3. grad_clip is validated; a non-finite stop says which weights it returns ---------------

@pytest.mark.parametrize("clip", [-1, -0.5, 0, 0.0, float("nan"), float("inf"), True, "1.0"])
def test_grad_clip_must_be_none_or_a_finite_positive_number(clip):
    X, y = toy()
    with pytest.raises(ValueError, match=rf"FitConfig.grad_clip={clip!r}: use None .* finite number > 0"):
        fit(nn.Linear(4, 2), (X, y), config=cfg(grad_clip=clip))


def test_a_valid_grad_clip_trains():
    X, y = toy()
    for clip in (None, 1, 0.5):
        torch.manual_seed(0)
        history = no_warnings(nn.Linear(4, 2), (X, y), (X, y), cfg(lr=0.1, grad_clip=clip))
        assert history["train_loss"][-1] < history["train_loss"][0]


def test_a_non_finite_stop_names_the_weights_it_returns():
    X, y = toy()
    # the loss turns NaN on the 20th batch, the weights stay sane: keep the last finite step's
    calls = []

    def nan_later(out, t):
        calls.append(1)
        return F.cross_entropy(out, t) * (float("nan") if len(calls) == 20 else 1.0)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    with pytest.warns(RuntimeWarning, match=r"loss became nan at epoch 2, step 19.*its last finite step \(step 19\)"):
        history = fit(model, (X, y), None, cfg(epochs=5, lr=0.1), loss_fn=nan_later)
    assert history["diverged"] is True and all(torch.isfinite(p).all() for p in model.parameters())
    # with validation data: the best epoch's weights, and the warning says so
    calls.clear()
    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match=r"loss became nan.*weights of epoch \d, the best on validation"):
        fit(nn.Linear(4, 2), (X, y), (X, y), cfg(epochs=5, lr=0.1), loss_fn=nan_later)
    # runaway weights before the NaN: back to the last healthy epoch's (here the initial) weights
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    initial = model.weight.clone()
    with pytest.warns(RuntimeWarning, match=r"diverged.*reset to its initial weights"):
        fit(model, (X, y), None, cfg(epochs=30, lr=100.0, optimizer="sgd"), loss_fn=lambda out, _: (out ** 2).mean())
    assert torch.equal(model.weight, initial)


# --- 4. labels the model cannot output fail before training -----------------------------------

def test_labels_beyond_the_models_outputs_fail_before_the_first_step():
    X, y = toy()
    steps = []
    hook = type("Count", (), {"on_batch_end": lambda self, s: steps.append(s.step)})()
    bad = y.clone()
    bad[40] = 11
    with pytest.raises(ValueError, match=r"train labels go up to 11 but the model outputs 2 logits.*"
                                         r"nn.Linear\(\.\.\., 12\).*0 \.\. 1"):
        fit(nn.Linear(4, 2), (X, bad), None, cfg(), callbacks=[hook])
    with pytest.raises(ValueError, match=r"val labels go up to 11 but the model outputs 2 logits"):
        fit(nn.Linear(4, 2), (X, y), (X, bad), cfg(), callbacks=[hook])
    assert steps == []  # not one update, not one epoch wasted
    # a custom loss may use labels its own way (e.g. per-token), so only val labels are checked then
    fit(nn.Linear(4, 2), (X, bad), None, cfg(epochs=1), loss_fn=lambda out, t: out.pow(2).mean())


# --- 5. divergence inside a fusion model is called divergence, not NaN data -------------------

def fusion_model():
    torch.manual_seed(0)
    mlp = lambda d: nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 4))  # noqa: E731
    return MultimodalClassifier(nn.ModuleDict({"audio": mlp(3), "image": mlp(2)}),
                                ConcatFusion({"audio": 4, "image": 4}, 2, hidden=None))


def test_non_finite_features_during_training_are_a_divergence_not_nan_data():
    X, y = toy()
    inputs = {"audio": X[:, :3], "image": X[:, 2:]}
    model = fusion_model()
    with pytest.warns(RuntimeWarning, match=r"features became NaN/inf at epoch 0, step 1 \(the inputs were "
                                            r"finite\).*diverged \(learning rate 1e\+38 too high") as rec:
        history = fit(model, (inputs, y), (inputs, y), cfg(lr=1e38, optimizer="sgd"))
    assert not any("nan_to_num" in str(w.message) for w in rec)
    assert history["diverged"] is True and all(torch.isfinite(p).all() for p in model.parameters())
    assert 0.0 <= evaluate(model, inputs, y)["acc"] <= 1.0


def test_non_finite_features_from_the_untrained_model_still_raise():
    X, y = toy()
    model = fusion_model()
    with torch.no_grad():
        model.encoders["audio"][0].bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="'audio' features contain NaN or inf"):
        fit(model, ({"audio": X[:, :3], "image": X[:, 2:]}, y), None, cfg())


# --- 6. a data setting changed in a running kernel takes effect -------------------------------

def test_a_changed_hard_setting_changes_the_data_and_the_checkpoint_key(monkeypatch):
    from mmcourse import checkpoint
    from mmcourse.data import av, load_av_digits

    before = load_av_digits("val")
    monkeypatch.setattr(av, "HARD_IMAGE_VARIANCE", 0.6)
    after = load_av_digits("val")
    assert after.image_components > before.image_components
    assert not torch.equal(after.inputs["image"], before.inputs["image"])
    assert checkpoint.fingerprint({"val": after.inputs}) != checkpoint.fingerprint({"val": before.inputs})
    monkeypatch.setattr(av, "HARD_IMAGE_VARIANCE", 0.28)
    again = load_av_digits("val")
    assert again.image_components == before.image_components
    assert torch.equal(again.inputs["image"], before.inputs["image"])


def test_changed_split_bounds_change_the_pairs(monkeypatch):
    from mmcourse.data import av, load_av_digits

    n = len(load_av_digits("val", "clean"))
    monkeypatch.setitem(av.SPLITS, "val", (0.7, 0.9))
    monkeypatch.setitem(av.SPLITS, "test", (0.9, 1.0))
    assert len(load_av_digits("val", "clean")) == 2 * n  # (not the test split: it would be marked)
