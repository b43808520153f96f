"""Exercise checkers for notebook 12 (scaling out). Reference solutions: ``solutions.py``.

Both ask for something the lesson does not show: the traffic of a *ring* all-reduce (the lesson
shows only the gradient's size), and how ``DistributedSampler`` deals a batch that does not split
evenly (the lesson drops incomplete batches). The second is checked against torch's own
``DistributedSampler``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from mmcourse.check.core import Wrong, attempt, exercise, expect_shape, matches, scalar


def ring_bytes(num_params: int, world: int) -> float:
    """Bytes each rank sends per ring all-reduce of ``num_params`` float32 numbers over ``world`` ranks."""
    return 2 * (world - 1) * 4 * num_params / world


@exercise(task="(num_params, world) -> bytes: how many bytes each rank SENDS per step when DDP "
               "all-reduces the float32 gradient of num_params parameters with a ring all-reduce "
               "(reduce-scatter, then all-gather) over `world` ranks",
          hints=("Cut the gradient into `world` equal chunks. In the reduce-scatter, each of world − 1 "
                 "steps, every rank sends one chunk to its neighbour (and adds the one it receives). "
                 "The all-gather then passes the finished chunks around the ring the same way.",
                 "One chunk is 4 · num_params / world bytes; each phase sends world − 1 of them: "
                 "2 · (world − 1) · 4 · num_params / world in all (nearly 2 × the gradient for many "
                 "ranks, 0 for one rank)."),
          success="2 (N − 1)/N × the gradient's bytes: almost independent of N, which is why a ring scales.")
def gradient_bytes_per_step(fn) -> None:
    """Check ``fn(num_params, world)`` = 2 (world − 1) · 4 · num_params / world."""
    for p, world in ((22_713_216, 8), (16_044, 4), (1_000, 2), (37_772, 1)):
        value = scalar(attempt(fn, p, world), kind="a number of bytes").item()
        want = ring_bytes(p, world)
        mistakes = ((4 * p, "that is the gradient's size, sent once; the ring sends chunks of it in two "
                            "phases (a reduce-scatter and an all-gather)."),
                    (4 * p * (world - 1), "that is a naive all-reduce, every rank sending its whole gradient "
                                          "to every other rank; the ring sends chunks of 1/world of it."),
                    (8 * p, "2 × the gradient is the limit for many ranks; with `world` ranks each phase "
                            "sends world − 1 chunks of 1/world of the gradient."),
                    ((world - 1) * 4 * p / world, "that is one phase only; the all-reduce is a "
                                                  "reduce-scatter AND an all-gather."),
                    (8 * 4 * p * 2 * (world - 1) / world, "that is bits (32 per float32); return bytes."))
        if abs(value - want) <= 1e-6 * max(want, 1):
            continue
        for wrong, message in mistakes:
            if abs(value - wrong) <= 1e-6 * max(abs(wrong), 1):
                raise Wrong(message)
        raise Wrong(f"for {p:,} parameters over {world} ranks you returned {value:,.0f} bytes.")


def sampler_shard(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """``batch`` indexed as torch's ``DistributedSampler(shuffle=False)`` (drop_last=False) deals it."""
    order = list(DistributedSampler(range(len(batch)), num_replicas=world, rank=rank, shuffle=False))
    return batch[torch.tensor(order, dtype=torch.long)]


@exercise(task="(batch, rank, world) -> the row indices rank `rank` trains on, out of a (B,) batch "
               "that need NOT split evenly over `world` ranks, dealt as torch's DistributedSampler "
               "deals them (shuffle=False, its default drop_last=False)",
          hints=("DistributedSampler gives every rank the same number of rows, ceil(B / world), and "
                 "drops none: it has to make up the missing ones somehow. Look at "
                 "inspect.getsource(torch.utils.data.DistributedSampler.__iter__).",
                 "It pads the index list to ceil(B / world) · world entries by repeating its first "
                 "entries, then deals round-robin: rank r takes every world-th entry starting at r."),
          success="pad by repeating the first rows, then deal round-robin: equal shards, a few rows seen twice.")
def rank_shard(fn) -> None:
    """Check ``fn(batch, rank, world)`` against torch's ``DistributedSampler``."""
    batch = torch.tensor([11, 4, 7, 0, 9, 2, 5, 8, 13, 6])  # B = 10
    for world, rank in ((4, 1), (4, 3), (3, 2), (2, 1)):
        got = attempt(fn, batch, rank, world)
        want = sampler_shard(batch, rank, world)
        size = len(batch) // world
        block = batch[rank * size:(rank + 1) * size]
        if matches(got, block) and not matches(block, want):
            raise Wrong("that is a contiguous block of the batch; DistributedSampler deals the indices "
                        "round-robin (a stride), as mmcourse.distributed does.")
        positions = [torch.arange(len(batch))[rank::world],
                     torch.tensor(list(DistributedSampler(range(len(batch)), world, rank, shuffle=False)))]
        if any(matches(got, q) and not matches(q, want) for q in positions):
            raise Wrong("you returned positions in the batch; return the row indices stored there "
                        "(index the batch).")
        if matches(got, batch):
            raise Wrong("every rank would train on the whole batch: each rank needs only its share.")
        if matches(got, batch[rank::world]) and not matches(batch[rank::world], want):
            raise Wrong(f"with B = {len(batch)} and world {world} the ranks would get different numbers of "
                        "rows; DistributedSampler gives each the same number and drops none.")
        if matches(got, batch[:size * world][rank::world]) and not matches(batch[:size * world][rank::world], want):
            raise Wrong("that drops the last rows (drop_last=True); by default DistributedSampler keeps "
                        "every row and fills up the shards instead.")
        expect_shape(got, want.shape, f"the shard of rank {rank} of {world}")
        if not matches(got, want):
            raise Wrong(f"for world {world}, rank {rank} the shard is off: got {torch.as_tensor(got).tolist()}.")
