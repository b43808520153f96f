"""Distillation loss and gradient vs a direct formula and autograd; pruning; quantization; rulers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse import compress
from mmcourse.compress import (DistillTargets, build_student, cpu_latency_ms, distill_loss_fn,
                               distillation_loss, magnitude_prune, make_permanent, quantize_int8,
                               size_on_disk, sparsity)
from mmcourse.train import FitConfig, evaluate, fit


def _logits(seed=0, shape=(4, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 3


def test_distillation_loss_matches_direct_formula():
    s, t = _logits(0), _logits(1)
    y = torch.tensor([0, 1, 2, 3])
    T, alpha = 3.0, 0.7
    p = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    q = torch.exp(s / T) / torch.exp(s / T).sum(1, keepdim=True)
    kl = (p * torch.log(p / q)).sum(1).mean()
    ce = -torch.log(torch.exp(s) / torch.exp(s).sum(1, keepdim=True))[torch.arange(4), y].mean()
    want = alpha * T**2 * kl + (1 - alpha) * ce
    torch.testing.assert_close(distillation_loss(s, t, y, T=T, alpha=alpha), want)
    # and against torch's own KL divergence
    ref = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True, reduction="batchmean")
    torch.testing.assert_close(distillation_loss(s, t, T=T, alpha=1.0), T**2 * ref)


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0])
def test_distillation_gradient_is_T_over_B_times_q_minus_p(T):
    s, t = _logits(2).requires_grad_(True), _logits(3)
    distillation_loss(s, t, T=T, alpha=1.0).backward()
    B = s.shape[0]
    hand = (T / B) * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1))
    torch.testing.assert_close(s.grad, hand)


def test_distillation_mixed_gradient_and_gradcheck():
    s, t = _logits(4).requires_grad_(True), _logits(5)
    y = torch.tensor([4, 0, 1, 1])
    T, alpha, B = 2.0, 0.6, 4
    distillation_loss(s, t, y, T=T, alpha=alpha).backward()
    hand = (alpha * T / B) * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1)) \
        + (1 - alpha) / B * (torch.softmax(s.detach(), 1) - F.one_hot(y, 5))
    torch.testing.assert_close(s.grad, hand)
    assert torch.autograd.gradcheck(lambda z: distillation_loss(z, t, y, T=T, alpha=alpha),
                                    (s.detach().clone().requires_grad_(True),))


def test_distillation_loss_zero_when_student_equals_teacher():
    t = _logits(6)
    assert distillation_loss(t.clone(), t, T=4.0, alpha=1.0).abs() < 1e-12


def test_distillation_loss_errors():
    s = torch.zeros(2, 3)
    for bad_t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="T must be a finite number > 0"):
            distillation_loss(s, s, T=bad_t)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, alpha=1.5)
    with pytest.raises(ValueError, match="same"):
        distillation_loss(s, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="pass labels"):
        distillation_loss(s, s, labels=None, alpha=0.5)


def _toy(seed=0, n=600):
    """A 3-class problem a small MLP learns quickly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    w = torch.randn(16, 3, generator=g)
    return x, (x @ w).argmax(1)


def _mlp(seed=0, hidden=64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 3))


def test_distill_targets_trains_a_student_through_fit():
    x, y = _toy()
    teacher = _mlp(0)
    fit(teacher, (x[:500], y[:500]), config=FitConfig(epochs=8, batch_size=100, lr=1e-2, device="cpu"))
    student = _mlp(1, hidden=8)
    wrapped = DistillTargets(student, teacher)
    fit(wrapped, (x[:500], y[:500]), config=FitConfig(epochs=8, batch_size=100, lr=1e-2, device="cpu"),
        loss_fn=distill_loss_fn(T=2.0, alpha=0.5))
    assert not any(p.requires_grad for p in wrapped.teacher.parameters())
    assert all(p.requires_grad for p in teacher.parameters())  # the caller's teacher is untouched
    assert evaluate(student, x[500:], y[500:])["acc"] > 0.7


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9])
def test_pruning_reaches_requested_sparsity(scope, amount):
    model = build_student()
    pruned = magnitude_prune(model, amount, scope=scope)
    assert sparsity(model) < 0.01  # the original is untouched (deep copy)
    assert abs(sparsity(pruned) - amount) < 0.01
    make_permanent(pruned)
    assert not any(n.endswith("_mask") or n.endswith("_orig") for n in pruned.state_dict())
    assert abs(sparsity(pruned) - amount) < 0.01


