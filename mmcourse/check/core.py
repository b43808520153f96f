"""The exercise machinery of the notebooks: ``check.<exercise>(fn)``, ``hint`` and ``solution``.

``exercise`` turns a small test function into an ``Exercise`` checker. A checker prints one line
and returns None (so a notebook shows no ``Out[n]``), and an unsolved stub never breaks a
"Run all":

    ==========================  ==========================================================
    learner's answer            printed
    ==========================  ==========================================================
    stub (raises                "not yet solved" + the task only: no formula, no hint
    NotImplementedError or
    returns None)
    wrong, or crashed           the specific mistake where recognised + the next hint
    right                       a short confirmation
    not callable (a number,     "pass the function itself": not an attempt, no hint, the
    a tensor: its result)       solution stays locked
    ==========================  ==========================================================

The learner's function gets copies of the checker's inputs (``attempt``), so expected values
computed from the originals, before or after the call, cannot be moved by a function that changes
its inputs. Such a change is reported as a note under the verdict ("your function changed its
input `W` in place"); the verdict grades the returned value only, so a right answer written in
place (``W += ...; return W``) is right. nan or inf in an answer is always wrong.

Hints are graded: the 1st wrong attempt shows hint 1, the 2nd hint 2, and so on, staying on the
last; ``hint(name)`` shows the next one without an attempt. ``solution(name)`` prints the source
of the reference in ``solutions.py``, but only after a real attempt (or with ``force=True``).
The counts live in the checker, per kernel. For tests, ``check.kd_loss.last`` is the outcome of
the latest call: True (right), False (wrong or crashed) or None (stub, or never called).

Lesson checkers (``basics.py`` for notebooks 01-02, ...) are written with ``exercise``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch

from mmcourse.check.inputs import arg_paths, changes, copy_inputs, identities, mutation_note, nonfinite


class NotSolved(Exception):
    """The learner's function is still the stub (it raised NotImplementedError or returned None)."""


class Wrong(Exception):
    """The learner's answer is wrong; the message says how."""


class _Call:
    """What the learner's code did during one checker call: notes to print, a nan/inf returned."""

    def __init__(self):
        self.notes: list[str] = []
        self.nonfinite = False

    def note(self, text: str) -> None:
        if text not in self.notes:  # a checker calling fn 3 times prints the note once
            self.notes.append(text)


_CALL: _Call | None = None  # the checker call in progress (set by Exercise.__call__)


def attempt(fn: Callable, *args, **kwargs):
    """Call the learner's function on copies of the inputs; a stub raises ``NotSolved``.

    The copies keep the checker's own inputs as they were, whatever ``fn`` does, so expected
    values computed from them are right before and after the call. A change ``fn`` made to its
    copies is noted ("your function changed its input `W` in place"), and so is nan or inf in
    what it returned (a checker that accepts it still grades the call wrong).
    """
    copies = [copy_inputs(a) for a in args]
    kw_copies = {k: copy_inputs(v) for k, v in kwargs.items()}
    held = identities([*copies, *kw_copies.values()])
    try:
        out = fn(*copies, **kw_copies)
    except NotImplementedError as e:
        raise NotSolved from e
    finally:
        if _CALL is not None:
            paths = arg_paths(fn, len(args)) + list(kwargs)
            found = [c for p, a, b, h in zip(paths, (*args, *kwargs.values()), (*copies, *kw_copies.values()), held)
                     for c in changes(a, b, p, h)]
            if found:
                _CALL.note(mutation_note(found))
    if out is None:
        raise NotSolved
    if _CALL is not None and nonfinite(out):
        _CALL.nonfinite = True
    return out


def _a(kind: str) -> str:
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _shape(shape) -> str:
    return str(tuple(shape))


NONFINITE = "look for a division by zero or the log of 0"


