"""The second half of tests/test_rerun.py's notebooks (see HALVES there), in its own file so that
`make test`'s two workers (--dist loadfile) run the two halves side by side."""
import pytest
from test_rerun import HALVES, rerun_and_compare


@pytest.mark.parametrize("path", HALVES[1], ids=lambda p: p.name)
def test_cells_twice_then_run_all_again(path, monkeypatch):
    rerun_and_compare(path, monkeypatch)


def test_the_two_halves_cover_every_notebook_once():
    from test_rerun import NOTEBOOKS
    assert sorted(HALVES[0] + HALVES[1]) == NOTEBOOKS and not set(HALVES[0]) & set(HALVES[1])