def test_global_pruning_drops_smallest_magnitudes():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, -5.0], [2.0, 0.3]]))
        model[1].weight.copy_(torch.tensor([[-0.2, 4.0]]))
    pruned = make_permanent(magnitude_prune(model, 0.5))
    torch.testing.assert_close(pruned[0].weight, torch.tensor([[0.0, -5.0], [2.0, 0.0]]))
    torch.testing.assert_close(pruned[1].weight, torch.tensor([[0.0, 4.0]]))


def test_pruning_errors():
    with pytest.raises(ValueError, match="amount"):
        magnitude_prune(build_student(), 1.0)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(build_student(), 0.5, scope="channel")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        magnitude_prune(nn.ReLU(), 0.5)


# Stated accuracy budget for dynamic int8 on a small MLP: at most 2 points lost.
INT8_MAX_DROP = 0.02


def test_int8_quantized_is_smaller_and_about_as_accurate():
    x, y = _toy(n=1500)
    model = _mlp(0, hidden=128)
    fit(model, (x[:1000], y[:1000]), config=FitConfig(epochs=6, batch_size=100, lr=3e-3, device="cpu"))
    q = quantize_int8(model)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q.modules())
    assert size_on_disk(q) < 0.5 * size_on_disk(model)
    with torch.no_grad():  # (train.predict needs a model with parameters; an all-int8 MLP has none)
        acc, acc_q = ((m(x[1000:]).argmax(1) == y[1000:]).float().mean().item() for m in (model.eval(), q))
    assert acc > 0.8
    assert acc - acc_q <= INT8_MAX_DROP
    assert isinstance(model[0], nn.Linear)  # the float model is untouched


def test_int8_on_av_student_runs_and_shrinks():
    student = build_student().eval()
    x = {"audio": torch.randn(3, 40, 13), "image": torch.randn(3, 1, 28, 28)}
    q = quantize_int8(student)
    assert q(x).shape == (3, 10)
    torch.testing.assert_close(q(x), student(x), atol=0.1, rtol=0.1)
    # most of the student's weights sit in the image encoder's flatten → linear layer, which
    # dynamic int8 stores in a quarter of the bytes (the convolutions stay float32)
    assert size_on_disk(q) < 0.8 * size_on_disk(student)


def test_size_on_disk_sees_pruned_zeros_only_when_compressed():
    model = _mlp(0, hidden=128)
    pruned = make_permanent(magnitude_prune(model, 0.9))
    assert abs(size_on_disk(pruned) - size_on_disk(model)) < 0.02 * size_on_disk(model)
    assert size_on_disk(pruned, compressed=True) < 0.5 * size_on_disk(model, compressed=True)


def test_cpu_latency_positive_and_errors():
    model = build_student()
    x = {"audio": torch.randn(4, 40, 13), "image": torch.randn(4, 1, 28, 28)}
    assert cpu_latency_ms(model, x, batch_size=2, repeats=3, warmup=1) > 0
    with pytest.raises(ValueError, match="exceeds"):
        cpu_latency_ms(model, x, batch_size=5)


def test_student_much_smaller_than_zoo_default():
    from mmcourse.fusion.zoo import build_av_model
    assert compress.count_params(build_student()) * 3 < compress.count_params(build_av_model("late"))


