"""Interactive panels for the notebooks (ipywidgets 8, and 7 as on Colab). Callbacks call package
code (training lives in ``mmcourse.train`` and ``mmcourse.balance``). Every panel can be driven
from Python (set ``.value``, call ``.click()``), which is how the tests use them without a browser
(``tests/test_ipywidgets7.py`` does it under ipywidgets 7).

``FusionWeightsPanel`` (lesson 05): move the image and audio weights of a trained
``WeightedSumFusion`` model, corrupt either modality with noise, or drop one, and watch the test
accuracy and one example's class probabilities change. Features are cached for every noise level
up front, so a slider move is one fusion head over cached (N, D) features: milliseconds.

``lambda_panel`` (lesson 06): λ sliders for the auxiliary losses; moving one retrains the lesson's
model briefly (``mmcourse.balance.run_balanced``) and plots fused and probe accuracy.
"""

from __future__ import annotations

import copy
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

    The panel works on its own copy of the model (``panel.model``): moving a slider never changes
    the weights of the model you passed in, so cells that evaluate it later are unaffected.

    Args:
        model: a ``MultimodalClassifier`` whose fusion is a ``WeightedSumFusion``.
        inputs, labels: the evaluation split, e.g. ``test.inputs``, ``test.labels``.
        example: index of the example whose probabilities are shown.
        noise_levels: the noise stds offered by the noise sliders (features cached for each).
        scales: ``{modality: σ_m}``, e.g. each modality's std on the training split: the sliders'
            levels are then in units of σ_m (noise std level·σ_m), so one level means as much
            for pixels as for MFCCs. Default: raw units (σ_m = 1).
    """

    def __init__(self, model: MultimodalClassifier, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 example: int = 0, noise_levels=(0.0, 0.5, 1.0, 2.0, 4.0), scales: dict[str, float] | None = None):
        if not isinstance(model.fusion, WeightedSumFusion):
            raise TypeError(f"FusionWeightsPanel needs a WeightedSumFusion model, got {type(model.fusion).__name__}")
        model = copy.deepcopy(model).eval()  # set_weights below must not touch the caller's model
        self.model, self.labels, self.example = model, labels, example
        self.fusion: WeightedSumFusion = model.fusion
        self.keys = self.fusion.keys
        self.scales = {k: 1.0 for k in self.keys} if scales is None else {k: float(scales[k]) for k in self.keys}
        with torch.no_grad():  # cache encoder features: {modality: {noise level: (N, D)}}
            self.cache = {k: {s: model.encoders[k](corrupt(inputs, k, s * self.scales[k])[k]) for s in noise_levels}
                          for k in self.keys}
        start = self.fusion.weights()
        label = {"style": {"description_width": "initial"}}  # show "noise audio" whole, not "noise a…"
        self.weight = {k: W.FloatSlider(value=round(start[k], 2), min=0, max=1, step=0.05,
                                        description=f"w_{k}", continuous_update=True, **label) for k in self.keys}
        self.noise = {k: W.SelectionSlider(options=list(noise_levels), value=noise_levels[0],
                                           description=f"noise {k}" + (" (×σ)" if scales else ""), **label)
                      for k in self.keys}
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


def lambda_panel(train, test, val=None, n_train: int = 3500, epochs: int = 3, lambdas: dict | None = None,
                 seed: int = 0, train_now: bool = True):
    """λ sliders that retrain the lesson's model (``run_balanced``) and plot fused and probe accuracy.

    Moving a slider retrains at once (a few seconds at the default size); **Next seed** retrains
    the same λ's from another seed, to see how much of a difference is noise. Every number shown
    (status line, bar labels, title) comes from the latest run; while a run trains, the old chart
    is cleared. Size: of the sizes tried on AV-digits (800 pairs × 3 epochs, 1,500 × 4, 3,500 × 3),
    only all 3,500 pairs gave a fused model above its own encoders' probes (seed 0: fused 0.79,
    probes 0.66 / 0.59; at 800 pairs fused 0.41 under probes 0.49 / 0.55: its head was still
    under-trained). The status line says so whenever the fused model falls below a probe.

    Args:
        train, test: ``(inputs dict, labels)``; val: the same for model selection (best epoch).

    Returns an ``ipywidgets.VBox`` with ``.sliders`` {m: FloatSlider}, ``.button``, ``.status``
    (HTML: the last run's numbers), ``.out`` (the chart), ``.runs`` (all results) and ``.seed``.
    Without a frontend it shows as its status line (plain text), so a static render is not stale.
    """
    import html

    import matplotlib.pyplot as plt
    from IPython.display import display

    from mmcourse.runtime import title

    class LambdaPanel(W.VBox):
        def __repr__(self) -> str:
            return self._text

        def _repr_mimebundle_(self, **kwargs):
            # ipywidgets 8; 7 (Colab) has no such method and displays through _ipython_display_,
            # whose text/plain is repr(self) cut at 110 characters
            parent = getattr(super(), "_repr_mimebundle_", None)
            data = parent(**kwargs) if parent else {}
            data["text/plain"] = self._text  # not truncated, and the current numbers
            return data

    lambdas = check_lambdas(lambdas or {}, train[0])
    style = {"description_width": "initial"}
    sliders = {k: W.FloatSlider(value=v, min=0.0, max=2.0, step=0.25, description=f"λ {k}", style=style,
                                continuous_update=False) for k, v in lambdas.items()}
    button = W.Button(description="Next seed", tooltip="retrain the same λ's from the next seed")
    status, out = W.HTML(), W.Output()
    panel = LambdaPanel([W.HBox([*sliders.values(), button]), status, out])
    panel.sliders, panel.button, panel.status, panel.out, panel.runs = sliders, button, status, out, []
    panel.seed, panel._text = seed, ""

    def show(text: str) -> None:
        panel._text = text
        status.value = "<br>".join(html.escape(line) for line in text.splitlines())

    def retrain(_=None):
        lam = {k: s.value for k, s in sliders.items()}
        lam_txt = ", ".join(f"λ {k} = {v:g}" for k, v in lam.items())
        out.clear_output()  # no chart of an older run next to the new λ's
        show(f"training with {lam_txt}, seed {panel.seed} …")
        r = run_balanced(train, test, lambdas=lam, epochs=epochs, seed=panel.seed, n_train=n_train, val=val)
        panel.runs.append({"lambdas": lam, "seed": panel.seed, "fused": r["fused"],
                           **{f"probe {k}": v for k, v in r["probe"].items()}})
        best_probe = max(r["probe"], key=r["probe"].get)
        text = (f"{lam_txt}, seed {panel.seed}: fused test acc {r['fused']:.3f} | "
                + " | ".join(f"{k} probe {v:.3f}" for k, v in r["probe"].items())
                + f"  ({r['seconds']:.1f} s, {min(n_train, len(train[1]))} pairs, {epochs} epochs)")
        if r["fused"] < r["probe"][best_probe]:
            text += (f"\nThe fused model is below the {best_probe} probe: at this size its head is under-trained"
                     " (the probe is fitted to convergence on frozen features); use more pairs or epochs.")
        show(text)
        with out:
            fig, ax = plt.subplots(figsize=(5.5, 2.8))
            accs = {"fused": r["fused"], **{f"{k} encoder\n(probe)": v for k, v in r["probe"].items()}}
            bars = ax.bar(list(accs), list(accs.values()), color=["tab:green", "tab:blue", "tab:orange"][:len(accs)])
            ax.bar_label(bars, fmt="%.3f")
            ax.set_ylim(0, 1); ax.set_ylabel("test accuracy")
            ax.set_title(title(f"{lam_txt} (seed {panel.seed})"), fontsize=9)
            plt.tight_layout(); display(fig); plt.close(fig)

    def next_seed(_=None):
        panel.seed += 1
        retrain()

    for s in sliders.values():
        s.observe(retrain, names="value")
    button.on_click(next_seed)
    if train_now:
        retrain()
    else:
        show("press Next seed or move a slider to train")
    return panel
