# %% [markdown]
# # 12 · Scaling out: one model, many processes, with torch.distributed
#
# Multimodal models outgrow one processor: more data, bigger encoders, more modalities. The way
# the field trains them is **data parallelism**: N processes each hold a copy of the model, each
# computes the gradient on its own share of the batch, and the gradients are averaged before every
# step. This lesson does it with PyTorch's own engine, `DistributedDataParallel` (DDP) launched by
# `torchrun`, on the AV-digits fusion model of lesson 05: you will launch two processes from a
# cell, prove that they compute the same update as one process, measure what two processes buy on
# this machine and why, and see the same command for many GPUs and machines, gradient
# accumulation (the one-process alternative) and FSDP (sharding the model itself).
#
# **Learning goals**
# - explain why averaging per-shard gradients gives the full-batch gradient for a model without
#   batch statistics, why the weights agree to round-off rather than bit for bit, and what
#   BatchNorm changes (its gradient *and* its running statistics);
# - launch `torchrun --nproc-per-node=N -m mmcourse.distributed` and read what each rank does, and
#   what DDP sends besides gradients;
# - time two setups in interleaved rounds and say "faster", "slower" or "can't tell";
# - write the commands for several GPUs and several nodes; use gradient accumulation with
#   `no_sync()` and know what FSDP shards.
#
# **Prerequisites:** 01 (a training step), 05 (the fusion model, `fit`'s batching by index).
#
# **Run time:** full mode 32 s of cell time on a first run (nothing cached; longest cell 13 s), 24 s once its trainings are cached; quick mode 22 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.
#
# Most of it is starting processes: each of the three `torchrun` launches imports torch and loads
# the data once per process, not training.

# %%
# Colab only: install the course package at this course version, without dependencies
# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.
# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.
import importlib.util
import subprocess
import sys
if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["mlxtend>=0.23"], check=True)
    got = subprocess.run(pip + ["--no-deps", "mmcourse @ git+https://github.com/mmcourse/mmcourse@v0.1.0"],
                         capture_output=True, text=True)
    if got.returncode:  # most often: tag v0.1.0 is not (yet) on that repository
        raise RuntimeError(got.stderr[-1500:] + "\npip could not install mmcourse from tag v0.1.0 of "
                           "https://github.com/mmcourse/mmcourse. Install the main branch instead: run\n"
                           '!pip install -q --no-deps "mmcourse @ git+https://github.com/mmcourse/mmcourse@main"\n'
                           "in a new cell, then this notebook again from the top.")

# %%
import inspect
import json
import os
import statistics
import tempfile
import time

import matplotlib.pyplot as plt
import torch

import mmcourse
from mmcourse import check, claim, quick, say, title
from mmcourse.checkpoint import checkpoint_dir
from mmcourse.data import load_av_digits
from mmcourse.fusion.zoo import build_av_model
from mmcourse.launcher import torchrun_command
from mmcourse.sharding import global_batches, shard, step_on_shards
from mmcourse.throughput import compare_rounds
from mmcourse.train import evaluate, take

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

LIMIT = quick(3500, 512)  # training pairs every rank indexes into
EPOCHS = quick(3, 1)
BATCH = 128  # the global batch: with 2 processes each rank computes on 64 rows
CORES = os.cpu_count()
print(f"{LIMIT} training pairs, {EPOCHS} epochs, global batch {BATCH}, {CORES} CPU cores")


def launch(nproc, *args, threads=1, show=True):
    """Run ``torchrun --standalone --nproc-per-node=nproc -m mmcourse.distributed *args``.

    Each process gets ``threads`` torch threads. Returns (rank 0's printed lines, its JSON report,
    wall seconds including process start-up).
    """
    args = [str(a) for a in args]
    print("$ torchrun --standalone --nproc-per-node=%d -m mmcourse.distributed %s" % (nproc, " ".join(args)))
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = torchrun_command(nproc, *args, "--report", report)
        # The ranks run on the CPU, like the one-process timings below, so every comparison is like
        # for like; on a machine with a GPU per rank the same command (in a terminal) uses NCCL.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "MMCOURSE_DEVICE": "cpu"}
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"torchrun exited with {out.returncode}:\n" + "\n".join(out.stderr.splitlines()[-15:]))
        if show:
            print(out.stdout.rstrip())
        with open(report) as f:
            return out.stdout.splitlines(), json.load(f), seconds


