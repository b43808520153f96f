"""The live-training dashboard driven headlessly: set values, Start, Stop mid-run, evaluate."""

import time

import torch

from mmcourse.data import load_av_digits
from mmcourse.live import LiveTrainer
from mmcourse.train import evaluate


def small():
    tr, va = load_av_digits("train"), load_av_digits("val")
    cut = lambda d, n: ({k: v[:n] for k, v in d.inputs.items()}, d.labels[:n])  # noqa: E731
    return cut(tr, 256), cut(va, 64)


def test_start_trains_a_tiny_config_and_draws():
    train, val = small()
    t = LiveTrainer(train, val)
    assert t.device.options[-1] == "cpu" and "cpu" in t.device.options
    t.device.value, t.method.value, t.epochs.value = "cpu", "concat", 2
    t.lam["image"].value = 0.5
    t.start_button.click()
    t.join(timeout=120)
    assert not t.thread.is_alive()
    assert len(t.history["val_acc"]) == 2 and "finished" in t.status.value
    assert len(t.plot.outputs) == 1 and "image/png" in t.plot.outputs[0]["data"]  # replaced, not stacked
    assert t.loss.lambdas == {"audio": 0.0, "image": 0.5}
    assert t.start_button.disabled is False and t.stop_button.disabled is True


def test_stop_mid_run_leaves_a_usable_model():
    train, val = small()
    t = LiveTrainer(train, val, epochs=30, method="late")
    t.device.value = "cpu"
    t.start_button.click()
    deadline = time.time() + 60
    while (t.bar is None or t.bar.n < 3) and time.time() < deadline:
        time.sleep(0.01)
    t.stop_button.click()
    t.join(timeout=60)
    assert not t.thread.is_alive() and "stopped" in t.status.value
    assert t.bar.n < t.bar.total and len(t.history["train_loss"]) < 30  # stopped early, not finished
    out = t.model(val[0])
    assert out["logits"].shape == (64, 10) and torch.isfinite(out["logits"]).all()
    assert 0.0 <= evaluate(t.model, *val)["acc"] <= 1.0


def test_title_and_status_name_the_run_started_not_the_dropdown_now():
    train, val = small()
    t = LiveTrainer(train, val, epochs=2, method="late")
    t.device.value = "cpu"
    t.start_button.click()
    assert all(w.disabled for w in t.controls())  # nothing to move while it trains
    t.method.value, t.lr.value = "gated", 0.01  # a learner changes them anyway (from code)
    t.join(timeout=120)
    assert not t.thread.is_alive()
    assert t.last_title.startswith("late on cpu, lr 0.003") and "gated" not in t.last_title
    assert "late on cpu" in t.status.value and "gated" not in t.status.value
    assert t.running["method"] == "late" and t.config.lr == 0.003
    assert not any(w.disabled for w in t.controls())  # free again for the next run


def test_every_control_label_is_shown_in_full():
    train, val = small()
    t = LiveTrainer(train, val)
    for w in t.controls():
        assert w.style.description_width == "initial", f"{w.description!r} would be truncated"
