"""``LiveTrainer``: train an AV-digits fusion model from a widget and watch it learn (lesson 05).

Pick the device (only those present are listed), the fusion method, the auxiliary-loss weights
λ (L = L_fused + λ_image L_image + λ_audio L_audio, lesson 06), the learning rate and epochs,
then press Start. Training runs ``mmcourse.train.fit`` in a background thread, so the Stop
button is handled while it runs: Stop takes effect after the current batch and leaves a usable
model (``trainer.model``). Curves are an inline PNG that replaces the content of an ``Output``
widget after every epoch, which works in JupyterLab, Notebook 7, VS Code and Colab. ``fit`` draws nothing:
everything visual lives in the hooks below.

The settings are captured when Start is pressed (``trainer.running``): the plot title and the
status line name what is training, and the controls are disabled until the run ends, so moving
a dropdown mid-run can neither relabel the curves nor look as if it changed the run.
"""

from __future__ import annotations

import base64
import io
import textwrap
import threading
import time

import ipywidgets as W
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from mmcourse.balance import AuxHeadClassifier, AuxLoss
from mmcourse.fusion import METHODS
from mmcourse.fusion.zoo import build_av_model
from mmcourse.runtime import available_devices, pick_device
from mmcourse.train import FitConfig, evaluate, fit


class _Hooks:
    """fit hooks: honour Stop, advance the progress bar, redraw curves after each epoch."""

    def __init__(self, trainer: "LiveTrainer"):
        self.trainer = trainer

    def on_batch_end(self, state) -> None:
        t = self.trainer
        if t.bar is not None:
            t.bar.update(1)
        if t.stop_requested:
            state.stop = True

    def on_epoch_end(self, state) -> None:
        h = state.history
        self.trainer.curves = {k: list(h[k]) for k in ("train_loss", "val_acc", "samples_per_s")}
        self.trainer.draw()
        self.trainer.status.value = (f"{self.trainer.running['label']}, epoch {state.epoch + 1}: "
                                     f"val acc {h['val_acc'][-1]:.3f} | {h['samples_per_s'][-1]:,.0f} samples/s")


