"""Build the course site: stage the notebooks under ``build/``, then run Sphinx on them.

    python -m book.build [OUT] [--stage DIR]      # what `make book` runs; OUT defaults to build/book

Staging writes, into a git-ignored folder, one page source per notebook and the generated pages:

- ``NN_name.ipynb``: the committed notebook with its saved outputs, its code without the
  ``# NBVAL_...`` test-runner markers, cells with a wide figure tagged ``full-width``, plus a launch row under the
  title (Open in Colab from ``mmcourse.course.colab_url``, download the original .ipynb), each
  widget output drawn from its saved state with a "live only when run" note (``book.widgets``),
  and a collapsed "Show solution" after each exercise cell, its source read from
  ``mmcourse/check/solutions.py``;
- ``index.md``: the course map, generated from the notebooks' headers (``book.lessons``);
- ``solutions.md``: every exercise's solution, grouped by lesson;
- ``_extra/notebooks/NN_name.ipynb``: the untouched notebooks, copied to the site for download.

Sphinx reads ``book/conf.py`` (``-c book``) and never executes a notebook (myst-nb, execution off).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

from book.lessons import Lesson, find_lessons, solution_source
from book.widgets import VIEW, static_outputs, widget_state

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def repo_path(path: Path) -> str:
    """``"notebooks/05_fusion.ipynb"``: the notebook's path inside the repository, for links."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return f"notebooks/{Path(path).name}"


def launch_row(lesson: Lesson) -> str:
    """The HTML row under a lesson's title: Open in Colab, download the .ipynb, the run time."""
    from mmcourse.course import colab_url

    name = lesson.path.name
    return ('<div class="launch-row">'
            f'<a class="launch-button launch-colab" href="{colab_url(repo_path(lesson.path))}">Open in Colab</a>'
            f'<a class="launch-button launch-download" href="notebooks/{name}" download="{name}">Download .ipynb</a>'
            '<a class="launch-runtime" href="#run-time">Run time ↓</a>'
            "</div>")


def fence(code: str, lang: str = "python") -> str:
    """A Markdown code fence longer than any run of backticks inside ``code``."""
    ticks = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    return f"{ticks}{lang}\n{code}\n{ticks}"


def solution_block(name: str, label: bool) -> str:
    """A collapsed sphinx-design dropdown ("Show solution") holding the reference solution's source."""
    name_opt = f":name: solution-{name}\n" if label else ""
    return (f"::::{{dropdown}} Show solution: `{name}`\n:class-container: mmc-solution\n{name_opt}\n"
            f"One reference solution, from `mmcourse/check/solutions.py`. Try the exercise first: in the "
            f'notebook, `check.hint("{name}")` gives a hint and `check.solution("{name}")` prints this '
            f"after an attempt.\n\n{fence(solution_source(name))}\n::::")


NBVAL_MARKER = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*(?:\n|$)", re.MULTILINE)
WIDE_FIGURE_PX = 1000  # a PNG at least this wide is shown across the page's full width (tag full-width)


def strip_test_markers(source: str) -> str:
    """The code a learner reads: the ``# NBVAL_...`` lines (instructions to the nbval test runner) removed."""
    return NBVAL_MARKER.sub("", source)


def png_width(output: dict) -> int:
    """Pixel width of an output's PNG (read from its IHDR header), 0 if it has none."""
    import base64

    data = output.get("data", {}).get("image/png")
    if not data:
        return 0
    head = base64.b64decode("".join(data)[:64] if isinstance(data, list) else data[:64])
    return int.from_bytes(head[16:20], "big") if head[12:16] == b"IHDR" else 0


