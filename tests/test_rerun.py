"""Learners re-run cells: every notebook must survive each code cell run twice in a row
(Shift-Enter pressed twice) and then Run All again in the same kernel, and give the same results.

One kernel per notebook executes [c1, c1, c2, c2, ..., cn, cn, c1, c2, ..., cn] in quick mode.
The outputs of every ``# NBVAL_CHECK_OUTPUT`` cell (the deterministic ones) must be identical in
all three executions. Slow (three times a notebook's quick run), so it is marked ``rerun``.
"""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MARK = "# NBVAL_CHECK_OUTPUT"


def _text(cell) -> str:
    """What a checked cell printed: stream text and plain-text results, in order."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in {"execute_result", "display_data"}:
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.output_type == "error":
            parts.append(f"ERROR {out.ename}: {out.evalue}")
    return "".join(parts)


# `make test` runs two workers with --dist loadfile (one file per worker, as nbval needs), so the
# notebooks are split over two files to let both workers share this, the slowest test (three
# quick runs of a notebook): alternate notebooks, and the last one joins the second half (with the
# per-notebook times of one make test run that split is about 6 min each; 04 and 12 are the
# slowest). This file runs the first half, test_rerun_odd.py the second.
HALVES = (NOTEBOOKS[:-1][0::2], NOTEBOOKS[:-1][1::2] + NOTEBOOKS[-1:])


@pytest.mark.parametrize("path", HALVES[0], ids=lambda p: p.name)
def test_cells_twice_then_run_all_again(path, monkeypatch):
    rerun_and_compare(path, monkeypatch)


def rerun_and_compare(path: Path, monkeypatch) -> None:
    """Run [c1, c1, ..., cn, cn, c1, ..., cn] in one kernel; no errors, checked outputs equal."""
    monkeypatch.setenv("MMCOURSE_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    plan = [(i, rep) for i in range(len(code)) for rep in (0, 1)] + [(i, 2) for i in range(len(code))]
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells = [nbformat.v4.new_code_cell(code[i].source) for i, _ in plan]
    NotebookClient(run, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    seen: dict[int, list[str]] = {}
    for (i, rep), cell in zip(plan, run.cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, (f"{path.name}: code cell {i + 1} failed on run {rep + 1} "
                            f"({'again right after itself' if rep == 1 else 'in the second Run All'}): "
                            f"{errors[0].ename}: {errors[0].evalue}")
        if code[i].source.lstrip().startswith(MARK):
            seen.setdefault(i, []).append(_text(cell))
    for i, texts in seen.items():
        assert texts[0] == texts[1] == texts[2], (
            f"{path.name}: checked code cell {i + 1} printed different results when re-run:\n"
            + "\n--- run again ---\n".join(texts))
