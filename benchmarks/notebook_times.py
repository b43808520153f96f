"""Time every notebook from a fresh kernel, in quick or full mode, one after the other.

    python benchmarks/notebook_times.py --mode quick|full [--fresh-checkpoints] [NN ...]

Executes copies in a temp dir (the committed notebooks are not touched) and prints one line per
notebook and the total. ``--fresh-checkpoints`` points MMCOURSE_CHECKPOINTS at an empty temp
dir, so notebooks that pretrain or cache do it from scratch, as on a new machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["quick", "full"], default="quick")
    parser.add_argument("--fresh-checkpoints", action="store_true")
    parser.add_argument("only", nargs="*", help="notebook number prefixes, e.g. 03 05")
    args = parser.parse_args()
    os.environ["MMCOURSE_QUICK"] = "1" if args.mode == "quick" else "0"
    if args.fresh_checkpoints:
        os.environ["MMCOURSE_CHECKPOINTS"] = tempfile.mkdtemp(prefix="mmcourse-ck-")
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in args.only]
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            work = Path(tmp) / path.name
            shutil.copy(path, work)
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=3600, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
            seconds = time.perf_counter() - t0
            total += seconds
            print(f"{seconds:8.1f} s  {path.name}  ({args.mode})", flush=True)
    print(f"{total:8.1f} s  total ({len(paths)} notebooks, {args.mode} mode)")


if __name__ == "__main__":
    main()