def stage_notebook(lesson: Lesson, dest: Path) -> None:
    """Write the lesson's page source: launch row, static widgets, solution toggles, run-time anchor."""
    nb = nbformat.read(lesson.path, as_version=4)
    state = widget_state(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and lesson.title in cell.source and "launch-row" not in nb.metadata:
            head, _, rest = cell.source.partition(lesson.title)
            cell.source = f"{head}{lesson.title}\n\n{launch_row(lesson)}\n{rest}"
            nb.metadata["launch-row"] = True
        if cell.cell_type == "markdown" and lesson.run_time in cell.source:
            cell.source = cell.source.replace(lesson.run_time, f'<span id="run-time"></span>\n\n{lesson.run_time}', 1)
        if cell.cell_type == "code":
            cell.source = strip_test_markers(cell.source)
            if any(png_width(out) >= WIDE_FIGURE_PX for out in cell.get("outputs", [])):
                tags = cell.metadata.setdefault("tags", [])
                if "full-width" not in tags:  # sphinx-book-theme widens the cell into the right margin
                    tags.append("full-width")
            outs = []
            for out in cell.get("outputs", []):
                outs += static_outputs(out, state) if VIEW in out.get("data", {}) else [out]
            cell.outputs = outs
    nb.metadata.pop("launch-row", None)
    # a notebook saved by jupytext alone has no kernel metadata: every lesson is Python
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb.metadata.setdefault("language_info", {"name": "python", "pygments_lexer": "ipython3"})
    nb.metadata.pop("widgets", None)  # no ipywidgets JavaScript from a CDN: drawn statically above
    for name, index in sorted(lesson.exercises.items(), key=lambda kv: -kv[1]):  # from the end: indices hold
        nb.cells.insert(index + 1, nbformat.v4.new_markdown_cell(solution_block(name, label=True)))
    for cell in nb.cells:  # nbformat >= 4.5 wants ids; inserted cells got fresh ones
        cell.pop("id", None)
    nb.nbformat_minor = 4
    nbformat.write(nb, dest)


def course_map(lessons: list[Lesson]) -> str:
    """The landing page: every lesson's title (linked), goal and run time, from the notebooks."""
    cards = []
    for ls in lessons:
        cards.append(f"::::{{card}} {ls.title}\n:link: {ls.stem}\n:link-type: doc\n:class-card: lesson-card\n\n"
                     f"{ls.goal}\n\n:::{{card-footer}}\n{ls.run_time}\n:::\n::::")
    toc = "\n".join(ls.stem for ls in lessons)
    return f"""# Multimodal deep learning with PyTorch

An ordered set of Jupyter notebooks and a small helper package, `mmcourse`: from a single hidden
layer to fusing images and sounds, aligning modalities in a shared space and fine-tuning a
pretrained transformer, on real data that ships inside Python packages. Every page below is a
notebook as committed, with the outputs saved in it: nothing was re-run to build this site. Open
a lesson in Colab or download it to run it yourself (sliders and buttons are live only in a
running notebook). Reference solutions to the exercises: [Solutions](solutions.md).

## The course map

{chr(10).join(cards)}

```{{toctree}}
:hidden:
:caption: Lessons

{toc}
```

```{{toctree}}
:hidden:
:caption: Reference

solutions
```
"""


def solutions_page(lessons: list[Lesson]) -> str:
    """Every exercise's reference solution under a toggle, grouped by lesson, in notebook order."""
    from mmcourse.check import EXERCISES

    parts = ["# Solutions\n\nReference solutions to every exercise, read from `mmcourse/check/solutions.py` "
             "when this site was built. Each sits in its lesson too, right after the exercise.\n"]
    placed = set()
    for ls in lessons:
        if not ls.exercises:
            continue
        parts.append(f"## {ls.title}\n")
        for name in ls.exercises:
            parts.append(f"{solution_block(name, label=False)}\n\n"
                         f"{{ref}}`The exercise in lesson {ls.stem[:2]} <solution-{name}>`, with this toggle right after it.\n")
            placed.add(name)
    rest = [n for n in EXERCISES if n not in placed]
    if rest:
        parts.append("## Exercises not called from a notebook\n")
        parts += [solution_block(n, label=False) + "\n" for n in rest]
    return "\n".join(parts)


def stage(dest: Path, notebooks: Path = ROOT / "notebooks") -> list[Lesson]:
    """Write the Sphinx source folder ``dest`` (emptied first) from ``notebooks/*.ipynb``."""
    lessons = find_lessons(notebooks)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "_extra" / "notebooks").mkdir(parents=True)
    for ls in lessons:
        stage_notebook(ls, dest / ls.path.name)
        shutil.copy2(ls.path, dest / "_extra" / "notebooks" / ls.path.name)
    (dest / "index.md").write_text(course_map(lessons), encoding="utf-8")
    (dest / "solutions.md").write_text(solutions_page(lessons), encoding="utf-8")
    return lessons


def build(out: Path, stage_dir: Path | None = None, notebooks: Path = ROOT / "notebooks", quiet: bool = True) -> Path:
    """Stage the sources and run Sphinx's HTML builder into ``out``; return ``out/index.html``.

    Raises:
        RuntimeError: Sphinx reported an error or a warning (``-W``: a broken reference fails).
    """
    from sphinx.cmd.build import build_main

    out = Path(out)
    stage_dir = Path(stage_dir) if stage_dir else out.parent / f"{out.name}-src"
    stage(stage_dir, notebooks)
    args = ["-b", "html", "-c", str(BOOK), "-d", str(stage_dir / ".doctrees"), "-W", "--keep-going", "-j", "1"]
    if quiet:
        args.append("-q")
    code = build_main(args + [str(stage_dir), str(out)])
    if code:
        raise RuntimeError(f"sphinx-build failed (exit {code}); see the messages above")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "build" / "book"), help="site folder (default build/book)")
    parser.add_argument("--stage", default=None, help="staging folder (default: OUT-src beside OUT)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    index = build(Path(args.out), args.stage and Path(args.stage))  # -q: warnings and errors only
    print(f"course site built in {time.perf_counter() - t0:.0f} s: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
