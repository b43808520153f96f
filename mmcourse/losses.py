"""Losses written as their formulas, with the gradients derived by hand.

Binary cross-entropy for a probability p = σ(z) and a label y in {0, 1}, mean-reduced over the
N elements of the batch:

    L = -(1/N) Σᵢ [ yᵢ log pᵢ + (1 - yᵢ) log(1 - pᵢ) ]

Softmax cross-entropy for logits z of shape (B, C) and integer labels y in 0..C-1:

    L = -(1/B) Σᵢ log softmax(zᵢ)[yᵢ],   softmax(z)_c = exp(z_c) / Σ_k exp(z_k)

Each gradient function returns dL/d(input) of the *mean* loss, so it equals what autograd puts
in ``.grad``. Taught in ``notebooks/01_base_model.ipynb`` (the base model) and
``notebooks/02_cross_entropy.ipynb`` (the derivations, numerics and gradchecks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


# ---------------------------------------------------------------------------------- validation
def _float(x, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap it with torch.tensor(...)")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}; use {name}.float()")


def _binary_labels(y, like: Tensor) -> Tensor:
    """Labels as ``like``'s float dtype (0/1 ints and bools are fine), checked."""
    if not isinstance(y, Tensor):
        raise TypeError(f"labels y must be a torch.Tensor, got {type(y).__name__}")
    y = y.to(like.dtype)
    _check_binary_labels(y)
    return y


def _same_shape(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
            "reshape the labels to match the predictions, e.g. y.view_as(p)"
        )


def _nonempty(x: Tensor, what: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"{what} is empty: a mean over no examples is undefined; pass at least one example")


def _check_binary_labels(y: Tensor) -> None:
    _nonempty(y, "the batch")
    if torch.isnan(y).any():
        raise ValueError("binary labels contain NaN; drop or fill the unlabelled examples first")
    if y.numel() and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"binary labels must lie in [0, 1], got values in [{y.min().item()}, {y.max().item()}]; "
            "for C classes use softmax_ce with integer labels instead"
        )


def _check_probabilities(p: Tensor) -> None:
    if p.numel() and (torch.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError(
            f"probabilities must lie in [0, 1], got values in [{p.min().item()}, {p.max().item()}]; "
            "if these are logits, use bce_with_logits / bce_grad_logit (or apply sigmoid first)"
        )


def _check_class_labels(z: Tensor, y: Tensor) -> None:
    _float(z, "logits z")
    if not isinstance(y, Tensor):
        raise TypeError(f"labels y must be a torch.Tensor of class indices, got {type(y).__name__}")
    if z.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(z.shape)}; add a batch dim with z[None]")
    if y.shape != (z.shape[0],):
        raise ValueError(
            f"labels must be (B,) = ({z.shape[0]},) to match logits {tuple(z.shape)}, got {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}; use y.long()")
    _nonempty(z, "the batch of logits")
    if y.numel() and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(
            f"labels must lie in 0..{z.shape[1] - 1} for C={z.shape[1]} classes, "
            f"got values in [{y.min().item()}, {y.max().item()}]"
        )


