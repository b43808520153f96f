"""Data-parallel training with ``torch.distributed``: DistributedDataParallel under ``torchrun``.

Taught in ``notebooks/12_scaling_out.ipynb``. Run it as

    torchrun --standalone --nproc-per-node=N -m mmcourse.distributed [--epochs 3] [--check]

``torchrun`` starts N processes (*ranks*); each builds the same AV-digits fusion model (same
seed, same initial weights) and wraps it in ``DistributedDataParallel`` (DDP). The backend is
chosen by capability: ``nccl`` when there is a CUDA GPU per local rank (rank r on GPU
``LOCAL_RANK``), else ``gloo`` on the CPU; ``MMCOURSE_DEVICE=cpu`` forces gloo on the CPU and
``MMCOURSE_DEVICE=cuda`` nccl (an error where there is not a GPU per rank).

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
for CPU modules ("SyncBatchNorm layers only work with GPU modules"), so this module never uses it.

What DDP sends besides gradients: at construction it broadcasts rank 0's parameters and buffers
to every rank (so the copies start equal even if they were built differently), and by default
(``broadcast_buffers=True``) rank 0's *buffers* — BatchNorm's running mean/variance and
``num_batches_tracked`` — at the start of every forward. Parameters then stay equal because every
rank applies the same averaged gradient; buffers do not: each rank's BatchNorm updates its running
statistics from its own shard during the forward, so after a step the ranks' buffers differ until
the next forward overwrites them with rank 0's. ``--check`` reports both (``rank_param_diff``,
``rank_buffer_diff``) and compares rank 0's running statistics with the one-process replay's
(``buffer_diff``, ``batches_tracked``): the replay's BatchNorm saw N micro-batches per step.

``--bench R`` (after training): R interleaved rounds, each timing K steps of DDP (all ranks), then
K steps of one ordinary process on rank 0 with N threads and with 1 thread (the other ranks wait
at a barrier), in an order that rotates each round; ``rounds`` in the report holds the median
milliseconds per step of each setup per round, for ``mmcourse.throughput.compare_rounds``.

Rank 0 logs, evaluates on validation and saves a plain ``state_dict`` atomically (temp file +
``os.replace``; ``torch.load(path, weights_only=True)`` reads it). The process group has a
``timeout``: when a rank dies or hangs, the others' next collective fails after that many seconds
instead of waiting forever, and ``torchrun`` stops every rank and exits non-zero.
``--fail-at-step K`` (a test hook) makes the last rank crash (exit 17) or hang at step K.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from mmcourse.train import evaluate, logits_of, take


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


def torchrun_command(nproc: int, *args) -> list[str]:
    """argv of ``torchrun --standalone --nproc-per-node=nproc -m mmcourse.distributed *args``, run
    as ``python -m torch.distributed.run`` with this interpreter, so no ``torchrun`` on PATH is
    needed (a notebook kernel, a venv that is not activated)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "mmcourse.distributed", *map(str, args)]


def choose_backend(device: str | None, cuda_gpus: int, local_world: int) -> str:
    """``"nccl"`` (a GPU per rank) or ``"gloo"`` (CPU) for ``MMCOURSE_DEVICE`` = ``device``.

    Args:
        device: ``None`` (unset: nccl when there is a GPU per local rank, else gloo), ``"cpu"``
            (gloo, even where GPUs are) or ``"cuda"`` (nccl; ValueError without a GPU per rank).
        cuda_gpus: GPUs torch sees here; local_world: ranks on this machine (``LOCAL_WORLD_SIZE``).
    """
    if device is None:
        return "nccl" if cuda_gpus >= max(1, local_world) else "gloo"  # nccl only talks GPU to GPU
    if device == "cpu":
        return "gloo"
    if device == "cuda":
        if cuda_gpus == 0:
            raise ValueError("MMCOURSE_DEVICE='cuda' but torch sees no CUDA GPU here (torch.cuda.is_available() "
                             "is False): set MMCOURSE_DEVICE=cpu, or unset it, to train on the CPU with gloo")
        if cuda_gpus < local_world:
            raise ValueError(f"MMCOURSE_DEVICE='cuda' needs one GPU per rank: {local_world} ranks on this machine, "
                             f"{cuda_gpus} CUDA GPU{'s' * (cuda_gpus > 1)}: launch --nproc-per-node={cuda_gpus}, or "
                             "set MMCOURSE_DEVICE=cpu to run every rank on the CPU")
        return "nccl"
    if device.startswith("cuda:"):
        raise ValueError(f"MMCOURSE_DEVICE={device!r} names one GPU, but under torchrun rank r takes GPU "
                         "LOCAL_RANK: use MMCOURSE_DEVICE=cuda, and CUDA_VISIBLE_DEVICES to choose which GPUs")
    raise ValueError(f"MMCOURSE_DEVICE={device!r}: torch.distributed has no backend for Apple's MPS; use "
                     "MMCOURSE_DEVICE=cpu (gloo) or cuda (nccl)")


