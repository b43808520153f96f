"""Run the course's lessons headless, in order: warm the checkpoint cache, or re-execute in place.

    python -m mmcourse.warm                 # make warm: train everything the course needs (full mode)
    python -m mmcourse.warm --write 05 06   # make execute: re-execute lessons in place, outputs kept
    python -m mmcourse.warm --quick         # the CI smoke run of every lesson, nothing written

Warming runs the notebooks themselves, so the cache is filled with exactly the settings a lesson
asks for: every heavy training goes through ``checkpoint.load_or_train`` (directly or through
``zoo.run_grid``), and a later Run All loads it in seconds. On a GPU machine, run this first.

``--write`` saves each executed notebook in place and records in its metadata the source
fingerprint of the package it ran with (``runtime.source_fingerprint``) and its measured cell
time; ``tests/test_consistency.py`` fails when committed lessons disagree with each other or with
today's code.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path

from mmcourse.course import checkout_root


def lessons(only=()) -> list[Path]:
    """The checkout's ``notebooks/NN_*.ipynb`` in course order (optionally only the given NN)."""
    root = checkout_root()
    if root is None:
        raise FileNotFoundError("the lessons live in a checkout of the course repository: clone it and run "
                                "`python -m mmcourse.warm` there (an installed wheel has no notebooks)")
    paths = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    unknown = set(only) - {p.name[:2] for p in paths}
    if unknown:
        raise ValueError(f"no lesson {sorted(unknown)}; the lessons are {[p.name[:2] for p in paths]}")
    return [p for p in paths if not only or p.name[:2] in only]


def cell_seconds(nb) -> list[float]:
    """Seconds per code cell, from the timing nbclient records in each cell's metadata."""
    out = []
    for cell in nb.cells:
        t = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in t and "shell.execute_reply" in t:
            start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            out.append((end - start).total_seconds())
    return out


def execute(path: Path, quick: bool = False, write: bool = False, timeout: int = 1800) -> dict:
    """Execute one lesson from a fresh kernel; return ``{"name", "seconds", "longest", "cells"}``.

    ``write``: save it in place with ``metadata["mmcourse"] = {"source", "mode", "cell_seconds"}``.
    """
    import nbformat
    from nbclient import NotebookClient

    from mmcourse.runtime import source_fingerprint

    before = source_fingerprint()
    nb = nbformat.read(path, as_version=4)
    os.environ["MMCOURSE_QUICK"] = "1" if quick else "0"
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    if source_fingerprint() != before:
        raise RuntimeError(f"the package source changed while {path.name} ran: execute it again")
    cells = cell_seconds(nb)
    result = {"name": path.stem, "seconds": sum(cells), "longest": max(cells, default=0.0), "cells": cells}
    if write:
        nb.metadata["mmcourse"] = {"source": before, "mode": "quick" if quick else "full",
                                   "cell_seconds": round(result["seconds"], 1),
                                   "longest_cell_seconds": round(result["longest"], 1)}
        nbformat.write(nb, path)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run the course's lessons headless, in order.")
    parser.add_argument("only", nargs="*", help="lesson numbers, e.g. 05 06 (default: every lesson)")
    parser.add_argument("--write", action="store_true", help="save the executed notebooks in place (make execute)")
    parser.add_argument("--quick", action="store_true", help="quick mode (the CI smoke run)")
    args = parser.parse_args(argv)
    from tqdm.auto import tqdm

    paths = lessons(args.only)
    t0 = time.perf_counter()
    bar = tqdm(paths, desc="lessons", unit="lesson")
    for path in bar:
        bar.set_postfix_str(path.stem)
        r = execute(path, quick=args.quick, write=args.write)
        tqdm.write(f"{r['seconds']:7.1f} s of cells (longest {r['longest']:5.1f} s)  {path.name}")
    print(f"{len(paths)} lessons in {time.perf_counter() - t0:.0f} s ({'quick' if args.quick else 'full'} mode"
          f"{', written in place' if args.write else ''})")


if __name__ == "__main__":
    main()
