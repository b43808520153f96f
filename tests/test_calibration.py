"""ECE against a hand-computed case, reliability bins, temperature scaling, attribution."""

import math

import pytest
import torch
from torch import nn

from mmcourse.calibration import (attribution_shares, expected_calibration_error,
                                  fit_temperature, gradient_x_input, modality_ablation,
                                  reliability_bins)
from mmcourse.fusion.zoo import build_av_model


def _two_class(p1):
    """Rows [1 - p, p] for class-1 probabilities p."""
    p1 = torch.tensor(p1, dtype=torch.float64)
    return torch.stack([1 - p1, p1], 1)


def test_ece_hand_computed():
    # confidences 0.9, 0.8, 0.6, 0.55 (predicted classes 1, 1, 0, 1), 2 bins: (0, .5], (.5, 1]
    probs = _two_class([0.9, 0.8, 0.4, 0.55])
    labels = torch.tensor([1, 0, 0, 1])
    # 5 bins of width 0.2: 0.9 and 0.8 fall in (0.6, 0.8] and (0.8, 1.0]; 0.6 and 0.55 in (0.4, 0.6]
    # bin (0.4, 0.6]: conf mean 0.575, acc (right, right) = 1 → gap 0.425, weight 2/4
    # bin (0.6, 0.8]: conf 0.8, acc 0 (predicted 1, truth 0) → gap 0.8, weight 1/4
    # bin (0.8, 1.0]: conf 0.9, acc 1 → gap 0.1, weight 1/4
    want = 0.5 * 0.425 + 0.25 * 0.8 + 0.25 * 0.1
    assert math.isclose(expected_calibration_error(probs, labels, n_bins=5), want, rel_tol=1e-9)
    b = reliability_bins(probs, labels, n_bins=5)
    torch.testing.assert_close(b["count"], torch.tensor([0.0, 0.0, 2.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.isnan(b["acc"][0]) and math.isclose(float(b["conf"][2]), 0.575)


def test_ece_zero_for_perfectly_calibrated_bins():
    # 10 examples at confidence 0.7, 7 of them right
    probs = _two_class([0.7] * 10)
    labels = torch.tensor([1] * 7 + [0] * 3)
    assert expected_calibration_error(probs, labels) < 1e-12


def test_ece_errors():
    with pytest.raises(ValueError, match="softmax"):
        expected_calibration_error(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(_two_class([0.5]), torch.tensor([0]), n_bins=0)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        reliability_bins(_two_class([0.5, 0.6]), torch.tensor([0]))


def test_fit_temperature_recovers_overconfidence():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=g, dtype=torch.float64)
    labels = torch.distributions.Categorical(logits=logits).sample()  # calibrated at T = 1
    T = fit_temperature(3.0 * logits, labels)  # three times too sharp → T ≈ 3
    assert 2.6 < T < 3.4
    probs = (3.0 * logits / T).softmax(-1)
    assert expected_calibration_error(probs, labels) < expected_calibration_error((3.0 * logits).softmax(-1), labels)


def _inputs(n=6):
    g = torch.Generator().manual_seed(0)
    return {"audio": torch.randn(n, 40, 13, generator=g), "image": torch.randn(n, 1, 28, 28, generator=g)}


def test_modality_ablation_drop_and_zero():
    torch.manual_seed(0)
    x, y = _inputs(), torch.arange(6) % 10
    late = build_av_model("late").eval()
    r = modality_ablation(late, x, y, how="drop")
    assert list(r) == ["all", "without audio", "without image"]
    assert all(0.0 <= v <= 1.0 for v in r.values())
    concat = build_av_model("concat").eval()
    with pytest.raises(KeyError, match="missing modality"):
        modality_ablation(concat, x, y, how="drop")
    assert set(modality_ablation(concat, x, y, how="zero")) == {"all", "without audio", "without image"}
    with pytest.raises(ValueError, match="how"):
        modality_ablation(late, x, y, how="shuffle")


class _Linear2(nn.Module):
    """z = [a · sum(audio), b · sum(image)]: gradient × input is known in closed form."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -3.0]))

    def forward(self, x):
        return torch.stack([self.w[0] * x["audio"].flatten(1).sum(1),
                            self.w[1] * x["image"].flatten(1).sum(1)], 1)


def test_gradient_x_input_exact_on_linear_model():
    x = {"audio": torch.ones(3, 2, 2), "image": torch.full((3, 1, 2, 2), 0.5)}
    labels = torch.tensor([0, 1, 0])
    a = gradient_x_input(_Linear2(), x, labels)
    # class 0 depends on audio only: attribution 2 · 4 = 8; class 1 on image: −3 · 4 · 0.5 = −6
    torch.testing.assert_close(a["audio"], torch.tensor([8.0, 0.0, 8.0]))
    torch.testing.assert_close(a["image"], torch.tensor([0.0, -6.0, 0.0]))
    shares = attribution_shares(a)
    assert math.isclose(sum(shares.values()), 1.0) and math.isclose(shares["audio"], 16 / 22, rel_tol=1e-6)


def test_gradient_x_input_shapes_on_av_model():
    model = build_av_model("late")
    a = gradient_x_input(model, _inputs(5), batch_size=2)
    assert set(a) == {"audio", "image"} and all(v.shape == (5,) and torch.isfinite(v).all() for v in a.values())


def test_fit_temperature_refuses_test_labels():
    from mmcourse.data import load_av_digits
    test, val = load_av_digits("test", "hard"), load_av_digits("val", "hard")
    logits = torch.randn(len(test.labels), 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="fit it on the 'val' split"):
        fit_temperature(logits, test.labels)
    fit_temperature(torch.randn(len(val.labels), 10, generator=torch.Generator().manual_seed(1)), val.labels)


def test_fit_temperature_and_ece_reject_bad_inputs_by_name():
    with pytest.raises(ValueError, match="at least 2 examples"):
        fit_temperature(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        fit_temperature(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_temperature(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer class ids"):
        fit_temperature(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fit_temperature(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="empty"):
        expected_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("labels, bad", [([0, 3], "3"), ([-1, 1], "-1"), ([7, 1], "7")])
def test_ece_refuses_labels_outside_the_classes(labels, bad):
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])  # C = 3
    with pytest.raises(ValueError, match=rf"labels must be class ids in \[0, 3\) for 3 classes, got {bad}"):
        expected_calibration_error(probs, torch.tensor(labels))
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 3\)"):
        reliability_bins(probs, torch.tensor(labels))


# ---------------------------------------------------------------- gradient × input facts, integrated gradients
def _bias_free_late(seed=0):
    g = torch.Generator().manual_seed(seed)
    W = {k: torch.randn(6, 4, generator=g, dtype=torch.float64) for k in ("a", "b")}
    H = {k: torch.randn(3, 6, generator=g, dtype=torch.float64) for k in ("a", "b")}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))  # predict() needs a parameter

        def forward(self, x):
            return sum(torch.relu(x[k] @ W[k].T) @ H[k].T for k in sorted(x)) + 0 * self.p
    return Net().eval(), W


def test_gradient_x_input_is_exact_only_without_biases_and_scales_with_its_input():
    from mmcourse.calibration import gradient_x_input
    net, _ = _bias_free_late()
    g = torch.Generator().manual_seed(1)
    x = {k: torch.randn(5, 4, generator=g, dtype=torch.float64) for k in ("a", "b")}
    y = torch.zeros(5, dtype=torch.long)
    a = gradient_x_input(net, x, y)
    z = net(x)[:, 0]
    torch.testing.assert_close(a["a"].double() + a["b"].double(), z.detach())  # Euler: exact
    scaled = gradient_x_input(net, {**x, "b": 3 * x["b"]}, y)
    torch.testing.assert_close(scaled["b"], 3 * a["b"])  # same net, input x 3: its attribution x 3
    torch.testing.assert_close(scaled["a"], a["a"])
    biased = torch.nn.Sequential(torch.nn.Linear(4, 3).double())
    xs = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    zb = biased(xs)[:, 0]
    (gr,) = torch.autograd.grad(zb.sum(), xs)
    assert not torch.allclose((gr * xs).sum(1), zb)  # with a bias: no completeness


def test_integrated_gradients_completeness_in_float64():
    from mmcourse.calibration import integrated_gradients, target_logit
    torch.manual_seed(0)

    class Smooth(torch.nn.Module):  # biases and tanh: gradient × input would not add up
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 6).double(), torch.nn.Linear(3, 6).double()
            self.head = torch.nn.Linear(6, 5).double()

        def forward(self, x):
            return self.head(torch.tanh(self.a(x["a"]) + self.b(x["b"])))
    net = Smooth().eval()
    g = torch.Generator().manual_seed(2)
    x = {"a": torch.randn(7, 4, generator=g, dtype=torch.float64), "b": torch.randn(7, 3, generator=g, dtype=torch.float64)}
    base = {"a": torch.full((1, 4), 0.3, dtype=torch.float64), "b": torch.zeros(1, 3, dtype=torch.float64)}
    y = torch.arange(7) % 5
    ig = integrated_gradients(net, x, y, baseline=base, steps=400)
    with torch.no_grad():
        full = net(x).gather(1, y[:, None]).squeeze(1) - net({k: v.expand(7, -1) for k, v in base.items()}).gather(
            1, y[:, None]).squeeze(1)
    torch.testing.assert_close(ig["a"] + ig["b"], full, atol=1e-5, rtol=0)  # Σ IG = z(x) − z(b)
    torch.testing.assert_close(target_logit(net, x, y).double() - target_logit(net, base, y).double(), full,
                               atol=1e-5, rtol=1e-5)
    lin = torch.nn.Linear(4, 2).double()
    xl = {"a": torch.randn(3, 4, generator=g, dtype=torch.float64)}
    ig_lin = integrated_gradients(lambda_wrap(lin), xl, torch.zeros(3, dtype=torch.long), steps=1)
    torch.testing.assert_close(ig_lin["a"], (xl["a"] * lin.weight[0]).sum(1))  # linear: IG = (x − 0)·w exactly
    with pytest.raises(KeyError, match="baseline lacks"):
        integrated_gradients(net, x, y, baseline={"a": base["a"]})
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(net, x, y, steps=0)


def lambda_wrap(layer):
    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x["a"])
    return Wrap().eval()
