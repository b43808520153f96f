"""How ``mmcourse.distributed`` is launched: the ``torchrun`` command, its command line (checked
before any process group starts) and the backend for ``MMCOURSE_DEVICE``. Re-exported by
``mmcourse.distributed``; taught in ``notebooks/12_scaling_out.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch


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
