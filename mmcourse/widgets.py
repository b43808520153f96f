"""Interactive panels for the notebooks (ipywidgets 8). Callbacks call package code (training
lives in ``mmcourse.train`` and ``mmcourse.balance``). Every panel can be driven from Python (set ``.value``, call ``.click()``), which is
how the tests use them without a browser.

``FusionWeightsPanel`` (lesson 05): move the image and audio weights of a trained
``WeightedSumFusion`` model, corrupt either modality with noise, or drop one, and watch the test
accuracy and one example's class probabilities change. Features are cached for every noise level
up front, so a slider move is one fusion head over cached (N, D) features: milliseconds.

``lambda_panel`` (lesson 06): λ sliders for the auxiliary losses and a Train button that retrains
the lesson's model briefly (``mmcourse.balance.run_balanced``) and plots fused and probe accuracy.
"""

from __future__ import annotations

import time

import ipywidgets as W
import torch

from mmcourse.balance import check_lambdas, run_balanced
from mmcourse.fusion.base import MultimodalClassifier
from mmcourse.fusion.simple import WeightedSumFusion


def corrupt(inputs: dict[str, torch.Tensor], modality: str, std: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Add Gaussian noise of ``std`` to one modality (audio: real frames only, padding stays 0)."""
    if modality not in inputs:
        raise KeyError(f"no modality {modality!r} to corrupt; have {sorted(inputs)}")
    g = torch.Generator().manual_seed(seed)
    x = inputs[modality]
    noise = std * torch.randn(x.shape, generator=g)
    if modality == "audio":
        noise = noise * (x.abs().sum(-1, keepdim=True) > 0)  # keep padded frames exactly zero
    return {**inputs, modality: x + noise}


class FusionWeightsPanel:
    """Sliders for z = w_image·P f_image + w_audio·P f_audio on a trained model.

    Args:
        model: a ``MultimodalClassifier`` whose fusion is a ``WeightedSumFusion``.
        inputs, labels: the evaluation split, e.g. ``test.inputs``, ``test.labels``.
        example: index of the example whose probabilities are shown.
        noise_levels: the noise stds offered by the noise sliders (features cached for each).
    """

    def __init__(self, model: MultimodalClassifier, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 example: int = 0, noise_levels=(0.0, 0.5, 1.0, 2.0, 4.0)):
        if not isinstance(model.fusion, WeightedSumFusion):
            raise TypeError(f"FusionWeightsPanel needs a WeightedSumFusion model, got {type(model.fusion).__name__}")
        self.model, self.labels, self.example = model.eval(), labels, example
        self.fusion: WeightedSumFusion = model.fusion
        self.keys = self.fusion.keys
        with torch.no_grad():  # cache encoder features: {modality: {noise std: (N, D)}}
            self.cache = {k: {s: model.encoders[k](corrupt(inputs, k, s)[k]) for s in noise_levels}
                          for k in self.keys}
        start = self.fusion.weights()
        self.weight = {k: W.FloatSlider(value=round(start[k], 2), min=0, max=1, step=0.05,
                                        description=f"w_{k}", continuous_update=True) for k in self.keys}
        self.noise = {k: W.SelectionSlider(options=list(noise_levels), value=noise_levels[0],
                                           description=f"noise {k}") for k in self.keys}
        self.present = {k: W.Checkbox(value=True, description=f"{k} present", indent=False) for k in self.keys}
        self.readout = W.HTML()
        for w in [*self.weight.values(), *self.noise.values(), *self.present.values()]:
            w.observe(lambda change: self.update(), names="value")
        self.last_latency_ms = 0.0
        self.update()

    def state(self) -> dict:
        """Accuracy and the example's probabilities for the current widget values."""
        self.fusion.set_weights({k: self.weight[k].value for k in self.keys})
        feats = {k: self.cache[k][self.noise[k].value] for k in self.keys if self.present[k].value}
        if not feats:
            return {"acc": float("nan"), "probs": None, "error": "tick at least one modality"}
        with torch.no_grad():
            logits = self.fusion(feats)  # (N, C)
        probs = logits[self.example].softmax(-1)
        return {"acc": (logits.argmax(-1) == self.labels).float().mean().item(), "probs": probs, "error": None}

    def update(self) -> dict:
        t0 = time.perf_counter()
        s = self.state()
        if s["error"]:
            self.readout.value = f"<b>{s['error']}</b>"
        else:
            y = int(self.labels[self.example])
            bars = "".join(
                f"<div style='font-family:monospace'>{c}: <span style='display:inline-block;height:0.8em;"
                f"width:{200 * p:.0f}px;background:{'#2a7' if c == y else '#888'}'></span> {p:.2f}</div>"
                for c, p in enumerate(s["probs"].tolist()))
            self.readout.value = (f"<b>test accuracy: {s['acc']:.3f}</b> &nbsp; weights "
                                  + ", ".join(f"{k}={self.weight[k].value:.2f}" for k in self.keys)
                                  + f"<br>example #{self.example} (true digit {y}):{bars}")
        self.last_latency_ms = 1000 * (time.perf_counter() - t0)
        return s

    def widget(self) -> W.Widget:
        rows = [W.HBox([self.weight[k], self.noise[k], self.present[k]]) for k in self.keys]
        return W.VBox([*rows, self.readout])


def lambda_panel(train, test, n_train: int = 800, epochs: int = 3, lambdas: dict | None = None,
                 seed: int = 0, train_now: bool = True):
    """λ sliders + a Train button: retrain on ``n_train`` rows for ``epochs``, plot accuracies.

    Returns an ``ipywidgets.VBox`` with ``.sliders`` {m: FloatSlider}, ``.button``, ``.status``
    (an HTML line: the last run's numbers), ``.out`` (the bar chart) and ``.runs`` (all results).
    Without a frontend, displaying it still prints the status line of the initial run.
    """
    import matplotlib.pyplot as plt
    from IPython.display import display


    lambdas = check_lambdas(lambdas or {}, train[0])
    sliders = {k: W.FloatSlider(value=v, min=0.0, max=2.0, step=0.25, description=f"λ {k}",
                                continuous_update=False) for k, v in lambdas.items()}
    button, status, out = W.Button(description="Train", button_style="primary"), W.HTML(), W.Output()
    panel = W.VBox([W.HBox([*sliders.values(), button]), status, out])
    panel.sliders, panel.button, panel.status, panel.out, panel.runs = sliders, button, status, out, []

    def retrain(_=None):
        lam = {k: s.value for k, s in sliders.items()}
        status.value = f"training with λ = {lam} …"
        r = run_balanced(train, test, lambdas=lam, epochs=epochs, seed=seed, n_train=n_train)
        panel.runs.append({"lambdas": lam, "fused": r["fused"], **{f"probe {k}": v for k, v in r["probe"].items()}})
        accs = {"fused": r["fused"], **{f"{k} encoder\n(probe)": v for k, v in r["probe"].items()}}
        status.value = (f"λ = {lam}: fused {r['fused']:.3f} | " + " | ".join(
            f"{k} probe {v:.3f}" for k, v in r["probe"].items()) + f" ({r['seconds']:.1f} s, {n_train} samples, {epochs} epochs)")
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5.5, 2.8))
            bars = ax.bar(list(accs), list(accs.values()), color=["tab:green", "tab:blue", "tab:orange"][:len(accs)])
            ax.bar_label(bars, fmt="%.2f")
            ax.set_ylim(0, 1); ax.set_ylabel("test accuracy")
            ax.set_title(f"λ = {lam}: fused {r['fused']:.2f}")
            plt.tight_layout(); display(fig); plt.close(fig)

    button.on_click(retrain)
    if train_now:
        retrain()
    print(status.value)
    return panel
