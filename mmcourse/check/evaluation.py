"""Exercise checkers for notebooks 10 (evaluation) and 11 (errata). Solutions: ``solutions.py``."""

from __future__ import annotations

import torch
from torch import nn

from mmcourse.check.core import Wrong, attempt, exercise, expect_close, expect_shape, matches, scalar


def _bins(conf: torch.Tensor, correct: torch.Tensor, K: int, *, right_closed: bool = True,
          drop_one: bool = False) -> list[tuple[int, float]]:
    """(n_k, acc_k - conf_k) of each non-empty bin of K equal-width confidence bins.

    Args:
        conf, correct: (N,) confidences and 0/1 correctness.
        right_closed: bin k is (k/K, (k+1)/K] (the course's); else [k/K, (k+1)/K), where 1.0 falls
            past the last bin and is clamped into it, or left out (``drop_one``).
    """
    scaled = conf * K  # (N,); exact on the test's edges
    idx = (scaled.ceil() - 1 if right_closed else scaled.floor()).long()  # (N,)
    keep = idx < K if drop_one else torch.ones_like(idx, dtype=torch.bool)
    idx = idx.clamp(0, K - 1)
    return [(int(inb.sum()), (correct[inb].mean() - conf[inb].mean()).item())
            for inb in (keep & (idx == k) for k in range(K)) if inb.any()]


def _ece(bins: list[tuple[int, float]], N: int) -> float:
    return sum(n / N * abs(gap) for n, gap in bins)


# ---------------------------------------------------------------------------------- notebook 10
@exercise(task="(probs, labels, n_bins) -> float: the expected calibration error of (N, C) "
               "probabilities, with the bins of the exercise text",
          hints=("Per example you need two things: its confidence and whether it was right. "
                 "Which entry of a row of probs is the confidence?",
                 "Put every example in one of n_bins equal-width bins by its confidence. Mind the "
                 "edges: bins are (k/K, (k+1)/K], so a confidence exactly on an edge belongs to "
                 "the lower bin and 1.0 to the last one.",
                 "In each non-empty bin compare the accuracy with the mean confidence; weight "
                 "each bin's gap by the share of all examples that fall into it, and add up."),
          success="the expected calibration error.")
def ece(fn) -> None:
    """Check ``fn(probs, labels, n_bins) -> float`` (equal-width bins, weighted by bin size).

    K = 4 bins (edges 0.25, 0.5, 0.75, 1 are exact in binary), and three confidences lie exactly on
    an edge (0.5, 0.75, 1.0), so the bin convention changes the answer.
    """
    conf = torch.tensor([0.5, 0.75, 1.0, 0.4, 0.6, 0.9, 0.9, 0.35], dtype=torch.float64)
    correct = torch.tensor([1.0, 0, 1, 0, 1, 1, 0, 1], dtype=torch.float64)
    pred = torch.arange(8) % 3  # the predicted class varies from row to row
    probs = ((1 - conf) / 2)[:, None].repeat(1, 3)  # (8, 3): the rest shared by two classes
    probs[torch.arange(8), pred] = conf
    labels = torch.where(correct.bool(), pred, (pred + 1) % 3)
    got = scalar(attempt(fn, probs, labels, 4), "ECE").item()
    bins, N = _bins(conf, correct, 4), len(conf)
    half_open = (_bins(conf, correct, 4, right_closed=False),
                 _bins(conf, correct, 4, right_closed=False, drop_one=True))
    if any(abs(got - _ece(b, N)) < 1e-9 for b in half_open):
        raise Wrong("your bins are [k/K, (k+1)/K); the course's are (k/K, (k+1)/K]: a confidence "
                    "exactly on an edge (0.5, 0.75 here) belongs to the lower bin, 1.0 to the last.")
    gaps = [abs(gap) for _, gap in bins]
    mistakes = ((sum(gaps) / len(gaps), "weight each bin's gap by its share of the examples, n_k / N."),
                (sum(gaps) / 4, "weight each bin's gap by its share of the examples, n_k / N."),
                (_ece(_bins(conf, correct, 1), N),  # = |Σ_k (n_k/N)(acc_k - conf_k)|, signed gaps
                 "that is |accuracy − mean confidence| over the whole set: either one bin, or "
                 "the signed gaps acc − conf summed, so that gaps of opposite sign cancel. Bin by "
                 "confidence and take each bin's |acc − conf|."))
    for value, message in mistakes:
        if abs(got - value) < 1e-9:
            raise Wrong(message)
    want = _ece(bins, N)
    expect_close(got, want, "ECE")