def test_teacher_selection_refuses_test_labels(tmp_path, monkeypatch):
    # the teacher's best epoch is chosen on the val split; handing it the test split must fail loudly
    from mmcourse.data import load_av_digits
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))  # no cached teacher: fit really runs
    train, test = load_av_digits("train", "hard"), load_av_digits("test", "hard")
    with pytest.raises(ValueError, match="test split"):
        compress.load_or_train_teacher(train, test, FitConfig(epochs=1), n_train=64)
    assert not list(tmp_path.glob("*.pt"))  # nothing trained, nothing saved


def test_a_pruned_model_can_be_copied_pruned_again_and_distilled_from():
    once = magnitude_prune(build_student(), 0.5)
    twice = magnitude_prune(once, 0.5)  # deepcopy of a masked model: copy_model sets the computed weight aside
    assert abs(sparsity(twice) - 0.75) < 0.01 and abs(sparsity(once) - 0.5) < 0.01
    x = {"audio": torch.randn(2, 40, 13), "image": torch.randn(2, 1, 28, 28)}
    torch.testing.assert_close(DistillTargets(build_student(), once)(x)["teacher"], once.eval()(x))
    assert sparsity(nn.Sequential(nn.ReLU())) == 0.0  # nothing prunable: no division by zero


def test_teacher_cache_retrains_when_a_setting_or_the_data_changes(tmp_path, monkeypatch, capsys):
    """Issue 13: a clean-data teacher asked for with lr 0.1 and batch 16 must not load the
    hard-data one trained with the recipe's lr."""
    from mmcourse.data import load_av_digits
    from mmcourse.fusion.zoo import RECIPE

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    hard, hard_val = load_av_digits("train"), load_av_digits("val")
    clean, clean_val = load_av_digits("train", "clean"), load_av_digits("val", "clean")
    one = FitConfig(**{**RECIPE.__dict__, "epochs": 1})
    compress.load_or_train_teacher(hard, hard_val, one, n_train=64)
    _, info = compress.load_or_train_teacher(hard, hard_val, one, n_train=64, return_info=True)  # same: loads
    assert info["loaded"] and info["path"].name.startswith("av-teacher-late-")
    compress.load_or_train_teacher(hard, hard_val, FitConfig(**{**one.__dict__, "lr": 0.1, "batch_size": 16}), n_train=64)
    compress.load_or_train_teacher(clean, clean_val, one, n_train=64)
    out = capsys.readouterr().out
    assert out.count("saved av-teacher") == 3 and out.count("loaded checkpoint av-teacher") == 1
    assert f"lr={RECIPE.lr}" in out and len(list(tmp_path.glob("av-teacher-*.pt"))) == 3


def test_teacher_defaults_to_the_recipe(tmp_path, monkeypatch):
    """Lessons 09 and 10 both call load_or_train_teacher(train, val): zoo.RECIPE, TEACHER_N_TRAIN rows."""
    import inspect

    from mmcourse.fusion.zoo import RECIPE
    sig = inspect.signature(compress.load_or_train_teacher)
    assert sig.parameters["config"].default is None and sig.parameters["n_train"].default is None
    src = inspect.getsource(compress.load_or_train_teacher)
    assert "RECIPE if config is None" in src and "TEACHER_N_TRAIN if n_train is None" in src
    assert RECIPE.schedule == "onecycle"


