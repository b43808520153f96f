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

from mmcourse import distributed
from mmcourse.distributed import (choose_backend, global_batches, gradient_bytes, parse_args, shard, step_on_shards,
                                  torchrun_command)
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


def test_check_two_processes_match_one_process(tmp_path):
    report = tmp_path / "report.json"
    out, _ = torchrun("--check", "--steps", "4", "--batch-size", "64", "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("max param diff: "), out.stdout
    # Round-off of a few float32 steps (SGD, lr 0.05, weights ~0.1-1): 1e-5 is ~100x what it is.
    assert float(last.split(": ")[1]) < 1e-5
    assert "backend gloo" in out.stdout and "global batch 64 = 2 x 32" in out.stdout
    import json
    r = json.loads(report.read_text())
    # parameters: identical on every rank; BatchNorm buffers: each rank updated them from its own
    # shard (DDP broadcasts rank 0's only at the next forward), and the one-process replay's
    # BatchNorm counted both micro-batches of every step
    assert r["rank_param_diff"] == 0 and r["rank_buffer_diff"] > 0
    assert r["batches_tracked"] == {"ddp": 4, "replay": 8} and r["buffer_diff"] > 1e-5


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
    out, _ = torchrun("--epochs", "1", "--out", str(ckpt), "--report", str(report), "--batch-size", "64",
                      "--bench", "2", "--bench-steps", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(ckpt, weights_only=True)
    build_av_model("late").load_state_dict(state)
    assert out.stdout.count("saved ddp.pt") == 1  # rank 0 only
    assert not list(tmp_path.glob(".*.part"))  # the temp file was renamed away
    import json
    r = json.loads(report.read_text())
    assert r["world"] == 2 and r["gradient_bytes"] == 4 * r["params"] and r["allreduce_ms"] > 0
    # --bench: 2 interleaved rounds of each setup, a median ms per round
    assert sorted(r["rounds"]) == ["ddp", "one", "threads"]
    assert all(len(v) == 2 and min(v) > 0 for v in r["rounds"].values())


def test_bench_is_refused_with_check(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--check", "--bench", "3"])
    assert e.value.code == 2 and "use it without --check" in capsys.readouterr().err


def test_without_torchrun_it_says_how_to_launch():
    env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = subprocess.run([sys.executable, "-m", "mmcourse.distributed", "--check"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode != 0 and "torchrun --standalone --nproc-per-node=2" in out.stderr


# ------------------------------------------------------------------ MMCOURSE_DEVICE picks the backend
@pytest.mark.parametrize("device, gpus, local_world, backend", [
    (None, 0, 2, "gloo"), (None, 2, 2, "nccl"), (None, 1, 2, "gloo"),  # unset: nccl only with a GPU per rank
    ("cpu", 4, 2, "gloo"),  # MMCOURSE_DEVICE=cpu: the CPU even where GPUs are
    ("cuda", 2, 2, "nccl"), ("cuda", 8, 2, "nccl"),
])
def test_choose_backend_honours_mmcourse_device(device, gpus, local_world, backend):
    assert choose_backend(device, gpus, local_world) == backend


@pytest.mark.parametrize("device, gpus, match", [
    ("cuda", 0, "MMCOURSE_DEVICE='cuda' but torch sees no CUDA GPU here.*MMCOURSE_DEVICE=cpu"),
    ("cuda", 1, "MMCOURSE_DEVICE='cuda' needs one GPU per rank: 2 ranks on this machine, 1 CUDA GPU.*"
                "--nproc-per-node=1"),
    ("cuda:1", 2, "MMCOURSE_DEVICE='cuda:1' names one GPU.*MMCOURSE_DEVICE=cuda.*CUDA_VISIBLE_DEVICES"),
    ("mps", 0, "MMCOURSE_DEVICE='mps'.*no backend for Apple's MPS.*MMCOURSE_DEVICE=cpu"),
])
def test_choose_backend_refuses_what_it_cannot_do(device, gpus, match):
    with pytest.raises(ValueError, match=match):
        choose_backend(device, gpus, 2)


def test_parse_args_refuses_mmcourse_device_cuda_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("MMCOURSE_DEVICE", "cuda")
    with pytest.raises(SystemExit) as e:
        parse_args(["--check"])
    assert e.value.code == 2 and "MMCOURSE_DEVICE='cuda' but torch sees no CUDA GPU here" in capsys.readouterr().err
    monkeypatch.setenv("MMCOURSE_DEVICE", "cpu")
    assert parse_args(["--check"]).backend == "gloo"


# ------------------------------------------------------------------ nothing to train: refused before torchrun
@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
    (["--epochs", "-2"], "argument --epochs: must be an integer >= 1, got '-2'"),
    (["--steps", "0", "--check"], "argument --steps: must be an integer >= 1, got '0'"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    (["--batch-size", "-8"], "argument --batch-size: must be an integer >= 1, got '-8'"),
    (["--limit", "0"], "argument --limit: must be an integer >= 1, got '0'"),
    (["--timeout", "0"], "argument --timeout: must be a finite number of seconds > 0, got '0'"),
    (["--timeout", "-5"], "argument --timeout: must be a finite number of seconds > 0, got '-5'"),
    (["--timeout", "nan"], "argument --timeout: must be a finite number of seconds > 0, got 'nan'"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0, got '0'"),
    (["--fail-at-step", "-1"], "argument --fail-at-step: must be an integer >= 0, got '-1'"),
    (["--limit", "32", "--batch-size", "64"],
     "argument --limit: 32 pairs make no global batch of --batch-size 64: use --limit >= 64 or a smaller --batch-size"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_parse_args_refuses_a_run_with_nothing_to_train(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err


def test_parse_args_refuses_a_batch_that_does_not_split_over_the_ranks(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun sets it, before any process group
    assert parse_args(["--batch-size", "8"]).batch_size == 8
    for bad, example in (("6", "8"), ("2", "4")):
        with pytest.raises(SystemExit):
            parse_args(["--batch-size", bad])
        assert (f"argument --batch-size: a global batch of {bad} does not split over the 4 ranks: use a multiple "
                f"of 4, e.g. {example}") in capsys.readouterr().err


def test_a_batch_larger_than_the_data_is_refused_before_the_process_group(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)  # setup() would say "runs under torchrun": it is never reached
    with pytest.raises(SystemExit) as e:
        distributed.run(parse_args(["--batch-size", "4000"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and ("argument --batch-size: the 3500 training pairs make no global batch of 4000: "
                                  "use --batch-size <= 3500") in err, err


def test_under_torchrun_a_run_with_no_epochs_stops_at_the_argument_not_in_training():
    out, _ = torchrun("--epochs", "0", timeout=90)
    assert out.returncode != 0
    assert "error: argument --epochs: must be an integer >= 1, got '0'" in out.stderr
    assert "StatisticsError" not in out.stderr and "init_process_group" not in out.stderr