# %% [markdown]
# ## 1. Data parallelism: the same model, a shard of the batch each
#
# One training step on a global batch of $B$ rows computes the mean gradient
# $g = \frac{1}{B}\sum_{i=1}^{B} \nabla \ell_i$ of the per-example losses $\ell_i$. With $N$
# processes (*ranks* $r = 0..N-1$), rank $r$ takes a shard $S_r$ of $B/N$ rows, computes the mean
# gradient over its shard, and DDP **all-reduces**: every rank ends up with the mean over ranks,
#
# $$\bar g = \frac1N \sum_{r} \frac{N}{B}\sum_{i \in S_r} \nabla \ell_i = \frac1B \sum_{i=1}^{B} \nabla\ell_i = g .$$
#
# (The middle step assumes that $\ell_i$ depends on row $i$ alone. BatchNorm breaks that: it
# normalises each row with the statistics of the rows beside it, so under DDP $\bar g$ is the
# gradient of the global batch fed as $N$ separate shards, not of one forward over all $B$ rows;
# section 3 measures the difference.)
#
# Every rank then applies the same $\bar g$ to the same weights, so the *parameters* stay
# identical while each step sends only gradients: one float32 number (4 bytes) per parameter.
# DDP does send more than gradients, though: when it wraps the model it **broadcasts rank 0's
# parameters and buffers** to every rank (so the copies start from rank 0's, however each rank
# built its own), and by default (`broadcast_buffers=True`) it broadcasts rank 0's **buffers** —
# BatchNorm's running mean and variance — again at the start of every forward.
#
# Which rows go where? Like `DistributedSampler`: every rank draws the *same* permutation (a
# shared seed), cuts it into global batches of $B$ indices, and rank $r$ takes every $N$-th
# index starting at $r$. The batches are `fit`'s (lesson 05): the split lives on the device and a
# batch is one index operation, now on a `(B/N,)` shard.

# %%
# NBVAL_CHECK_OUTPUT
batch = global_batches(n=20, batch_size=8, epoch=0, seed=0)[0]  # (8,) row indices, same on every rank
print("global batch:", batch.tolist())
for r in range(2):
    print(f"rank {r} trains on rows", shard(batch, r, world=2).tolist())

# %% [markdown]
# ## 2. Launching it: `torchrun` starts the ranks
#
# `mmcourse/distributed.py` is an ordinary training script plus four distributed lines (the sharding
# helpers above live in `mmcourse/sharding.py`, the command line in `mmcourse/launcher.py`): join the
# process group (`init_process_group`, backend `gloo` on CPUs, `nccl` on NVIDIA GPUs, with a
# timeout), wrap the model (`DistributedDataParallel(model)`), take this rank's shard of each
# batch, and let rank 0 alone print, evaluate and save. `torchrun` starts the $N$ processes and
# tells each its rank through environment variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
# `MASTER_ADDR`, `MASTER_PORT`); `--standalone` runs the rendezvous on this machine on a free
# port. Here are 2 processes, one CPU thread each. After training, `--bench` times the same kind of
# step in three setups, in interleaved rounds (section 4 reads them).

# %%
# NBVAL_IGNORE_OUTPUT
ROUNDS, BENCH_STEPS = 7, quick(10, 4)
lines2, two, wall2 = launch(2, "--epochs", EPOCHS, "--limit", LIMIT, "--batch-size", BATCH,
                            "--bench", ROUNDS, "--bench-steps", BENCH_STEPS, threads=1)
print(f"(wall time with process start-up: {wall2:.1f} s, of which training {two['seconds']:.1f} s)")

