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
