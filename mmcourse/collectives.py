"""Measurements that are collectives (every rank calls them) in the ``torchrun`` script
``mmcourse.distributed``, which re-exports them; taught in ``notebooks/12_scaling_out.ipynb``.

``time_all_reduce`` times the all-reduce of the gradient bytes alone; ``spread_over_ranks`` says
how far the ranks' copies of parameters or buffers drifted apart; ``bench_rounds`` (``--bench R``)
times K steps of DDP (all ranks), then K steps of one ordinary process on rank 0 with N threads
and with 1 thread (the other ranks wait at a barrier), in interleaved rounds whose order rotates,
for ``mmcourse.throughput.compare_rounds``.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from mmcourse.sharding import global_batches, make_optimizer, shard, step_on_shards
from mmcourse.train import logits_of, take


def time_all_reduce(numel: int, device: torch.device, repeats: int = 30) -> float:
    """Median milliseconds of ``dist.all_reduce`` on a float32 tensor of ``numel`` numbers."""
    t = torch.zeros(numel, device=device)
    times = []
    for i in range(repeats + 3):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:  # the first calls set up buffers and connections
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def spread_over_ranks(tensors: list[Tensor]) -> float:
    """max |t_r − t_0| over every rank r and every entry of ``tensors`` (a collective: call it on all ranks)."""
    flat = torch.cat([t.detach().float().flatten() for t in tensors]) if tensors else torch.zeros(1)
    ref = flat.clone()
    dist.broadcast(ref, src=0)  # rank 0's values on every rank
    d = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(d, op=dist.ReduceOp.MAX)
    return d.item()


BENCH_SETUPS = ("ddp", "threads", "one")  # N processes x 1 thread | 1 process x N threads | 1 process x 1 thread


def bench_rounds(initial: nn.Module, X: dict[str, Tensor], y: Tensor, batch_size: int, seed: int,
                 rounds: int, steps: int, rank: int, world: int, lr: float = 3e-3) -> dict[str, list[float]]:
    """Median ms per global batch of each setup, per round, the setups interleaved (a collective).

    Every setup trains its own copy of ``initial`` (the trained model is left as it is).

    Each round times ``steps`` steps of: ``"ddp"`` (every rank on its shard, DDP all-reducing),
    ``"threads"`` (rank 0 alone: one ordinary process, ``world`` torch threads, the whole batch) and
    ``"one"`` (rank 0 alone, one thread); the other ranks wait at a barrier meanwhile. The order
    rotates each round, so load from other programs falls on every setup alike.
    """
    plain, device = copy.deepcopy(initial), y.device
    ddp = DDP(copy.deepcopy(initial), device_ids=[device.index] if device.type == "cuda" else None)
    opt_ddp, opt_plain = make_optimizer(ddp.parameters(), "adamw", lr), make_optimizer(plain.parameters(), "adamw", lr)
    batches = [b for e in range(1 + rounds * steps * batch_size // max(len(y), 1)) for b in
               global_batches(len(y), batch_size, 1000 + e, seed)]  # any batches: we time, not train
    out = {k: [] for k in BENCH_SETUPS}
    threads_before = torch.get_num_threads()

    def timed(fn) -> float:
        ms = []
        for i in range(steps + 1):  # the first step of each block warms caches: not counted
            b = batches[i % len(batches)]
            t0 = time.perf_counter()
            fn(b)
            if i:
                ms.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(ms)

    def ddp_step(b):
        idx = shard(b, rank, world).to(y.device)
        loss = F.cross_entropy(logits_of(ddp(take(X, idx))), y[idx])
        opt_ddp.zero_grad(set_to_none=True)
        loss.backward()
        opt_ddp.step()

    for r in range(rounds):
        order = BENCH_SETUPS[r % 3:] + BENCH_SETUPS[:r % 3]
        for name in order:
            dist.barrier()
            if name == "ddp":
                out[name].append(timed(ddp_step))
            elif rank == 0:
                torch.set_num_threads(world if name == "threads" else 1)
                out[name].append(timed(lambda b: step_on_shards(plain, opt_plain, X, y, [b.to(y.device)])))
                torch.set_num_threads(threads_before)
            dist.barrier()
    return out
