"""Tests of mmcourse.fusion.serial: the serial link (FiLM on mid-level image maps), serial and
hybrid AV models, their missing-modality behaviour and errors."""

import pytest
import torch
from torch import nn

from mmcourse.encoders import ImageEncoder
from mmcourse.fusion import METHODS, TAXONOMY, ConditionedImageEncoder, FiLM2d, SerialClassifier, SerialHead
from mmcourse.fusion.serial import KINDS, serial_av_model
from mmcourse.fusion.zoo import build_av_model

SMALL = {"dim": 6, "image_width": 2, "audio_hidden": 4}


def inputs(B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(B, 7, 13, generator=g)
    audio[0, 5:] = 0  # a padded recording
    return {"audio": audio, "image": torch.randn(B, 1, 28, 28, generator=g)}


def wake(link: FiLM2d, seed=1):
    """Give the zero-initialised link non-zero weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        link.film.weight.copy_(torch.randn(link.film.weight.shape, generator=g))
        link.film.bias.copy_(torch.randn(link.film.bias.shape, generator=g))


def model(kind, seed=0):
    torch.manual_seed(seed)
    return build_av_model(kind, **SMALL).eval()


def test_film2d_matches_the_formula_in_float64_and_gradcheck():
    link = FiLM2d(3, 2).double()
    wake(link)
    maps, cond = torch.randn(2, 2, 4, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    out = link(maps, cond)
    W, b = link.film.weight, link.film.bias
    for n in range(2):
        for c in range(2):
            gamma = 1 + W[c] @ cond[n] + b[c]  # first half of the outputs: Δγ
            beta = W[2 + c] @ cond[n] + b[2 + c]  # second half: β
            torch.testing.assert_close(out[n, c], gamma * maps[n, c] + beta)
    gamma, beta = link.gamma_beta(cond)
    assert gamma.shape == beta.shape == (2, 2)
    assert torch.autograd.gradcheck(lambda m, c: link(m, c), (maps.requires_grad_(), cond.requires_grad_()))


def test_film2d_is_the_identity_at_init_and_without_a_condition():
    link = FiLM2d(3, 2)
    maps, cond = torch.randn(2, 2, 4, 4), torch.randn(2, 3)
    torch.testing.assert_close(link(maps, cond), maps)  # zero-initialised: γ = 1, β = 0
    wake(link)
    assert not torch.allclose(link(maps, cond), maps)
    assert link(maps, None) is maps  # absent condition: exactly the identity


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind):
    m = model(kind)
    x = inputs()
    assert isinstance(m, SerialClassifier) and m(x).shape == (3, 10)
    f = m.features(x)
    assert list(f) == ["audio", "image"] and f["audio"].shape == f["image"].shape == (3, 6)
    assert m.encoders["image"].maps(x["image"], f["audio"]).shape == (3, 4, 7, 7)  # after block 1: (B, 2w, 7, 7)
    after0 = serial_av_model(kind, build_av_model("late", **SMALL).encoders, after=0).encoders["image"]
    assert after0.maps(x["image"]).shape == (3, 2, 14, 14)
    # key order of the dict never matters
    torch.testing.assert_close(m({"image": x["image"], "audio": x["audio"]}), m(x))


def test_encoders_start_with_the_zoo_weights_of_the_same_seed():
    late, serial = model("late").state_dict(), model("serial").state_dict()
    for name, p in late.items():
        if name.startswith("encoders.audio"):
            assert torch.equal(p, serial[name])
        if name.startswith("encoders.image"):
            assert torch.equal(p, serial[name.replace("encoders.image", "encoders.image.encoder")])


@pytest.mark.parametrize("kind", KINDS)
def test_identity_link_at_init_image_stream_is_the_plain_encoder(kind):
    m = model(kind)
    x = inputs()
    plain = m.encoders["image"].encoder(x["image"])
    torch.testing.assert_close(m.features(x)["image"], plain)


def _maps_seen(m, x, block):
    """The input of the image CNN's conv block ``block`` during ``m(x)`` (a forward hook)."""
    seen = []
    handle = block.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    m(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("kind", KINDS)
def test_audio_changes_the_image_encoders_intermediate_maps(kind):
    m = model(kind)
    wake(m.encoders["image"].link)
    x, y = inputs(seed=0), inputs(seed=5)
    other_audio = {"audio": y["audio"], "image": x["image"]}
    block2 = m.encoders["image"].encoder.features[2]  # runs on the maps after the link
    assert not torch.allclose(_maps_seen(m, x, block2), _maps_seen(m, other_audio, block2))
    block1 = m.encoders["image"].encoder.features[1]  # before the link: audio cannot reach it
    torch.testing.assert_close(_maps_seen(m, x, block1), _maps_seen(m, other_audio, block1))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_in_parallel_methods_audio_never_reaches_the_image_encoder(method):
    m = model(method)
    x, y = inputs(seed=0), inputs(seed=5)
    block2 = m.encoders["image"].features[2]
    other_audio = {"audio": y["audio"], "image": x["image"]}
    torch.testing.assert_close(_maps_seen(m, x, block2), _maps_seen(m, other_audio, block2))
    assert TAXONOMY[method] == "parallel"


def test_taxonomy_names_every_fusion_the_zoo_builds():
    assert set(TAXONOMY) == set(METHODS) | set(KINDS)
    assert TAXONOMY["serial"] == "serial" and TAXONOMY["hybrid"] == "hybrid"


@pytest.mark.parametrize("kind", KINDS)
def test_missing_audio_falls_back_to_the_identity_link(kind):
    m = model(kind)
    wake(m.encoders["image"].link)
    x = inputs()
    image_only = m.features({"image": x["image"]})
    assert list(image_only) == ["image"]
    torch.testing.assert_close(image_only["image"], m.encoders["image"].encoder(x["image"]))  # γ = 1, β = 0
    assert not torch.allclose(m.features(x)["image"], image_only["image"])  # with audio it is conditioned
    out = m({"image": x["image"]})
    head = m.fusion.net if kind == "serial" else m.fusion.heads["image"]
    torch.testing.assert_close(out, head(image_only["image"]))


def test_missing_image_serial_raises_hybrid_answers_from_audio():
    x = inputs()
    with pytest.raises(KeyError, match="hybrid"):
        model("serial")({"audio": x["audio"]})
    hybrid = model("hybrid")
    out = hybrid({"audio": x["audio"]})
    torch.testing.assert_close(out, hybrid.fusion.heads["audio"](hybrid.encoders["audio"](x["audio"])))


def test_gradients_reach_the_audio_encoder_through_the_link_alone():
    m = model("serial").train()
    wake(m.encoders["image"].link)
    m(inputs()).sum().backward()
    assert m.encoders["audio"].proj.weight.grad.abs().sum() > 0  # the head never reads audio features


def test_bad_inputs_name_the_fix():
    enc = ImageEncoder(6, width=2)
    with pytest.raises(ValueError, match="after=2.*parallel FiLM"):
        ConditionedImageEncoder(enc, 6, after=2)
    with pytest.raises(TypeError, match="ImageEncoder"):
        ConditionedImageEncoder(nn.Linear(3, 3), 6)
    cie = ConditionedImageEncoder(enc, 6)
    with pytest.raises(ValueError, match="unsqueeze"):
        cie(torch.randn(2, 28, 28))
    with pytest.raises(ValueError, match=r"condition must be \(B, 6\)"):
        cie(torch.randn(2, 1, 28, 28), torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch 3 but the maps have 2"):
        cie(torch.randn(2, 1, 28, 28), torch.randn(3, 6))
    with pytest.raises(ValueError, match="channels=0"):
        FiLM2d(3, 0)
    with pytest.raises(ValueError, match="unknown kind 'parallel'"):
        serial_av_model("parallel", build_av_model("late", **SMALL).encoders)
    with pytest.raises(KeyError, match="target 'text'"):
        SerialHead({"audio": 3, "image": 4}, 5, target="text")
    m = model("serial")
    with pytest.raises(KeyError, match="unknown modality \\['text'\\]"):
        m({**inputs(), "text": torch.zeros(3, 4)})
    with pytest.raises(TypeError, match="dict"):
        m(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="must be the two encoders"):
        SerialClassifier(m.encoders, m.fusion, source="image", target="image")
    with pytest.raises(ValueError, match="unknown method.*serial"):
        build_av_model("sequential")


@pytest.mark.parametrize("kind", KINDS)
def test_zoo_run_trains_it_like_any_method_and_repeats(kind):
    from mmcourse.data import load_av_digits
    from mmcourse.fusion.zoo import run
    from mmcourse.train import FitConfig
    cut = lambda d, n: ({k: v[:n] for k, v in d.inputs.items()}, d.labels[:n])  # noqa: E731
    train, val, test = cut(load_av_digits("train"), 96), cut(load_av_digits("val"), 48), cut(load_av_digits("test"), 48)
    config = FitConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu")
    a = run(kind, train, val, test, config, seed=1, **SMALL)
    b = run(kind, train, val, test, config, seed=1, **SMALL)
    assert a["test_acc"] == b["test_acc"] and a["history"]["val_acc"] == b["history"]["val_acc"]
    assert a["params"] == sum(p.numel() for p in build_av_model(kind, **SMALL).parameters())
    link = a["model"].encoders["image"].link.film
    assert link.weight.abs().sum() > 0  # training moved the link away from the identity
