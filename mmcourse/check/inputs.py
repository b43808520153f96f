"""What the learner's function did to its inputs, for ``core.attempt``.

A checker hands the learner's function copies of its inputs (``copy_inputs``) and keeps the
originals, so an expected value computed from them cannot be moved by a function that writes into
its arguments. Comparing each copy with its original afterwards (``changes``) turns such writes
into a note for the learner (``mutation_note``); ``nonfinite`` spots nan or inf in an answer.
Not a lesson of its own: the machinery behind every notebook's exercises.
"""

from __future__ import annotations

import copy
import inspect
import math

import torch


def copy_inputs(x):
    """A copy of tensors (their own memory), modules, and dicts, lists, tuples of them."""
    if isinstance(x, torch.Tensor):
        c = x.detach().clone()
        return c.requires_grad_() if x.requires_grad and x.is_leaf else c
    if isinstance(x, dict):
        return {k: copy_inputs(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(copy_inputs(v) for v in x)
    if isinstance(x, torch.nn.Module):
        return copy.deepcopy(x)
    return x  # numbers, strings: immutable


def arg_paths(fn, n: int) -> list[str]:
    """How the function names its first n positional arguments, e.g. ["W", "A"] or ["args[0]"]."""
    try:
        target = fn.forward if isinstance(fn, torch.nn.Module) else fn
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = []
    paths = []
    for i in range(n):
        if i < len(params) and params[i].kind == params[i].VAR_POSITIONAL:
            paths += [f"{params[i].name}[{j}]" for j in range(n - i)]
            break
        ok = i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                   params[i].POSITIONAL_OR_KEYWORD)
        paths.append(params[i].name if ok else f"argument {i + 1}")
    return paths


def _same(a: torch.Tensor, b) -> bool:
    if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a, b) or (a.is_floating_point() and bool((a == b).logical_or(
        a.isnan() & b.isnan()).all()))


def identities(x):
    """The ``id`` of every tensor and module inside ``x``, laid out like ``x`` (taken before the call)."""
    if isinstance(x, (torch.Tensor, torch.nn.Module)):
        return id(x)
    if isinstance(x, dict):
        return {k: identities(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [identities(v) for v in x]
    return None


def changes(before, after, path: str, held=None) -> list[tuple[str, str]]:
    """(path, "tensor" | "dict" | "list" | "module") of every change from ``before`` to ``after``.

    ``held`` is ``identities(after)`` from before the call: an entry that now holds another
    object (``inputs["audio"] = new``) changed the dict or list, not the tensor.
    """
    if isinstance(before, torch.Tensor):
        return [] if _same(before, after) else [(path, "tensor")]
    if isinstance(before, (dict, list)):
        kind = type(before).__name__
        keys = list(before) if kind == "dict" else range(len(before))
        same_keys = list(after) == keys if kind == "dict" else len(after) == len(before)
        held = held if held is not None else identities(after)
        if not same_keys or any(isinstance(held[k], int) and id(after[k]) != held[k] for k in keys):
            return [(path, kind)]
        sub = (f"{path}[{k!r}]" for k in keys)
        return [c for k, p in zip(keys, sub) for c in changes(before[k], after[k], p, held[k])]
    if isinstance(before, tuple):  # immutable itself, but its tensors are not
        held = held if held is not None else identities(after)
        return [c for i, (b, a) in enumerate(zip(before, after)) for c in changes(b, a, f"{path}[{i}]", held[i])]
    if isinstance(before, torch.nn.Module):  # weights only: running statistics may move in train()
        old, new = dict(before.named_parameters()), dict(after.named_parameters())
        same = old.keys() == new.keys() and all(_same(v.detach(), new[k].detach()) for k, v in old.items())
        return [] if same else [(path, "module")]
    return []


def mutation_note(found: list[tuple[str, str]]) -> str:
    """One line for the learner: which inputs changed in place, and how to avoid it."""
    paths = list(dict.fromkeys(p for p, _ in found))
    first, kind = found[0]
    shown = ", ".join(f"`{p}`" for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    text = f"your function changed its input{'s' if len(paths) > 1 else ''} {shown} in place"
    if kind == "module":
        return text + " (its weights); compute with the weights, don't update them."
    if kind == "dict":
        return text + f"; build a new dict instead (e.g. {{**{first}, key: value}} rather than {first}[key] = value)."
    if kind == "list":
        return text + f"; build a new list instead (e.g. {first} + [value] rather than {first}.append(value))."
    return text + f"; compute a new tensor instead (e.g. {first} + ... rather than {first} += ...)."


def nonfinite(out) -> bool:
    """True when an answer (a tensor, number, or a dict, list, tuple of them) holds nan or inf."""
    if isinstance(out, torch.Tensor):
        return (out.is_floating_point() or out.is_complex()) and not bool(torch.isfinite(out).all())
    if isinstance(out, float):
        return not math.isfinite(out)
    if isinstance(out, dict):
        return any(nonfinite(v) for v in out.values())
    if isinstance(out, (list, tuple)):
        return any(nonfinite(v) for v in out)
    return False
