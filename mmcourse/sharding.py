"""Data parallelism in one process: how a global batch is sharded over N ranks, and the
one-process replay that makes the same update. Used by the ``torchrun`` script
``mmcourse.distributed`` (which re-exports every name here); taught in
``notebooks/12_scaling_out.ipynb``. Nothing here needs a process group.

Sharding, as ``DistributedSampler`` deals indices: every rank draws the *same* permutation per
epoch (shared seed), cuts it into global batches of B indices (an incomplete last batch is
dropped, so shards are equal) and rank r keeps ``batch[r::N]``, B/N rows. Batching is ``fit``'s:
the split lives on the device, a batch is one index op per modality.

Why N ranks make the same update as one process: in ``backward`` DDP all-reduces every gradient
(sum over ranks, divided by N). With per-shard mean losses over equal shards S_r,

    g = 1/N Σ_r ∇ (N/B Σ_{i ∈ S_r} ℓ_i) = 1/B Σ_i ∇ℓ_i        (the full-batch mean gradient)

Equal in exact arithmetic, not always bit for bit: float addition is not associative, and the
all-reduce adds partial sums in another order than one process does, so results may differ by a
few units in the last place (~1e-7 relative in float32). At N = 2 the one-process replay below
adds the same two shard gradients and halving is exact, so the difference is often exactly 0;
at N = 3 dividing by 3 rounds and it is ~1e-8. The check uses SGD, whose update is linear in g,
so round-off stays round-off. Adam agrees in practice too, but its first steps move each weight
by about lr · sign(g): a near-zero gradient entry whose sign flips by round-off moves 2·lr.

BatchNorm (the image encoder has three) normalises with the statistics of the rows it sees:
under DDP each rank sees its B/N. So the exact one-process equivalent feeds the global batch as
N micro-batches (the same shards) and averages their mean losses: gradient accumulation.
``--check`` compares with that (``max param diff``) and with one forward over all B rows, which
differs by the BatchNorm statistics. ``nn.SyncBatchNorm`` would share them, but torch refuses it
for CPU modules ("SyncBatchNorm layers only work with GPU modules"), so ``mmcourse.distributed``
never uses it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcourse.train import logits_of, take


def shard(batch: Tensor, rank: int, world: int) -> Tensor:
    """Rank ``rank``'s share of one global batch: ``batch[rank::world]``, as ``DistributedSampler``.

    Args:
        batch: (B,) row indices, B divisible by ``world``.

    Returns:
        (B / world,) indices; the ``world`` shards are disjoint and together are ``batch``.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside 0 .. {world - 1} (world size {world})")
    if len(batch) % world:
        raise ValueError(f"a global batch of {len(batch)} rows does not split into {world} equal shards; "
                         f"use a batch size divisible by {world}, e.g. {world * max(1, len(batch) // world)}")
    return batch[rank::world]


def global_batches(n: int, batch_size: int, epoch: int, seed: int) -> list[Tensor]:
    """The epoch's global batches: a permutation of ``range(n)`` seeded by (seed, epoch), cut
    into (B,) index tensors; the last incomplete batch is dropped. The same on every rank."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    batches = torch.randperm(n, generator=g).split(batch_size)
    return [b for b in batches if len(b) == batch_size]


def gradient_bytes(model: nn.Module) -> int:
    """Bytes DDP all-reduces per step: one number per trainable parameter (4 bytes in float32)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def make_optimizer(params, name: str, lr: float) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum 0.9, as ``FitConfig``) or ``"adamw"``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adamw'")


def step_on_shards(model: nn.Module, opt, X: dict[str, Tensor], y: Tensor, shards: list[Tensor]) -> float:
    """One optimizer step of one process on a global batch fed as micro-batches (accumulation).

    ``shards``: the (B/N,) index tensors; loss = mean over shards of each shard's mean loss, the
    gradient DDP computes. With one shard (the whole batch) it is a plain full-batch step.
    Returns the loss.
    """
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for idx in shards:
        loss = F.cross_entropy(logits_of(model(take(X, idx))), y[idx]) / len(shards)
        loss.backward()  # gradients add up in .grad across the micro-batches
        total += loss.item()
    opt.step()
    return total


def _one_process_reference(args, initial: nn.Module, trained: list[Tensor], X, y, world: int,
                           buffers: dict[str, Tensor] | None = None) -> dict:
    """Replay the same steps in this one process from the same initial weights; compare weights.

    Returns ``max_param_diff`` (global batch as ``world`` micro-batches, DDP's exact equivalent)
    and ``full_batch_diff`` (one forward over all B rows); with rank 0's ``buffers``, also
    ``buffer_diff`` (max |running statistics − the micro-batch replay's|) and ``batches_tracked``
    ({"ddp": rank 0's BatchNorm count, "replay": the replay's}; None without BatchNorm)."""
    out = {}
    for key, parts in (("max_param_diff", world), ("full_batch_diff", 1)):
        ref = copy.deepcopy(initial)
        opt = make_optimizer(ref.parameters(), "sgd", args.lr)
        step, epoch = 0, 0
        while step < args.steps:
            for batch in global_batches(len(y), args.batch_size, epoch, args.seed):
                batch = batch.to(y.device)
                step_on_shards(ref, opt, X, y, [shard(batch, r, parts) for r in range(parts)])
                step += 1
                if step == args.steps:
                    break
            epoch += 1
        out[key] = max((a - b).abs().max().item() for a, b in zip(trained, ref.parameters()))
        if buffers is not None and key == "max_param_diff":
            theirs = dict(ref.named_buffers())
            floats = [n for n, b in buffers.items() if b.is_floating_point()]
            out["buffer_diff"] = max(((buffers[n] - theirs[n]).abs().max().item() for n in floats), default=0.0)
            counts = [n for n in buffers if n.endswith("num_batches_tracked")]
            out["batches_tracked"] = ({"ddp": int(buffers[counts[0]]), "replay": int(theirs[counts[0]])}
                                      if counts else None)
    return out
