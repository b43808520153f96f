"""Exercise checkers for notebooks 09 (compression), 10 (evaluation) and 11 (errata)."""

from __future__ import annotations

import torch
from torch import nn

from mmcourse.check.core import Wrong, attempt, exercise, expect_close


def _logits(seed: int, shape=(4, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(*shape, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------- notebook 09
@exercise(hint="p = softmax(t / T), log q = log_softmax(s / T); sum p (log p − log q) over classes, "
               "mean over the batch, times T**2.",
          success="T² · KL(p_teacher ‖ q_student), the distillation term.")
def kd_loss(fn) -> None:
    """Check ``fn(student_logits, teacher_logits, T) -> scalar``."""
    s, t, T = _logits(0), _logits(1), 3.0
    got = torch.as_tensor(attempt(fn, s, t, T), dtype=torch.float64)
    p, log_q = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    if got.numel() == 1 and torch.isclose(got, kl):
        raise Wrong("you forgot the T² factor that keeps the gradient's size independent of T.")
    if got.numel() == 1 and torch.isclose(got, kl * s.shape[0] * T**2):
        raise Wrong("you summed over the batch; take the mean over examples.")
    expect_close(torch.as_tensor(got).reshape(()), T**2 * kl, "the loss")


@exercise(hint="k = round(amount * w.numel()); the k smallest |w| go: "
               "threshold = w.abs().flatten().kthvalue(k).values, mask = w.abs() > threshold.",
          success="a magnitude-pruning mask.")
def prune_mask(fn) -> None:
    """Check ``fn(w, amount) -> bool mask``, False for the ``round(amount·numel)`` smallest |w|."""
    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    got = torch.as_tensor(attempt(fn, w, 0.5))
    want = torch.tensor([[False, True, False], [True, False, True]])  # keep -3, 2, 1
    if got.shape != want.shape:
        raise Wrong(f"the mask has shape {tuple(got.shape)}; it needs the weight's shape {tuple(w.shape)}.")
    if torch.equal(got.bool(), w > 0.3):  # the three largest *signed* values: 0.5, 2.0, 1.0
        raise Wrong("rank by magnitude |w|, not by signed value: -3.0 is the largest weight here.")
    if not torch.equal(got.bool(), want):
        raise Wrong(f"expected {want.tolist()} for amount 0.5, got {got.bool().tolist()}.")
    if int(torch.as_tensor(attempt(fn, w, 0.0)).bool().sum()) != 6:
        raise Wrong("amount 0 must keep every weight.")


# ---------------------------------------------------------------------------------- notebook 10
@exercise(hint="conf, pred = probs.max(1); bin k holds conf in (k/K, (k+1)/K]; "
               "ECE = Σ_k (n_k / N) · |acc_k − conf_k| over non-empty bins.",
          success="the expected calibration error.")
def ece(fn) -> None:
    """Check ``fn(probs, labels, n_bins) -> float`` (equal-width bins, weighted by bin size)."""
    conf = torch.tensor([0.55, 0.58, 0.52, 0.7, 0.95], dtype=torch.float64)  # off the bin edges
    probs = torch.stack([1 - conf, conf], 1)  # the predicted class is 1 everywhere
    labels = torch.tensor([1, 1, 0, 0, 1])
    got = float(attempt(fn, probs, labels, 5))
    # bins of width 0.2: (0.4, 0.6] holds .55 .58 .52 (2 of 3 right), (0.6, 0.8] .7 (wrong), (0.8, 1] .95 (right)
    gaps, counts = [abs(2 / 3 - 0.55), 0.7, 0.05], [3, 1, 1]
    want = sum(n / 5 * g for n, g in zip(counts, gaps))
    if abs(got - sum(gaps) / 3) < 1e-9 or abs(got - sum(gaps) / 5) < 1e-9:
        raise Wrong("weight each bin's gap by its share of the examples, n_k / N.")
    expect_close(got, want, "ECE")


class _TwoLinear(nn.Module):
    """z = [w0·sum(audio²)/2, w1·sum(image)]: gradient × input differs from the output itself."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, -3.0], dtype=torch.float64))

    def forward(self, x):
        return torch.stack([self.w[0] * (x["audio"] ** 2).flatten(1).sum(1) / 2,
                            self.w[1] * x["image"].flatten(1).sum(1)], 1)


@exercise(hint="make each input a leaf with requires_grad, z = model(x), pick z[i, target_i], "
               "torch.autograd.grad its sum wrt every modality, then (grad * x).flatten(1).sum(1).",
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
    logit_only = torch.tensor([4.5, 0.0, 4.5], dtype=torch.float64)
    if torch.allclose(torch.as_tensor(got["audio"], dtype=torch.float64), logit_only):
        raise Wrong("that is the logit itself, not gradient × input; multiply x by ∂z/∂x.")
    expect_close(got["audio"], torch.tensor([9.0, 0.0, 9.0]), "audio attribution")
    expect_close(got["image"], torch.tensor([0.0, -3.0, 0.0]), "image attribution")


# ---------------------------------------------------------------------------------- notebook 11
@exercise(hint="subclass nn.Module; forward(self, image, audio) encodes each (e.g. flatten + "
               "Linear), concatenates along dim 1 and maps to 10 logits.",
          success="a real two-input model: both inputs reach the logits.")
def two_input_model(factory) -> None:
    """Check ``factory() -> nn.Module`` with ``forward(image (B,1,28,28), audio (B,40,13)) -> (B,10)``."""
    torch.manual_seed(0)
    model = attempt(factory)
    if not isinstance(model, nn.Module):
        raise Wrong(f"return an nn.Module instance, got {type(model).__name__}.")
    model.eval()
    image, audio = torch.randn(2, 1, 28, 28), torch.randn(2, 40, 13)
    out = model(image, audio)
    if tuple(out.shape) != (2, 10):
        raise Wrong(f"the output must be (B, 10) logits, got {tuple(out.shape)}.")
    for name, changed in (("image", model(image + 1.0, audio)), ("audio", model(image, audio + 1.0))):
        if torch.allclose(changed, out):
            raise Wrong(f"changing the {name} does not change the output: that input is ignored.")


@exercise(hint="weights = mask.float(); (token_logits * weights[..., None]).sum(1) / "
               "weights.sum(1, keepdim=True): the mean over real tokens only.",
          success="one (B, C) prediction per image from token logits.")
def pool_token_logits(fn) -> None:
    """Check ``fn(token_logits (B, L, C), mask (B, L) bool) -> (B, C)`` masked mean."""
    z = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = attempt(fn, z, mask)
    if torch.as_tensor(got).shape == (2, 2) and torch.allclose(torch.as_tensor(got, dtype=torch.float64), z.mean(1)):
        raise Wrong("you averaged the padding tokens too; use the mask.")
    expect_close(got, torch.tensor([[1.0, 2.0], [6.0, 7.0]]), "pooled logits")
