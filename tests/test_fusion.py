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
    with pytest.raises(ValueError, match="positive size"):
        ConcatFusion({"image": 0}, 5)
    with pytest.raises(ValueError, match="combine"):
        LateFusion(DIMS, 5, combine="max")
    with pytest.raises(TypeError, match="dict"):
        ConcatFusion(DIMS, 5)(torch.randn(2, 7))