class _TwoLinear(nn.Module):
    """z = [w0·sum(audio²)/2, w1·sum(image)]: gradient × input differs from the output itself."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -3.0], dtype=torch.float64))

    def forward(self, x):
        return torch.stack([self.w[0] * (x["audio"] ** 2).flatten(1).sum(1) / 2,
                            self.w[1] * x["image"].flatten(1).sum(1)], 1)


@exercise(task="(model, inputs, target) -> {modality: (N,)}: gradient × input of the target logit "
               "per modality, without calibration.gradient_x_input",
          hints=("You need the gradient of each example's target logit with respect to each "
                 "modality's input. What must be true of the inputs for autograd to give it?",
                 "Make a requires_grad copy of every input, run the model, and pick each row's "
                 "target logit (gather, or index with arange). torch.autograd.grad of their sum "
                 "gives every example's own gradient at once.",
                 "Multiply each gradient elementwise by its input, then reduce every example to "
                 "one number per modality."),
          success="gradient × input per modality.")
def grad_times_input(fn) -> None:
    """Check ``fn(model, inputs, target) -> {modality: (N,)}``."""
    x = {"audio": torch.full((3, 2), 1.5, dtype=torch.float64),
         "image": torch.full((3, 1, 2), 0.5, dtype=torch.float64)}
    target = torch.tensor([0, 1, 0])
    got = attempt(fn, _TwoLinear(), x, target)
    if not isinstance(got, dict) or sorted(got) != ["audio", "image"]:
        raise Wrong("return a dict {modality: (N,) tensor} with one entry per modality.")
    # audio: ∂z0/∂a = 2a, x·grad summed = 2·(1.5·1.5)·2 = 9; image: −3·0.5·2 = −3
    audio, image = got["audio"], got["image"]
    if tuple(torch.as_tensor(audio).shape) == (3, 2):
        raise Wrong("the audio attribution has shape (3, 2); sum each example's features to get (N,).")
    if matches(audio, [4.5, 0.0, 4.5]) and matches(image, [0.0, -1.5, 0.0]):
        raise Wrong("you averaged over each example's features; gradient × input sums them.")
    mistakes = (([4.5, 0.0, 4.5], [0.0, -3.0, 0.0], "that is the logit itself, not gradient × "
                                                    "input; multiply x by ∂z/∂x."),
                ([6.0, 0.0, 6.0], [0.0, -6.0, 0.0], "that is the gradient alone; multiply it by "
                                                    "the input elementwise first."),
                ([9.0, 9.0, 9.0], [-3.0, -3.0, -3.0], "you differentiated the sum of all logits; "
                                                      "each example's target logit only."))
    for want_a, want_i, message in mistakes:
        if matches(audio, want_a) and matches(image, want_i):
            raise Wrong(message)
    expect_close(audio, torch.tensor([9.0, 0.0, 9.0]), "audio attribution")
    expect_close(image, torch.tensor([0.0, -3.0, 0.0]), "image attribution")


class _Linear2(nn.Module):
    """Two classes, z0 = Σ A·audio, z1 = Σ B·image (float64): input gradients known in closed form."""

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64))
        self.B = nn.Parameter(torch.tensor([[[-1.0, 3.0]]], dtype=torch.float64))

    def forward(self, x):
        return torch.stack([(x["audio"] * self.A).flatten(1).sum(1), (x["image"] * self.B).flatten(1).sum(1)], 1)


@exercise(task="(model, inputs, labels, eps, modality) -> {modality: tensor}: the FGSM example "
               "x + eps·sign(∇ₓ cross-entropy) for one modality of a dict input (eps in the input's "
               "own units, no clipping), every other modality returned unchanged",
          hints=("FGSM needs the gradient of the loss of the true labels with respect to the "
                 "input, not the weights. What must be true of that input tensor for autograd?",
                 "Copy the attacked modality with requires_grad, run the model on the dict, take "
                 "the cross-entropy with the true labels and torch.autograd.grad of it wrt that copy.",
                 "Step *up* the loss by eps times the sign of the gradient (not the gradient "
                 "itself), detach, and put the result back into a copy of the dict."),
          success="the fast gradient sign method: one signed step of size ε up the loss.")
def fgsm_step(fn) -> None:
    """Check ``fn(model, inputs, labels, eps, modality) -> dict`` (FGSM on one modality)."""
    model = _Linear2()
    x = {"audio": torch.tensor([[[0.2, 0.1], [0.3, -0.4]], [[-0.5, 0.2], [0.1, 0.1]]], dtype=torch.float64),
         "image": torch.tensor([[[0.5, 0.25]], [[0.9, 0.0]]], dtype=torch.float64)}
    labels = torch.tensor([0, 0])  # row 0 is predicted 1, row 1 is predicted 0 (right)
    eps = 0.125
    got = attempt(fn, model, x, labels, eps, "audio")
    if not isinstance(got, dict) or sorted(got) != ["audio", "image"]:
        raise Wrong("return the whole input dict, {'audio': ..., 'image': ...}, with only the attacked modality changed.")
    for k in sorted(x):
        expect_shape(got[k], x[k].shape, f"the {k}")
    z = model(x).detach()
    p = z.softmax(1)
    dz0 = (p[:, 0] - (labels == 0).double())[:, None, None]  # ∂CE/∂z0, (2, 1, 1)
    grad = dz0 * model.A.detach()  # ∂CE/∂audio = ∂CE/∂z0 · A
    dz0_pred = (p[:, 0] - (z.argmax(1) == 0).double())[:, None, None]
    if not matches(got["image"], x["image"]):
        raise Wrong("the image changed: attack only the modality you were given and return the others as they were.")
    by_grad = "that steps by ε·∇ (the gradient itself); FGSM uses its sign, so every entry moves by exactly ε."
    mistakes = ((x["audio"] + eps * grad, by_grad), (x["audio"] + eps * grad / len(labels), by_grad),  # summed, mean loss
                (x["audio"] - eps * grad.sign(), "that steps *down* the loss (making the model more right); "
                                                 "an attack adds ε·sign(∇ₓL)."),
                (x["audio"] + eps * (dz0_pred * model.A.detach()).sign(),
                 "you used the model's predictions as labels; the attack raises the loss of the *true* labels."))
    for value, message in mistakes:
        if matches(got["audio"], value):
            raise Wrong(message)
    expect_close(got["audio"], x["audio"] + eps * grad.sign(), "adversarial audio")


# ---------------------------------------------------------------------------------- notebook 11
@exercise(takes="class",
          task=": an nn.Module class whose forward(image (B, 1, 28, 28), audio (B, 40, 13)) "
               "returns (B, 10) logits using both inputs",
          hints=("Each input needs its own small encoder that turns it into a (B, D) vector; what "
                 "does a Linear layer need the input to look like first?",
                 "Flatten (or pool) each input to (B, features), map each with its own Linear, "
                 "combine the two (B, D) vectors, and map the result to 10 logits.",
                 "Create the layers in __init__, as attributes, and use both in forward(self, "
                 "image, audio); concatenating along dim 1 is one way to combine."),
          success="a real two-input model: both inputs reach the logits.")
def two_input_model(factory) -> None:
    """Check ``factory() -> nn.Module`` with ``forward(image (B,1,28,28), audio (B,40,13)) -> (B,10)``."""
    torch.manual_seed(0)
    model = attempt(factory)
    if not isinstance(model, nn.Module):
        raise Wrong(f"return an nn.Module instance, got {type(model).__name__}.")
    model.eval()
    image, audio = torch.randn(2, 1, 28, 28), torch.randn(2, 40, 13)
    out = attempt(model, image, audio)  # forward gets copies too: a note if it changes them
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 10):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise Wrong(f"the output must be (B, 10) logits, here (2, 10); got {got}.")
    if not torch.isfinite(out).all():
        raise Wrong("the logits contain nan or inf.")
    for name, changed in (("image", attempt(model, image + 1.0, audio)),
                          ("audio", attempt(model, image, audio + 1.0))):
        if torch.allclose(torch.as_tensor(changed), out):
            raise Wrong(f"changing the {name} does not change the output: that input is ignored.")


@exercise(task="(token_logits, mask) -> (B, C): the mean of (B, L, C) token logits over the real "
               "tokens only (mask (B, L) is False on padding)",
          hints=("A plain mean over dim 1 counts the padding too. How can the mask switch tokens "
                 "off in a sum?",
                 "Turn the mask into 0/1 weights of the logits' dtype and give it a trailing dim so "
                 "it broadcasts over C; the masked sum over tokens is then one line.",
                 "Divide the masked sum by the number of real tokens of each row (a (B, 1) count), "
                 "not by L."),
          success="one (B, C) prediction per image from token logits.")
def pool_token_logits(fn) -> None:
    """Check ``fn(token_logits (B, L, C), mask (B, L) bool) -> (B, C)`` masked mean."""
    z = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = attempt(fn, z, mask)
    masked_sum = (z * mask[..., None]).sum(1)  # (2, 2)
    mistakes = ((z.mean(1), "you averaged the padding tokens too; use the mask."),
                (masked_sum, "that is the masked sum; divide by the number of real tokens."),
                (masked_sum / 3, "you divided by L = 3; divide by each row's number of real tokens."),
                (z[:, 0], "that is the first token only; average all real tokens."))
    for value, message in mistakes:
        if matches(got, value):
            raise Wrong(message)
    expect_close(got, torch.tensor([[1.0, 2.0], [6.0, 7.0]]), "pooled logits")