def setup(timeout_s: float, backend: str) -> tuple[int, int, torch.device, str]:
    """Join the process group torchrun set up (env RANK, WORLD_SIZE, MASTER_ADDR/PORT...).

    Returns (rank, world, device, backend).
    """
    if "RANK" not in os.environ:
        raise SystemExit("mmcourse.distributed runs under torchrun, which starts the ranks: "
                         "torchrun --standalone --nproc-per-node=2 -m mmcourse.distributed")
    cuda = backend == "nccl"  # rank r on GPU LOCAL_RANK
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                            **({"device_id": device} if cuda else {}))
    return dist.get_rank(), dist.get_world_size(), device, backend


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


def save_atomic(state: dict, path: Path) -> None:
    """Write ``state`` to a temp file beside ``path`` and rename it into place (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _fail_hook(args, rank: int, world: int, step: int) -> None:
    """Test hook (``--fail-at-step``): the last rank crashes (exit 17) or hangs at that step."""
    if args.fail_at_step is not None and rank == world - 1 and step == args.fail_at_step:
        print(f"[rank {rank}] --fail-at-step {step}: simulating a {'crash (exit 17)' if args.fail_mode == 'exit' else 'hang'}", file=sys.stderr, flush=True)
        if args.fail_mode == "exit":
            os._exit(17)  # no cleanup, like a killed process
        time.sleep(10 ** 6)  # hang; torchrun terminates it once another rank fails


def load_data(limit: int | None, device: torch.device = torch.device("cpu")):
    from mmcourse.data import load_av_digits
    train, val = load_av_digits("train"), load_av_digits("val")
    n = len(train) if limit is None else min(limit, len(train))
    X = {k: v[:n].to(device) for k, v in sorted(train.inputs.items())}  # {"audio": (n, 40, 13), "image": (n, 1, 28, 28)}
    return X, train.labels[:n].to(device), (val.inputs, val.labels)


def run(args) -> dict:
    """Train (or ``--check``) on this rank; rank 0 returns the report, the others ``{}``."""
    from mmcourse.fusion.zoo import build_av_model, modalities_of
    from mmcourse.runtime import seed_everything
    X, y, val = load_data(args.limit)  # on the CPU, before the process group: a bad size fails here
    if len(y) < args.batch_size:
        _parser().error(f"argument --batch-size: the {len(y)} training pairs make no global batch of "
                        f"{args.batch_size}: use --batch-size <= {len(y)}")
    rank, world, device, backend = setup(args.timeout, args.backend)
    say = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    X, y = {k: v.to(device) for k, v in X.items()}, y.to(device)
    seed_everything(args.seed)
    model = build_av_model(args.method).to(device)  # the same initial weights on every rank
    X = {k: X[k] for k in modalities_of(model)}  # a unimodal model gets its one modality
    val = ({k: val[0][k] for k in X}, val[1])
    initial = copy.deepcopy(model)
    if args.fsdp:  # shard parameters, gradients and optimizer state instead of replicating them
        from torch.distributed.fsdp import fully_shard
        for encoder in model.encoders.values():
            fully_shard(encoder)
        ddp = fully_shard(model)
    else:
        ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(ddp.parameters(), "sgd" if args.check else args.optimizer, args.lr)
    local = sum((p.to_local() if args.fsdp else p).numel() for p in model.parameters() if p.requires_grad)
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"world {world} | backend {backend} | device {device.type} | {args.method}: {P:,} trainable parameters"
        f" = {gradient_bytes(model):,} gradient bytes per step | global batch {args.batch_size} = {world} x "
        f"{args.batch_size // world} | {len(y)} rows")
    step_ms, history, t_start = [], [], time.perf_counter()
    finished = (lambda: len(step_ms) == args.steps) if args.check else (lambda: False)
    for epoch in range(10 ** 6 if args.check else args.epochs):
        t_epoch, losses = time.perf_counter(), []
        for batch in global_batches(len(y), args.batch_size, epoch, args.seed):
            if finished():
                break
            _fail_hook(args, rank, world, len(step_ms))
            idx = shard(batch, rank, world).to(device)  # (B/N,) this rank's rows
            t0 = time.perf_counter()
            loss = F.cross_entropy(logits_of(ddp(take(X, idx))), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces the gradients here (mean over ranks)
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step_ms.append(1e3 * (time.perf_counter() - t0))
            losses.append(loss.item())
        if finished():
            break
        if rank == 0 and not args.check:
            seconds, acc = time.perf_counter() - t_epoch, evaluate(model, *val)["acc"]
            history.append({"epoch": epoch + 1, "loss": statistics.fmean(losses), "val_acc": acc, "seconds": seconds})
            say(f"epoch {epoch + 1}: rank-0 shard loss {history[-1]['loss']:.3f} | val acc {acc:.3f} | {seconds:.1f} s")
        dist.barrier()
    report = {"world": world, "backend": backend, "device": device.type, "method": args.method, "params": P,
              "gradient_bytes": gradient_bytes(model), "batch_size": args.batch_size, "steps": len(step_ms),
              "seconds": time.perf_counter() - t_start,
              "step_ms": statistics.median(step_ms[1:] or step_ms), "history": history}
    report["allreduce_ms"] = time_all_reduce(report["params"], device)
    report["local_params"] = local
    if args.check and not args.fsdp:  # collectives: on every rank
        report["rank_param_diff"] = spread_over_ranks(list(model.parameters()))
        report["rank_buffer_diff"] = spread_over_ranks([b for b in model.buffers() if b.is_floating_point()])
    if args.bench:
        report["rounds"] = bench_rounds(initial, X, y, args.batch_size, args.seed, args.bench,
                                        args.bench_steps, rank, world)
    final = [p.full_tensor() if args.fsdp else p for p in model.parameters()]  # a collective under FSDP
    if rank != 0:
        return {}
    say(f"median step {report['step_ms']:.2f} ms | all-reduce of the {report['gradient_bytes']:,} gradient "
        f"bytes alone {report['allreduce_ms']:.3f} ms")
    if args.fsdp:
        say(f"FSDP: rank 0 holds {local:,} of the {P:,} parameters (and their gradients and optimizer state)")
    if args.check:
        report.update(_one_process_reference(args, initial, final, X, y, world,
                                             None if args.fsdp else dict(model.named_buffers())))
        if "rank_param_diff" in report:
            say(f"across ranks after the last step: parameters differ by at most {report['rank_param_diff']:.3g}, "
                f"buffers (BatchNorm running statistics) by {report['rank_buffer_diff']:.3g}")
        if report.get("batches_tracked"):
            say(f"rank 0's running statistics vs the one-process replay: max diff {report['buffer_diff']:.3g}, "
                f"batches tracked {report['batches_tracked']['ddp']} vs {report['batches_tracked']['replay']}")
        bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        say(f"max param diff vs one process, all {args.batch_size} rows in one forward"
            f"{' (BatchNorm then normalises over all of them)' if bn else ''}: {report['full_batch_diff']:.3g}")
    else:
        path = Path(args.out)
        save_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        say(f"saved {path.name} (rank 0, atomically)")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    if args.check:
        say(f"max param diff: {report['max_param_diff']:.3g}")
    return report


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


def _is_peer_failure(e: Exception) -> bool:
    """A collective's error: another rank died (connection closed/reset) or timed out."""
    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(
        w in text for w in ("timed out", "timeout", "connection", "peer", "nccl", "gloo"))


