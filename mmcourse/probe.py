"""Linear probes: is the information in frozen features, linearly readable? (lessons 03, 04, 06)

The linear evaluation protocol of self-supervised learning (Chen et al. 2020): freeze an encoder,
compute its features once, fit a multinomial logistic regression on them and report its test
accuracy. A better probe accuracy means the encoder's features hold more of the label's
information in a linear form. Shapes: N examples, D feature dimension, C classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def encode(encoder: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Frozen features (N, D) of one modality, in eval mode, on the CPU."""
    was, dev = encoder.training, next(encoder.parameters()).device
    encoder.eval()
    out = torch.cat([encoder(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    encoder.train(was)
    return out


class LinearProbe(nn.Module):
    """Standardise with training statistics, then one linear layer: (N, D) → (N, C) logits."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(len(mean), n_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear((torch.as_tensor(feats, dtype=torch.float32) - self.mean) / self.std)

    def score(self, feats, labels) -> float:
        """Accuracy on (N, D) features and (N,) labels."""
        with torch.no_grad():
            return (self(feats).argmax(1) == torch.as_tensor(labels)).float().mean().item()


def fit_linear_probe(feats, labels, n_classes: int | None = None, weight_decay: float = 1e-3,
                     max_iter: int = 200) -> LinearProbe:
    """Multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

    The standard way to ask "is the information there, linearly readable?" (Chen et al. 2020,
    linear evaluation protocol). L2 penalty ``weight_decay`` · ‖W‖² keeps few-shot fits finite.

    Args:
        feats: (N, D) features (NumPy or torch); labels: (N,) int.

    Returns:
        a ``LinearProbe``; ``probe.score(test_feats, test_labels)`` gives accuracy.
    """
    X = torch.as_tensor(feats, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"fit_linear_probe wants (N, D) features and (N,) labels, got "
                         f"{tuple(X.shape)} and {tuple(y.shape)}")
    n_classes = n_classes or int(y.max()) + 1
    std = X.std(0) if len(X) > 1 else torch.ones(X.shape[1])
    probe = LinearProbe(X.mean(0), std.clamp(min=1e-6), n_classes)
    nn.init.zeros_(probe.linear.weight)
    nn.init.zeros_(probe.linear.bias)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(X), y) + weight_decay * probe.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe.eval()


PIXEL_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)


def pixel_baseline(train, val, test, weight_decays=PIXEL_PENALTIES) -> dict:
    """Logistic regression on raw pixels: the bar any learned image model must clear.

    Each image is flattened to its pixels, standardised with the train split's per-pixel mean and
    std, and read by ``fit_linear_probe``; its L2 penalty is chosen on validation from
    ``weight_decays`` (the test split is scored once, for the chosen one). A baseline whose
    penalty was not tuned, or whose pixels were not standardised, is a weaker bar than a learned
    model deserves: on this course's hard images an untuned scikit-learn fit scored ~6 points lower.

    Args:
        train, val, test: ``(images, labels)`` pairs or splits with ``.inputs["image"]`` and
            ``.labels``; images (N, ...) of any shape (flattened to (N, P)), labels (N,) int.
        weight_decays: the penalties to try (validation picks one; ties go to the first).

    Returns:
        ``{"test_acc", "val_acc", "weight_decay", "val_by_penalty": {penalty: val accuracy}}``.
    """
    def pixels(split):
        images, labels = split if isinstance(split, (tuple, list)) else (split.inputs["image"], split.labels)
        images = torch.as_tensor(images)
        return images.reshape(len(images), -1).float(), torch.as_tensor(labels)

    if not weight_decays:
        raise ValueError("weight_decays is empty: give at least one penalty, e.g. (1e-3,)")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pixels(train), pixels(val), pixels(test)
    n_classes = int(max(y_tr.max(), y_va.max(), y_te.max())) + 1
    probes = {wd: fit_linear_probe(x_tr, y_tr, n_classes, weight_decay=wd) for wd in weight_decays}
    val_by = {wd: probe.score(x_va, y_va) for wd, probe in probes.items()}
    best = max(val_by, key=val_by.get)  # max keeps the first of equal values
    return {"test_acc": probes[best].score(x_te, y_te), "val_acc": val_by[best], "weight_decay": best,
            "val_by_penalty": val_by}
