"""Judging a trained model beyond accuracy: calibration and per-modality attribution.

**Calibration.** A classifier is calibrated when, among the examples it predicts with
confidence ≈ c, a fraction ≈ c is right. Split the confidences conf_i = max_c softmax(z_i)_c into
K equal-width bins B_1..B_K over [0, 1]; the expected calibration error (Naeini et al. 2015,
Guo et al. 2017 "On Calibration of Modern Neural Networks") is

    ECE = Σ_k (|B_k| / N) · | acc(B_k) − conf(B_k) |,

with acc and conf the mean correctness and mean confidence inside bin k (empty bins add 0).
A bin holds the confidences in (lo, hi]; the first bin also takes exactly 0. The reliability
diagram plots acc(B_k) against conf(B_k). ``fit_temperature`` is Guo et al.'s fix: one scalar T
fitted on validation logits, softmax(z / T).

**Attribution per modality.** Two simple questions:

- *ablation*: how much does accuracy drop when modality m is taken away (left out of the input
  dict, for a fusion that masks, or replaced by zeros)?
- *gradient × input* (Shrikumar et al. 2016): a_m = Σ_elements x_m ⊙ ∂z_y/∂x_m. It is *not* a
  Taylor expansion around 0 (that would use the gradient at 0, ∇z(0)); it uses the gradient at x.
  For a bias-free piecewise-linear network (ReLU, no biases, no batch-norm shift) z is positively
  homogeneous, z(cx) = c·z(x) for c > 0, and Euler's theorem gives z(x) = Σ x ⊙ ∇z(x) exactly:
  the attributions then add up to z(x) − z(0), with 0 as the implicit baseline. With biases they do
  not add up to anything in particular. Re-expressing a modality in other units (x → c·x with
  the first layer's weights divided by c, the same function) leaves a_m unchanged.
- *integrated gradients* (Sundararajan, Taly & Yan 2017, eq. 1): with an explicit baseline b,
  IG_m = Σ_elements (x_m − b_m) ⊙ ∫₀¹ ∂z_y/∂x_m(b + α(x − b)) dα, computed with the midpoint rule.
  *Completeness*: Σ_m IG_m = z_y(x) − z_y(b) for any network (up to the quadrature error), so the
  attributions share out a stated difference.

Taught in ``notebooks/10_evaluation.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.train import Inputs, _is_test_labels, logits_of, predict


# ---------------------------------------------------------------------------------- calibration
def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 10) -> dict[str, Tensor]:
    """Per-bin counts, mean confidence and accuracy of the top-class prediction.

    Args:
        probs: (N, C) class probabilities (rows sum to 1).
        labels: (N,) int64 true classes.
        n_bins: K equal-width bins over [0, 1].

    Returns:
        ``{"edges": (K + 1,), "count": (K,), "conf": (K,), "acc": (K,)}``; conf and acc are NaN
        in empty bins.
    """
    probs, labels = torch.as_tensor(probs).double(), torch.as_tensor(labels).long()
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (N, C) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}")
    if len(labels) == 0:
        raise ValueError("probs and labels are empty: ECE needs at least one example")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    outside = labels[(labels < 0) | (labels >= probs.shape[1])]
    if len(outside):  # a label >= C would silently count as a wrong prediction
        raise ValueError(f"labels must be class ids in [0, {probs.shape[1]}) for {probs.shape[1]} classes, got "
                         f"{outside[0].item()}; pass the (N,) true classes matching the columns of probs")
    if (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones(len(probs), dtype=probs.dtype), atol=1e-4):
        raise ValueError("probs rows must be probabilities summing to 1; pass logits.softmax(-1), not logits")
    conf, pred = probs.max(1)  # (N,), (N,)
    correct = (pred == labels).double()  # (N,)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bin k holds (edges[k], edges[k+1]]; clamp puts conf == 0 into bin 0
    idx = (torch.searchsorted(edges, conf, right=False) - 1).clamp(0, n_bins - 1)  # (N,)
    count = torch.bincount(idx, minlength=n_bins).double()  # (K,)
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    nan = torch.full_like(count, float("nan"))
    return {"edges": edges, "count": count,
            "conf": torch.where(count > 0, conf_sum / count.clamp(min=1), nan),
            "acc": torch.where(count > 0, acc_sum / count.clamp(min=1), nan)}


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 10) -> float:
    """ECE = Σ_k (|B_k|/N) |acc(B_k) − conf(B_k)| over ``n_bins`` equal-width confidence bins."""
    b = reliability_bins(probs, labels, n_bins)
    gap = (b["acc"] - b["conf"]).abs().nan_to_num(0.0)  # empty bins contribute nothing
    return float((b["count"] / b["count"].sum() * gap).sum())


def fit_temperature(logits: Tensor, labels: Tensor, steps: int = 200) -> float:
    """The T > 0 minimising the cross-entropy of softmax(logits / T) (fit on validation data).

    Optimises log T with LBFGS, so T stays positive; the argmax (accuracy) never changes.
    T > 1 means the raw model was overconfident on these data, T < 1 underconfident. T is a
    choice made from labels, so it is fitted on validation data: a test split handed out by
    ``load_av_digits`` raises ``ValueError`` (its ECE would then be measured on the data T was fitted to).
    """
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.ndim != 2 or logits.shape[1] < 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, C) with C >= 2 and labels (N,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(labels) < 2:
        raise ValueError(f"fit_temperature needs at least 2 examples (a validation split), got {len(labels)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if not bool(torch.isfinite(logits.double()).all()):
        raise ValueError("logits contain NaN or inf: temperature scaling needs finite logits")
    if (labels < 0).any() or (labels >= logits.shape[1]).any():
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}) for {logits.shape[1]} logits per example")
    if _is_test_labels(labels):
        raise ValueError("fit_temperature got a test split's labels (load_av_digits('test')): the temperature is "
                         "a choice made from labels, so fit it on the 'val' split and report ECE on test")
    logits, labels = logits.double().detach(), labels.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


# ---------------------------------------------------------------------------------- attribution
def modality_ablation(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor,
                      how: str = "drop") -> dict[str, float]:
    """Test accuracy with everything, and with each modality taken away.

    Args:
        how: ``"drop"`` leaves the modality out of the input dict (the fusion must mask it; a
            fusion that cannot raises its ``KeyError``); ``"zero"`` feeds zeros instead (any
            fusion runs, but zeros are an input the model never saw in training).

    Returns:
        ``{"all": acc, "without audio": acc, "without image": acc, ...}`` (sorted keys).
    """
    if how not in ("drop", "zero"):
        raise ValueError(f"how must be 'drop' or 'zero', got {how!r}")
    labels = torch.as_tensor(labels).cpu()

    def acc(x):
        return (predict(model, x).argmax(-1) == labels).float().mean().item()

    out = {"all": acc(inputs)}
    for k in sorted(inputs):
        if how == "drop":
            x = {m: v for m, v in inputs.items() if m != k}
        else:
            x = {**inputs, k: torch.zeros_like(inputs[k])}
        out[f"without {k}"] = acc(x)
    return out


def gradient_x_input(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor | None = None,
                     batch_size: int = 256) -> dict[str, Tensor]:
    """Per-example, per-modality gradient × input of the target logit.

    Args:
        inputs: {modality: (N, ...)} raw inputs.
        labels: (N,) the class whose logit is explained; default the predicted class.

    Returns:
        {modality: (N,)} with a_m[i] = Σ over modality m's elements of x ⊙ ∂z_target/∂x.
    """
    model.eval()
    device = next(model.parameters()).device
    keys = sorted(inputs)
    n = len(inputs[keys[0]])
    out = {k: [] for k in keys}
    for lo in range(0, n, batch_size):
        x = {k: inputs[k][lo:lo + batch_size].to(device).clone().requires_grad_(True) for k in keys}
        z = logits_of(model(x)).float()  # (B, C)
        target = z.argmax(-1) if labels is None else torch.as_tensor(labels)[lo:lo + batch_size].to(device)
        chosen = z.gather(1, target[:, None]).sum()  # Σ_i z_i[target_i]: rows do not interact in eval mode
        grads = torch.autograd.grad(chosen, [x[k] for k in keys])
        for k, g in zip(keys, grads):
            out[k].append((g * x[k]).detach().flatten(1).sum(1).cpu())  # (B,)
    return {k: torch.cat(v) for k, v in out.items()}


def integrated_gradients(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor | None = None,
                         baseline: dict[str, Tensor] | None = None, steps: int = 32,
                         batch_size: int = 256) -> dict[str, Tensor]:
    """Integrated gradients per example and modality (Sundararajan et al. 2017), midpoint rule.

    Args:
        inputs: {modality: (N, ...)}.
        labels: (N,) the class whose logit is explained; default the predicted class at ``inputs``.
        baseline: {modality: (N, ...) one baseline per row, or a tensor broadcastable to one row,
            e.g. (1, ...)}; default zeros for every modality.
        steps: points α_k = (k + ½)/steps on the straight path from the baseline to the input.

    Returns:
        {modality: (N,)} with IG_m[i] = Σ_elements (x − b) ⊙ mean_k ∂z/∂x(b + α_k (x − b)).
        Σ_m IG_m[i] ≈ z(x_i) − z(b) (completeness; ``target_logit`` gives both sides).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model.eval()
    device = next(model.parameters()).device
    keys = sorted(inputs)
    baseline = baseline or {k: torch.zeros((), dtype=inputs[k].dtype) for k in keys}
    missing = set(keys) - set(baseline)
    if missing:
        raise KeyError(f"baseline lacks {sorted(missing)}; give one tensor per modality of the inputs {keys}")
    n = len(inputs[keys[0]])
    if labels is None:
        labels = predict(model, inputs).argmax(-1)
    labels = torch.as_tensor(labels)
    out = {k: [] for k in keys}
    for lo in range(0, n, batch_size):
        x = {k: inputs[k][lo:lo + batch_size].to(device) for k in keys}
        b = {k: _rows(baseline[k], n, lo, batch_size).to(device=device, dtype=x[k].dtype).expand_as(x[k]) for k in keys}
        target = labels[lo:lo + batch_size].to(device)
        total = {k: torch.zeros_like(x[k]) for k in keys}
        for step in range(steps):
            alpha = (step + 0.5) / steps
            point = {k: (b[k] + alpha * (x[k] - b[k])).requires_grad_(True) for k in keys}
            z = logits_of(model(point))  # (B, C)
            grads = torch.autograd.grad(z.gather(1, target[:, None]).sum(), [point[k] for k in keys])
            for k, g in zip(keys, grads):
                total[k] += g.detach()
        for k in keys:
            out[k].append(((x[k] - b[k]) * total[k] / steps).flatten(1).sum(1).cpu())  # (B,)
    return {k: torch.cat(v) for k, v in out.items()}


