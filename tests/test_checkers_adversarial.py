"""Every exercise checker against answers that try to fool it, and right answers written unusually.

Per exercise in ``check.EXERCISES`` (its reference in ``solutions.py`` is the honest answer):

- *mutating*: returns the right answer, then scribbles on its inputs: graded right, with a note
  naming the input it changed in place;
- *fooling*: scribbles on its inputs first and answers for the scribbled inputs: the same verdict
  as a pure function returning the same values (the expected value is computed from inputs the
  learner never sees), and the note;
- nan or inf anywhere in the answer is wrong;
- an answer with an extra leading dim of 2 is told the shape it has and the shape expected (or
  "return a scalar"), not "your code raised RuntimeError";
- anything not callable is refused: no attempt counted, no hint shown, ``solution`` stays locked;
- hand-written in-place answers (``W += ...``, ``E /= ...``) are graded right, with the note.
"""

import copy
import functools
import inspect
import math

import pytest
import torch
from torch import nn

import mmcourse.check as check
from mmcourse.check import solutions as S

EXERCISES = list(check.EXERCISES)


# ---------------------------------------------------------------------------------- helpers
def _clone(obj):
    """A deep copy of tensors, dicts, lists, tuples and modules; anything else as it is."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    if isinstance(obj, nn.Module):
        return copy.deepcopy(obj)
    return obj


@torch.no_grad()
def _scribble(obj):
    """Change every tensor inside ``obj`` in place, deterministically (modules: their parameters)."""
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.bool:
            obj.logical_not_()
        elif obj.is_floating_point():
            obj.add_(torch.arange(obj.numel(), dtype=obj.dtype).reshape(obj.shape) % 3 + 0.5)
        else:
            obj.add_(1)
    elif isinstance(obj, dict):
        for v in obj.values():
            _scribble(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _scribble(v)
    elif isinstance(obj, nn.Module):
        for p in obj.parameters():
            _scribble(p)
    return obj


def _has_tensor(obj) -> bool:
    if isinstance(obj, (torch.Tensor, nn.Module)):
        return True
    if isinstance(obj, dict):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v) for v in obj)
    return False


def _map_out(out, f):
    """Apply ``f`` to every tensor or number of an answer (dicts, tuples and lists mapped over)."""
    if isinstance(out, dict):
        return {k: _map_out(v, f) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_map_out(v, f) for v in out)
    return f(out)


def _poison(value: float, where: str):
    """nan or inf in every entry (``where="all"``) or in the first one only."""
    def f(x):
        if isinstance(x, (bool, int, float)):
            return value
        t = x.detach().clone()
        t = t if t.is_floating_point() else t.double()
        if where == "all":
            return t.fill_(value)
        t.view(-1)[0] = value
        return t
    return f


def _stack2(x):
    """An extra leading dim of 2: (2, *shape); a number becomes a (2,) tensor."""
    if isinstance(x, (bool, int, float)):
        return torch.tensor([x, x])
    return torch.stack([x, x])


def _variant(name: str, change):
    """The reference solution with its answer passed through ``change`` (a class: its forward's)."""
    ref = getattr(S, name)
    if isinstance(ref, type):
        class Changed(ref):
            def forward(self, *args):
                return _map_out(super().forward(*args), change)
        return Changed

    @functools.wraps(ref)
    def changed(*args):
        return _map_out(ref(*args), change)
    return changed


def _calls(name: str) -> list[tuple]:
    """Copies of the arguments the checker passes to the learner's function, one per call."""
    ref, seen = getattr(S, name), []

    @functools.wraps(ref)
    def recorder(*args):
        seen.append(_clone(args))
        return ref(*args)

    getattr(check, name)(recorder)
    return seen


def _run(name: str, fn, capsys) -> tuple[bool | None, str]:
    checker = getattr(check, name)
    checker.reset()
    assert checker(fn) is None
    return checker.last, capsys.readouterr().out


WITH_TENSOR_INPUTS = [n for n in EXERCISES if n not in
                      ("adapter_params", "gradient_bytes_per_step", "two_input_model")]


def test_the_exercises_without_tensor_inputs_are_the_three_listed():
    assert [n for n in EXERCISES if not any(_has_tensor(a) for a in _calls(n))] == \
        ["adapter_params", "two_input_model", "gradient_bytes_per_step"]


# ---------------------------------------------------------------------------------- mutation
@pytest.mark.parametrize("name", WITH_TENSOR_INPUTS)
def test_right_answer_that_scribbles_on_its_inputs_is_right_with_a_note(name, capsys):
    ref = getattr(S, name)

    @functools.wraps(ref)  # keeps the solution's parameter names for the note
    def mutating(*args):
        out = ref(*_clone(args))  # nothing returned shares memory with the inputs
        _scribble(args)
        return out

    last, out = _run(name, mutating, capsys)
    assert last is True, out
    assert out.startswith(f"[ok] {name}: ") and "\n    Note: your function changed its input" in out
    first = next(p for p, a in zip(inspect.signature(ref).parameters, _calls(name)[0]) if _has_tensor(a))
    assert f"`{first}" in out, out


@pytest.mark.parametrize("name", WITH_TENSOR_INPUTS)
def test_scribbling_on_the_inputs_does_not_move_the_expected_value(name, capsys):
    ref = getattr(S, name)

    @functools.wraps(ref)
    def fooling(*args):  # changes the inputs, then answers for the changed inputs
        return ref(*_scribble(args))

    @functools.wraps(ref)
    def honest(*args):  # the same answers, without touching the inputs
        return ref(*_scribble(_clone(args)))

    last_fooling, out = _run(name, fooling, capsys)
    last_honest, out_honest = _run(name, honest, capsys)
    assert last_fooling == last_honest, (out, out_honest)
    assert "changed its input" in out and "changed its input" not in out_honest


@pytest.mark.parametrize("name,fool", [
    ("mean_image_per_digit", lambda X, y: (X.fill_(1.0), torch.ones(10, *X.shape[1:], dtype=X.dtype))[1]),
    ("cosine_similarity_matrix",
     lambda E: (E.zero_(), E[:, 0].fill_(2.0), torch.ones(len(E), len(E), dtype=E.dtype))[2]),
    ("lora_merge", lambda W, A, B, alpha, r: (W.mul_(2), W + alpha / r * B @ A)[1])])
def test_the_issues_fooling_answers_are_wrong(name, fool, capsys):
    """Each passed when the expected value was computed, after the call, from the same tensors."""
    last, out = _run(name, fool, capsys)
    assert last is False, out
    assert "changed its input" in out and "Hint 1 of" in out


def _cos_in_place(E):
    E /= E.norm(dim=1, keepdim=True)
    return E @ E.T


def _lora_merge_in_place(W, A, B, alpha, r):
    W += alpha / r * B @ A
    return W


def _lora_forward_in_place(x, W, b, A, B, alpha, r):
    W += alpha / r * B @ A  # merge first, then one matrix product
    return x @ W.T + b


def _log_softmax_in_place(z):
    z -= z.max(dim=-1, keepdim=True).values
    z -= z.exp().sum(dim=-1, keepdim=True).log()
    return z


def _bce_grad_in_place(z, y):
    return z.sigmoid_().sub_(y).div_(len(y))


def _info_nce_in_place(a, b, scale):
    a /= a.norm(dim=-1, keepdim=True)
    b /= b.norm(dim=-1, keepdim=True)
    return S.symmetric_info_nce(a, b, scale)


def _kd_in_place(s, t, T):
    s /= T
    t /= T
    return T**2 * S.kd_loss(s, t, 1.0)


def _weighted_sum_in_place(feats, weights):
    for m in feats:
        feats[m] *= weights[m]
    return sum(feats[m] for m in sorted(feats))


def _pool_in_place(token_logits, mask):
    token_logits *= mask[..., None]
    return token_logits.sum(1) / mask.sum(1, keepdim=True)


def _cka_in_place(K, L):
    for G in (K, L):  # C G C: subtract the column means, then the row means
        G -= G.mean(0, keepdim=True)
        G -= G.mean(1, keepdim=True)
    return ((K * L).sum() / (K.norm() * L.norm())).item()


def _align_unif_in_place(z1, z2):
    z1 /= z1.norm(dim=1, keepdim=True)
    z2 /= z2.norm(dim=1, keepdim=True)
    return ((z1 - z2) ** 2).sum(1).mean(), torch.pdist(z1).pow(2).mul(-2).exp().mean().log()


def _knn_in_place(train_feats, train_labels, test_feats, test_labels, k):
    train_feats /= train_feats.norm(dim=1, keepdim=True)
    test_feats /= test_feats.norm(dim=1, keepdim=True)
    return S.knn_accuracy(train_feats, train_labels, test_feats, test_labels, k)


def _prune_in_place(w, amount):
    k = round(amount * w.numel())
    w.abs_()
    return w > w.flatten().kthvalue(k).values if k else torch.ones_like(w, dtype=torch.bool)


def _aux_in_place(out, y, lambdas):
    for m in out["aux"]:
        lambdas.setdefault(m, 0.0)  # fills in the missing weights in the caller's dict
    return S.aux_loss(out, y, lambdas)


def _fgsm_in_place(model, inputs, labels, eps, modality):
    adv = S.fgsm_step(model, inputs, labels, eps, modality)[modality]
    inputs[modality] = adv  # puts the attack into the caller's dict
    return inputs


IN_PLACE = {  # exercise: (a right answer that changes its input in place, the input it changes)
    "cosine_similarity_matrix": (_cos_in_place, "E"),
    "lora_merge": (_lora_merge_in_place, "W"),
    "lora_forward": (_lora_forward_in_place, "W"),
    "stable_log_softmax": (_log_softmax_in_place, "z"),
    "bce_logit_grad_by_hand": (_bce_grad_in_place, "z"),
    "symmetric_info_nce": (_info_nce_in_place, "a"),
    "kd_loss": (_kd_in_place, "s"),
    "weighted_sum": (_weighted_sum_in_place, "feats"),
    "pool_token_logits": (_pool_in_place, "token_logits"),
    "cka_from_gram": (_cka_in_place, "K"),
    "alignment_uniformity": (_align_unif_in_place, "z1"),
    "knn_accuracy": (_knn_in_place, "train_feats"),
    "prune_mask": (_prune_in_place, "w"),
    "aux_loss": (_aux_in_place, "lambdas"),
    "fgsm_step": (_fgsm_in_place, "inputs"),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_right_answer_written_in_place_is_right_with_a_note(name, capsys):
    fn, changed = IN_PLACE[name]
    last, out = _run(name, fn, capsys)
    assert last is True, out
    assert out.startswith(f"[ok] {name}: ") and "\n    Note: your function changed its input" in out
    assert f"`{changed}" in out, out


def test_the_note_names_the_input_and_the_fix(capsys):
    _, out = _run("lora_merge", _lora_merge_in_place, capsys)
    assert out.splitlines()[1] == ("    Note: your function changed its input `W` in place; compute "
                                   "a new tensor instead (e.g. W + ... rather than W += ...).")
    _, out = _run("weighted_sum", _weighted_sum_in_place, capsys)
    assert "changed its inputs `feats['image']`, `feats['audio']` in place" in out
    assert "(e.g. feats['image'] + ... rather than feats['image'] += ...)" in out
    _, out = _run("aux_loss", _aux_in_place, capsys)
    assert "changed its input `lambdas` in place; build a new dict instead (e.g. {**lambdas, key: value}" in out
    _, out = _run("fgsm_step", _fgsm_in_place, capsys)  # an entry replaced: the dict changed, not the tensor
    assert "changed its input `inputs` in place; build a new dict instead" in out


def test_changing_a_models_weights_is_noted(capsys):
    def step_then_attack(model, inputs, labels, eps, modality):
        with torch.no_grad():
            model.A.mul_(-1)  # e.g. an optimiser step on the model under attack
        return S.fgsm_step(model, inputs, labels, eps, modality)

    last, out = _run("fgsm_step", step_then_attack, capsys)
    assert last is False and "changed its input `model` in place (its weights)" in out


# ---------------------------------------------------------------------------------- nan and inf
@pytest.mark.parametrize("value,where", [(math.nan, "all"), (math.nan, "first"), (math.inf, "first")])
@pytest.mark.parametrize("name", EXERCISES)
def test_nan_or_inf_in_the_answer_is_wrong(name, value, where, capsys):
    last, out = _run(name, _variant(name, _poison(value, where)), capsys)
    assert last is False, out
    assert out.startswith(f"[x] {name}: ") and "Hint 1 of" in out


def test_recall_at_k_of_nan_names_the_problem(capsys):
    last, out = _run("recall_at_k", lambda *args: float("nan"), capsys)
    assert last is False and "recall@1 is nan; a right answer is a finite number" in out


# ---------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", EXERCISES)
def test_wrong_shape_is_named_not_a_crash(name, capsys):
    ref, args = getattr(S, name), _calls(name)[0]
    right = ref()(torch.randn(2, 1, 28, 28), torch.randn(2, 40, 13)) if isinstance(ref, type) else ref(*args)
    last, out = _run(name, _variant(name, _stack2), capsys)
    assert last is False, out
    assert "raised" not in out, out
    leaves = []
    _map_out(right, leaves.append)
    got_shapes = {str(tuple(_stack2(v).shape)) for v in leaves}
    assert any(s in out for s in got_shapes), (got_shapes, out)
    if all(isinstance(v, (int, float)) or v.dim() == 0 for v in leaves):
        assert any(f"return a {n}" in out for n in ("scalar", "whole number", "number of bytes")), out
    else:
        assert any(str(tuple(v.shape)) in out for v in leaves), out


def test_a_vector_for_a_scalar_says_so(capsys):
    _, out = _run("kd_loss", lambda s, t, T: torch.ones(2), capsys)
    assert "not quite. return a scalar (one number) for the loss, got shape (2,)." in out
    _, out = _run("f1_from_confusion", lambda cm: torch.ones(2), capsys)
    assert "return a scalar (one number) for F1 for cm=[[50, 10], [5, 35]], got shape (2,)." in out
    _, out = _run("adapter_params", lambda d, m, n: [1, 2], capsys)
    assert "return a whole number, got shape (2,)." in out


# ---------------------------------------------------------------------------------- not a function
@pytest.mark.parametrize("name", EXERCISES)
@pytest.mark.parametrize("thing", [0.5, torch.ones(2), "my_answer"])
def test_a_non_callable_is_refused_and_unlocks_nothing(name, thing, capsys):
    checker = getattr(check, name)
    assert checker(thing) is None
    out = capsys.readouterr().out
    kind = type(thing).__name__
    if name == "two_input_model":
        start = f"pass the class itself, e.g. check.{name}(MyModel), not an instance or a result"
    else:
        start = f"pass the function itself, e.g. check.{name}(my_fn), not its result"
    assert out.startswith(f"[?] {name}: {start} (you passed a {kind}).")
    assert "Not counted as an attempt." in out and "Hint" not in out
    assert checker.last is None and not checker.tried and checker.hints_shown == 0
    check.solution(name)
    assert "try it first" in capsys.readouterr().out


def test_a_model_instance_is_refused_where_the_class_is_asked_for(capsys):
    check.two_input_model(S.TwoInputModel())
    assert "pass the class itself" in capsys.readouterr().out
    assert check.two_input_model.last is None and not check.two_input_model.tried
    check.two_input_model(S.TwoInputModel)
    assert check.two_input_model.last is True
