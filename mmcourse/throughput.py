"""Where a training batch's time goes: the per-sample ``DataLoader`` way vs batching by index.

Most tutorials feed a model through a ``Dataset`` whose ``__getitem__`` builds one sample's
tensors, batched by a ``DataLoader`` that collates them: Python runs once per *sample*.
``mmcourse.train.fit`` keeps the split in tensors and takes a batch with one index op per
modality. ``breakdown`` times the three parts separately on the same data, so a lesson (and
``benchmarks/train_throughput.py``) can show how much of a batch each costs:

    one seed-style batch = loader + step      one ``fit`` batch ≈ index + step

Which is why the end-to-end gain depends on the step: a cheap step (small model, a GPU) leaves
the loader dominant; an expensive one (a CNN on a CPU) hides it.

Timings of a fraction of a millisecond are at the mercy of whatever else the machine does, so
``breakdown(..., rounds=R)`` repeats the three measurements R times, interleaved, and reports the
median with the range of every ratio over the rounds; ``verdict`` says "faster" or "slower" only
when every round agrees by a margin, and otherwise that the measurement cannot tell.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmcourse.train import logits_of, take


class LinearAV(nn.Module):
    """Softmax regression on both AV-digits modalities' raw features: the cheapest step there is.

    ``{"audio": (B, 40, 13), "image": (B, 1, 28, 28)}`` → flattened and concatenated (B, 520 + 784)
    → logits (B, 10).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.head = nn.Linear(40 * 13 + 28 * 28, num_classes)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.head(torch.cat([x["audio"].flatten(1), x["image"].flatten(1)], -1))


class PerSampleDataset(Dataset):
    """The tutorial way: one example per ``__getitem__``, its tensors built from NumPy arrays.

    Args:
        inputs: dict of (N, ...) tensors (modality → rows), as the course's splits hold them.
        labels: (N,) int64.

    Items are ``({modality: tensor (...)}, label ())``; a ``DataLoader`` collates them into the
    same ``({modality: (B, ...)}, (B,))`` batch that ``mmcourse.train.take`` returns.
    """

    def __init__(self, inputs: dict[str, Tensor], labels: Tensor):
        self.arrays = {k: list(inputs[k].cpu().numpy()) for k in sorted(inputs)}  # N arrays each
        self.labels = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return ({k: torch.tensor(a[i], dtype=torch.float32) for k, a in self.arrays.items()},
                torch.tensor(self.labels[i]))