# %% [markdown]
# Rank 0 saved the weights (a plain `state_dict`, written to a temp file and renamed into place,
# so a crash never leaves half a checkpoint). Any one process can load them like any other model:

# %%
train, val = load_av_digits("train"), load_av_digits("val")
model = build_av_model("late")
model.load_state_dict(torch.load(checkpoint_dir() / "ddp-late.pt", weights_only=True))
acc = evaluate(model, val.inputs, val.labels)["acc"]
print(f"val accuracy of the weights rank 0 saved: {acc:.3f} (rank 0 printed {two['history'][-1]['val_acc']:.3f})")

# %% [markdown]
# ## 3. The check: two processes make the same update as one
#
# `--check` runs a few SGD steps with $N$ processes, then replays the same steps in rank 0 alone
# from the same initial weights and compares every weight. Three subtleties, all printed:
#
# - **BatchNorm.** The image encoder normalises with the mean and variance of the rows *it sees*.
#   Under DDP each rank sees its $B/N$ rows, so the exact one-process equivalent feeds the global
#   batch as $N$ micro-batches (the same shards) and averages their losses. One forward over all
#   $B$ rows differs by the normalisation statistics. (On GPUs `nn.SyncBatchNorm` shares the
#   statistics across ranks; torch refuses it for CPU models.)
# - **Round-off.** Float addition is not associative: adding partial sums over ranks is not
#   always bit-for-bit adding the rows in one process. With 2 ranks the replay adds the same two
#   shard gradients and halving is exact, so the difference may be exactly 0; with 3 ranks
#   dividing by 3 rounds, and differences of a few units in the last place (float32: about
#   $10^{-7}$ of a weight) can appear. Either way far below anything that matters.
# - **Buffers are not parameters.** During a forward, each rank's BatchNorm updates its running
#   mean and variance from *its own* shard, and nothing averages them: after a step the ranks'
#   buffers differ, until the next forward overwrites them with rank 0's. So rank 0's running
#   statistics have seen only rank 0's shards, once per step, while the one-process replay's
#   BatchNorm saw every micro-batch ($N$ updates per step). The running statistics do not enter
#   training (BatchNorm uses the batch's own statistics in training mode), but they are what the
#   model normalises with in evaluation, so they are compared too.

# %%
# NBVAL_IGNORE_OUTPUT
STEPS = 5
check_lines, checked, _ = launch(2, "--check", "--steps", STEPS, "--limit", LIMIT, "--batch-size", BATCH)
last = check_lines[-1]  # "max param diff: X", always the last line
max_diff = float(last.split(": ")[1])

# %%
# NBVAL_CHECK_OUTPUT
print(f"2 ranks == 1 process on the same shards (max param diff < 1e-5): {max_diff < 1e-5}")
print(f"one forward over all rows differs more (BatchNorm statistics): {checked['full_batch_diff'] > max_diff}")
print(f"parameters identical on both ranks: {checked['rank_param_diff'] == 0}")
print(f"running statistics differ between the ranks after a step: {checked['rank_buffer_diff'] > 0}")
print(f"rank 0's running statistics differ from the replay's: {checked['buffer_diff'] > 1e-5}")
print(f"the replay's BatchNorm counted 2 batches per step, rank 0's one: "
      f"{checked['batches_tracked'] == {'ddp': STEPS, 'replay': 2 * STEPS}}")

# %% [markdown]
# ## 4. What two processes buy on this machine, and why
#
# A step of DDP costs the compute on $B/N$ rows plus the all-reduce of the gradient (DDP overlaps
# part of it with the backward pass). Two processes on two cores can at best halve the compute;
# they add communication, and they compete with one ordinary process that uses both cores
# through two torch threads. Measure rather than guess — but a timing on a machine that other
# programs share moves with their load: measured one after the other, the same comparison once
# read "0.70× (slower)" and, under load, "8.08× (faster)". So `--bench` measured in **interleaved
# rounds**: each round times a few steps of each setup back to back, in an order that rotates, so
# load falls on all of them alike. A setup counts as faster only if it wins *every* round (by more
# than 5 %), "about the same" when every round is within 5 %, and otherwise (the rounds disagree,
# or some fall inside the margin) the answer is "can't tell" (`mmcourse.throughput.compare_rounds`).
# The three setups, on the same global batches of the same model and optimizer:
# 2 processes × 1 thread (DDP), 1 ordinary process × 2 threads, 1 process × 1 thread (while
# rank 0 ran the one-process setups, rank 1 waited at a barrier, which uses no CPU).

