"""The panels under ipywidgets 7, the version Colab ships (7.7.1), driven headlessly.

ipywidgets 7 is installed with ``pip install --no-deps --target`` into a temp folder and put first
on ``sys.path`` of a subprocess (the course's own environment keeps ipywidgets 8). There every
panel is built, displayed through IPython's display machinery, and driven as a learner would:
sliders moved, buttons clicked, a run started and stopped. Skipped when pip cannot fetch it.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLAB_IPYWIDGETS = ["ipywidgets==7.7.1", "ipython_genutils==0.2.0"]  # 7 imports ipython_genutils

DRIVER = textwrap.dedent(r'''
    import contextlib, io, json, sys, warnings
    warnings.simplefilter("ignore")
    import ipywidgets as W
    assert W.__version__.startswith("7."), W.__version__
    import torch
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from mmcourse.data import load_av_digits
    from mmcourse.fusion.zoo import build_av_model
    from mmcourse.live import LiveTrainer
    from mmcourse.widgets import FusionWeightsPanel, lambda_panel

    InteractiveShell.instance()  # display() as in a notebook, published to stdout here
    report = {"ipywidgets": W.__version__, "ipywidgets_file": W.__file__}

    def shown(widget):
        """What display() publishes for the widget (raises if displaying fails)."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            display(widget)
        return buf.getvalue()

    tr, va, te = (load_av_digits(s) for s in ("train", "val", "test"))
    cut = lambda d, n: ({k: v[:n] for k, v in d.inputs.items()}, d.labels[:n])

    # lesson 05: weights, noise, dropping a modality
    torch.manual_seed(0)
    p = FusionWeightsPanel(build_av_model("weighted_sum", dim=8, image_width=4, audio_hidden=8),
                           *cut(te, 64), example=3, noise_levels=(0.0, 1.0))
    before = p.readout.value
    p.weight["image"].value, p.weight["audio"].value = 1.0, 0.0
    moved = p.readout.value
    clean = p.state()["probs"]
    p.noise["image"].value = 1.0
    noisy = p.state()["probs"]
    p.present["image"].value = p.present["audio"].value = False
    report["fusion_panel"] = {"moved": moved != before and "image=1.00" in moved, "noise": not torch.equal(clean, noisy),
                              "none_present": "at least one" in p.readout.value,
                              "shown": "VBox" in shown(p.widget())}

    # lesson 06: a slider retrains, Next seed retrains, the status line names the numbers
    with contextlib.redirect_stdout(io.StringIO()):  # no kernel: the Output's chart goes to stdout
        lp = lambda_panel(cut(tr, 96), cut(te, 64), val=cut(va, 32), n_train=96, epochs=1)
        lp.sliders["audio"].value = 0.5
        lp.button.click()
    report["lambda_panel"] = {"runs": len(lp.runs), "seed": lp.seed, "status": lp._text,
                              "shown": shown(lp),
                              "bundle": lp._repr_mimebundle_().get("text/plain")}

    # lesson 05: LiveTrainer, blocking start, then a threaded start stopped after 3 batches
    t = LiveTrainer(cut(tr, 128), cut(va, 32), epochs=2)
    t.device.value, t.method.value = "cpu", "concat"
    t.start(block=True)
    first = {"status": t.status.value, "epochs": len(t.history["val_acc"]), "plot": len(t.plot.outputs),
             "enabled_again": not any(w.disabled for w in t.controls())}
    import time
    t.epochs.value = 30
    t.start_button.click()
    deadline = time.time() + 60
    while (t.bar is None or t.bar.n < 3) and time.time() < deadline:
        time.sleep(0.01)
    t.stop_button.click()
    t.join(timeout=60)
    report["live"] = {**first, "stopped": "stopped" in t.status.value, "alive": t.thread.is_alive(),
                      "shown": "VBox" in shown(t.widget())}

    # tqdm's notebook bar (tqdm.auto picks it inside a kernel) builds on ipywidgets too
    from tqdm.notebook import tqdm
    with contextlib.redirect_stdout(io.StringIO()):
        bar = tqdm(total=3, desc="batches")
        bar.update(3)
        bar.close()
    report["tqdm_notebook"] = True

    # the widgets the notebooks build themselves, with their keyword arguments
    wide = {"style": {"description_width": "initial"}, "layout": W.Layout(width="420px")}
    own = [W.FloatSlider(value=0.5, min=0.01, max=0.99, step=0.01, description="threshold"),
           W.ToggleButtons(options=[0, 1], value=1, description="label y"),
           W.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="temperature T"),
           W.IntSlider(value=4, min=2, max=6, description="k models", **wide), W.Output()]
    report["notebook_widgets"] = "VBox" in shown(W.VBox(own))
    print("REPORT " + json.dumps(report))
''')


@pytest.fixture(scope="module")
def ipywidgets7(tmp_path_factory):
    target = tmp_path_factory.mktemp("ipywidgets7")
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          *COLAB_IPYWIDGETS], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        pytest.skip(f"pip could not fetch {COLAB_IPYWIDGETS} (no package index?): {run.stderr.strip()[-300:]}")
    return target


def test_panels_work_under_ipywidgets_7(ipywidgets7):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ipywidgets7), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "MMCOURSE_QUICK": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=600, env=env,
                         cwd=ipywidgets7)
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and lines, f"driver failed under ipywidgets 7:\n{run.stderr[-3000:]}"
    r = json.loads(lines[-1].removeprefix("REPORT "))
    assert r["ipywidgets"] == "7.7.1" and r["ipywidgets_file"].startswith(str(ipywidgets7))
    assert r["fusion_panel"] == {"moved": True, "noise": True, "none_present": True, "shown": True}
    lp = r["lambda_panel"]
    assert lp["runs"] == 3 and lp["seed"] == 1
    assert "λ audio = 0.5" in lp["status"] and "fused test acc" in lp["status"]
    assert lp["bundle"] == lp["status"]  # the static render shows the latest numbers
    assert lp["status"].splitlines()[0][:100] in lp["shown"]  # ipywidgets 7 cuts text/plain at 110
    live = r["live"]
    assert "finished" in live["status"] and live["epochs"] == 2 and live["plot"] == 1 and live["enabled_again"]
    assert live["stopped"] and not live["alive"] and live["shown"]
    assert r["tqdm_notebook"] and r["notebook_widgets"]
