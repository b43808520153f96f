"""Committed lessons come from one run of one version of the code.

Every executed notebook records the source fingerprint of the package it ran with
(``metadata["mmcourse"]["source"]``, written by ``make execute``). They must all agree with each
other and with today's source; otherwise their numbers may come from different code.
"""

import json
from pathlib import Path

from mmcourse.runtime import source_fingerprint

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIX = "re-execute them all from one commit: make execute (or NB=\"...\" for some, then all once more)"


def _source(path: Path):
    return json.loads(path.read_text()).get("metadata", {}).get("mmcourse", {})


def test_every_lesson_ran_in_full_mode_with_todays_code():
    today = source_fingerprint()
    stamps = {p.name: _source(p) for p in NOTEBOOKS}
    missing = [n for n, s in stamps.items() if "source" not in s]
    assert not missing, f"{missing} carry no source fingerprint: {FIX}"
    quick = [n for n, s in stamps.items() if s.get("mode") != "full"]
    assert not quick, f"{quick} were executed in quick mode; the committed outputs are the full course: {FIX}"
    groups = {}
    for n, s in stamps.items():
        groups.setdefault(s["source"], []).append(n)
    assert len(groups) == 1, f"committed lessons ran with {len(groups)} versions of the code {groups}: {FIX}"
    assert today in groups, (f"the committed lessons ran with source {next(iter(groups))}, today's is {today} "
                             f"(mmcourse/*.py or constraints.txt changed since): {FIX}")


def test_the_fingerprint_sees_a_change(tmp_path, monkeypatch):
    import mmcourse.runtime as rt

    fake = tmp_path / "mmcourse"
    fake.mkdir()
    (fake / "runtime.py").write_text(Path(rt.__file__).read_text())
    (fake / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(rt, "__file__", str(fake / "runtime.py"))
    first = rt.source_fingerprint()
    (fake / "a.py").write_text("x = 2\n")
    assert rt.source_fingerprint() != first