# %%
rounds = two["rounds"]  # {setup: [median ms per global batch in each round]}
THREADS = two["world"]  # the one-process setup gets as many threads as DDP has processes
ms = {k: statistics.median(v) for k, v in rounds.items()}
vs_threads = compare_rounds(rounds["ddp"], rounds["threads"])  # "a faster": 2 processes win every round
vs_one = compare_rounds(rounds["ddp"], rounds["one"])
WORDS = {"a faster": "faster than", "b faster": "slower than", "about the same": "about as fast as",
         "can't tell": "neither clearly faster nor slower than"}
comm_share = two["allreduce_ms"] / ms["ddp"]
print("ms per global batch, round by round:")
for k, label in (("ddp", "2 processes x 1 thread"), ("threads", f"1 process x {THREADS} threads"),
                 ("one", "1 process x 1 thread")):
    print(f"  {label:>24}: " + " ".join(f"{x:6.1f}" for x in rounds[k]) + f"   median {ms[k]:.1f}")
for name, v in ((f"1 process with {THREADS} threads", vs_threads), ("1 process with 1 thread", vs_one)):
    print(f"2 processes are {WORDS[v['verdict']]} {name}: speed ratio {v['ratio']:.2f}x (rounds "
          f"{v['low']:.2f}-{v['high']:.2f}x; verdict: {v['verdict']})")
print(f"all-reduce of the gradient ({two['gradient_bytes']:,} bytes = {two['params']:,} params x 4) alone: "
      f"{two['allreduce_ms']:.2f} ms = {comm_share:.0%} of a 2-process step")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.0))
names = ["1 process, 1 thread", f"1 process, {THREADS} threads", "2 processes, 1 thread each"]
keys = ["one", "threads", "ddp"]
ax.barh(names, [ms[k] for k in keys], color="tab:blue", alpha=0.6, label="median over rounds")
for i, k in enumerate(keys):
    ax.plot(rounds[k], [i] * len(rounds[k]), "k.", ms=5, label="one round" if i == 0 else None)
ax.set_xlabel("milliseconds per global batch (median step of a round)")
ax.set_title(title(f"2 processes are {WORDS[vs_threads['verdict']]} 1 process with {THREADS} threads "
                   f"({vs_threads['ratio']:.2f}x, rounds {vs_threads['low']:.2f}-{vs_threads['high']:.2f}x)"), fontsize=9)
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Where a speed-up comes from on real hardware.** Data parallelism pays when each rank has its
# own processor (a GPU, a machine) and the compute per step is much larger than the
# communication: the step time is then close to $\frac{1}{N}$ of one processor's, plus the
# part of the all-reduce that does not overlap with the backward pass. A ring all-reduce sends
# about the same number of bytes per rank whatever $N$ is (exercise 1 asks how many), so what
# matters is bytes per step divided by the link's bandwidth: GPUs in one server talk over NVLink (hundreds
# of GB/s), servers over InfiniBand or fast Ethernet (tens of GB/s), which is why large jobs
# also overlap communication with compute and use bigger per-rank batches. On one CPU the
# "processors" are cores that one process could already use through threads, so the numbers above
# measure overheads, not the gain a cluster gives; the next cell states what they show.

# %%
one_core_ms = ms["one"]
ideal = one_core_ms / 2  # perfect data parallelism: each of 2 ranks does half a one-core step
gap = ms["ddp"] - ideal
if gap > 0:
    gap_text = (f"Perfect scaling would take {ideal:.1f} ms (half a one-core step); the two-process step takes "
                f"{gap:.1f} ms more, of which the all-reduce timed alone accounts for {two['allreduce_ms']:.1f} ms "
                f"({two['allreduce_ms'] / gap:.0%}). The rest is overhead this run does not separate: DDP's "
                "gradient hooks, a rank waiting for the slower one, other jobs on the shared cores.")
