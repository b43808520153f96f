"""Build mmcourse's sdist and wheel the way ``python -m build`` does, offline, for the tests.

``python -m build`` makes the sdist from the source tree, unpacks it, and builds the wheel from
that clean copy, so a stale ``build/lib`` (setuptools' in-tree cache; ``build/`` also holds
screenshots here) can never leak a deleted module into the wheel. We do the same with the
venv's setuptools (no isolated environment, so no download): the sdist from a copy of the files
git tracks plus a planted stale ``build/lib/mmcourse/_stale.py``, then the wheel from the
unpacked sdist. The tests check that the planted file did not get in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STALE = "_stale_module_from_build_lib.py"
_BACKEND = "from setuptools import build_meta as b; import sys; print(getattr(b, sys.argv[1])(sys.argv[2]))"


def _tracked_files() -> list[str]:
    """Files git tracks (plus untracked, not ignored ones: a new module counts before its commit);
    without git (e.g. tests run from an sdist), the files a distribution needs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout.decode()
        return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file()})
    except (OSError, subprocess.CalledProcessError):
        keep = [p for p in ["pyproject.toml", "README.md", "LICENSE"] if (ROOT / p).is_file()]
        return keep + [str(p.relative_to(ROOT)) for p in (ROOT / "mmcourse").rglob("*.py")]


def _backend(hook: str, src: Path, out: Path) -> Path:
    run = subprocess.run([sys.executable, "-c", _BACKEND, hook, str(out)], cwd=src, capture_output=True,
                         text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"{hook} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return out / run.stdout.strip().splitlines()[-1]


def build(dest: Path) -> tuple[Path, Path]:
    """``(wheel, sdist)`` built under ``dest`` from a clean copy of the checkout."""
    src, out = dest / "src", dest / "dist"
    for rel in _tracked_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    stale = src / "build" / "lib" / "mmcourse" / STALE  # what an old in-tree build leaves behind
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("raise ImportError('a module deleted long ago')\n")
    out.mkdir()
    sdist = _backend("build_sdist", src, out)
    with tarfile.open(sdist) as tar:
        tar.extractall(dest / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    wheel = _backend("build_wheel", next((dest / "unpacked").iterdir()), out)
    return wheel, sdist
