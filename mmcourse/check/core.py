"""Checking tools for the notebooks: ``cmp`` for hand-vs-autograd results and ``exercise``.

``cmp`` is the gradient check from Karpathy's makemore lectures: print whether a hand-derived
tensor equals the reference exactly, approximately, and by how much it differs at worst.

``exercise`` turns a small test function into an exercise checker with three outcomes, so an
unsolved stub never breaks a "Run all":

    ==========================  =================================  =======
    learner's answer            printed                            returns
    ==========================  =================================  =======
    stub (raises                "not yet solved" + the hint        None
    NotImplementedError or
    returns None)
    wrong                       what is wrong + the hint           False
    right                       a short confirmation               True
    ==========================  =================================  =======

Lesson checkers (``basics.py`` for notebooks 01-02, ...) are written with it.
"""

from __future__ import annotations

import functools
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


def exercise(hint: str, success: str = "correct") -> Callable:
    """Decorator: make ``test(learner_fn, ...)`` into a checker that prints and never raises.

    The test calls the learner's code through ``attempt`` and signals mistakes by raising
    ``Wrong`` (``expect_close`` does). The checker prints one of three outcomes and returns
    None (not yet solved), False (wrong) or True (right).

    Args:
        hint: printed when the answer is missing or wrong.
        success: printed after the check mark when the answer is right.
    """
    def decorate(test: Callable) -> Callable:
        name = test.__name__

        @functools.wraps(test)
        def checker(*args, **kwargs) -> bool | None:
            try:
                test(*args, **kwargs)
            except NotSolved:
                print(f"[ ] {name}: not yet solved. Hint: {hint}")
                return None
            except Wrong as e:
                print(f"[x] {name}: not quite. {e} Hint: {hint}")
                return False
            except Exception as e:  # the learner's code crashed: report, don't raise
                print(f"[x] {name}: your code raised {type(e).__name__}: {e}. Hint: {hint}")
                return False
            print(f"[ok] {name}: {success}")
            return True

        return checker

    return decorate