# ---------------------------------------------------------------------------------- binary
def sigmoid(z: Tensor) -> Tensor:
    """σ(z) = 1 / (1 + e^(-z)), computed without overflow.

    For z < 0, e^(-z) overflows, so we use the equal form e^z / (1 + e^z) there. Its derivative
    is σ'(z) = σ(z)(1 - σ(z)), the identity that turns the probability-space BCE gradient into
    the logit-space one.

    Args:
        z: logits, any shape.
    Returns:
        probabilities, same shape as ``z``, in [0, 1].
    """
    e = torch.exp(-z.abs())  # in (0, 1]: never overflows
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def bce(p: Tensor, y: Tensor) -> Tensor:
    """Naive binary cross-entropy on probabilities, L = -mean[y log p + (1-y) log(1-p)].

    Naive on purpose: when p rounds to exactly 0 or 1 (|z| ≳ 17 in float32), log gives -inf and
    the loss is inf. ``bce_with_logits`` is the stable form.

    Args:
        p: predicted probabilities in [0, 1], any shape.
        y: labels in [0, 1], same shape as ``p``.
    Returns:
        scalar tensor, the mean over all elements.
    """
    _float(p, "p")
    _same_shape(p, y, "p and y")
    _check_probabilities(p)
    y = _binary_labels(y, p)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def bce_with_logits(z: Tensor, y: Tensor) -> Tensor:
    """Stable binary cross-entropy on logits: L = mean[max(z, 0) - z y + log(1 + e^(-|z|))].

    Derivation: log σ(z) = -log(1 + e^(-z)) and log(1 - σ(z)) = -z - log(1 + e^(-z)), so
    ℓ = -y log σ(z) - (1-y) log(1-σ(z)) = (1-y) z + log(1 + e^(-z)). Writing
    log(1 + e^(-z)) = max(-z, 0) + log(1 + e^(-|z|)) keeps every exponent ≤ 0, and
    (1-y) z + max(-z, 0) = max(z, 0) - z y. Finite for any finite z.

    max(z, 0) is computed as (z + |z|) / 2 (the same number in floating point): autograd takes
    d|z|/dz = 0 at z = 0, so this form's derivative there is the true σ(0) - y = 1/2 - y, while
    ``z.clamp(min=0)`` would give a one-sided 0 or 1 (a zero logit is common: zero-initialised heads).

    Args:
        z: logits, any shape.
        y: labels in [0, 1], same shape as ``z``.
    Returns:
        scalar tensor, the mean over all elements.
    """
    _float(z, "z")
    _same_shape(z, y, "z and y")
    y = _binary_labels(y, z)
    a = z.abs()
    return ((z + a) / 2 - z * y + torch.log1p(torch.exp(-a))).mean()  # (z + |z|)/2 = max(z, 0)


def bce_grad_prob(p: Tensor, y: Tensor) -> Tensor:
    """dL/dp of the mean BCE, in probability space: -(1/N) (y/p - (1-y)/(1-p)).

    This is the probability-space form (differentiate through p first); chained with dp/dθ it gives
    dL/dθ = -(1/N) Σ (yᵢ/pᵢ - (1-yᵢ)/(1-pᵢ)) dpᵢ/dθ. It is inf/nan when p hits 0 or 1.

    Args:
        p: predicted probabilities in [0, 1], any shape.
        y: labels in [0, 1], same shape as ``p``.
    Returns:
        same shape as ``p``.
    """
    _float(p, "p")
    _same_shape(p, y, "p and y")
    _check_probabilities(p)
    y = _binary_labels(y, p)
    return -(y / p - (1 - y) / (1 - p)) / p.numel()


def bce_grad_logit(z: Tensor, y: Tensor) -> Tensor:
    """dL/dz of the mean BCE on logits: (σ(z) - y) / N.

    Chain rule through p = σ(z): dL/dz = dL/dp · σ'(z) with σ'(z) = p(1 - p), and
    -(y/p - (1-y)/(1-p)) · p(1-p) = -(y(1-p) - (1-y)p) = p - y. The divisions cancel, so this
    form is finite everywhere and bounded by 1/N.

    Args:
        z: logits, any shape.
        y: labels in [0, 1], same shape as ``z``.
    Returns:
        same shape as ``z``.
    """
    _float(z, "z")
    _same_shape(z, y, "z and y")
    y = _binary_labels(y, z)
    return (sigmoid(z) - y) / z.numel()


# ---------------------------------------------------------------------------------- multi-class
def log_softmax(z: Tensor) -> Tensor:
    """log softmax(z) over the last dimension, via the log-sum-exp trick.

    log softmax(z)_c = z_c - log Σ_k e^(z_k) = (z_c - m) - log Σ_k e^(z_k - m) for m = max_k z_k:
    subtracting the maximum keeps every exponent ≤ 0 (no overflow) and at least one term equal
    to 1 (no log 0).

    Args:
        z: logits, (..., C).
    Returns:
        log-probabilities, same shape as ``z``.
    """
    _float(z, "logits z")
    if z.ndim == 0:
        raise ValueError("log_softmax needs at least one dimension of classes; got a scalar")
    if z.shape[-1] == 0:
        raise ValueError(f"log_softmax needs at least one class in the last dimension, got shape {tuple(z.shape)}")
    m = z.max(dim=-1, keepdim=True).values.detach()  # (..., 1); a constant shift, no gradient needed
    shifted = z - m  # (..., C), every entry ≤ 0
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


