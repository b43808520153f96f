"""Data-parallel training with ``torch.distributed``: DistributedDataParallel under ``torchrun``.

Taught in ``notebooks/12_scaling_out.ipynb``. Run it as

    torchrun --standalone --nproc-per-node=N -m mmcourse.distributed [--epochs 3] [--check]

``torchrun`` starts N processes (*ranks*); each builds the same AV-digits fusion model (same
seed, same initial weights) and wraps it in ``DistributedDataParallel`` (DDP). The backend is
chosen by capability: ``nccl`` when there is a CUDA GPU per local rank (rank r on GPU
``LOCAL_RANK``), else ``gloo`` on the CPU; ``MMCOURSE_DEVICE=cpu`` forces gloo on the CPU and
``MMCOURSE_DEVICE=cuda`` nccl (an error where there is not a GPU per rank).

Sharding, and why N ranks make the same update as one process (also with BatchNorm): see
``mmcourse.sharding``, which holds ``shard``, ``global_batches``, ``step_on_shards`` and the
one-process replay of ``--check``. The command line and backend choice live in
``mmcourse.launcher``, the timing and drift measurements in ``mmcourse.collectives``; this module
is the script itself and re-exports all of their names.

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
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from mmcourse.collectives import BENCH_SETUPS, bench_rounds, spread_over_ranks, time_all_reduce  # re-exported
from mmcourse.launcher import (_at_least, _parser, _positive, choose_backend, parse_args,  # re-exported
                               torchrun_command)
from mmcourse.sharding import (_one_process_reference, global_batches, gradient_bytes,  # re-exported
                               make_optimizer, shard, step_on_shards)
from mmcourse.train import evaluate, logits_of, take


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


def _is_peer_failure(e: Exception) -> bool:
    """A collective's error: another rank died (connection closed/reset) or timed out."""
    text = str(e).lower()
    return isinstance(e, dist.DistError) or any(
        w in text for w in ("timed out", "timeout", "connection", "peer", "nccl", "gloo"))


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
