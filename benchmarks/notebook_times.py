"""The one measured source of the course's run times: per lesson, quick, full first run, full warm.

    rm -rf checkpoints && make execute       # 1. every lesson in full mode, nothing cached: the
                                             #    committed outputs; each notebook records its cell time
    python benchmarks/notebook_times.py      # 2. measures quick mode and a warm full run, then writes
                                             #    the table into benchmarks/notebook_times.md, README.md
                                             #    and every lesson's "**Run time:**" header line

``--no-measure`` only rewrites the table from the last measurement (benchmarks/notebook_times.json).
Cell time is the sum of the code cells' execution times that nbclient records (kernel start-up,
about 2 s per lesson, is not included). Times depend on the machine and on what else it runs: each
row comes from one run of this script, and the header says which machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from datetime import date
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "notebook_times.json"
TABLE = ROOT / "benchmarks" / "notebook_times.md"
BEGIN, END = "<!-- run-times:begin -->", "<!-- run-times:end -->"
HEADER = re.compile(r"^(# )?\*\*Run time:?\*\*.*$", re.MULTILINE)


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def measure() -> dict:
    from mmcourse.warm import execute, lessons

    rows = {}
    for path in lessons():
        stamp = nbformat.read(path, as_version=4).metadata.get("mmcourse", {})
        if stamp.get("mode") != "full":
            raise SystemExit(f"{path.name} was not executed in full mode by `make execute`: run step 1 first")
        os.environ["OMP_NUM_THREADS"] = "1"  # quick mode as make test runs it: one thread per worker
        quick = execute(path, quick=True)
        os.environ.pop("OMP_NUM_THREADS")
        warm = execute(path, quick=False)
        rows[path.stem] = {"first": stamp["cell_seconds"], "first_longest": stamp["longest_cell_seconds"],
                           "warm": round(warm["seconds"], 1), "warm_longest": round(warm["longest"], 1),
                           "quick": round(quick["seconds"], 1)}
        print(f"{path.stem:28s} first {_fmt(rows[path.stem]['first']):>8s}  warm {_fmt(warm['seconds']):>8s}  "
              f"quick {_fmt(quick['seconds']):>6s}", flush=True)
    return {"machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, no GPU used", "date": str(date.today()),
            "rows": rows}


def table(data: dict) -> str:
    rows = data["rows"]
    lines = ["| lesson | full, first run (nothing cached) | longest cell | full, cache warm | quick (CI) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {_fmt(r['first'])} | {_fmt(r['first_longest'])} | {_fmt(r['warm'])} | {_fmt(r['quick'])} |")
    total = {k: sum(r[k] for r in rows.values()) for k in ("first", "warm", "quick")}
    lines.append(f"| **course** | **{_fmt(total['first'])}** | {_fmt(max(r['first_longest'] for r in rows.values()))} "
                 f"| **{_fmt(total['warm'])}** | **{_fmt(total['quick'])}** |")
    return (f"Measured by `benchmarks/notebook_times.py` on {data['date']} ({data['machine']}); cell time "
            "(kernel start-up not included).\n\n" + "\n".join(lines) + "\n")


def header_line(name: str, r: dict, data: dict) -> str:
    return (f"**Run time:** full mode {_fmt(r['first'])} of cell time on a first run (nothing cached; longest cell "
            f"{_fmt(r['first_longest'])}), {_fmt(r['warm'])} once its trainings are cached; quick mode "
            f"{_fmt(r['quick'])}. Measured by `benchmarks/notebook_times.py` on {data['machine']}, {data['date']}.")


def write(data: dict) -> None:
    md = table(data)
    TABLE.write_text("# Measured notebook run times\n\n" + md)
    readme = (ROOT / "README.md").read_text()
    if BEGIN in readme:
        readme = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), BEGIN + "\n" + md + END, readme, flags=re.S)
        (ROOT / "README.md").write_text(readme)
    for name, r in data["rows"].items():
        line = header_line(name, r, data)
        py = ROOT / "notebooks" / f"{name}.py"
        py.write_text(HEADER.sub(lambda m: "# " + line, py.read_text(), count=1))
        nb_path = ROOT / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown" and HEADER.search(cell.source):
                cell.source = HEADER.sub(lambda m: line, cell.source, count=1)
                break
        nbformat.write(nb, nb_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-measure", action="store_true", help="rewrite the table from notebook_times.json")
    args = parser.parse_args()
    if args.no_measure:
        data = json.loads(STORE.read_text())
    else:
        data = measure()
        STORE.write_text(json.dumps(data, indent=1) + "\n")
    write(data)
    print(table(data))


if __name__ == "__main__":
    main()