def softmax_ce(z: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy, L = -(1/B) Σᵢ log softmax(zᵢ)[yᵢ], stable through ``log_softmax``.

    Args:
        z: logits, (B, C).
        y: integer class labels, (B,), in 0..C-1.
    Returns:
        scalar tensor, the mean over the batch.
    """
    _check_class_labels(z, y)
    return -log_softmax(z).gather(1, y[:, None]).mean()  # gather: (B, 1)


def softmax_ce_grad(z: Tensor, y: Tensor) -> Tensor:
    """dL/dz of the mean softmax cross-entropy: (softmax(z) - onehot(y)) / B.

    With ℓ = -z_y + log Σ_k e^(z_k): dℓ/dz_c = -[c = y] + e^(z_c) / Σ_k e^(z_k) = p_c - [c = y].
    Every row sums to zero: raising one logit lowers the others' probabilities.

    Args:
        z: logits, (B, C).
        y: integer class labels, (B,), in 0..C-1.
    Returns:
        (B, C).
    """
    _check_class_labels(z, y)
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).to(z.dtype)  # (B, C)
    return (log_softmax(z).exp() - onehot) / z.shape[0]


# ---------------------------------------------------------------------------------- training
def weighted_loss(losses: Mapping[str, Tensor] | Sequence[Tensor],
                  lambdas: Mapping[str, float] | Sequence[float]) -> Tensor:
    """L = Σₘ λₘ Lₘ: one scalar from several losses, e.g. one per modality.

    Args:
        losses: M scalar losses, as a dict keyed by name (iterated in sorted order) or a list.
        lambdas: the M weights, the same keys (or the same length) as ``losses``.
    Returns:
        scalar tensor.
    """
    if isinstance(losses, Mapping) != isinstance(lambdas, Mapping):
        raise ValueError("pass losses and lambdas both as dicts with the same keys, or both as lists")
    if isinstance(losses, Mapping):
        if set(losses) != set(lambdas):
            raise ValueError(
                f"losses and lambdas must have the same keys, got {sorted(losses)} and {sorted(lambdas)}"
            )
        keys = sorted(losses)
        losses, lambdas = [losses[k] for k in keys], [lambdas[k] for k in keys]
    if len(losses) != len(lambdas) or len(losses) == 0:
        raise ValueError(
            f"need one lambda per loss and at least one loss, got {len(losses)} losses and "
            f"{len(lambdas)} lambdas"
        )
    for i, lam in enumerate(lambdas):
        lam_f = float(torch.as_tensor(lam).detach())
        if not math.isfinite(lam_f) or lam_f < 0:
            raise ValueError(f"lambda {i} is {lam!r}: every weight λ must be a finite number >= 0 "
                             "(0 switches a loss off)")
    for i, loss in enumerate(losses):
        if torch.as_tensor(loss).ndim != 0:
            raise ValueError(
                f"loss {i} must be a scalar, got shape {tuple(loss.shape)}; reduce it with .mean()"
            )
    return sum(lam * loss for lam, loss in zip(lambdas, losses))


@torch.no_grad()
def sgd_step(params: Sequence[Tensor], grads: Sequence[Tensor], lr: float) -> None:
    """One step of gradient descent in place: θ ← θ - η ∇L (what ``torch.optim.SGD`` does).

    Uses ``θ.add_(g, alpha=-η)``, the same operation as PyTorch's SGD without momentum.

    Args:
        params: tensors to update in place.
        grads: one gradient per parameter, each the same shape as its parameter.
        lr: the learning rate η > 0.
    """
    params, grads = list(params), list(grads)
    if len(params) != len(grads):
        raise ValueError(f"need one gradient per parameter, got {len(params)} params and {len(grads)} grads")
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if g is None:
            raise ValueError(f"gradient {i} is None; call loss.backward() first or pass hand gradients")
        _same_shape(p, g, f"param {i} and its gradient")
        p.add_(g, alpha=-lr)
