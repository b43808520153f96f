"""mmcourse.adversarial: FGSM/PGD against finite differences and their defining properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse import adversarial as A
from mmcourse.train import FitConfig, fit


class Tiny(nn.Module):
    """A small nonlinear two-modality classifier: audio (B, T, F) with zero padding, image (B, 1, 2, 2)."""

    def __init__(self, use_image: bool = True, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.use_image = use_image
        self.a = nn.Parameter(torch.randn(3, 4, generator=g, dtype=dtype))  # F=3 → 4 hidden
        self.i = nn.Parameter(torch.randn(4, 4, generator=g, dtype=dtype))  # 4 pixels → 4 hidden
        self.out = nn.Parameter(torch.randn(4, 3, generator=g, dtype=dtype))  # 3 classes

    def forward(self, x):
        h = torch.tanh(x["audio"] @ self.a).sum(1)  # (B, 4): padded frames are zero and add tanh(0) = 0
        if self.use_image:
            h = h + torch.tanh(x["image"].flatten(1) @ self.i)  # (B, 4)
        return h @ self.out  # (B, 3)


def data(n=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(n, 4, 3, generator=g, dtype=dtype)
    audio[:, 3] = 0  # the last frame is padding for everyone
    image = torch.rand(n, 1, 2, 2, generator=g, dtype=dtype)
    labels = torch.randint(0, 3, (n,), generator=g)
    return {"audio": audio, "image": image}, labels


SPACES = {"audio": A.InputSpace(scale=2.0, padded_frames=True), "image": A.InputSpace(scale=0.5, low=0.0, high=1.0)}


def test_input_gradient_matches_finite_differences_in_float64():
    model, (x, y) = Tiny(), data(2)
    _, grads = A.input_gradient(model, x, y, ["audio", "image"])

    def loss(inputs):
        return F.cross_entropy(model(inputs), y, reduction="sum").item()

    h = 1e-6
    for m in ("audio", "image"):
        fd = torch.zeros_like(x[m])
        for j in range(x[m].numel()):
            plus, minus = x[m].clone().view(-1), x[m].clone().view(-1)
            plus[j] += h
            minus[j] -= h
            fd.view(-1)[j] = (loss({**x, m: plus.view_as(x[m])}) - loss({**x, m: minus.view_as(x[m])})) / (2 * h)
        torch.testing.assert_close(grads[m], fd, atol=1e-8, rtol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient accumulated


def test_fgsm_moves_every_free_coordinate_by_exactly_eps_sigma():
    model, (x, y) = Tiny(), data()
    adv = A.attack(model, x, y, 0.1, ["audio", "image"], "fgsm", SPACES)
    _, grads = A.input_gradient(model, x, y, ["audio", "image"])
    real = (x["audio"].abs().sum(-1, keepdim=True) > 0).expand_as(x["audio"])
    delta = (adv["audio"] - x["audio"])[real]
    torch.testing.assert_close(delta, 0.1 * 2.0 * grads["audio"].sign()[real])  # x + ε·σ·sign ∇
    assert torch.equal(adv["audio"][~real], torch.zeros_like(adv["audio"][~real]))  # padding stays zero
    d_img = adv["image"] - x["image"]
    free = (x["image"] + 0.05 * grads["image"].sign() >= 0) & (x["image"] + 0.05 * grads["image"].sign() <= 1)
    torch.testing.assert_close(d_img[free].abs(), torch.full_like(d_img[free], 0.05))
    assert adv["image"].min() >= 0 and adv["image"].max() <= 1  # clipped coordinates stay valid


def test_pgd_stays_in_the_ball_and_the_valid_range():
    model, (x, y) = Tiny(), data()
    for start in (True, False):
        adv = A.attack(model, x, y, 0.3, ["audio", "image"], "pgd", SPACES, steps=7, random_start=start, seed=3)
        assert (adv["audio"] - x["audio"]).abs().max() <= 0.3 * 2.0 + 1e-12
        assert (adv["image"] - x["image"]).abs().max() <= 0.3 * 0.5 + 1e-12
        assert adv["image"].min() >= 0 and adv["image"].max() <= 1
        assert torch.equal(adv["audio"][:, 3], torch.zeros_like(adv["audio"][:, 3]))


def test_only_the_attacked_modality_moves_and_an_ignored_one_changes_nothing():
    model, (x, y) = Tiny(use_image=False), data()
    for method in ("fgsm", "pgd"):
        adv = A.attack(model, x, y, 0.5, ["image"], method, SPACES, seed=0)
        assert torch.equal(adv["audio"], x["audio"])
        assert torch.equal(A.correct(model, adv, y), A.correct(model, x, y))
    assert torch.equal(A.attack(model, x, y, 0.5, "image", "fgsm", SPACES)["image"], x["image"])  # sign(0) = 0


def test_eps_zero_gives_the_clean_accuracy():
    model, (x, y) = Tiny(), data()
    clean = A.correct(model, x, y)
    for method in ("fgsm", "pgd"):
        assert torch.equal(A.robust_correct(model, x, y, 0.0, ["audio", "image"], method, SPACES), clean)
    table = A.accuracy_curves(model, x, y, [0.0, 0.1], [["image"], "audio"], spaces=SPACES, steps=3)
    assert (table[table.eps == 0].acc == clean.float().mean().item()).all()
    assert len(table) == 2 * 2 * 2 and set(table.attacked) == {"audio", "image"}


def test_pgd_is_at_least_as_strong_as_fgsm_and_accuracy_falls_with_eps():
    model, (x, y) = Tiny(), data(64)
    for eps in (0.05, 0.1, 0.3, 1.0):  # from x₀ like FGSM, PGD's iterates find at least its errors here
        fgsm = A.robust_correct(model, x, y, eps, ["audio", "image"], "fgsm", SPACES).float().mean()
        pgd = A.robust_correct(model, x, y, eps, ["audio", "image"], "pgd", SPACES, steps=10,
                               random_start=False).float().mean()
        assert pgd <= fgsm
    table = A.accuracy_curves(model, x, y, [0.0, 0.1, 0.3, 1.0], [["audio", "image"]], methods=["pgd"], spaces=SPACES)
    assert table.acc.is_monotonic_decreasing and table.acc.iloc[-1] < table.acc.iloc[0]


def test_attack_restores_the_mode_and_is_repeatable():
    model, (x, y) = Tiny().train(), data()
    a = A.attack(model, x, y, 0.2, "audio", "pgd", SPACES, seed=5)
    b = A.attack(model, x, y, 0.2, "audio", "pgd", SPACES, seed=5, batch_size=2)
    assert model.training and torch.equal(a["audio"], b["audio"])


def test_bad_input_errors_name_the_fix():
    model, (x, y) = Tiny(), data()
    with pytest.raises(KeyError, match="only"):
        A.attack(model, x, y, 0.1, ["text"])
    with pytest.raises(ValueError, match=">= 0"):
        A.attack(model, x, y, -0.1, ["image"])
    with pytest.raises(ValueError, match=">= 0"):
        A.attack(model, x, y, math.nan, ["image"])
    with pytest.raises(ValueError, match="NaN"):
        A.attack(model, {**x, "image": x["image"].clone().fill_(math.nan)}, y, 0.1, ["image"])
    with pytest.raises(ValueError, match="at least one"):
        A.attack(model, x, y, 0.1, [])
    with pytest.raises(ValueError, match="fgsm"):
        A.attack(model, x, y, 0.1, ["image"], method="bim")
    with pytest.raises(ValueError, match="steps"):
        A.attack(model, x, y, 0.1, ["image"], steps=0)
    with pytest.raises(ValueError, match="scale"):
        A.InputSpace(scale=0.0)
    with pytest.raises(ValueError, match="labels"):
        A.attack(model, x, y[:2], 0.1, ["image"])
    with pytest.raises(ValueError, match="mix"):
        A.adversarial_loss(model, 0.1, ["image"], mix=1.5)


def test_av_spaces_measure_sigma_on_real_frames():
    audio = torch.zeros(2, 3, 2)
    audio[:, :2] = torch.tensor([[1.0, -1.0], [3.0, -3.0]])
    sp = A.av_spaces({"audio": audio, "image": torch.tensor([0.0, 1.0]).repeat(4)})
    assert math.isclose(sp["audio"].scale, torch.tensor([1.0, -1, 3, -3] * 2).std().item(), rel_tol=1e-6)
    assert sp["image"].low == 0 and sp["image"].high == 1 and sp["audio"].padded_frames


def test_adversarial_training_runs_in_fit_and_leaves_no_stray_grads():
    torch.manual_seed(0)
    model, (x, y) = Tiny(dtype=torch.float32), data(32, torch.float32)
    loss_fn = A.adversarial_loss(model, 0.2, ["audio", "image"], SPACES)
    fit(A.WithInputs(model), (x, y), None, FitConfig(epochs=2, batch_size=8, device="cpu"), loss_fn=loss_fn)
    out = A.WithInputs(model)(x)
    assert set(out) == {"logits", "inputs"} and out["logits"].shape == (32, 3)
    assert not model.training  # fit ends in eval mode


def test_eps_may_be_a_0d_tensor_or_a_numpy_scalar():
    import numpy as np
    model, (x, y) = Tiny(), data()
    ref = A.attack(model, x, y, 0.25, "image", "pgd", SPACES, seed=1)
    for eps in (torch.tensor(0.25), torch.tensor(0.25, dtype=torch.float64), np.float32(0.25), np.float64(0.25),
                torch.tensor([0.25])):
        out = A.attack(model, x, y, eps, "image", "pgd", SPACES, seed=1)
        torch.testing.assert_close(out["image"], ref["image"], rtol=0, atol=1e-6)
    fgsm = A.perturb(model, x, y, torch.tensor(0.25), "image", "fgsm", SPACES)
    torch.testing.assert_close(fgsm["image"], A.perturb(model, x, y, 0.25, "image", "fgsm", SPACES)["image"])
    curves = A.accuracy_curves(model, x, y, torch.tensor([0.0, 0.25]), [["image"]], methods=("fgsm",), spaces=SPACES)
    assert curves["eps"].tolist() == [0.0, 0.25]


def test_eps_with_several_values_asks_for_one_budget():
    import numpy as np
    model, (x, y) = Tiny(), data()
    with pytest.raises(ValueError, match=r"eps must be a Python float \(one budget\), got a tensor of shape \(2,\); "
                                         r"loop over the budgets"):
        A.attack(model, x, y, torch.tensor([0.1, 0.2]), "image")
    with pytest.raises(ValueError, match=r"eps must be a Python float \(one budget\), got an array of shape \(2, 1\)"):
        A.attack(model, x, y, np.zeros((2, 1)), "image")
    with pytest.raises(ValueError, match=r"eps=tensor\(nan\): the budget must be a finite number >= 0"):
        A.attack(model, x, y, torch.tensor(math.nan), "image")
    with pytest.raises(ValueError, match=r"eps='0.1': the budget must be a finite number >= 0"):
        A.attack(model, x, y, "0.1", "image")


def test_train_defended_is_cached(tmp_path, monkeypatch):
    from mmcourse.adversarial import av_spaces, train_defended
    from mmcourse.train import FitConfig
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x = {"audio": torch.randn(64, 40, 13, generator=g), "image": torch.rand(64, 1, 28, 28, generator=g)}
    y = torch.randint(0, 10, (64,), generator=g)
    spaces = av_spaces(x)
    cfg = FitConfig(epochs=1, batch_size=32, device="cpu")
    assert train_defended(0.1, (x, y), (x, y), spaces, cfg, cached_only=True) is None
    net = train_defended(0.1, (x, y), (x, y), spaces, cfg)
    again = train_defended(0.1, (x, y), (x, y), spaces, cfg, cached_only=True)
    for p, q in zip(net.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(p, q)
    assert not again.training
