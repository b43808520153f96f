"""mmcourse.distributed: sharding, the DDP == one-process check under torchrun, rank failures.

The torchrun tests start real processes (gloo on CPU, ``--standalone`` picks a free port, so
parallel pytest workers never collide) on a few hundred rows; each takes 10-30 s on 2 cores.
"""

import os
import subprocess
import sys
import time

import pytest
import torch

from mmcourse.distributed import global_batches, gradient_bytes, shard, step_on_shards, torchrun_command
from mmcourse.fusion.zoo import build_av_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def torchrun(*args, nproc=2, timeout=120):
    cmd = torchrun_command(nproc, "--limit", "384", *args)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    return out, time.perf_counter() - t0


def test_shards_are_disjoint_equal_and_cover_the_batch():
    batch = torch.tensor([7, 3, 9, 0, 4, 1])
    parts = [shard(batch, r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[7, 0], [3, 4], [9, 1]]  # round-robin, like DistributedSampler
    assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())


def test_shard_rejects_unequal_shards_and_bad_ranks():
    with pytest.raises(ValueError, match="divisible by 4"):
        shard(torch.arange(6), 0, 4)
    with pytest.raises(ValueError, match="outside 0 .. 1"):
        shard(torch.arange(4), 2, 2)


def test_global_batches_same_for_a_seed_full_size_and_fresh_each_epoch():
    a, b = global_batches(10, 4, epoch=0, seed=1), global_batches(10, 4, epoch=0, seed=1)
    assert [x.tolist() for x in a] == [x.tolist() for x in b] and [len(x) for x in a] == [4, 4]
    assert [x.tolist() for x in global_batches(10, 4, epoch=1, seed=1)] != [x.tolist() for x in a]


def test_gradient_bytes_is_four_per_float32_parameter():
    model = torch.nn.Linear(3, 2)  # 6 weights + 2 biases
    assert gradient_bytes(model) == 8 * 4
    model.bias.requires_grad_(False)
    assert gradient_bytes(model) == 6 * 4


def test_mean_of_shard_means_is_the_full_batch_gradient_float64():
    torch.manual_seed(0)
    model = build_av_model("audio_only").double()  # LayerNorm only: per-example, no batch statistics
    X = {"audio": torch.randn(8, 40, 13, dtype=torch.float64)}
    y = torch.arange(8) % 10
    batch = torch.arange(8)
    grads = []
    for parts in (1, 4):
        model.zero_grad()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: look at the gradients only
        step_on_shards(model, opt, X, y, [shard(batch, r, parts) for r in range(parts)])
        grads.append([p.grad.clone() for p in model.parameters()])
    for g1, g4 in zip(*grads):
        torch.testing.assert_close(g1, g4, rtol=1e-12, atol=1e-14)


def test_check_two_processes_match_one_process():
    out, _ = torchrun("--check", "--steps", "4", "--batch-size", "64")
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("max param diff: "), out.stdout
    # Round-off of a few float32 steps (SGD, lr 0.05, weights ~0.1-1): 1e-5 is ~100x what it is.
    assert float(last.split(": ")[1]) < 1e-5
    assert "backend gloo" in out.stdout and "global batch 64 = 2 x 32" in out.stdout


def test_a_rank_that_hangs_ends_the_run_with_a_clear_error_not_a_hang():
    out, seconds = torchrun("--epochs", "3", "--fail-at-step", "1", "--fail-mode", "hang", "--timeout", "4",
                            timeout=150)
    assert out.returncode != 0
    assert "simulating a hang" in out.stderr
    assert "waited longer than --timeout 4 s" in out.stderr and "another rank" in out.stderr
    assert seconds < 150


def test_a_rank_that_crashes_ends_the_run_non_zero_and_names_its_exit_code():
    out, _ = torchrun("--epochs", "3", "--fail-at-step", "1", "--fail-mode", "exit", "--timeout", "4",
                      timeout=150)
    assert out.returncode != 0
    assert "simulating a crash (exit 17)" in out.stderr and "exitcode  : 17" in out.stderr


def test_training_saves_a_weights_only_checkpoint_from_rank_0(tmp_path):
    ckpt, report = tmp_path / "ddp.pt", tmp_path / "report.json"
    out, _ = torchrun("--epochs", "1", "--out", str(ckpt), "--report", str(report), "--batch-size", "64")
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(ckpt, weights_only=True)
    build_av_model("late").load_state_dict(state)
    assert out.stdout.count("saved ddp.pt") == 1  # rank 0 only
    assert not list(tmp_path.glob(".*.part"))  # the temp file was renamed away
    import json
    r = json.loads(report.read_text())
    assert r["world"] == 2 and r["gradient_bytes"] == 4 * r["params"] and r["allreduce_ms"] > 0


def test_without_torchrun_it_says_how_to_launch():
    env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = subprocess.run([sys.executable, "-m", "mmcourse.distributed", "--check"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode != 0 and "torchrun --standalone --nproc-per-node=2" in out.stderr
