"""What the site reads from a lesson notebook: its title, goal, run time and exercises.

The course map and every lesson page are generated from these, so they cannot drift from the
notebooks. The header conventions (see ``notebooks/*.py``): the first ``# `` heading is the title,
the paragraph right after it states the goal, and the paragraph from a line starting ``**Run time`` gives
the measured run time. An exercise cell is a code cell that calls ``check.<exercise>(...)`` for a name
in ``mmcourse.check.EXERCISES``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

_TITLE = re.compile(r"^# +(.+?)\s*$", re.M)
_RUN_TIME = re.compile(r"^\*\*Run time", re.M)  # may share a paragraph with the line above it
_CALL = re.compile(r"\bcheck\.([A-Za-z_]\w*)\s*\(")


@dataclass
class Lesson:
    """One notebook as the site sees it.

    Attributes:
        path: the committed notebook, e.g. ``notebooks/05_fusion.ipynb``.
        title: its first ``# `` heading, without the ``#``.
        goal: the paragraph after the title (Markdown, may hold ``$math$``).
        run_time: the ``**Run time…`` paragraph (Markdown).
        exercises: ``{exercise name: index of the code cell that checks it}``, in notebook order.
    """

    path: Path
    title: str
    goal: str
    run_time: str
    exercises: dict[str, int] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """``"05_fusion"``: the page's name on the site (``05_fusion.html``)."""
        return self.path.stem


def paragraphs(markdown: str) -> list[str]:
    """Blank-line separated blocks of a Markdown text, stripped."""
    return [p.strip() for p in re.split(r"\n\s*\n", markdown) if p.strip()]


def read_lesson(path: Path, exercise_names: tuple[str, ...]) -> Lesson:
    """Read a notebook's header and exercise cells.

    Raises:
        ValueError: the notebook has no ``# `` title, no goal paragraph after it, or no
            ``**Run time`` paragraph; the message names the notebook and what to add.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    title = goal = run_time = None
    exercises: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            text = cell.source
            if title is None and (m := _TITLE.search(text)):
                title = m.group(1)
                after = paragraphs(text[m.end():])
                goal = after[0] if after and not after[0].startswith("**") else None
            if run_time is None and (m := _RUN_TIME.search(text)):
                run_time = paragraphs(text[m.start():])[0]
        elif cell.cell_type == "code":
            for name in _CALL.findall(cell.source):
                if name in exercise_names and name not in exercises:
                    exercises[name] = i
    for what, value, fix in [("title", title, "a first line '# NN · Title'"),
                             ("goal", goal, "a paragraph right after the title saying what the lesson does"),
                             ("run time", run_time, "a paragraph starting '**Run time:**' with the measured time")]:
        if not value:
            raise ValueError(f"{path}: no {what} found for the course site; add {fix} to the header cell")
    return Lesson(path=path, title=title, goal=goal, run_time=run_time, exercises=exercises)


def find_lessons(folder: Path) -> list[Lesson]:
    """Every ``*.ipynb`` in ``folder``, sorted by name (``00_…``, ``01_…``, …), read as lessons."""
    from mmcourse.check import EXERCISES

    paths = sorted(Path(folder).glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks in {folder}: the course site needs notebooks/*.ipynb")
    return [read_lesson(p, EXERCISES) for p in paths]


def solution_source(name: str) -> str:
    """The reference solution of exercise ``name``, as its source in ``mmcourse/check/solutions.py``.

    Raises:
        KeyError: no function or class of that name in ``solutions.py``.
    """
    from mmcourse.check import solutions

    ref = getattr(solutions, name, None)
    if ref is None:
        raise KeyError(f"exercise {name!r} has no reference solution in mmcourse/check/solutions.py")
    return inspect.getsource(ref).rstrip()