def _rows(b: Tensor, n: int, lo: int, batch_size: int) -> Tensor:
    """The batch's rows of a per-row baseline (N, ...), or the shared baseline as it is."""
    return b[lo:lo + batch_size] if b.dim() > 0 and b.shape[0] == n and n > 1 else b


@torch.no_grad()
def target_logit(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor) -> Tensor:
    """(N,) the logit of class ``labels[i]`` for each row (a baseline of shape (1, ...) is broadcast)."""
    n = len(torch.as_tensor(labels))
    x = {k: v.expand(n, *v.shape[1:]) if v.shape[0] == 1 else v for k, v in inputs.items()}
    return predict(model, x).gather(1, torch.as_tensor(labels).long()[:, None]).squeeze(1)


def attribution_shares(attr: dict[str, Tensor]) -> dict[str, float]:
    """Each modality's share of the total mean |gradient × input| (shares sum to 1)."""
    mags = {k: float(v.abs().mean()) for k, v in sorted(attr.items())}
    total = sum(mags.values()) or 1.0
    return {k: m / total for k, m in mags.items()}


def predict_probs(model: nn.Module, inputs: Inputs) -> Tensor:
    """(N, C) softmax probabilities (eval mode, CPU float32)."""
    return predict(model, inputs).softmax(-1)