def scalar(got, what: str = "", *, kind: str = "a scalar (one number)") -> torch.Tensor:
    """``got`` as a 0-d float64 tensor; ``Wrong`` unless it is one finite number.

    A tensor of one element, e.g. shape (1,), counts as a number too.
    """
    where = f" for {what}" if what else ""
    try:
        t = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise Wrong(f"return {kind}{where}, got {_a(type(got).__name__)}.") from None
    if t.numel() != 1:
        raise Wrong(f"return {kind}{where}, got shape {_shape(t.shape)}.")
    t = t.reshape(())
    if not torch.isfinite(t):
        raise Wrong(f"{what or 'your answer'} is {t.item()}; a right answer is a finite number ({NONFINITE}).")
    return t


def expect_shape(got, shape, what: str) -> torch.Tensor:
    """``got`` as a tensor; ``Wrong`` naming both shapes unless it has ``shape``."""
    try:
        t = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got)
    except (TypeError, ValueError, RuntimeError):
        raise Wrong(f"return a tensor for {what}, got {_a(type(got).__name__)}.") from None
    if t.shape != tuple(shape):
        raise Wrong(f"{what} has shape {_shape(t.shape)}, expected {_shape(shape)}.")
    return t


def expect_close(got, want, what: str, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Raise ``Wrong`` unless ``got`` has ``want``'s shape and finite values (within tolerance).

    A 0-d ``want`` takes any single number (``scalar``).
    """
    want_t = torch.as_tensor(want).detach().to(torch.float64)
    if want_t.dim() == 0:
        got_t = scalar(got, what)
    else:
        got_t = expect_shape(got, want_t.shape, what).to(torch.float64)
        if not torch.isfinite(got_t).all():
            raise Wrong(f"{what} contains nan or inf ({NONFINITE}).")
    if not torch.allclose(got_t, want_t, atol=atol, rtol=rtol):
        diff = (got_t - want_t).abs().max().item()
        raise Wrong(f"{what} is off by up to {diff:.3g}.")


def matches(got, candidate, *, atol: float = 1e-6, rtol: float = 1e-5) -> bool:
    """True when ``got`` has ``candidate``'s shape and values (nan matching nan): spots a known mistake."""
    try:
        got_t = torch.as_tensor(got).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    cand_t = torch.as_tensor(candidate).detach().to(torch.float64)
    return got_t.shape == cand_t.shape and torch.allclose(got_t, cand_t, atol=atol, rtol=rtol,
                                                          equal_nan=True)


def _fn_label(fn) -> str:
    """The learner's function as it is called in the notebook, e.g. ``my_kd_loss``."""
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your function"


class Exercise:
    """One exercise's checker: ``check.kd_loss(my_kd_loss)`` prints the outcome, returns None.

    Per kernel it remembers ``last`` (the outcome of the latest call: True right, False wrong or
    crashed, None a stub or never called), ``tried`` (a real attempt was made) and how many hints
    it has shown; ``reset()`` forgets all three.
    """

    def __init__(self, test: Callable, task: str, hints: tuple[str, ...], success: str,
                 takes: str = "function"):
        if not hints:
            raise ValueError(f"exercise {test.__name__!r} needs at least one hint")
        if takes not in ("function", "class"):
            raise ValueError(f"exercise {test.__name__!r}: takes={takes!r}, expected 'function' or 'class'")
        functools.update_wrapper(self, test)
        self.name, self.test, self.task, self.hints, self.success, self.takes = (
            test.__name__, test, task, tuple(hints), success, takes)
        self.reset()

    def reset(self) -> None:
        """Forget the attempts and hints of this kernel (start the exercise over)."""
        self.last: bool | None = None
        self.tried = False
        self.hints_shown = 0

    def next_hint(self) -> str:
        """The next hint, numbered; after the last one it stays on the last one."""
        i = min(self.hints_shown, len(self.hints) - 1)
        self.hints_shown += 1
        text = f"Hint {i + 1} of {len(self.hints)}: {self.hints[i]}"
        if i == len(self.hints) - 1:
            text += f' (That is the last hint; check.solution("{self.name}") shows one solution.)'
        return text

    def refusal(self, fn) -> str | None:
        """Why ``fn`` is not an answer to check (a number, a tensor, a model instance), or None."""
        if self.takes == "class":
            if callable(fn) and not isinstance(fn, torch.nn.Module):
                return None
            return (f"pass the class itself, e.g. check.{self.name}(MyModel), not an instance or a "
                    f"result (you passed {_a(type(fn).__name__)}).")
        if callable(fn):
            return None
        return (f"pass the function itself, e.g. check.{self.name}(my_fn), not its result (you "
                f"passed {_a(type(fn).__name__)}).")

    def __call__(self, fn, *args, **kwargs) -> None:
        global _CALL
        if (why := self.refusal(fn)) is not None:  # not an attempt: no count, no hint, no solution
            self.last = None
            print(f"[?] {self.name}: {why} Not counted as an attempt.")
            return None
        outer, _CALL = _CALL, _Call()
        call = _CALL
        try:
            self.test(fn, *args, **kwargs)
        except NotSolved:
            self.last = None
            print(f"[ ] {self.name}: not yet solved. Task: fill in {_fn_label(fn)}{self.task}. "
                  f'Run this cell again when done; stuck after trying? check.hint("{self.name}").')
            return None
        except Wrong as e:
            what = f"not quite. {e}"
        except Exception as e:  # the learner's code crashed: report, don't raise
            what = f"your code raised {type(e).__name__}: {e}."
        else:
            if call.nonfinite:  # a checker let it through: nan or inf is never right
                what = f"not quite. your function returned nan or inf ({NONFINITE})."
            else:
                self.last = self.tried = True
                print(f"[ok] {self.name}: {self.success}" + _notes(call))
                return None
        finally:
            _CALL = outer
        self.last, self.tried = False, True
        print(f"[x] {self.name}: {what}{_notes(call)}\n    {self.next_hint()}")
        return None

    def __repr__(self) -> str:
        return f"<exercise {self.name}: {len(self.hints)} hints, last outcome {self.last}>"


def _notes(call: _Call) -> str:
    return "".join(f"\n    Note: {n}" for n in call.notes)


REGISTRY: dict[str, Exercise] = {}  # every exercise by name, in the order the lessons define them


def exercise(task: str, hints: tuple[str, ...] | list[str], success: str = "correct",
             takes: str = "function") -> Callable:
    """Decorator: make ``test(learner_fn, ...)`` into an ``Exercise`` checker and register it.

    The test calls the learner's code through ``attempt`` (which hands it copies of the inputs)
    and signals mistakes by raising ``Wrong`` (``expect_close``, ``expect_shape`` and ``scalar``
    do), with a message naming the specific mistake where one is recognised.

    Args:
        task: what to write, after the learner's function name: ``"(z) -> (B, C): ..."``. States
            the task only: no formula, no recipe.
        hints: ordered from a pointer to concrete; none may contain the whole solution.
        success: printed after the check mark when the answer is right.
        takes: what the learner passes, ``"function"`` or ``"class"`` (an nn.Module subclass,
            which the test instantiates); anything else (its result, an instance) is refused.
    """
    def decorate(test: Callable) -> Exercise:
        ex = Exercise(test, task, tuple(hints), success, takes)
        REGISTRY[ex.name] = ex
        return ex

    return decorate


def _lookup(name) -> Exercise:
    if isinstance(name, Exercise):
        return name
    if name not in REGISTRY:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def hint(name: str) -> None:
    """Print the next hint of exercise ``name`` without an attempt (shares the wrong-answer count)."""
    ex = _lookup(name)
    print(f"{ex.name}: {ex.next_hint()}")


def solution(name: str, force: bool = False) -> None:
    """Print the source of the reference solution, once the learner has tried (or with ``force``).

    Raises:
        KeyError: ``name`` is not an exercise, or has no reference solution.
    """
    from mmcourse.check import solutions  # imported late: nothing else needs the solutions

    ex = _lookup(name)
    ref = getattr(solutions, ex.name, None)
    if ref is None:
        raise KeyError(f"exercise {ex.name!r} has no reference solution in mmcourse.check.solutions")
    if not (ex.tried or force):
        print(f"[?] {ex.name}: try it first: run the checker on your attempt, or ask "
              f'check.hint("{ex.name}"). To see it anyway: check.solution("{ex.name}", force=True).')
        return
    print(f"One solution of {ex.name} (mmcourse/check/solutions.py):\n")
    print(inspect.getsource(ref))
