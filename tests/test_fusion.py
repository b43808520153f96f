"""Tests of mmcourse.fusion: the contract, hand-computed outputs, missing modalities, errors."""

import pytest
import torch
from torch import nn

from mmcourse.fusion import (METHODS, ConcatFusion, CrossAttentionFusion, FiLMFusion, GatedFusion,
                             LateFusion, LowRankTensorFusion, MultimodalClassifier, TensorFusion,
                             WeightedSumFusion)

DIMS = {"image": 4, "audio": 3}
MASKING = {"late", "weighted_sum", "cross_attention"}


def feats(B=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(B, 4, generator=g, dtype=dtype), "audio": torch.randn(B, 3, generator=g, dtype=dtype)}


@pytest.mark.parametrize("name", list(METHODS))
def test_shape_and_gradient_flow(name):
    torch.manual_seed(0)
    m = METHODS[name](DIMS, 5)
    if name == "film":  # zero-initialised conditioning passes no gradient to audio until it moves
        nn.init.normal_(m.film.weight, std=0.1)
    x = {k: v.requires_grad_() for k, v in feats().items()}
    out = m(x)
    assert out.shape == (2, 5)
    out.square().sum().backward()
    for k in x:
        assert x[k].grad is not None and x[k].grad.abs().sum() > 0, f"no gradient reaches {k}"
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


@pytest.mark.parametrize("name", list(METHODS))
def test_key_order_does_not_matter(name):
    torch.manual_seed(0)
    m = METHODS[name]({"audio": 3, "image": 4}, 5).eval()
    torch.manual_seed(0)
    m2 = METHODS[name]({"image": 4, "audio": 3}, 5).eval()
    x = feats()
    reordered = {"audio": x["audio"], "image": x["image"]}
    torch.testing.assert_close(m(x), m(reordered))
    torch.testing.assert_close(m(x), m2(x))  # construction order doesn't matter either


@pytest.mark.parametrize("name", list(METHODS))
def test_missing_modality_is_handled_or_named(name):
    m = METHODS[name](DIMS, 5).eval()
    only_image = {"image": feats()["image"]}
    if name in MASKING:
        assert m(only_image).shape == (2, 5)
    else:
        with pytest.raises(KeyError, match="missing modality \\['audio'\\]"):
            m(only_image)


@pytest.mark.parametrize("name", list(METHODS))
def test_bad_inputs_get_clear_errors(name):
    m = METHODS[name](DIMS, 5)
    x = feats()
    with pytest.raises(ValueError, match=r"'image' features must be \(B, 4\)"):
        m({**x, "image": torch.randn(2, 5)})
    with pytest.raises(ValueError, match="same batch size"):
        m({**x, "image": torch.randn(3, 4)})
    with pytest.raises(ValueError, match="NaN or inf"):
        m({**x, "audio": torch.tensor([[float("nan"), 0, 0], [0, 0, 0]])})
    with pytest.raises(KeyError, match="unknown modality \\['text'\\]"):
        m({**x, "text": torch.randn(2, 4)})


def test_concat_is_one_linear_layer_over_sorted_keys():
    m = ConcatFusion(DIMS, 5, hidden=None)
    x = feats()
    want = torch.cat([x["audio"], x["image"]], 1) @ m.net.weight.T + m.net.bias
    torch.testing.assert_close(m(x), want)


def test_late_fusion_mean_and_vote():
    m = LateFusion(DIMS, 5).eval()
    x = feats()
    want = (m.heads["audio"](x["audio"]) + m.heads["image"](x["image"])) / 2
    torch.testing.assert_close(m(x), want)
    v = LateFusion(DIMS, 5, combine="vote").eval()
    v.load_state_dict(m.state_dict())
    single = v({"image": x["image"]})
    assert torch.equal(single.argmax(-1), v.heads["image"](x["image"]).argmax(-1))


