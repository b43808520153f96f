"""Test-session set-up shared by the unit tests and nbval.

Jupyter, IPython and matplotlib write into ``~`` by default; point them at one temp dir so the
suite leaves the user's home alone and runs the same on every machine.
"""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="mmcourse-test-")
for _var, _sub in [("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                   ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                   ("MPLCONFIGDIR", "matplotlib")]:
    os.environ.setdefault(_var, os.path.join(_TMP, _sub))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_NOTEBOOK_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Add up each notebook's cell times (nbval makes one test item per cell)."""
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] = _NOTEBOOK_SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if _NOTEBOOK_SECONDS:
        terminalreporter.section("notebook run times (sum of cell times; kernel start not included)")
        for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
            flag = "" if seconds <= 90 else "   <-- over the 90 s budget"
            terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
