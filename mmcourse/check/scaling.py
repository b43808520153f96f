"""Exercise checkers for notebook 12 (scaling out). Reference solutions: ``solutions.py``."""

from __future__ import annotations

import torch

from mmcourse.check.core import Wrong, attempt, exercise, expect_shape, matches, scalar


@exercise(task="(num_params) -> int: the bytes DistributedDataParallel all-reduces per step for a "
               "model of num_params float32 parameters (all trainable)",
          hints=("DDP sends one gradient per parameter each step. How big is one float32 number?",
                 "A float32 number takes 4 bytes; the gradient has exactly as many numbers as the "
                 "model has trainable parameters."),
          success="4 bytes per float32 gradient entry, every step: the model's size, not the batch's.")
def gradient_bytes_per_step(fn) -> None:
    """Check ``fn(num_params) -> int`` = 4 · num_params."""
    for p in (16_044, 22_713_216, 1):
        value = scalar(attempt(fn, p), kind="a number of bytes (an int)").item()
        mistakes = ((p, "that is the number of gradient entries; each float32 entry takes 4 bytes."),
                    (8 * p, "8 bytes is float64; the course trains in float32 (4 bytes)."),
                    (32 * p, "32 is bits per float32; the question asks for bytes."),
                    (4 * p / 2**20, "that is mebibytes; return bytes."),
                    (4 * p / 1e6, "that is megabytes; return bytes."))
        for want, message in mistakes:
            if value == want and want != 4 * p:
                raise Wrong(message)
        if value != 4 * p:
            raise Wrong(f"for {p:,} parameters you returned {value:,.0f} bytes.")


@exercise(task="(batch, rank, world) -> (B / world,): the row indices rank `rank` trains on, out "
               "of one global batch `batch` (B,), dealt the way DistributedSampler deals them",
          hints=("Every rank gets the same number of rows, no row goes to two ranks, and together "
                 "the shards are the whole batch.",
                 "DistributedSampler deals indices like cards: the first to rank 0, the second to "
                 "rank 1, ..., the world-th back to rank 0 (a stride, not a block)."),
          success="rank r takes every world-th index starting at r, as DistributedSampler does.")
def rank_shard(fn) -> None:
    """Check ``fn(batch, rank, world) -> (B/world,)`` = ``batch[rank::world]``."""
    batch = torch.tensor([11, 4, 7, 0, 9, 2, 5, 8])
    for world, rank in ((2, 0), (2, 1), (4, 3)):
        got = attempt(fn, batch, rank, world)
        want = batch[rank::world]
        size = len(batch) // world
        block = batch[rank * size:(rank + 1) * size]
        if matches(got, block) and not matches(block, want):
            raise Wrong("that is a contiguous block of the batch; DistributedSampler deals the indices "
                        "round-robin (a stride), which is what mmcourse.distributed does.")
        if matches(got, torch.arange(len(batch))[rank::world]):
            raise Wrong("you returned positions in the batch; return the row indices stored there "
                        "(index the batch).")
        if matches(got, batch):
            raise Wrong("every rank would train on the whole batch: each rank needs only its share.")
        expect_shape(got, want.shape, f"the shard of rank {rank} of {world}")
        if not matches(got, want):
            raise Wrong(f"for world {world}, rank {rank} the shard is off: got "
                        f"{torch.as_tensor(got).tolist()}.")
