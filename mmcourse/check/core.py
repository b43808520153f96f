"""Checking tools for the notebooks: ``cmp`` for hand-vs-autograd results, and the exercises.

``cmp`` is the gradient check from Karpathy's makemore lectures: print whether a hand-derived
tensor equals the reference exactly, approximately, and by how much it differs at worst.

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
    ==========================  ==========================================================

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


def cmp(name: str, ours, ref, *, atol: float = 1e-6, rtol: float = 1e-5,
        decimals: int | None = None) -> bool:
    """Compare a hand-computed tensor with a reference and print one line about it.

    Args:
        name: what is compared, e.g. ``"dW"``.
        ours: the hand-computed tensor (or anything ``torch.as_tensor`` accepts).
        ref: the reference, e.g. ``W.grad`` from autograd; same shape as ``ours``.
        atol, rtol: tolerances for the approximate comparison (``torch.allclose``).
        decimals: for output that must not change between machines (``# NBVAL_CHECK_OUTPUT``):
            round the printed max abs diff to this many decimals and leave out ``exact``, since
            bitwise equality can depend on the CPU's summation order. Default: ``.1e``, with exact.
    Returns:
        True when the two agree within the tolerances.
    """
    ours, ref = torch.as_tensor(ours).detach(), torch.as_tensor(ref).detach()
    if ours.shape != ref.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(ours.shape)} vs {tuple(ref.shape)}; "
                         "a hand gradient has the shape of its parameter")
    ref = ref.to(ours.dtype)
    exact = torch.equal(ours, ref)
    close = torch.allclose(ours, ref, atol=atol, rtol=rtol)
    diff = (ours - ref).abs().max().item() if ours.numel() else 0.0
    if decimals is None:
        print(f"{name:<16} | exact: {exact!s:<5} | approx: {close!s:<5} | max abs diff: {diff:.1e}")
    else:
        shown = f"{round(diff, decimals) + 0.0:.{decimals}f}"
        print(f"{name:<16} | approx: {close!s:<5} | max abs diff: {shown}")
    return close


def with_hand_backward(loss_fn: Callable, grad_fn: Callable) -> Callable:
    """A function computing ``loss_fn(x)`` whose backward is ``grad_fn(x)`` (a hand gradient).

    ``torch.autograd.gradcheck(with_hand_backward(loss, grad), (x,))`` then checks the *hand*
    formula against finite differences, not autograd's own gradient. Use float64 inputs.
    """
    class Hand(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return loss_fn(x)

        @staticmethod
        def backward(ctx, g):
            return g * grad_fn(*ctx.saved_tensors)

    return Hand.apply


class NotSolved(Exception):
    """The learner's function is still the stub (it raised NotImplementedError or returned None)."""


class Wrong(Exception):
    """The learner's answer is wrong; the message says how."""


def attempt(fn: Callable, *args, **kwargs):
    """Call the learner's function; a stub (NotImplementedError or None) raises ``NotSolved``."""
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError as e:
        raise NotSolved from e
    if out is None:
        raise NotSolved
    return out


def expect_close(got, want, what: str, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Raise ``Wrong`` unless ``got`` has ``want``'s shape and values (within tolerance)."""
    got_t = torch.as_tensor(got).detach()
    want_t = torch.as_tensor(want).detach()
    if got_t.shape != want_t.shape:
        raise Wrong(f"{what} has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}.")
    got_t = got_t.to(torch.float64)
    want_t = want_t.to(torch.float64)
    if not torch.isfinite(got_t).all():
        raise Wrong(f"{what} contains inf or nan.")
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

    def __init__(self, test: Callable, task: str, hints: tuple[str, ...], success: str):
        if not hints:
            raise ValueError(f"exercise {test.__name__!r} needs at least one hint")
        functools.update_wrapper(self, test)
        self.name, self.test, self.task, self.hints, self.success = (
            test.__name__, test, task, tuple(hints), success)
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

    def __call__(self, fn, *args, **kwargs) -> None:
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
            self.last = self.tried = True
            print(f"[ok] {self.name}: {self.success}")
            return None
        self.last, self.tried = False, True
        print(f"[x] {self.name}: {what}\n    {self.next_hint()}")
        return None

    def __repr__(self) -> str:
        return f"<exercise {self.name}: {len(self.hints)} hints, last outcome {self.last}>"


REGISTRY: dict[str, Exercise] = {}  # every exercise by name, in the order the lessons define them


def exercise(task: str, hints: tuple[str, ...] | list[str], success: str = "correct") -> Callable:
    """Decorator: make ``test(learner_fn, ...)`` into an ``Exercise`` checker and register it.

    The test calls the learner's code through ``attempt`` and signals mistakes by raising
    ``Wrong`` (``expect_close`` does), with a message naming the specific mistake where one is
    recognised.

    Args:
        task: what to write, after the learner's function name: ``"(z) -> (B, C): ..."``. States
            the task only: no formula, no recipe.
        hints: ordered from a pointer to concrete; none may contain the whole solution.
        success: printed after the check mark when the answer is right.
    """
    def decorate(test: Callable) -> Exercise:
        ex = Exercise(test, task, tuple(hints), success)
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