def _tiny_av(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {"audio": torch.randn(n, 40, 13, generator=g), "image": torch.rand(n, 1, 28, 28, generator=g)}
    return x, torch.randint(0, 10, (n,), generator=g)


def test_distilling_from_cached_teacher_logits_equals_running_the_teacher(tmp_path, monkeypatch):
    """CachedTargets (teacher logits computed once) trains the same student as DistillTargets."""
    from mmcourse.runtime import seed_everything
    from mmcourse.train import predict
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    (x, y), (xv, yv) = _tiny_av(96, 0), _tiny_av(32, 1)
    torch.manual_seed(5)
    teacher = build_student(dim=8).eval()
    config = FitConfig(epochs=2, batch_size=32, lr=1e-2, device="cpu", seed=0)
    seed_everything(0)  # what train_student(seed=0) does before building the student
    a = build_student()
    fit(DistillTargets(a, teacher), (x, y), (xv, yv), config, loss_fn=distill_loss_fn(4.0, 0.9))
    out = compress.train_student(0, True, (x, y), (xv, yv), predict(teacher, x), config=config)
    assert not out["loaded"]
    for (name, p), q in zip(a.state_dict().items(), out["model"].state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
    again = compress.train_student(0, True, (x, y), (xv, yv), predict(teacher, x), config=config, cached_only=True)
    assert again["loaded"]  # cached: a second call loads
    assert compress.train_student(1, True, (x, y), (xv, yv), predict(teacher, x), config=config,
                                  cached_only=True) is None
    with pytest.raises(ValueError, match="teacher_logits"):
        compress.train_student(0, True, (x, y), (xv, yv), None, config=config)


def test_train_students_in_workers_equals_serial(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    (x, y), (xv, yv) = _tiny_av(64, 0), _tiny_av(32, 1)
    config = FitConfig(epochs=1, batch_size=32, lr=1e-2, device="cpu")
    serial = compress.train_students([0, 1], False, (x, y), (xv, yv), config=config, workers=1)
    for f in tmp_path.glob("student-*"):
        f.unlink()
    parallel = compress.train_students([0, 1], False, (x, y), (xv, yv), config=config, workers=2)
    for s in (0, 1):
        for p, q in zip(serial[s].state_dict().values(), parallel[s].state_dict().values()):
            torch.testing.assert_close(p, q)


def test_int8_bytes_adds_up():
    student = build_student().eval()
    b = compress.int8_bytes(student)
    assert b["fp32"] == size_on_disk(student) and b["int8"] == size_on_disk(quantize_int8(student))
    assert b["linear_weights"] == sum(m.weight.numel() for m in student.modules() if isinstance(m, nn.Linear))
    assert b["fp32"] - b["ideal_saving"] + b["overhead"] == b["int8"] and b["overhead"] > 0


def test_pruning_curve_and_finetune_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    (x, y), (xv, yv) = _tiny_av(64, 0), _tiny_av(32, 1)
    model = build_student().eval()
    curve = compress.pruning_curve(model, [0.0, 0.5], {"val": (xv, yv)})
    assert list(curve.columns) == ["scope", "amount", "sparsity", "val_acc"] and len(curve) == 4
    assert curve.sparsity.iloc[0] == 0.0 and abs(curve.sparsity.iloc[1] - 0.5) < 0.01
    tuned = compress.finetune_pruned(model, 0.5, (x, y), (xv, yv), FitConfig(epochs=1, batch_size=32, device="cpu"))
    assert abs(sparsity(tuned) - 0.5) < 0.01 and not any("mask" in k for k in tuned.state_dict())


def test_distillation_loss_refuses_an_empty_batch():
    empty = torch.zeros(0, 10)
    with pytest.raises(ValueError, match=r"distillation_loss got an empty batch \(0, 10\)"):
        distillation_loss(empty.requires_grad_(), torch.zeros(0, 10), alpha=1.0)
    with pytest.raises(ValueError, match="empty batch"):
        distillation_loss(torch.zeros(0, 10), torch.zeros(0, 10), torch.zeros(0, dtype=torch.long), alpha=0.5)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": -2}, "batch_size must be an integer >= 1, got -2"),
    ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
    ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
])
def test_cpu_latency_refuses_nothing_to_time(kwargs, match):
    x = {"audio": torch.randn(4, 40, 13), "image": torch.randn(4, 1, 28, 28)}
    with pytest.raises(ValueError, match=match):
        cpu_latency_ms(build_student(), x, **kwargs)