def test_weighted_sum_one_hot_equals_single_modality_path():
    m = WeightedSumFusion(DIMS, 5, weights={"image": 1.0, "audio": 0.0})
    x = feats()
    torch.testing.assert_close(m(x), m.head(m.proj["image"](x["image"])))
    m.set_weights({"audio": 0.25, "image": 0.75})
    want = m.head(0.25 * m.proj["audio"](x["audio"]) + 0.75 * m.proj["image"](x["image"]))
    torch.testing.assert_close(m(x), want)
    # absent audio: image keeps the total weight 1.0
    torch.testing.assert_close(m({"image": x["image"]}), m.head(m.proj["image"](x["image"])))
    with pytest.raises(KeyError, match="weight for each"):
        m.set_weights({"image": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        m.set_weights({"image": 1.0, "audio": -1.0})


def test_weighted_sum_learned_weights_train_and_sum_to_one():
    m = WeightedSumFusion(DIMS, 5, learn=True)
    assert abs(sum(m.weights().values()) - 1) < 1e-6
    m(feats()).sum().backward()
    assert m.weight_logits.grad is not None


def test_gated_gates_sum_to_one():
    m = GatedFusion(DIMS, 5, hidden=6)
    g = m.gates(feats())
    assert g.shape == (2, 2, 6)
    torch.testing.assert_close(g.sum(1), torch.ones(2, 6))


def test_film_starts_as_the_target_alone():
    m = FiLMFusion(DIMS, 5)  # target "image", conditioned on "audio"
    x = feats()
    torch.testing.assert_close(m(x), m.head(m.proj(x["image"])))
    with pytest.raises(KeyError, match="target"):
        FiLMFusion(DIMS, 5, target="text")


def test_tensor_outer_product_by_hand():
    m = TensorFusion({"audio": 2, "image": 1}, 3, proj=None)
    x = {"audio": torch.tensor([[1.0, 2.0]]), "image": torch.tensor([[3.0]])}
    # [1, 2, 1] ⊗ [3, 1] flattened
    torch.testing.assert_close(m.outer(x), torch.tensor([[3.0, 1.0, 6.0, 2.0, 3.0, 1.0]]))


def test_low_rank_equals_full_weight_tensor_and_factors_train():
    torch.manual_seed(0)
    m = LowRankTensorFusion(DIMS, 5, rank=3, hidden=6).double()
    x = feats(dtype=torch.float64)
    fa = torch.cat([x["audio"], torch.ones(2, 1, dtype=torch.float64)], 1)  # (B, 4)
    fi = torch.cat([x["image"], torch.ones(2, 1, dtype=torch.float64)], 1)  # (B, 5)
    # the full weight tensor W[a, i, h] = Σ_r λ_r A[r, a, h] I[r, i, h]
    W = torch.einsum("r,rah,rih->aih", m.rank_weights, m.factors["audio"], m.factors["image"])
    h = torch.einsum("ba,bi,aih->bh", fa, fi, W) + m.bias
    torch.testing.assert_close(m(x), m.head(h))
    names = {n for n, _ in m.named_parameters()}
    assert {"factors.audio", "factors.image"} <= names  # registered, so the optimiser sees them
    m(x).sum().backward()
    assert all(m.factors[k].grad.abs().sum() > 0 for k in ("audio", "image"))


def test_cross_attention_ignores_absent_modality():
    m = CrossAttentionFusion(DIMS, 5, d_model=8, heads=2).eval()
    m({"image": feats()["image"]})
    assert torch.all(m.last_attention[:, :, 0] == 0)  # sorted keys: 0 = audio, absent
    with pytest.raises(ValueError, match="divide"):
        CrossAttentionFusion(DIMS, 5, d_model=10, heads=4)


def test_multimodal_classifier_end_to_end_and_errors():
    enc = nn.ModuleDict({"image": nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), "audio": nn.Linear(6, 3)})
    model = MultimodalClassifier(enc, LateFusion(DIMS, 5))
    inputs = {"image": torch.randn(2, 1, 4, 4), "audio": torch.randn(2, 6)}
    assert model(inputs).shape == (2, 5)
    assert model({"audio": inputs["audio"]}).shape == (2, 5)
    with pytest.raises(KeyError, match="unknown modality"):
        model({**inputs, "text": torch.randn(2, 3)})
    with pytest.raises(ValueError, match="same modalities"):
        MultimodalClassifier(nn.ModuleDict({"image": enc["image"]}), LateFusion(DIMS, 5))


def test_constructor_errors():
    with pytest.raises(ValueError, match="positive integer"):
        ConcatFusion({"image": 0}, 5)
    with pytest.raises(ValueError, match="combine"):
        LateFusion(DIMS, 5, combine="max")
    with pytest.raises(TypeError, match="dict"):
        ConcatFusion(DIMS, 5)(torch.randn(2, 7))


# ---------------------------------------------------------------- zoo: run, summarize, compare
def _tiny_splits(n_train=96, n_eval=48):
    from mmcourse.data import load_av_digits
    cut = lambda d, n: ({k: v[:n] for k, v in d.inputs.items()}, d.labels[:n])  # noqa: E731
    return (cut(load_av_digits("train"), n_train), cut(load_av_digits("val"), n_eval),
            cut(load_av_digits("test"), n_eval))


@pytest.mark.parametrize("method", ["gated", "cross_attention"])
def test_zoo_run_same_seed_twice_repeats_exactly(method):
    from mmcourse.fusion.zoo import run
    from mmcourse.train import FitConfig
    train, val, test = _tiny_splits()
    config = FitConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu")
    torch.manual_seed(123)  # whatever ran before must not matter: run seeds everything itself
    a = run(method, train, val, test, config, seed=1)
    torch.randn(100)
    b = run(method, train, val, test, config, seed=1)
    assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"]
    assert a["history"]["val_acc"] == b["history"]["val_acc"]
    for (name, p), q in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
        assert torch.equal(p, q), f"{name} differs between two runs with the same seed"
    c = run(method, train, val, test, config, seed=2)
    assert any(not torch.equal(p, q) for p, q in zip(a["model"].state_dict().values(), c["model"].state_dict().values()))


def test_zoo_run_selects_on_validation_and_never_looks_at_test_labels():
    from mmcourse.fusion.zoo import run
    from mmcourse.train import FitConfig
    train, val, test = _tiny_splits()
    config = FitConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu")
    r = run("late", train, val, test, config, seed=0)
    h = r["history"]
    assert r["val_acc"] == max(h["val_acc"]) and r["best_epoch"] == h["val_acc"].index(max(h["val_acc"]))
    shuffled = (test[0], test[1][torch.randperm(len(test[1]), generator=torch.Generator().manual_seed(0))])
    s = run("late", train, val, shuffled, config, seed=0)
    assert s["val_acc"] == r["val_acc"] and s["best_epoch"] == r["best_epoch"]
    for p, q in zip(r["model"].state_dict().values(), s["model"].state_dict().values()):
        assert torch.equal(p, q)  # other test labels, the very same model


def _table():
    from mmcourse.fusion.zoo import summarize
    runs = [{"method": m, "seed": s, "test_acc": acc, "val_acc": acc, "best_epoch": 1, "params": 10, "seconds": 1.0}
            for m, accs in {"a": [0.80, 0.82, 0.84], "b": [0.79, 0.81, 0.83], "c": [0.60, 0.61, 0.62],
                            "one": [0.9]}.items()
            for s, acc in enumerate(accs)]
    return summarize(runs)


def test_summarize_gives_mean_and_std_over_seeds_best_first():
    t = _table()
    assert list(t.index) == ["one", "a", "b", "c"]
    torch.testing.assert_close(float(t.test_mean["a"]), 0.82)
    torch.testing.assert_close(float(t.test_std["a"]), 0.02)  # sample std of 0.80, 0.82, 0.84
    assert t.seeds["a"] == 3 and t.seeds["one"] == 1
    with pytest.raises(ValueError, match="no runs"):
        from mmcourse.fusion.zoo import summarize
        summarize([])


def test_degenerate_settings_and_inputs_name_the_fix():
    from mmcourse.fusion import LowRankTensorFusion, TensorFusion

    with pytest.raises(ValueError, match="rank=0"):
        LowRankTensorFusion(DIMS, 5, rank=0)
    with pytest.raises(ValueError, match="proj=0"):
        TensorFusion(DIMS, 5, proj=0)
    with pytest.raises(ValueError, match=r"dims\['image'\]=4.5.*positive integer"):
        ConcatFusion({"image": 4.5, "audio": 3}, 5)
    with pytest.raises(ValueError, match="out_dim=0"):
        ConcatFusion(DIMS, 0)
    fusion = ConcatFusion(DIMS, 5)
    feats = {k: torch.randn(2, d, dtype=torch.float64) for k, d in DIMS.items()}
    with pytest.raises(TypeError, match=r"float64.*\.float\(\)"):
        fusion(feats)


@pytest.mark.parametrize("method", sorted(METHODS) + ["serial", "hybrid", "audio_only"])
def test_every_av_model_trains_under_bf16_autocast(method):
    """FitConfig(precision="bf16") on CPU: autocast hands bf16 features to float32 fusion weights,
    which the dtype check must accept (it refuses mixed dtypes only outside autocast)."""
    from mmcourse.fusion.zoo import build_av_model
    from mmcourse.train import FitConfig, fit
    g = torch.Generator().manual_seed(0)
    inputs = {"audio": torch.randn(32, 20, 13, generator=g), "image": torch.rand(32, 1, 28, 28, generator=g)}
    labels = torch.arange(32) % 10
    torch.manual_seed(0)
    model = build_av_model(method)
    inputs = {k: v for k, v in inputs.items() if k in model.encoders}
    history = fit(model, (inputs, labels), config=FitConfig(epochs=1, batch_size=16, precision="bf16"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(torch.tensor(history["train_loss"])).all()
    fusion = getattr(model, "fusion", None)
    if hasattr(fusion, "dims"):  # outside autocast mixed dtypes are still refused
        with pytest.raises(TypeError, match="convert one of them"):
            fusion({k: torch.zeros(2, d, dtype=torch.float64) for k, d in fusion.dims.items()})


# ---------------------------------------------------------------- modality dropout (lesson 05 §3)
from mmcourse.fusion.simple import modality_keep_mask  # noqa: E402


def test_modality_keep_mask_rate_and_never_drops_everything():
    torch.manual_seed(0)
    keep = modality_keep_mask(20_000, 2, 0.3)  # (B, M)
    assert keep.shape == (20_000, 2) and keep.dtype == torch.bool
    assert keep.any(1).all()  # every example keeps at least one modality
    # P(dropped) = p - p²/2 per modality: both-dropped rows (p² = 0.09) give one of the two back
    dropped = (~keep).float().mean().item()
    assert abs(dropped - (0.3 - 0.09 / 2)) < 0.01
    assert modality_keep_mask(5, 2, 0.0).all()
    for bad in (-0.1, 1.0, float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match="modality_dropout"):
            modality_keep_mask(4, 2, bad)


@pytest.mark.parametrize("cls", [LateFusion, WeightedSumFusion])
def test_modality_dropout_only_in_training_and_leaves_out_the_dropped_term(cls):
    torch.manual_seed(0)
    dims = {"audio": 3, "image": 4}
    f = {"audio": torch.randn(64, 3), "image": torch.randn(64, 4)}
    plain, dropped = cls(dims, 5), cls(dims, 5, modality_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    assert "modality_dropout=0.5" in repr(dropped) and "modality_dropout" not in repr(plain)
    dropped.eval()
    torch.testing.assert_close(dropped(f), plain(f))  # eval: no dropout at all
    dropped.train()
    torch.manual_seed(1)
    keep = modality_keep_mask(64, 2, 0.5)  # the mask the forward below draws (same generator state)
    torch.manual_seed(1)
    out = dropped(f)  # (B, 5)
    alone = {k: plain({k: f[k]}) for k in dims}  # each modality's answer when it is the only one
    both = plain(f)
    for i in range(64):
        a, im = keep[i].tolist()  # sorted keys: audio, image
        want = both[i] if a and im else alone["audio"][i] if a else alone["image"][i]
        torch.testing.assert_close(out[i], want)
    assert (~keep).any() and keep.all(1).any()  # the batch had both kinds of rows
    out.sum().backward()  # gradients flow through the kept terms
    assert all(p.grad is not None for n, p in dropped.named_parameters() if p.requires_grad)


def test_modality_dropout_with_one_modality_present_is_a_no_op():
    torch.manual_seed(0)
    late = LateFusion({"audio": 3, "image": 4}, 5, modality_dropout=0.9).train()
    x = {"image": torch.randn(8, 4)}
    torch.testing.assert_close(late(x), late.heads["image"](x["image"]))


def test_modality_dropout_constructor_errors_and_zoo_option():
    with pytest.raises(ValueError, match=r"modality_dropout=1\.5"):
        LateFusion({"audio": 3, "image": 4}, 5, modality_dropout=1.5)
    with pytest.raises(ValueError, match="modality_dropout"):
        WeightedSumFusion({"audio": 3, "image": 4}, 5, modality_dropout=-0.2)
    from mmcourse.fusion.zoo import build_av_model
    torch.manual_seed(0)
    a = build_av_model("late", modality_dropout=0.3)
    torch.manual_seed(0)
    b = build_av_model("late")  # the option draws no random numbers: the same initial weights
    assert a.fusion.modality_dropout == 0.3
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, msg=n)