class LiveTrainer:
    """A training dashboard over ``mmcourse.train.fit``.

    Args:
        train, val: ``AVDigits`` splits (or ``(inputs, labels)`` tuples).
        epochs, lr: starting values of the sliders.
    """

    def __init__(self, train, val, epochs: int = 5, lr: float = 3e-3, method: str = "late"):
        self.train = train if isinstance(train, tuple) else (train.inputs, train.labels)
        self.val = val if isinstance(val, tuple) else (val.inputs, val.labels)
        label = {"style": {"description_width": "initial"}}  # the whole description, never "learning r…"
        self.device = W.Dropdown(options=available_devices(), value=pick_device().type, description="device", **label)
        self.method = W.Dropdown(options=list(METHODS), value=method, description="fusion", **label)
        self.lam = {k: W.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.1, description=f"λ {k}", **label)
                    for k in ("audio", "image")}
        self.lr = W.FloatLogSlider(value=lr, base=10, min=-4, max=-1, step=0.25, description="learning rate", **label)
        self.epochs = W.IntSlider(value=epochs, min=1, max=30, description="epochs", **label)
        self.start_button = W.Button(description="Start", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML()
        self.plot, self.progress = W.Output(), W.Output()
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.model, self.history, self.curves, self.bar = None, None, {}, None
        self.stop_requested, self.thread, self.running, self.last_title = False, None, None, ""
        self.ready()
        for w in self.controls():  # the status line names what Start would train, until it does
            w.observe(lambda _: self.ready(), names="value")

    def ready(self) -> None:
        """Status before a run (or after one, once a control moves): what Start would train now."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.status.value = (f"ready: {self.method.value} on {self.device.value}, lr {self.lr.value:.2g}, "
                             f"{self.epochs.value} epochs; press Start")

    def controls(self) -> list[W.Widget]:
        """The widgets whose values define a run (disabled while one trains)."""
        return [self.device, self.method, *self.lam.values(), self.lr, self.epochs]

    # ---------------------------------------------------------------- actions
    def start(self, block: bool = False) -> None:
        """Build a fresh model from the widget values and train it (in a thread unless ``block``)."""
        if self.thread is not None and self.thread.is_alive():
            return
        self.stop_requested = False
        # Capture every setting now: the run, its title and its status line use these, never the
        # live widget values (a learner may move a dropdown while it trains).
        lam = {k: s.value for k, s in self.lam.items()}
        run = {"method": self.method.value, "device": self.device.value, "lr": self.lr.value,
               "epochs": self.epochs.value, "lambdas": lam}
        lams = ", ".join(f"λ {k} {v:g}" for k, v in lam.items() if v)
        run["label"] = f"{run['method']} on {run['device']}, lr {run['lr']:.2g}" + (f", {lams}" if lams else "")
        self.running = run
        built = build_av_model(run["method"])
        self.model = AuxHeadClassifier(built.encoders, built.fusion, num_classes=10)
        self.loss = AuxLoss(lam, sorted(self.lam))
        self.config = FitConfig(epochs=run["epochs"], lr=run["lr"], device=run["device"])
        steps = self.config.epochs * -(-len(self.train[1]) // self.config.batch_size)
        self.curves = {}
        self.progress.clear_output()
        with self.progress:
            self.bar = tqdm(total=steps, desc=f"{run['method']} on {run['device']}", unit="batch")
        self.start_button.disabled, self.stop_button.disabled = True, False
        for w in self.controls():
            w.disabled = True
        self.status.value = f"training {run['label']} …"
        if block:
            self._run()
        else:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def stop(self) -> None:
        """Ask training to stop after the current batch."""
        self.stop_requested = True

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self.history = fit(self.model, self.train, self.val, self.config, callbacks=[_Hooks(self)], loss_fn=self.loss)
            acc = evaluate(self.model, *self.val)["acc"]
            how = "stopped" if self.stop_requested else "finished"
            best = (f" (the best-val epoch {self.history['best_epoch'] + 1}, restored)"
                    if "best_epoch" in self.history else "")
            self.status.value = (f"<b>{how}</b>: {self.running['label']}, {time.perf_counter() - t0:.1f} s: "
                                 f"val acc {acc:.3f}{best}")
        except Exception as e:  # show the error in the panel instead of losing it in a thread
            self.status.value = f"<b>error:</b> {type(e).__name__}: {e}"
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
            self.start_button.disabled, self.stop_button.disabled = False, True
            for w in self.controls():
                w.disabled = False

    # ---------------------------------------------------------------- drawing
    def figure(self) -> Figure:
        """Loss and accuracy curves; the run's settings are the figure's title, wrapped to fit."""
        c = self.curves
        fig = Figure(figsize=(8, 3.1))
        a1, a2 = fig.subplots(1, 2)
        epochs = range(1, len(c.get("train_loss", [])) + 1)
        a1.plot(epochs, c.get("train_loss", []), marker="o")
        a1.set_xlabel("epoch"); a1.set_ylabel("train loss"); a1.set_title("training loss")
        a2.plot(epochs, c.get("val_acc", []), marker="o", color="tab:green")
        a2.set_xlabel("epoch"); a2.set_ylabel("val accuracy"); a2.set_ylim(0, 1); a2.set_title("validation accuracy")
        # The settings go above both panels (a long label cut one panel's title: "val accurac"),
        # wrapped so that no setting runs off the figure.
        self.last_title = self.running["label"] if self.running else self.method.value
        fig.suptitle("\n".join(textwrap.wrap(self.last_title, 90)), fontsize=10)
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        """Loss and accuracy curves as one inline PNG (thread-safe: no pyplot state)."""
        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        # Replace the Output's content in one assignment. From a background thread,
        # clear_output(wait=True) + append_display_data stacked the figures in JupyterLab.
        self.plot.outputs = ({"output_type": "display_data", "metadata": {},
                              "data": {"image/png": base64.b64encode(buf.getvalue()).decode(),
                                       "text/plain": "<training curves>"}},)

    def widget(self) -> W.Widget:
        controls = W.VBox([W.HBox([self.device, self.method]), W.HBox(list(self.lam.values())),
                           W.HBox([self.lr, self.epochs]), W.HBox([self.start_button, self.stop_button])])
        return W.VBox([controls, self.progress, self.status, self.plot])
