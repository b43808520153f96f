"""mmcourse.check.solutions and the learner-facing side of every exercise.

Per exercise: the packaged solution is accepted; the stub's output states the task and gives away
no hint and no line of the solution; hints are graded and never contain a solution line;
``check.solution`` waits for a real attempt unless forced; unknown names raise ``KeyError``.
"""

import inspect

import pytest

import mmcourse.check as check
from mmcourse.check import solutions as S


def stub(*args):
    raise NotImplementedError


def crash(*args):  # a real attempt that fails, whatever the exercise's signature
    raise ZeroDivisionError("an attempt that crashed")


def solution_lines(name: str) -> list[str]:
    """The code lines of the solution's source, without comments, docstrings and signatures."""
    lines = []
    for line in inspect.getsource(getattr(S, name)).splitlines():
        code = line.split("  #")[0].strip()
        if len(code) >= 8 and not code.startswith(('"""', "def ", "class ", "#")):
            lines.append(code)
    return lines


EXERCISES = list(check.EXERCISES)


def test_exercises_listed_once_each_with_a_solution():
    assert len(EXERCISES) == len(set(EXERCISES)) == 28
    assert EXERCISES[0] == "mean_image_per_digit" and EXERCISES[-1] == "rank_shard"
    for name in EXERCISES:
        assert callable(getattr(S, name)) and len(solution_lines(name)) >= 1
        assert len(check.REGISTRY[name].hints) >= 2


@pytest.mark.parametrize("name", EXERCISES)
def test_packaged_solution_is_accepted(name, capsys):
    checker = getattr(check, name)
    assert checker(getattr(S, name)) is None  # no Out[] line in the notebook
    assert checker.last is True
    out = capsys.readouterr().out
    assert out.startswith(f"[ok] {name}: ") and "Note" not in out  # it leaves its inputs alone


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_states_the_task_and_gives_nothing_away(name, capsys):
    checker = getattr(check, name)

    def my_answer(*args):
        raise NotImplementedError

    checker(my_answer)
    out = capsys.readouterr().out
    checker(lambda *args: None)  # returning None is a stub too
    assert checker.last is None and not checker.tried
    assert capsys.readouterr().out.count("not yet solved") == 1
    assert out.startswith(f"[ ] {name}: not yet solved. Task: fill in my_answer{checker.task}.")
    assert f'check.hint("{name}")' in out
    for hint in checker.hints:
        assert hint not in out
    for line in solution_lines(name):
        assert line not in out, line


@pytest.mark.parametrize("name", EXERCISES)
def test_hints_are_graded_and_never_contain_the_solution(name, capsys):
    checker, n = getattr(check, name), len(getattr(check, name).hints)
    for line in solution_lines(name):
        assert not any(line in hint for hint in checker.hints), line
    for attempt in range(n + 1):
        checker(crash)
        out = capsys.readouterr().out
        shown = min(attempt, n - 1)
        assert f"ZeroDivisionError: an attempt that crashed.\n    Hint {shown + 1} of {n}: " in out
        assert checker.hints[shown] in out
        assert ('check.solution("' + name + '")' in out) == (shown == n - 1)


def test_hint_on_request_shares_the_count_with_wrong_attempts(capsys):
    checker = check.kd_loss
    check.hint("kd_loss")
    assert capsys.readouterr().out == f"kd_loss: Hint 1 of 3: {checker.hints[0]}\n"
    checker(lambda s, t, T: 0.0)  # a wrong attempt after hint 1 shows hint 2
    assert f"Hint 2 of 3: {checker.hints[1]}" in capsys.readouterr().out
    check.hint(checker)  # the checker itself works as a name too
    check.hint("kd_loss")
    out = capsys.readouterr().out
    assert out.count(f"Hint 3 of 3: {checker.hints[2]}") == 2 and "last hint" in out
    checker.reset()
    check.hint("kd_loss")
    assert "Hint 1 of 3" in capsys.readouterr().out


@pytest.mark.parametrize("name", EXERCISES)
def test_solution_waits_for_a_real_attempt(name, capsys):
    checker, first_line = getattr(check, name), solution_lines(name)[0]
    check.solution(name)
    checker(stub)  # a stub is not an attempt
    check.solution(name)
    out = capsys.readouterr().out
    assert out.count("try it first") == 2 and f'check.solution("{name}", force=True)' in out
    assert first_line not in out
    check.solution(name, force=True)
    assert first_line in capsys.readouterr().out
    checker(crash)
    capsys.readouterr()
    check.solution(name)
    out = capsys.readouterr().out
    assert "try it first" not in out and inspect.getsource(getattr(S, name)) in out


def test_solution_after_a_right_answer_needs_no_force(capsys):
    check.prune_mask(S.prune_mask)
    check.solution("prune_mask")
    assert "kthvalue" in capsys.readouterr().out


def test_unknown_names_raise_keyerror_listing_the_exercises():
    with pytest.raises(KeyError, match="no exercise 'kd_los'.*kd_loss"):
        check.hint("kd_los")
    with pytest.raises(KeyError, match="no exercise 'kd_los'.*pool_token_logits"):
        check.solution("kd_los", force=True)


def test_solution_without_a_reference_raises_keyerror():
    @check.exercise(task="() -> None", hints=("none",))
    def no_reference(fn):
        check.attempt(fn)

    try:
        with pytest.raises(KeyError, match="no reference solution"):
            check.solution("no_reference", force=True)
    finally:
        del check.REGISTRY["no_reference"]
