"""The distributable: an sdist and a wheel whose version is ``mmcourse.__version__``, a wheel
holding the package only, and an installed wheel that keeps data and checkpoints in the user's
cache (never next to the package, even inside another project's folder)."""

import email
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from wheelbuild import ROOT, STALE, build

import mmcourse


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return build(tmp_path_factory.mktemp("dist"))


def _package_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "mmcourse").rglob("*.py")
            if "__pycache__" not in p.parts}


def test_wheel_holds_the_package_and_nothing_else(dist):
    wheel, _ = dist
    assert wheel.name == f"mmcourse-{mmcourse.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    info = f"mmcourse-{mmcourse.__version__}.dist-info/"
    package = {n for n in names if not n.startswith(info)}
    assert package == _package_modules(), (
        f"wheel differs from mmcourse/*.py: extra {sorted(package - _package_modules())}, "
        f"missing {sorted(_package_modules() - package)}")
    for sub in ("check", "data", "fusion"):
        assert f"mmcourse/{sub}/__init__.py" in package
    assert not any(STALE in n for n in names), "a stale build/lib file got into the wheel"
    assert {n.removeprefix(info) for n in names if n.startswith(info)} <= {
        "METADATA", "WHEEL", "RECORD", "top_level.txt", "entry_points.txt", "LICENSE", "licenses/LICENSE"}
    assert wheel.stat().st_size < 1_000_000  # no data, notebooks or checkpoints


def test_wheel_metadata_version_is_the_package_version(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as z:
        meta = email.message_from_bytes(z.read(f"mmcourse-{mmcourse.__version__}.dist-info/METADATA"))
    assert meta["Name"] == "mmcourse" and meta["Version"] == mmcourse.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "the version is written once: mmcourse.__version__"
    from packaging.requirements import Requirement  # compares "a>=1,<2" and "a<2,>=1" as equal
    required = {str(Requirement(r.split(";")[0])) for r in meta.get_all("Requires-Dist")}
    assert {str(Requirement(d)) for d in pyproject["project"]["dependencies"]} <= required


def test_sdist_has_the_sources_but_no_data_notebooks_or_builds(dist):
    _, sdist = dist
    top = f"mmcourse-{mmcourse.__version__}/"
    names = tarfile.open(sdist).getnames()
    assert all(n.startswith(top) or n == top.rstrip("/") for n in names)
    rel = {n.removeprefix(top) for n in names}
    assert {"pyproject.toml", "PKG-INFO", "mmcourse/__init__.py"} <= rel
    assert {n for n in _package_modules()} <= rel
    bad = [n for n in rel if n.split("/")[0] in {"notebooks", "data", "checkpoints", "build", "book"}
           or n.endswith((".ipynb", ".pt", ".npz", ".png"))]
    assert not bad, f"sdist carries course files that are not the package: {bad[:5]}"
    pkg_info = tarfile.open(sdist).extractfile(top + "PKG-INFO").read().decode()
    assert re.search(rf"^Version: {re.escape(mmcourse.__version__)}$", pkg_info, re.M)


INSPECT = ("import json, mmcourse; from mmcourse.course import checkout_root; "
           "from mmcourse.data._store import data_dir; from mmcourse.checkpoint import checkpoint_dir; "
           "print(json.dumps({'file': mmcourse.__file__, 'root': str(checkout_root()), "
           "'data': str(data_dir()), 'checkpoints': str(checkpoint_dir())}))")


def test_installed_wheel_keeps_data_and_checkpoints_in_the_user_cache(dist, tmp_path):
    """Installed with ``pip install --target`` into another project's folder (which has its own
    pyproject.toml): that folder is not mistaken for the course checkout."""
    wheel, _ = dist
    project, home = tmp_path / "someproject", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "someproject"\nversion = "1.0"\n')
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(project),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in {"MMCOURSE_DATA", "MMCOURSE_CHECKPOINTS"}}
    env.update(PYTHONPATH=str(project), HOME=str(home), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", INSPECT], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["file"] == str(project / "mmcourse" / "__init__.py")  # the wheel, not the checkout
    assert got["root"] == "None"
    assert got["data"] == str(home / ".cache" / "mmcourse")
    assert got["checkpoints"] == str(home / ".cache" / "mmcourse" / "checkpoints")
    assert not (project / "data").exists() and not (project / "checkpoints").exists()


def test_the_checkout_is_recognised_by_its_own_pyproject():
    from mmcourse.course import checkout_root
    assert checkout_root() == ROOT
