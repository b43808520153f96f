"""Comparing hand-derived results with references: ``cmp`` and ``with_hand_backward``.

``cmp`` is the gradient check from Karpathy's makemore lectures: print whether a hand-derived
tensor equals the reference exactly, approximately, and by how much it differs at worst.
Notebooks 01, 02 and 09 use it to check backward passes derived by hand against autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def cmp(name: str, ours, ref, *, atol: float = 1e-6, rtol: float = 1e-5,
        decimals: int | None = None) -> bool:
    """Compare a hand-computed tensor with a reference and print one line about it.

    Args:
        name: what is compared, e.g. ``"dW"``.
        ours: the hand-computed tensor (or anything ``torch.as_tensor`` accepts).
        ref: the reference, e.g. ``W.grad`` from autograd; same shape as ``ours``. Both are
            compared in float64 (complex128 if either is complex), never rounded to the narrower
            dtype; the line says so when the two dtypes differ.
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
    dtypes = "" if ours.dtype == ref.dtype else \
        f" | dtypes differ: {_dtype_name(ours.dtype)} vs {_dtype_name(ref.dtype)}"
    wide = torch.promote_types(torch.promote_types(ours.dtype, ref.dtype), torch.float64)
    ours, ref = ours.to(wide), ref.to(wide)  # cast to the narrower dtype, 2.4 would "equal" 2
    exact = torch.equal(ours, ref)
    close = torch.allclose(ours, ref, atol=atol, rtol=rtol)
    diff = (ours - ref).abs().max().item() if ours.numel() else 0.0
    if decimals is None:
        print(f"{name:<16} | exact: {exact!s:<5} | approx: {close!s:<5} | max abs diff: {diff:.1e}"
              f"{dtypes}")
    else:
        shown = f"{round(diff, decimals) + 0.0:.{decimals}f}"
        print(f"{name:<16} | approx: {close!s:<5} | max abs diff: {shown}{dtypes}")
    return close


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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
