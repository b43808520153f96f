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


def test_status_says_what_start_would_train_and_is_not_stale_after_a_run():
    train, val = small()
    t = LiveTrainer(train, val, epochs=1, method="gated")
    t.device.value = "cpu"
    assert t.status.value.startswith("ready: gated on cpu") and "press Start" in t.status.value
    t.method.value = "film"  # the ready line follows the dropdown
    assert t.status.value.startswith("ready: film on cpu")
    t.start_button.click()
    t.join(timeout=120)
    assert "finished" in t.status.value and "film" in t.status.value and "ready" not in t.status.value
    t.method.value = "late"  # moving a control after the run: ready for the next one
    assert t.status.value.startswith("ready: late")


def test_plot_titles_fit_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    train, val = small()
    t = LiveTrainer(train, val, epochs=1, method="low_rank_tensor")
    t.running = {"label": "low_rank_tensor on cpu, lr 0.0032, λ audio 1.5, λ image 2"}
    t.curves = {"train_loss": [2.3, 1.9], "val_acc": [0.3, 0.5], "samples_per_s": [1e3, 1e3]}
    fig = t.figure()
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    texts = [fig._suptitle] + [a.title for a in fig.axes]
    assert "val accuracy" not in fig._suptitle.get_text() and t.last_title in fig._suptitle.get_text()
    for text in texts:
        ext = text.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1 and ext.y1 <= box.y1 + 1, text.get_text()
    assert [a.title.get_text() for a in fig.axes] == ["training loss", "validation accuracy"]
