"""mmcourse.check: cmp, the exercise machinery, and every checker's typical mistakes.

Each typical mistake must be rejected with its own message (asserted on the printed text); the
packaged solutions, the stubs, hints and the solution gate are tested in ``test_solutions.py``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmcourse.check as check
from mmcourse.check import solutions as S


def stub(*args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------- core
def test_cmp_prints_and_returns(capsys):
    assert check.cmp("same", torch.ones(3), torch.ones(3))
    assert "exact: True  | approx: True  | max abs diff: 0.0e+00" in capsys.readouterr().out
    assert check.cmp("rounded", torch.ones(3), torch.ones(3, dtype=torch.float64) + 1e-12, decimals=6)
    assert "| approx: True  | max abs diff: 0.000000" in capsys.readouterr().out
    assert not check.cmp("off", torch.ones(3), torch.ones(3) + 0.5)
    assert "approx: False" in capsys.readouterr().out
    with pytest.raises(ValueError, match="shapes differ"):
        check.cmp("bad", torch.ones(3), torch.ones(2))


def test_cmp_compares_in_the_wider_dtype_and_says_when_dtypes_differ(capsys):
    # the reference used to be cast to the hand result's dtype: int64 made 2.4 "exactly" 2
    assert not check.cmp("x", torch.tensor([1, 2]), torch.tensor([1.0, 2.4]))
    out = capsys.readouterr().out
    assert out == ("x                | exact: False | approx: False | max abs diff: 4.0e-01"
                   " | dtypes differ: int64 vs float32\n")
    assert not check.cmp("f32", torch.tensor([0.1]), torch.tensor([0.1], dtype=torch.float64), atol=0,
                         rtol=1e-9)  # 0.1 in float32 is 0.1 + 1.5e-9: not rounded away
    out = capsys.readouterr().out
    assert "exact: False" in out and "max abs diff: 1.5e-09 | dtypes differ: float32 vs float64" in out
    check.cmp("rounded", torch.ones(2), torch.ones(2, dtype=torch.float64), decimals=3)
    assert capsys.readouterr().out.endswith("| max abs diff: 0.000 | dtypes differ: float32 vs float64\n")
    check.cmp("same dtype", torch.ones(2), torch.ones(2))
    assert "dtypes" not in capsys.readouterr().out


def test_exercise_machinery(capsys):
    @check.exercise(task="() -> int: the number two", hints=("a pointer", "closer"))
    def two(fn):
        if check.attempt(fn) != 2:
            raise check.Wrong("not 2.")

    try:
        def my_two():
            return 2
        assert two(my_two) is None and two.last is True  # no Out[] line: checkers return None
        assert capsys.readouterr().out == "[ok] two: correct\n"
        two.reset()
        two(lambda: 3)
        assert two.last is False
        assert "not quite. not 2.\n    Hint 1 of 2: a pointer" in capsys.readouterr().out
        two(lambda: None)
        assert two.last is None
        two(stub)
        out = capsys.readouterr().out
        assert out.count("not yet solved") == 2 and "Task: fill in your function() -> int" in out
        two(lambda: 1 / 0)  # a crash is reported, not raised, and counts as a wrong attempt
        assert two.last is False
        assert "ZeroDivisionError" in (out := capsys.readouterr().out) and "Hint 2 of 2: closer" in out
    finally:
        del check.REGISTRY["two"]
    with pytest.raises(ValueError, match="at least one hint"):
        check.exercise(task="x", hints=())(lambda fn: None)
    with pytest.raises(ValueError, match="takes='module', expected 'function' or 'class'"):
        check.exercise(task="x", hints=("h",), takes="module")(lambda fn: None)


def test_attempt_hands_out_copies_and_notes_changes(capsys):
    @check.exercise(task="(W) -> (2,): W doubled", hints=("twice",))
    def double(fn):
        W = torch.tensor([1.0, 2.0])
        got = check.attempt(fn, W)
        check.expect_close(got, torch.tensor([2.0, 4.0]), "2W")  # W is still [1, 2]

    def in_place(W):
        W *= 2
        return W

    try:
        double(in_place)
        assert double.last is True
        assert capsys.readouterr().out == (
            "[ok] double: correct\n    Note: your function changed its input `W` in place; compute a "
            "new tensor instead (e.g. W + ... rather than W += ...).\n")
        double(lambda *args: args[0].fill_(7))  # wrong, and the note names the argument as written
        out = capsys.readouterr().out
        assert "[x] double: not quite. 2W is off by up to 5." in out and "`args[0]`" in out
        double(lambda *args: [args[0].mul(2)][0])
        assert double.last is True and "Note" not in capsys.readouterr().out
        double(lambda W: W.mul(2))
        assert double.last is True and "Note" not in capsys.readouterr().out
    finally:
        del check.REGISTRY["double"]
    W = torch.ones(2)
    assert check.attempt(lambda w: w.add_(1), W).tolist() == [2.0, 2.0] and W.tolist() == [1.0, 1.0]


def test_changes_tell_a_replaced_entry_from_a_tensor_changed_in_place():
    from mmcourse.check.inputs import changes, copy_inputs, identities, mutation_note
    before = {"a": torch.zeros(2), "xs": [torch.ones(1)], "t": (torch.ones(1),)}
    after = copy_inputs(before)
    held = identities(after)
    assert changes(before, after, "d", held) == []
    after["t"][0].add_(1)  # a tensor inside a tuple, in place
    after["xs"].append(3)  # a list grown
    after["a"] = torch.ones(2)  # an entry replaced
    found = changes(before, after, "d", held)
    assert found == [("d", "dict")]
    del after["a"]
    after["a"] = before["a"].clone()  # same values, same keys, but the entry is another object
    assert changes(before, after, "d", held) == [("d", "dict")]
    after = copy_inputs(before)
    held = identities(after)
    after["xs"].append(3)
    after["t"][0].add_(1)
    found = changes(before, after, "d", held)
    assert found == [("d['xs']", "list"), ("d['t'][0]", "tensor")]
    assert mutation_note(found) == ("your function changed its inputs `d['xs']`, `d['t'][0]` in place; "
                                    "build a new list instead (e.g. d['xs'] + [value] rather than "
                                    "d['xs'].append(value)).")


def test_a_checker_that_lets_nan_through_still_grades_it_wrong(capsys):
    @check.exercise(task="() -> float", hints=("a number",))
    def lenient(fn):
        check.attempt(fn)  # checks nothing

    try:
        lenient(lambda: float("nan"))
        assert lenient.last is False
        assert "not quite. your function returned nan or inf" in capsys.readouterr().out
        lenient(lambda: {"a": torch.tensor([1.0, float("inf")])})
        assert lenient.last is False
        lenient(lambda: 1.0)
        assert lenient.last is True
    finally:
        del check.REGISTRY["lenient"]


def test_scalar_and_expect_shape_name_what_is_wrong():
    assert check.scalar(torch.tensor([0.5]), "p").item() == 0.5  # one element counts as a number
    with pytest.raises(check.Wrong, match=r"^return a scalar \(one number\) for p, got shape \(2,\)\.$"):
        check.scalar(torch.ones(2), "p")
    with pytest.raises(check.Wrong, match=r"^return a whole number, got a str\.$"):
        check.scalar("many", kind="a whole number")
    with pytest.raises(check.Wrong, match=r"^p is nan; a right answer is a finite number \(look for a"):
        check.scalar(float("nan"), "p")
    with pytest.raises(check.Wrong, match=r"^z has shape \(2, 3\), expected \(3,\)\.$"):
        check.expect_shape(torch.ones(2, 3), (3,), "z")
    with pytest.raises(check.Wrong, match=r"^return a tensor for z, got an object\.$"):
        check.expect_shape(object(), (3,), "z")
    with pytest.raises(check.Wrong, match="return a scalar"):
        check.expect_close(torch.ones(2), torch.tensor(1.0), "the loss")
    with pytest.raises(check.Wrong, match="contains nan or inf"):
        check.expect_close(torch.tensor([1.0, float("inf")]), torch.ones(2), "z")


def test_matches_spots_values_shapes_and_nan():
    assert check.matches(torch.tensor([1.0, float("nan")]), [1.0, float("nan")])
    assert not check.matches(torch.tensor([1.0, 2.0]), [1.0, 2.5])
    assert not check.matches(torch.ones(2, 1), torch.ones(2))
    assert not check.matches("not a number", 1.0)


def test_with_hand_backward_checks_the_hand_gradient():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    square = check.with_hand_backward(lambda v: (v**2).sum(), lambda v: 2 * v)
    assert torch.autograd.gradcheck(square, (x,))
    with pytest.raises(Exception):
        torch.autograd.gradcheck(check.with_hand_backward(lambda v: (v**2).sum(), lambda v: v), (x,))


# ---------------------------------------------------------------------------------- typical mistakes
def _tanh_sigmoid_derivative(x, y, P):  # sigma' kept from the sigmoid net
    h = torch.tanh(x @ P["W"].T + P["b"])
    dz2 = (torch.sigmoid(h @ P["w2"] + P["b2"]) - y) / len(y)
    da1 = dz2[:, None] * P["w2"] * h * (1 - h)
    return {"W": da1.T @ x, "b": da1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum()}


def _bce_chain_rule_unsimplified(z, y):  # divides by p and 1 - p: nan where they are 0
    p = torch.sigmoid(z)
    return -(y / p - (1 - y) / (1 - p)) / z.numel() * p * (1 - p)


def _log_softmax_global_max(z):
    m = z.max()
    return (z - m) - torch.log(torch.exp(z - m).sum(-1, keepdim=True))


def _log_softmax_no_keepdim(z):
    m = z.max(-1).values  # (B,): does not broadcast against (B, C)
    return (z - m) - torch.log(torch.exp(z - m).sum(-1, keepdim=True))


def _unif(z1, dist):  # uniformity from a distance function of the normalised rows
    return dist(F.normalize(z1, dim=1)).mul(-2).exp().mean().log()


def _ece_half_open(probs, labels, n_bins, drop_one=False):  # bins [k/K, (k+1)/K)
    conf, pred = probs.max(1)
    idx = (conf * n_bins).floor().long()
    keep = idx < n_bins if drop_one else torch.ones_like(idx, dtype=torch.bool)
    idx, correct, total = idx.clamp(max=n_bins - 1), (pred == labels).double(), 0.0
    for k in range(n_bins):
        inb = keep & (idx == k)
        if inb.any():
            total += inb.double().mean() * (correct[inb].mean() - conf[inb].mean()).abs()
    return float(total)


def _ece_with(probs, labels, n_bins, reduce):  # the course's bins, gaps combined by ``reduce``
    from mmcourse.calibration import reliability_bins
    b = reliability_bins(probs, labels, n_bins)
    full = ~b["acc"].isnan()
    return float(reduce(b["count"][full] / len(labels), b["acc"][full] - b["conf"][full]))


def _grad_x(model, x, target, combine):  # gradient × input variants on the test's model
    x = {m: v.clone().requires_grad_() for m, v in x.items()}
    z = model(x)
    picked = z.sum() if combine == "all logits" else z.gather(1, target[:, None]).sum()
    grads = dict(zip(sorted(x), torch.autograd.grad(picked, [x[m] for m in sorted(x)])))
    if combine == "gradient":
        return {m: g.flatten(1).sum(1) for m, g in grads.items()}
    if combine == "mean":
        return {m: (g * x[m]).flatten(1).mean(1) for m, g in grads.items()}
    if combine == "unsummed":
        return {m: (g * x[m]).flatten(1) for m, g in grads.items()}
    return {m: (g * x[m]).flatten(1).sum(1) for m, g in grads.items()}


class _ImageOnly(S.TwoInputModel):
    def forward(self, image, audio):
        return self.head(torch.cat([self.image(image), torch.zeros(len(image), 32)], 1))


class _FiveLogits(nn.Module):
    def forward(self, image, audio):
        return image.flatten(1)[:, :5] + audio.flatten(1)[:, :5]


def _centre(K):  # C K C with C = I - 11^T / n
    C = torch.eye(len(K), dtype=K.dtype) - 1 / len(K)
    return C @ K @ C


def _kd(s, t, T, soften=True, reverse=False):
    s, t = (s / T, t / T) if soften else (s, t)
    p, log_q = torch.softmax(t, 1), torch.log_softmax(s, 1)
    if reverse:
        p, log_q = log_q.exp(), p.log()
    return (p * (p.log() - log_q)).sum(1).mean()


def _ogm(c, y, alpha, coefficient):  # the dominant gets coefficient(rho, rho from logits, alpha)
    rows = torch.arange(len(y))
    s = {m: v.softmax(-1)[rows, y].sum().item() for m, v in c.items()}
    dom, other = sorted(s, key=s.get, reverse=True)
    logit_rho = (c[dom][rows, y].sum() / c[other][rows, y].sum()).item()
    return {dom: coefficient(s[dom] / s[other], logit_rho, alpha), other: 1.0}


_CE = F.cross_entropy

def _input_grad(model, x, y, k):
    """∇ of the mean cross-entropy wrt modality k (for the FGSM mistakes)."""
    xk = x[k].detach().clone().requires_grad_()
    return torch.autograd.grad(F.cross_entropy(model({**x, k: xk}), y), [xk])[0]

MISTAKES = {
    "mean_image_per_digit": [
        (lambda X, y: X.mean(0), "one average over all images"),
        (lambda X, y: torch.stack([X[y == c].sum(0) for c in range(10)]), "those are the sums")],
    "cosine_similarity_matrix": [
        (lambda E: E @ E.T, "plain dot product"),
        (lambda E: F.normalize(E, dim=0) @ F.normalize(E, dim=0).T, "normalised each column")],
    "tanh_net_grads": [
        (_tanh_sigmoid_derivative, "h(1 - h), the sigmoid's derivative"),
        (lambda x, y, P: {k: len(y) * v for k, v in S.tanh_net_grads(x, y, P).items()}, "(= N) times too large")],
    "f1_from_confusion": [
        (lambda cm: cm[1, 1] / (cm[1, 1] + cm[0, 1]), "that is precision"),
        (lambda cm: cm[1, 1] / (cm[1, 1] + cm[1, 0]), "that is recall"),
        (lambda cm: 2 * cm[0, 0] / (2 * cm[0, 0] + cm[0, 1] + cm[1, 0]), "F1 of class 0"),
        (lambda cm: (cm[0, 0] + cm[1, 1]) / cm.sum(), "accuracy"),
        (lambda cm: (cm[1, 1] / (cm[1, 1] + cm[0, 1]) + cm[1, 1] / (cm[1, 1] + cm[1, 0])) / 2, "arithmetic mean")],
    "bce_logit_grad_by_hand": [
        (lambda z, y: torch.sigmoid(z) - y, "(= N) times too large"),
        (lambda z, y: (y - torch.sigmoid(z)) / z.numel(), "sign is flipped"),
        (lambda z, y: (z.exp() / (1 + z.exp()) - y) / z.numel(), "inf or nan at z = ±1e4"),
        (_bce_chain_rule_unsimplified, "no division by p or 1 - p")],
    "stable_log_softmax": [
        (lambda z: torch.softmax(z, -1).log(), "naive log(softmax(z))"),
        (lambda z: (z.exp() / z.exp().sum(-1, keepdim=True)).log(), "naive log(softmax(z))"),
        (lambda z: z - z.exp().sum(-1, keepdim=True).log(), "naive log(softmax(z))"),
        (_log_softmax_global_max, "one max for the whole batch"),
        (_log_softmax_no_keepdim, "keepdim=True"),
        (lambda z: torch.log_softmax(z, 0), "over dim 0")],
    "alignment_uniformity": [
        (lambda z1, z2: (((z1 - z2) ** 2).sum(1).mean(), 0.0), "alignment uses unnormalised"),
        (lambda z1, z2: S.alignment_uniformity(z1, z2)[::-1], "swapped"),
        (lambda z1, z2: ((F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean(),
                         S.alignment_uniformity(z1, z2)[1]), "*squared* distances"),
        (lambda z1, z2: (S.alignment_uniformity(z1, z2)[0], torch.pdist(z1).pow(2).mul(-2).exp().mean().log()),
         "normalise z1 for it too"),
        (lambda z1, z2: (S.alignment_uniformity(z1, z2)[0], _unif(z1, lambda u: torch.cdist(u, u).pow(2))),
         "including i = j"),
        (lambda z1, z2: (S.alignment_uniformity(z1, z2)[0], S.alignment_uniformity(z1, z2)[1].exp()),
         "missing the log"),
        (lambda z1, z2: (S.alignment_uniformity(z1, z2)[0], _unif(z1, torch.pdist)), "squared distance)")],
    "knn_accuracy": [
        (lambda a, b, c, d, k: 0.5, "accuracy with k=1 is off"),
        (lambda a, b, c, d, k: S.knn_accuracy(-a, b, c, d, k), "*least* similar"),
        (lambda a, b, c, d, k: S.knn_accuracy(a, b, c, d, 1), "is k used?"),
        (lambda a, b, c, d, k: len(d) * S.knn_accuracy(a, b, c, d, k), "not the count"),
        (lambda a, b, c, d, k: (d == b[(c @ a.T).topk(k, 1).indices].mode(1).values).double().mean(), "plain dot product"),
        (lambda a, b, c, d, k: (d == b[torch.cdist(c, a).topk(k, 1, largest=False).indices].mode(1).values).double().mean(),
         "Euclidean")],
    "cka_from_gram": [
        (lambda K, L: ((K * L).sum() / (K.norm() * L.norm())).item(), "forgot to centre"),
        (lambda K, L: (_centre(K) * L).sum() / (_centre(K).norm() * L.norm()), "centred K only"),
        (lambda K, L: (_centre(K) * _centre(L)).sum(), "unnormalised inner product")],
    "attack_success_rate": [
        (lambda p, l, t: (p == t).double().mean().item(), "cannot be 'attacked'"),
        (lambda p, l, t: (p[l != t] != t).double().mean().item(), "*failed*"),
        (lambda p, l, t: (p[l != t] == t).sum().item(), "not the count")],
    "weighted_sum": [
        (lambda f, w: sum(f.values()), "ignored the weights"),
        (lambda f, w: sum(w[k] * f[k] for k in f) / sum(w.values()), "renormalised"),
        (lambda f, w: sum(w[k] * f[k] for k in f) / len(f), "averaged over the modalities"),
        (lambda f, w: torch.cat([w[k] * f[k] for k in sorted(f)], 1), "concatenation")],
    "outer_with_one": [
        (lambda a, b: (a[:, :, None] * b[:, None, :]).flatten(1), "dropped the appended 1s"),
        (lambda a, b: S.outer_with_one(a, b).reshape(len(a), a.shape[1] + 1, -1), "flatten it"),
        (lambda a, b: S.outer_with_one(b, a), "[b; 1] ⊗ [a; 1]"),
        (lambda a, b: S.outer_with_one(a.flip(1), b.flip(1)).flip(1), "put the 1 first")],
    "aux_loss": [
        (lambda out, y, lam: sum(v * _CE(out["aux"][m], y) for m, v in lam.items()), "left out the fused loss"),
        (lambda out, y, lam: _CE(out["logits"], y) + sum(_CE(v, y) for v in out["aux"].values()), "ignored the lambdas"),
        (lambda out, y, lam: _CE(out["logits"], y) + sum(lam[m] * _CE(v, y) for m, v in out["aux"].items()), "KeyError"),
        (lambda out, y, lam: _CE(out["logits"], y) + sum(v * _CE(out["aux"][m], y) for m, v in lam.items()) / len(lam),
         "averaged the auxiliary terms")],
    "ogm_coefficient": [
        (lambda c, y, a: {m: 1 - math.tanh(a) for m in c}, "only the dominant modality"),
        (lambda c, y, a: _ogm(c, y, a, lambda rho, _, a: math.tanh(a * rho)), "must *shrink*"),
        (lambda c, y, a: _ogm(c, y, a, lambda rho, _, a: 1 - math.tanh(a / rho)), "rho > 1"),
        (lambda c, y, a: _ogm(c, y, a, lambda _, logit_rho, a: 1 - math.tanh(a * logit_rho)),
         "softmax *probabilities*")],
    "symmetric_info_nce": [
        (lambda a, b, s: _CE(s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T, torch.arange(len(a))), "only the a→b"),
        (lambda a, b, s: _CE(s * F.normalize(b, dim=-1) @ F.normalize(a, dim=-1).T, torch.arange(len(a))), "only the b→a"),
        (lambda a, b, s: (_CE(s * a @ b.T, torch.arange(len(a))) + _CE(s * b @ a.T, torch.arange(len(a)))) / 2,
         "L2-normalised"),
        (lambda a, b, s: 2 * S.symmetric_info_nce(a, b, s), "summed the two directions"),
        (lambda a, b, s: S.symmetric_info_nce(a, b, 1.0), "left out the scale")],
    "recall_at_k": [
        (lambda q, g, ql, gl, k: S.recall_at_k(-q, g, ql, gl, k), "recall@1 came out 0"),
        (lambda q, g, ql, gl, k: (gl[(q @ g.T).topk(k, 1).indices] == ql[:, None]).all(1).float().mean().item(), "*any*"),
        (lambda q, g, ql, gl, k: len(q) * S.recall_at_k(q, g, ql, gl, k), "not the count")],
    "lora_forward": [
        (lambda x, W, b, A, B, alpha, r: x @ W.T + b + (x @ A.T) @ B.T, "scaled by alpha / r"),
        (lambda x, W, b, A, B, alpha, r: S.lora_forward(x, W, b, A, B, r, alpha), "not r / alpha"),
        (lambda x, W, b, A, B, alpha, r: S.lora_forward(x, W, 0 * b, A, B, alpha, r), "bias b"),
        (lambda x, W, b, A, B, alpha, r: alpha / r * S.lora_forward(x, W, b, A, B, 1, 1), "scale only the low-rank")],
    "lora_merge": [
        (lambda W, A, B, alpha, r: W + B @ A, "forgot the scaling"),
        (lambda W, A, B, alpha, r: W + (r / alpha) * B @ A, "not r / alpha"),
        (lambda W, A, B, alpha, r: (alpha / r) * B @ A, "only the update"),
        (lambda W, A, B, alpha, r: W.T + (alpha / r) * A.T @ B.T, "it needs W's shape")],
    "adapter_params": [
        (lambda d, m, n: 2 * d * m * 2 * n, "left out the biases"),
        (lambda d, m, n: (2 * d * m + m) * 2 * n, "up-projection's bias"),
        (lambda d, m, n: (2 * d * m + d) * 2 * n, "down-projection's bias"),
        (lambda d, m, n: (2 * d * m + d + m) * n, "two adapters in each layer"),
        (lambda d, m, n: 2 * d * m + d + m, "that is one adapter"),
        (lambda d, m, n: (d * m + d + m) * 2 * n, "two weight matrices"),
        (lambda d, m, n: S.adapter_params(d, m, n) + 1, "off by +1"),
        (lambda d, m, n: "many", "return a whole number")],
    "kd_loss": [
        (lambda s, t, T: _kd(s, t, T), "forgot the T² factor"),
        (lambda s, t, T: S.kd_loss(s, t, T) * s.shape[0], "summed over the batch"),
        (lambda s, t, T: T * _kd(s, t, T), "not T."),
        (lambda s, t, T: T**2 * _kd(s, t, T, reverse=True), "wrong way round"),
        (lambda s, t, T: T**2 * _kd(s, t, T, soften=False), "left out the temperature"),
        (lambda s, t, T: T**2 * -(torch.softmax(t / T, 1) * torch.log_softmax(s / T, 1)).sum(1).mean(), "cross-entropy"),
        # F.kl_div(..., reduction="mean"), its deprecated default, without the warning:
        (lambda s, t, T: T**2 * F.kl_div(torch.log_softmax(s / T, 1), torch.softmax(t / T, 1), reduction="sum") / s.numel(),
         "reduction='batchmean'")],
    "prune_mask": [
        (lambda w, a: w > w.flatten().kthvalue(max(round(a * w.numel()), 1)).values, "rank by magnitude"),
        (lambda w, a: ~S.prune_mask(w, a), "inverted"),
        (lambda w, a: w.abs() >= w.abs().flatten().kthvalue(max(round(a * w.numel()), 1)).values, "kept the k-th"),
        (lambda w, a: w.abs() > w.abs().flatten().kthvalue(round(a * w.numel())).values, "amount 0 raised RuntimeError")],
    "ece": [
        (_ece_half_open, "your bins are [k/K, (k+1)/K)"),
        (lambda p, y, k: _ece_half_open(p, y, k, drop_one=True), "your bins are [k/K, (k+1)/K)"),
        (lambda p, y, k: _ece_with(p, y, k, lambda w, gap: gap.abs().mean()), "n_k / N"),
        (lambda p, y, k: _ece_with(p, y, k, lambda w, gap: (w * gap).sum().abs()), "opposite sign cancel"),
        (lambda p, y, k: S.ece(p, y, 1), "either one bin")],
    "grad_times_input": [
        (lambda m, x, t: {"audio": torch.where(t == 0, m(x)[:, 0], 0.0), "image": torch.where(t == 1, m(x)[:, 1], 0.0)},
         "the logit itself"),
        (lambda m, x, t: _grad_x(m, x, t, "gradient"), "the gradient alone"),
        (lambda m, x, t: _grad_x(m, x, t, "all logits"), "sum of all logits"),
        (lambda m, x, t: _grad_x(m, x, t, "mean"), "averaged over each example's features"),
        (lambda m, x, t: _grad_x(m, x, t, "unsummed"), "sum each example's features")],
    "fgsm_step": [
        (lambda m, x, y, e, k: {**x, k: x[k] + e * _input_grad(m, x, y, k)}, "the gradient itself"),
        (lambda m, x, y, e, k: {**x, k: 2 * x[k] - S.fgsm_step(m, x, y, e, k)[k]}, "steps *down* the loss"),
        (lambda m, x, y, e, k: S.fgsm_step(m, x, m(x).argmax(1), e, k), "model's predictions as labels"),
        (lambda m, x, y, e, k: {k2: v + e for k2, v in S.fgsm_step(m, x, y, e, k).items()}, "the image changed"),
        (lambda m, x, y, e, k: {k: S.fgsm_step(m, x, y, e, k)[k]}, "return the whole input dict")],
    "two_input_model": [
        (_ImageOnly, "changing the audio does not change the output"),
        (lambda: nn.Sequential(nn.Linear(784, 10)), "raised TypeError"),
        (lambda: 3, "return an nn.Module instance"),
        (_FiveLogits, "(B, 10) logits")],
    "pool_token_logits": [
        (lambda z, m: z.mean(1), "padding tokens too"),
        (lambda z, m: (z * m[..., None]).sum(1), "the masked sum"),
        (lambda z, m: (z * m[..., None]).sum(1) / z.shape[1], "divided by L = 3"),
        (lambda z, m: z[:, 0], "first token only")],
    "gradient_bytes_per_step": [
        (lambda p, w: 4 * p, "the gradient's size, sent once"),
        (lambda p, w: 4 * p * (w - 1), "naive all-reduce"),
        (lambda p, w: 8 * p, "the limit for many ranks"),
        (lambda p, w: (w - 1) * 4 * p / w, "one phase only"),
        (lambda p, w: 64 * p * (w - 1) / w, "that is bits")],
    "rank_shard": [
        (lambda b, r, w: b[r * (len(b) // w):(r + 1) * (len(b) // w)], "contiguous block"),
        (lambda b, r, w: torch.arange(len(b))[r::w], "positions in the batch"),
        (lambda b, r, w: b, "the whole batch"),
        (lambda b, r, w: b[r::w], "different numbers of rows"),
        (lambda b, r, w: b[:len(b) // w * w][r::w], "drop_last=True")],
}


def test_every_exercise_has_typical_mistakes():
    assert sorted(MISTAKES) == sorted(check.EXERCISES)


@pytest.mark.parametrize("name,i", [(n, i) for n in MISTAKES for i in range(len(MISTAKES[n]))])
def test_typical_mistake_gets_its_message(name, i, capsys):
    wrong, message = MISTAKES[name][i]
    checker = getattr(check, name)
    assert checker(wrong) is None
    out = capsys.readouterr().out
    assert checker.last is False, out
    assert out.startswith(f"[x] {name}: ") and message in out, out
    assert "Hint 1 of" in out


def test_the_library_versions_pass_their_checkers():
    """The course's own implementations agree with the checkers (and so with the notebooks)."""
    from mmcourse.align import clip_loss, recall_at_k
    from mmcourse.calibration import expected_calibration_error, gradient_x_input
    for name, fn in (("symmetric_info_nce", clip_loss), ("recall_at_k", recall_at_k),
                     ("ece", expected_calibration_error), ("grad_times_input", gradient_x_input)):
        getattr(check, name)(fn)
        assert getattr(check, name).last is True, name
