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