else:
    gap_text = f"That is at or below half a one-core step ({ideal:.1f} ms): perfect scaling here."
say(f"""
- **Same update.** Two ranks and one process give weights {max_diff:.2g} apart after {STEPS} SGD steps (the
  shards replayed as micro-batches); one forward over all {BATCH} rows differs by {checked['full_batch_diff']:.2g},
  the BatchNorm statistics.
- **Speed here**, in {ROUNDS} interleaved rounds (medians): a global batch takes {one_core_ms:.1f} ms on one core,
  {ms['threads']:.1f} ms in one process with {THREADS} threads and {ms['ddp']:.1f} ms in two processes with one thread
  each. Two processes are **{WORDS[vs_threads['verdict']]}** the threaded process ({vs_threads['ratio']:.2f}x its
  speed; rounds {vs_threads['low']:.2f}-{vs_threads['high']:.2f}x{"" if vs_threads['verdict'] != "can't tell" else
  ": the rounds disagree, so this machine's load decides it, not the setups"}) and
  {WORDS[vs_one['verdict']]} one core ({vs_one['ratio']:.2f}x; 2 would be perfect scaling). The gradient is
  {two['gradient_bytes'] / 1024:.0f} KiB; all-reducing it alone takes {two['allreduce_ms']:.2f} ms,
  {comm_share:.0%} of a two-process step.
  {gap_text}
""")

# %% [markdown]
# ## 5. The same command on several GPUs and several machines
#
# Nothing in the script changes. On one server with 8 GPUs, `init_process_group` picks `nccl` and
# rank $r$ uses GPU `LOCAL_RANK`:
#
# ```bash
# torchrun --standalone --nproc-per-node=8 -m mmcourse.distributed --epochs 10
# ```
#
# On 2 servers with 8 GPUs each (16 ranks), run the same line on both, naming a rendezvous host
# that both can reach; `torchrun` numbers the ranks (0–7 on one, 8–15 on the other):
#
# ```bash
# # on node 0 (10.0.0.1) and on node 1, the same command except --node-rank
# torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 \
#          --rdzv-backend=c10d --rdzv-endpoint=10.0.0.1:29500 --rdzv-id=av-digits \
#          -m mmcourse.distributed --epochs 10
# ```
#
# (With `--rdzv-backend c10d` the node rank may also be left out and assigned at rendezvous; a
# cluster scheduler such as Slurm usually supplies the host and ids.) The global batch is
# `--batch-size`, split over all ranks; keep it fixed and the update stays the one checked in
# section 3. If the global batch grows with the ranks, the learning rate usually has to grow too.
#
# **When a rank dies.** Every collective waits for all ranks. The script passes
# `timeout=timedelta(seconds=--timeout)` to `init_process_group`, so if one rank crashes or hangs,
# the others fail after that many seconds with an error naming the cause, and `torchrun` stops
# them all and exits non-zero; without it a job can wait forever. `tests/test_distributed.py`
# makes one rank hang (`--fail-at-step 1 --fail-mode hang`) and checks that the run ends with
# that error within seconds.

# %% [markdown]
# ## 6. Gradient accumulation: the one-process alternative
#
# The same mean gradient can be computed by **one** process, one micro-batch after another:
# scale each micro-batch's mean loss by $1/k$, call `backward()` $k$ times (gradients add up in
# `.grad`), then step once. It trades time for memory: a batch too big for one device in $k$
# slices. On a model without batch statistics (the audio-only model: LayerNorm is per example)
# it is the full-batch update up to round-off; on the fusion model BatchNorm again sees each
# micro-batch separately.

# %%
def accumulate(model, opt, X, y, micro_batches):
    opt.zero_grad()
    for idx in micro_batches:
        loss = torch.nn.functional.cross_entropy(model(take(X, idx)), y[idx])
        (loss / len(micro_batches)).backward()  # .grad += ∇(loss / k)
    opt.step()