def _at_least(low: int):
    """An argparse ``type``: an integer >= ``low``, else argparse's "argument --FLAG: ..." error."""
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return integer


def _positive(what: str):
    """An argparse ``type``: a finite float > 0 (``what`` names it in the error)."""
    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be a finite {what} > 0, got {text!r}")
        return value
    return number


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun --standalone --nproc-per-node=N -m mmcourse.distributed",
                                description="Train the AV-digits fusion model with DistributedDataParallel.")
    p.add_argument("--epochs", type=_at_least(1), default=3)
    p.add_argument("--batch-size", type=_at_least(1), default=128, help="global batch B (divisible by the world size)")
    p.add_argument("--lr", type=_positive("number"), default=None, help="default 3e-3 for adamw, 0.05 for sgd")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw", help="--check always uses sgd")
    p.add_argument("--method", default="late", help="a fusion method of mmcourse.fusion (or audio_only, image_only)")
    p.add_argument("--limit", type=_at_least(1), default=None, help="train on the first LIMIT pairs only (fast tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", action="store_true", help="--steps DDP steps, then the same in one process")
    p.add_argument("--fsdp", action="store_true", help="with --check: fully_shard (FSDP2) instead of DDP")
    p.add_argument("--steps", type=_at_least(1), default=5, help="steps of --check")
    p.add_argument("--bench", type=_at_least(1), default=None,
                   help="after training: this many interleaved timing rounds (DDP vs one process, N and 1 threads)")
    p.add_argument("--bench-steps", type=_at_least(1), default=10, help="steps per setup per --bench round")
    p.add_argument("--out", default=None, help="checkpoint path; a bare name goes to checkpoints/ (default ddp-METHOD.pt)")
    p.add_argument("--report", default=None, help="write rank 0's numbers as JSON here")
    p.add_argument("--timeout", type=_positive("number of seconds"), default=120.0,
                   help="seconds a collective may wait for a peer")
    p.add_argument("--fail-at-step", type=_at_least(0), default=None, help="test hook: the last rank fails at this step")
    p.add_argument("--fail-mode", choices=["exit", "hang"], default="exit")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The arguments, checked before any process group starts: a run with nothing to train (no
    epoch, no step, fewer rows than one global batch) or a batch that does not split over the
    ranks exits with argparse's usage error (code 2) on every rank, instead of failing inside."""
    p = _parser()
    args = p.parse_args(argv)
    if args.bench and (args.check or args.fsdp):
        p.error("--bench times training steps after a training run: use it without --check/--fsdp")
    if args.fsdp and not args.check:
        p.error("--fsdp is a small demo of sharding: use it with --check (no evaluation or checkpoint)")
    if args.limit is not None and args.limit < args.batch_size:
        p.error(f"argument --limit: {args.limit} pairs make no global batch of --batch-size {args.batch_size}: "
                f"use --limit >= {args.batch_size} or a smaller --batch-size")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun sets it before this runs
    if args.batch_size % world:
        p.error(f"argument --batch-size: a global batch of {args.batch_size} does not split over the {world} "
                f"ranks: use a multiple of {world}, e.g. {world * max(1, round(args.batch_size / world))}")
    from mmcourse.runtime import read_device
    try:  # MMCOURSE_DEVICE: checked here, before the process group, not in a traceback per rank
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        args.backend = choose_backend(read_device(), gpus, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError as e:
        p.error(str(e))
    if args.lr is None:
        args.lr = 0.05 if (args.check or args.optimizer == "sgd") else 3e-3
    if args.out is None or os.sep not in args.out:  # a bare file name goes to the course's checkpoints/
        from mmcourse.checkpoint import checkpoint_dir
        args.out = str(checkpoint_dir() / (args.out or f"ddp-{args.method}.pt"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except Exception as e:
        if not _is_peer_failure(e):
            raise
        rank = os.environ.get("RANK", "?")  # name the likely cause instead of a bare gloo/nccl message
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"[rank {rank}] training stopped: {type(e).__name__}: {first}\n[rank {rank}] a collective "
              f"(all-reduce, barrier) failed or waited longer than --timeout {args.timeout:g} s: another rank "
              "crashed or hangs (see torchrun's summary of the failed rank).", file=sys.stderr, flush=True)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