def _per_batch(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def loader_ms(inputs: dict[str, Tensor], labels: Tensor, batch_size: int, max_batches: int | None = None) -> float:
    """Milliseconds per batch to draw shuffled batches through a per-sample ``DataLoader``."""
    loader = DataLoader(PerSampleDataset(inputs, labels), batch_size=batch_size, shuffle=True)
    next(iter(loader))  # warm-up, as for index_ms
    t0, count = time.perf_counter(), 0
    for _ in loader:
        count += 1
        if max_batches is not None and count >= max_batches:
            break
    return 1e3 * (time.perf_counter() - t0) / max(count, 1)


def index_ms(inputs: dict[str, Tensor], labels: Tensor, batch_size: int, max_batches: int | None = None) -> float:
    """Milliseconds per batch to draw shuffled batches by index, as ``fit`` does."""
    idx = torch.randperm(len(labels)).split(batch_size)[:max_batches]
    for i in idx[:2]:  # warm-up: the first gathers pay for page faults and cold caches
        take(inputs, i), labels[i]
    t0 = time.perf_counter()
    for i in idx:
        take(inputs, i), labels[i]
    return 1e3 * (time.perf_counter() - t0) / len(idx)


def step_ms(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, batch_size: int,
            fused: bool = True, repeats: int = 50, warmup: int = 10) -> float:
    """Milliseconds per training step (forward, cross-entropy, backward, AdamW) on one ready batch.

    Trains a copy's worth of steps on ``model`` itself: pass a throwaway model.
    """
    i = torch.arange(min(batch_size, len(labels)))
    x, y = take(inputs, i), labels[i]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    model.train()

    def step():
        loss = F.cross_entropy(logits_of(model(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    _per_batch(step, warmup)  # warm-up: first calls allocate
    return 1e3 * _per_batch(step, repeats)


def breakdown(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, batch_size: int = 32,
              max_batches: int | None = None, repeats: int = 50, rounds: int = 1) -> dict[str, float]:
    """Per-batch milliseconds of the loader, of index batching and of the step, and what follows.

    Args:
        rounds: measure all three parts this many times, interleaved (a burst of load then hits
            one round, not one part); the times are medians over the rounds.

    Returns:
        ``loader_ms``, ``index_ms``, ``step_ms`` (medians), ``gather_x`` = loader / index (how many
        times cheaper it is to get a batch by index) and ``speedup`` = (loader + step) /
        (index + step) (the end-to-end gain for this model, batch size and machine), each the
        median over rounds with its lowest and highest round as ``*_lo`` and ``*_hi``, and
        ``rounds``.
    """
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be a dict {modality: (N, ...) tensor}; wrap a tensor as {'x': X}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    parts: dict[str, list[float]] = {"loader_ms": [], "index_ms": [], "step_ms": [], "gather_x": [], "speedup": []}
    for r in range(rounds):
        loader, index = loader_ms(inputs, labels, batch_size, max_batches), index_ms(inputs, labels, batch_size, max_batches)
        step = step_ms(model, inputs, labels, batch_size, repeats=repeats, warmup=10 if r == 0 else 2)
        for key, value in (("loader_ms", loader), ("index_ms", index), ("step_ms", step),
                           ("gather_x", loader / index), ("speedup", (loader + step) / (index + step))):
            parts[key].append(value)
    out = {key: statistics.median(values) for key, values in parts.items()}
    for key in ("gather_x", "speedup"):
        out[f"{key}_lo"], out[f"{key}_hi"] = min(parts[key]), max(parts[key])
    out["rounds"] = rounds
    return out


def verdict(lo: float, hi: float, margin: float = 0.05) -> str | None:
    """What a ratio measured over rounds supports, from its lowest and highest round.

    Returns ``"faster"`` when every round exceeds 1 + margin, ``"slower"`` when every round is
    below 1 / (1 + margin), else ``None``: the rounds disagree, or sit too close to 1 to tell.
    """
    if lo > 1 + margin:
        return "faster"
    if hi < 1 / (1 + margin):
        return "slower"
    return None


def interleaved(timers: dict, rounds: int = 7) -> dict[str, list[float]]:
    """Time several things in interleaved rounds: each round runs every timer once, in turn.

    Args:
        timers: ``{name: fn}``; each ``fn()`` returns the time it measured (any unit).
        rounds: how many rounds; the order of the timers rotates each round so no one is always first.

    Returns:
        ``{name: [time per round]}``. Load from other programs hits every timer of a round alike,
        so compare them *within* rounds (``compare_rounds``), not by their overall means.
    """
    if rounds < 1 or not timers:
        raise ValueError(f"need at least one timer and one round, got {len(timers)} timers, rounds={rounds}")
    names = list(timers)
    out = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            out[n].append(float(timers[n]()))
    return out


def compare_rounds(a: list[float], b: list[float], margin: float = 0.05) -> dict:
    """Is ``a`` faster than ``b``? Decided round by round, so machine load cannot flip it.

    Args:
        a, b: times per round from ``interleaved`` (lower is faster), same rounds.
        margin: ratios within ``[1 / (1 + margin), 1 + margin]`` count as a tie in that round
            (``verdict``'s rule, so both say the same of the same rounds).

    Returns:
        ``{"ratio": median of b/a per round (> 1: a faster), "low", "high": its range over rounds,
        "verdict": "a faster" | "b faster" | "about the same" | "can't tell"}``: "a faster" only when
        ``a`` wins every round by more than the margin, "about the same" when every round is within
        it, and "can't tell" when the rounds disagree (a sign test: 7 of 7 rounds in one direction
        happens by chance with probability 2/128).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same rounds for both, got {len(a)} and {len(b)}")
    ratios = [tb / ta for ta, tb in zip(a, b)]
    low, high = min(ratios), max(ratios)
    said = {"faster": "a faster", "slower": "b faster"}.get(verdict(low, high, margin))
    if said is None:  # the same rule as ``verdict``: within 1 ± margin every round is a tie
        said = "about the same" if 1 / (1 + margin) <= low and high <= 1 + margin else "can't tell"
    return {"ratio": statistics.median(ratios), "low": low, "high": high, "verdict": said}
