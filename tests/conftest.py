"""Fixtures shared by the unit tests."""

import pytest


@pytest.fixture(autouse=True)
def fresh_checker_state():
    """Every test starts as a fresh kernel: no exercise attempts, no hints shown."""
    from mmcourse import check
    for ex in check.REGISTRY.values():
        ex.reset()
