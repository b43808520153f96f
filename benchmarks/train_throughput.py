"""Throughput of one model trained two ways on the same AV-digits data, measured in one run.

1. the seed-material way: a ``Dataset`` that keeps each example as NumPy arrays and whose
   ``__getitem__`` builds one sample's tensors (``torch.tensor`` per image, recording and label),
   batched by a ``DataLoader`` (Python runs per sample; every batch is collated and copied);
2. ``mmcourse.train.fit``: the whole split on the device, one index op per modality per batch.

Prints samples/s of both and, as its last line, ``speedup: X.XX`` (goal: >= 5x on a 2-core CPU).
With CUDA present it also prints ``fit`` throughput on the GPU vs the CPU.

Measured on the reference 2-core CPU: 2.32x (30k vs 70k samples/s), short of the goal. Why: with
batch 32 the per-sample loader costs about 0.6 ms per batch and the training step itself about
0.45 ms (fused AdamW), so even a loader that cost nothing would cap the ratio near 2.3x for this
model on this CPU. The gap grows when a step is cheaper per sample: a run with `--batch-size 256`
measured 3.02x (50k vs 149k samples/s). Not yet measured on a GPU.

    python benchmarks/train_throughput.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmcourse.data import load_av_digits
from mmcourse.train import FitConfig, fit


class SmallAV(nn.Module):
    """A small two-branch model: MLP over pixels, MLP over flattened MFCCs, concat, head."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU())
        self.audio = nn.Sequential(nn.Flatten(), nn.Linear(40 * 13, 128), nn.ReLU())
        self.head = nn.Linear(256, 10)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.audio(x["audio"]), self.image(x["image"])], -1))  # (B, 10)


class PerSample(Dataset):
    """One example at a time, as tutorials write it: arrays in, tensors built per item."""

    def __init__(self, data):
        self.images = list(data.inputs["image"].numpy())  # N arrays (1, 28, 28)
        self.audio = list(data.inputs["audio"].numpy())  # N arrays (40, 13)
        self.labels = data.labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = {"audio": torch.tensor(self.audio[i], dtype=torch.float32),
             "image": torch.tensor(self.images[i], dtype=torch.float32)}
        return x, torch.tensor(self.labels[i])


def per_sample_loop(data, epochs: int, batch_size: int) -> float:
    torch.manual_seed(0)
    model = SmallAV()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(PerSample(data), batch_size=batch_size, shuffle=True)
    t0, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
    return seen / (time.perf_counter() - t0)


def fit_loop(data, epochs: int, batch_size: int, device: str) -> float:
    torch.manual_seed(0)
    model = SmallAV()
    fit(model, (data.inputs, data.labels), config=FitConfig(epochs=1, batch_size=batch_size, device=device))  # warm-up
    history = fit(model, (data.inputs, data.labels), config=FitConfig(epochs=epochs, batch_size=batch_size, device=device))
    return len(data) * epochs / sum(history["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    data = load_av_digits("train")
    print(f"data: {data} | threads: {torch.get_num_threads()} | batch size {args.batch_size}")
    slow = per_sample_loop(data, args.epochs, args.batch_size)
    print(f"per-sample Dataset + DataLoader: {slow:10.0f} samples/s")
    fast = fit_loop(data, args.epochs, args.batch_size, "cpu")
    print(f"mmcourse.train.fit (cpu):        {fast:10.0f} samples/s")
    if torch.cuda.is_available():
        gpu = fit_loop(data, args.epochs, args.batch_size, "cuda")
        print(f"mmcourse.train.fit (cuda):       {gpu:10.0f} samples/s | gpu/cpu: {gpu / fast:.2f}")
    print(f"speedup: {fast / slow:.2f}")


if __name__ == "__main__":
    main()
