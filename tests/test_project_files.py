"""The files people look for: licence, citation, contributing guide, issue form, version pins."""
import importlib.metadata as md
import os
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
import yaml

import mmcourse
from mmcourse import course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_licence_is_the_mit_licence_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"


def test_citation_matches_the_package_version_and_repository():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["version"] == mmcourse.__version__, "bump CITATION.cff's version with mmcourse.__version__"
    assert cff["repository-code"] == course.REPOSITORY


def test_contributing_names_the_commands_that_exist():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z-]+)", text))
    assert named and named <= targets, f"CONTRIBUTING.md names make targets that do not exist: {named - targets}"


def test_issue_form_asks_for_lesson_place_device_and_describe():
    form = yaml.safe_load((ROOT / ".github/ISSUE_TEMPLATE/problem.yml").read_text())
    fields = {b["id"]: b for b in form["body"]}
    assert {"lesson", "where", "device", "describe"} <= set(fields)
    assert "Colab" in fields["where"]["attributes"]["options"]
    assert "mmcourse.describe()" in fields["describe"]["attributes"]["label"]
    missing = set(NOTEBOOKS) - set(fields["lesson"]["attributes"]["options"])
    assert not missing, f"add {sorted(missing)} to the lesson list of .github/ISSUE_TEMPLATE/problem.yml"


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def test_constraints_pin_every_dependency():
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["test"] + project["optional-dependencies"]["book"]
    names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", d, 1)[0]).lower() for d in deps}
    assert not names - set(pins), f"constraints.txt lacks {sorted(names - set(pins))}: run `make constraints`"


@pytest.mark.skipif(os.environ.get("MMCOURSE_LATEST") == "1", reason="make test-latest runs the newest versions on purpose")
def test_installed_versions_are_the_pinned_ones():
    wrong = {}
    for name, version in _pins().items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            continue
        if have.split("+")[0] != version:
            wrong[name] = (have, version)
    assert not wrong, (f"installed ≠ constraints.txt (installed, pinned): {wrong}. Re-install with "
                       "`make clean-venv && make setup`, or pin the new set with `make constraints`.")
