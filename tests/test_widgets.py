"""Headless tests of the notebook panels: set a widget's value, the readout changes."""

import pytest
import torch

from mmcourse.data import load_av_digits
from mmcourse.fusion.zoo import build_av_model
from mmcourse.widgets import FusionWeightsPanel, corrupt


@pytest.fixture(scope="module")
def panel():
    torch.manual_seed(0)
    model = build_av_model("weighted_sum", dim=8, image_width=4, audio_hidden=8)
    test = load_av_digits("test")
    inputs = {k: v[:64] for k, v in test.inputs.items()}
    return FusionWeightsPanel(model, inputs, test.labels[:64], example=3, noise_levels=(0.0, 1.0))


def test_moving_a_weight_changes_the_readout(panel):
    before = panel.readout.value
    panel.weight["image"].value = 1.0
    panel.weight["audio"].value = 0.0
    assert panel.readout.value != before
    assert "image=1.00" in panel.readout.value
    assert panel.last_latency_ms < 1000


def test_noise_and_missing_modality_controls(panel):
    panel.weight["image"].value = panel.weight["audio"].value = 0.5
    clean = panel.state()["probs"]
    panel.noise["audio"].value = 1.0
    # the probabilities move (an untrained model's readout can be the same to 2 decimals)
    assert not torch.allclose(panel.state()["probs"], clean)
    panel.noise["audio"].value = 0.0
    panel.present["audio"].value = False
    s = panel.state()
    assert 0.0 <= s["acc"] <= 1.0 and s["probs"].shape == (10,)
    panel.present["image"].value = False
    assert "at least one" in panel.readout.value
    panel.present["audio"].value = panel.present["image"].value = True


def test_panel_rejects_other_fusions():
    with pytest.raises(TypeError, match="WeightedSumFusion"):
        FusionWeightsPanel(build_av_model("concat", dim=4, image_width=2, audio_hidden=4),
                           load_av_digits("val").inputs, load_av_digits("val").labels)


def test_corrupt_keeps_audio_padding_zero_and_names_missing_key():
    d = load_av_digits("val")
    noisy = corrupt(d.inputs, "audio", 1.0)
    pad = torch.arange(40)[None] >= d.lengths[:, None]
    assert (noisy["audio"][pad] == 0).all() and not torch.equal(noisy["audio"], d.inputs["audio"])
    assert torch.equal(noisy["image"], d.inputs["image"])
    with pytest.raises(KeyError, match="text"):
        corrupt(d.inputs, "text", 1.0)


def test_build_av_model_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        build_av_model("stacking")


def test_panel_labels_are_shown_in_full(panel):
    for w in [*panel.weight.values(), *panel.noise.values()]:
        assert w.style.description_width == "initial", f"{w.description!r} would be truncated"


def test_panel_moves_its_own_copy_not_the_model_passed_in():
    torch.manual_seed(0)
    model = build_av_model("weighted_sum", dim=8, image_width=4, audio_hidden=8)
    test = load_av_digits("test")
    p = FusionWeightsPanel(model, {k: v[:16] for k, v in test.inputs.items()}, test.labels[:16], noise_levels=(0.0,))
    p.weight["image"].value, p.weight["audio"].value = 1.0, 0.0
    assert p.model.fusion.weights() == {"audio": 0.0, "image": 1.0}
    assert model.fusion.weights() == {"audio": 0.5, "image": 0.5}


def test_panel_noise_levels_in_units_of_each_modality_scale():
    torch.manual_seed(0)
    model = build_av_model("weighted_sum", dim=8, image_width=4, audio_hidden=8).eval()
    test = load_av_digits("test")
    inputs = {k: v[:16] for k, v in test.inputs.items()}
    p = FusionWeightsPanel(model, inputs, test.labels[:16], noise_levels=(0.0, 2.0), scales={"audio": 1.0, "image": 0.25})
    with torch.no_grad():  # level 2 on the image = noise of std 2 × 0.25 in pixel units
        want = model.encoders["image"](corrupt(inputs, "image", 0.5)["image"])
    torch.testing.assert_close(p.cache["image"][2.0], want)
    assert p.noise["image"].description == "noise image (×σ)"