big = torch.arange(64)  # one batch of 64 rows ...
micro = list(big.split(16))  # ... or k = 4 micro-batches of 16
diffs = {}
for method in ("audio_only", "late"):
    keys = ["audio"] if method == "audio_only" else ["audio", "image"]
    X, y = {k: train.inputs[k] for k in keys}, train.labels
    weights = []
    for parts in ([big], micro):
        torch.manual_seed(0)
        m = build_av_model(method)
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        for _ in range(3):
            accumulate(m, opt, X, y, parts)
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    diffs[method] = (weights[0] - weights[1]).abs().max().item()
print({k: f"{v:.2g}" for k, v in diffs.items()})

# %%
# NBVAL_CHECK_OUTPUT
print(f"audio-only: 4 accumulated micro-batches == one batch of 64 (max param diff < 1e-6): {diffs['audio_only'] < 1e-6}")
print(f"fusion model with BatchNorm: differs by more (per-micro-batch statistics): {diffs['late'] > 1e-6}")

# %% [markdown]
# `accumulate` is the loop that `mmcourse.distributed.step_on_shards` runs (the one-process
# replay of section 3):

# %%
print(inspect.getsource(step_on_shards))

# %% [markdown]
# **Accumulation under DDP: `no_sync()`.** The two combine: each of $N$ ranks accumulates $k$
# micro-batches, for a global batch of $N \cdot k$ micro-batches. But DDP all-reduces inside
# *every* `backward()`, so $k$ micro-batches would cost $k$ all-reduces per step where one is
# enough (gradients add up, so reducing their sum once gives the same result). Inside
# `with ddp.no_sync():` a backward only accumulates into the local `.grad`; the first backward
# outside it all-reduces the whole sum:
#
# ```python
# for i, idx in enumerate(micro_batches):
#     with ddp.no_sync() if i < len(micro_batches) - 1 else contextlib.nullcontext():
#         (loss_fn(ddp(take(X, idx)), y[idx]) / len(micro_batches)).backward()
# opt.step()
# ```
#
# To see it without launching processes, this kernel joins a process group of one rank (DDP's
# all-reduce is then over a single rank, but it still runs) and counts the all-reduces with a
# *communication hook*, the function DDP calls for each bucket of gradients it reduces:

# %%
import contextlib

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def accumulate_ddp(no_sync, steps=3):
    """3 steps of 4 accumulated micro-batches under DDP; returns (all-reduces, final weights)."""
    torch.manual_seed(0)
    ddp = DDP(build_av_model("audio_only"))
    reduced = []

    def hook(state, bucket):  # DDP calls it once per gradient bucket it all-reduces
        reduced.append(bucket.index())
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())  # one rank: the mean over ranks is the gradient itself
        return fut

    ddp.register_comm_hook(None, hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    X, y = {"audio": train.inputs["audio"]}, train.labels
    for _ in range(steps):
        opt.zero_grad()
        for i, idx in enumerate(micro):
            with ddp.no_sync() if no_sync and i < len(micro) - 1 else contextlib.nullcontext():
                (torch.nn.functional.cross_entropy(ddp(take(X, idx)), y[idx]) / len(micro)).backward()
        opt.step()
    return len(reduced), torch.cat([p.detach().flatten() for p in ddp.parameters()])


dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
try:
    (n_plain, w_plain), (n_nosync, w_nosync) = accumulate_ddp(False), accumulate_ddp(True)
finally:
    dist.destroy_process_group()

# %%
# NBVAL_CHECK_OUTPUT
print(f"3 steps x {len(micro)} micro-batches: {n_plain} all-reduces without no_sync(), {n_nosync} with it")
print(f"the same weights either way: {torch.equal(w_plain, w_nosync)}")

# %% [markdown]
# ## 7. FSDP: shard the model, not only the batch
#
# DDP keeps a full copy of the weights, the gradients and the optimizer state (two more copies
# for Adam) on every rank, so the model must fit on one device. **Fully Sharded Data Parallel**
# splits all three across the $N$ ranks: each rank stores $1/N$ of every parameter; before a
# layer runs, its full weights are gathered (*all-gather*), used and freed; after backward the
# gradients are reduced and each rank keeps only its shard (*reduce-scatter*), and each rank
# updates only its shard. Memory per rank falls by up to $N$; communication grows to about 1.5×
# DDP's. PyTorch's current API is `torch.distributed.fsdp.fully_shard`, and it runs on CPUs with
# gloo too, so `--fsdp` swaps it in for DDP (each encoder and the whole model become FSDP units)
# and runs the same check:

# %%
# NBVAL_IGNORE_OUTPUT
fsdp_lines, fsdp, _ = launch(2, "--check", "--fsdp", "--steps", STEPS, "--limit", LIMIT, "--batch-size", BATCH)
fsdp_diff = float(fsdp_lines[-1].split(": ")[1])

# %%
# NBVAL_CHECK_OUTPUT
print(f"FSDP, 2 ranks == 1 process (max param diff < 1e-5): {fsdp_diff < 1e-5}")
print(f"rank 0 stores about half of the parameters: {abs(fsdp['local_params'] / fsdp['params'] - 0.5) < 0.05}")

# %% [markdown]
# ## Exercises
#
# **1. What a ring all-reduce sends.** Section 4 timed an all-reduce; how much does each rank
# actually send? NCCL and gloo use a *ring*: the $N$ ranks sit in a circle and the gradient is
# cut into $N$ equal chunks. First a **reduce-scatter**: in each of $N-1$ steps every rank
# passes one chunk to its neighbour, which adds it to its own copy of that chunk; afterwards
# each rank holds one chunk fully summed. Then an **all-gather**: $N-1$ more steps pass the
# summed chunks around until every rank has all of them. Write `my_gradient_bytes(num_params,
# world)`: the bytes *one rank sends* per step for `num_params` float32 gradients over `world`
# ranks. Then use it: MiniLM (lesson 08, 22.7 million parameters) on 8 GPUs and on 64 — how
# much more does each GPU send at 64?

# %%
def my_gradient_bytes(num_params, world):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.gradient_bytes_per_step(my_gradient_bytes)

# %% [markdown]
# **2. A batch that does not split evenly.** This lesson drops an incomplete batch, so every
# shard has $B/N$ rows. `torch.utils.data.DistributedSampler` by default (`drop_last=False`)
# keeps every row *and* gives every rank the same number of rows. Write `my_shard(batch, rank,
# world)`: the row indices rank `rank` of `world` trains on, out of a batch `batch` of shape
# `(B,)` where $B$ need not be divisible by `world`, as `DistributedSampler(..., shuffle=False)`
# deals them. How it does that is not in this lesson: read
# `inspect.getsource(torch.utils.data.DistributedSampler.__iter__)`. (The checker compares with
# torch's own sampler.)

# %%
def my_shard(batch, rank, world):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.rank_shard(my_shard)

# %% [markdown]
# **3. (open)** Predict, then run: `launch(2, "--check", "--method", "audio_only", "--limit", LIMIT)`.
# The audio encoder normalises with LayerNorm (per example, no running statistics). What will
# `full_batch_diff`, `rank_buffer_diff` and `batches_tracked` be, and why? Then time 2
# processes with 2 threads each (`launch(2, ..., "--bench", 7, threads=2)`) on this machine: what
# happens when the processes together ask for more threads than there are cores, and do the
# interleaved rounds agree?

# %% [markdown]
# ## What the numbers say

# %% tags=["hide-input"] jupyter={"source_hidden": true}
say(f"""
- **Equivalence.** After {STEPS} SGD steps, {two['world']} DDP ranks and one process replaying the same shards as
  micro-batches hold parameters at most {max_diff:.2g} apart, and FSDP's at most {fsdp_diff:.2g}: the averaged
  gradient is the gradient of the global batch *fed as {two['world']} shards*. For a model without batch statistics
  that is the full-batch gradient; with BatchNorm it is not: one forward over all {BATCH} rows ends
  {checked['full_batch_diff']:.2g} away, because BatchNorm's statistics depend on which rows it sees. Accumulation
  shows the same (audio-only model {diffs['audio_only']:.2g}, fusion model {diffs['late']:.2g}).
- **What DDP sends.** Gradients every step ({two['gradient_bytes']:,} bytes, 4 per parameter, whatever the batch
  size; alone that all-reduce took {two['allreduce_ms']:.2f} ms here, {comm_share:.0%} of a {ms['ddp']:.1f} ms
  two-process step), plus rank 0's parameters and buffers once at construction and rank 0's buffers at every
  forward. The parameters on the two ranks differ by {checked['rank_param_diff']:.2g}; their BatchNorm running
  statistics by {checked['rank_buffer_diff']:.2g} after a step, and rank 0's differ from the one-process replay's
  by {checked['buffer_diff']:.2g} ({checked['batches_tracked']['ddp']} vs {checked['batches_tracked']['replay']}
  batches tracked): the replay updated them once per micro-batch.
- **`no_sync()`.** Accumulating {len(micro)} micro-batches under DDP all-reduced {n_plain} times in 3 steps
  without it and {n_nosync} times with it, to the same weights.
- **Speed on this machine** ({ROUNDS} interleaved rounds): two single-thread processes are
  **{WORDS[vs_threads['verdict']]}** one process with {THREADS} threads ({vs_threads['ratio']:.2f}x, rounds
  {vs_threads['low']:.2f}-{vs_threads['high']:.2f}x) and {WORDS[vs_one['verdict']]} one core ({vs_one['ratio']:.2f}x).
  This measures how {THREADS} shared cores are used, not what a cluster gives: there, each rank brings its own
  device, and the gain approaches N when the compute per step dwarfs the all-reduce.
- **Not shown here:** GPUs, NCCL, several machines; `make gpu-check` runs this module under `torchrun` with
  NCCL on a GPU machine.
""")

# %% [markdown]
# ## Appendix: where one process's batch time goes
#
# Before adding processes, check that one process spends its time computing. Tutorials feed a
# model through a `Dataset` whose `__getitem__` builds one sample and a `DataLoader` that
# collates them: Python runs once per *sample*. `fit` and `mmcourse.distributed` keep the split in
# tensors and take a batch (or a rank's shard) with one index operation per modality.
# `mmcourse.throughput.breakdown` times the three parts of one batch of this lesson's model
# separately — the per-sample loader, batching by index, the training step — in interleaved rounds.

# %%
# NBVAL_IGNORE_OUTPUT
from mmcourse.throughput import breakdown, verdict

X_sub = {k: v[:LIMIT] for k, v in train.inputs.items()}
parts = breakdown(build_av_model("late"), X_sub, train.labels[:LIMIT], batch_size=BATCH // 2,
                  max_batches=quick(8, 4), repeats=quick(10, 3), rounds=3)
gain = verdict(parts["speedup_lo"], parts["speedup_hi"])
print(f"per batch of {BATCH // 2} (one rank's shard): per-sample loader {parts['loader_ms']:.2f} ms | by index "
      f"{parts['index_ms']:.3f} ms | training step {parts['step_ms']:.1f} ms")
print(f"loader + step vs index + step: {parts['speedup']:.2f}x (rounds {parts['speedup_lo']:.2f}-"
      f"{parts['speedup_hi']:.2f}x): batching by index is "
      + ({"faster": "faster end to end", "slower": "slower end to end"}.get(gain, "not clearly faster or slower end to end"))
      + f" for this model; the step is {parts['step_ms'] / (parts['loader_ms'] + parts['step_ms']):.0%} of a loader-fed batch")

# %% [markdown]
# **Next:** that is the course. The README's "GPU" section says how to run all of it on a GPU
# (`make gpu-check`), and `11_errata.ipynb` collects broken patterns to avoid.
