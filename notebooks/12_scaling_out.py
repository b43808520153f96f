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
# - explain why averaging per-shard gradients gives the full-batch gradient, and why the weights
#   agree to round-off rather than bit for bit (and where BatchNorm breaks the equality);
# - launch `torchrun --nproc-per-node=N -m mmcourse.distributed` and read what each rank does;
# - measure time per step against time per all-reduce, and say when more processes pay;
# - write the commands for several GPUs and several nodes; use gradient accumulation and know
#   what FSDP shards.
#
# **Prerequisites:** 01 (a training step), 05 (the fusion model, `fit`'s batching by index).
#
# **Run time (measured on the course's 2-core CPU while other jobs shared it):** full mode 43–49 s
# of cell time (three runs); quick mode (the CI smoke test, `MMCOURSE_QUICK=1`) 46 s a run in the
# re-run test, 68–84 s while other jobs kept both cores busy. Quick mode saves little: starting
# processes dominates (each of the three `torchrun` launches imports torch and loads the data once
# per process, 13–20 s each), not training.

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
from mmcourse.distributed import global_batches, make_optimizer, shard, step_on_shards, torchrun_command
from mmcourse.fusion.zoo import build_av_model
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
# Every rank then applies the same $\bar g$ to the same weights, so the copies stay identical
# without ever sending weights, only gradients: one float32 number (4 bytes) per parameter per
# step. Which rows go where? Like `DistributedSampler`: every rank draws the *same* permutation
# (a shared seed), cuts it into global batches of $B$ indices, and rank $r$ takes every $N$-th
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
# `mmcourse/distributed.py` is an ordinary training script plus four distributed lines: join the
# process group (`init_process_group`, backend `gloo` on CPUs, `nccl` on NVIDIA GPUs, with a
# timeout), wrap the model (`DistributedDataParallel(model)`), take this rank's shard of each
# batch, and let rank 0 alone print, evaluate and save. `torchrun` starts the $N$ processes and
# tells each its rank through environment variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
# `MASTER_ADDR`, `MASTER_PORT`); `--standalone` runs the rendezvous on this machine on a free
# port. Here are 2 processes, one CPU thread each:

# %%
# NBVAL_IGNORE_OUTPUT
lines2, two, wall2 = launch(2, "--epochs", EPOCHS, "--limit", LIMIT, "--batch-size", BATCH, threads=1)
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
# from the same initial weights and compares every weight. Two subtleties, both printed:
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
#   $10^{-7}$ of a weight) can appear (exercise 3). Either way far below anything that matters.

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

# %% [markdown]
# ## 4. What two processes buy on this machine, and why
#
# A step of DDP costs the compute on $B/N$ rows plus the all-reduce of the gradient (DDP overlaps
# part of it with the backward pass). Two processes on two cores can at best halve the compute;
# they add communication, and they compete with one ordinary process that uses both cores
# through two torch threads. Measure rather than guess: the two-process run of section 2 timed
# every step (and every rank timed an all-reduce of a tensor the size of the gradient on its
# own); here the same global batches, model and optimizer train in this one process, without
# any distributed code, on one core and then with all the cores as threads. These are timings on
# a machine other jobs may share at the same moment: re-run the cells and see how much they move.

# %%
# NBVAL_IGNORE_OUTPUT
def one_process_step_ms(steps, threads):
    """Median ms per step of plain one-process training on the same global batches."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        m = build_av_model("late")
        opt = make_optimizer(m.parameters(), "adamw", 3e-3)  # what the module trains with
        X, y = {k: v[:LIMIT] for k, v in train.inputs.items()}, train.labels[:LIMIT]
        batches = [b for e in range(steps) for b in global_batches(LIMIT, BATCH, e, seed=0)][:steps]
        times = []
        for b in batches:
            t0 = time.perf_counter()
            step_on_shards(m, opt, X, y, [b])  # one shard: the whole batch
            times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times[1:])
    finally:
        torch.set_num_threads(before)


STEPS_TIMED = 30  # the median of 30 steps: a shared machine's load moves single steps a lot
one_core_ms = one_process_step_ms(STEPS_TIMED, threads=1)
one_ms = one_process_step_ms(STEPS_TIMED, threads=CORES)
speedup = one_ms / two["step_ms"]  # time per global batch: 1 process with every core / 2 processes
scaling = one_core_ms / two["step_ms"]  # 2 processes against one core: 2.0 would be perfect
comm_share = two["allreduce_ms"] / two["step_ms"]
print(f"time per global batch of {BATCH}: 1 process x 1 thread {one_core_ms:.1f} ms | 1 process x {CORES} threads "
      f"{one_ms:.1f} ms | 2 processes x 1 thread {two['step_ms']:.1f} ms")
print(f"2 processes vs 1 core: {scaling:.2f}x | vs 1 process with {CORES} threads: {speedup:.2f}x")
print(f"all-reduce of the gradient ({two['gradient_bytes']:,} bytes = {two['params']:,} params x 4) alone: "
      f"{two['allreduce_ms']:.2f} ms = {comm_share:.0%} of a 2-process step")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.0))
names = ["1 process, 1 thread", f"1 process, {CORES} threads", "2 processes, 1 thread each"]
ax.barh(names, [one_core_ms, one_ms, two["step_ms"] - two["allreduce_ms"]], color="tab:blue",
        label="the step without the all-reduce (forward, backward, optimizer, overheads)")
ax.barh(names[2:], [two["allreduce_ms"]], left=[two["step_ms"] - two["allreduce_ms"]], color="tab:red",
        label="all-reduce of the gradient (timed alone)")
ax.set_xlabel("milliseconds per global batch (median step)")
verdict = "faster" if speedup > 1.1 else ("slower" if speedup < 1 / 1.1 else "about as fast")
ax.set_title(title(f"2 processes: {speedup:.2f}x the speed of 1 process with {CORES} threads ({verdict}); "
                   f"the all-reduce is {comm_share:.0%} of their step"), fontsize=9)
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=1, frameon=False)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Where a speed-up comes from on real hardware.** Data parallelism pays when each rank has its
# own processor (a GPU, a machine) and the compute per step is much larger than the
# communication: the step time is then close to $\frac{1}{N}$ of one processor's, plus the
# part of the all-reduce that does not overlap with the backward pass. A ring all-reduce sends
# about $2\frac{N-1}{N}$ times the gradient bytes per rank, whatever $N$ is, so what matters is
# bytes per step divided by the link's bandwidth: GPUs in one server talk over NVLink (hundreds
# of GB/s), servers over InfiniBand or fast Ethernet (tens of GB/s), which is why large jobs
# also overlap communication with compute and use bigger per-rank batches. On one CPU the
# "processors" are cores that one process could already use through threads, so the numbers above
# measure overheads, not the gain a cluster gives; the next cell states what they show.

# %%
ideal = one_core_ms / 2  # perfect data parallelism: each of 2 ranks does half a one-core step
gap = two["step_ms"] - ideal
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
- **Speed here.** A global batch takes {one_core_ms:.1f} ms on one core, {one_ms:.1f} ms in one process with
  {CORES} threads and {two['step_ms']:.1f} ms in two processes with one thread each: {scaling:.2f}x one core's speed
  (2 would be perfect) and {speedup:.2f}x the threaded process's, so two processes are **{verdict} {'as' if verdict == 'about as fast' else 'than'}** the
  threaded process on this {CORES}-core machine. The gradient is {two['gradient_bytes'] / 1024:.0f} KiB; all-reducing it
  alone takes {two['allreduce_ms']:.2f} ms, {comm_share:.0%} of a two-process step.
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
# **1. Bytes on the wire.** Write `my_gradient_bytes(num_params)`: how many bytes DDP all-reduces
# per step for a model of `num_params` float32 parameters, all trainable. Then use it: MiniLM
# (lesson 08) has 22.7 million parameters; how many MB per step is that, against this lesson's
# model?

# %%
def my_gradient_bytes(num_params):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.gradient_bytes_per_step(my_gradient_bytes)

# %% [markdown]
# **2. Which rows are mine?** Write `my_shard(batch, rank, world)`: the row indices rank `rank` of
# `world` trains on, out of one global batch `batch` of shape `(B,)`, dealt as
# `DistributedSampler` deals them.

# %%
def my_shard(batch, rank, world):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.rank_shard(my_shard)

# %% [markdown]
# **3. (open)** Launch the check with 3 processes and a batch divisible by 3
# (`launch(3, "--check", "--batch-size", 96, "--limit", LIMIT)`): is the difference still 0?
# Why does dividing by 3 change it (section 3)? Then time 2 processes with 2 threads each: what
# happens when the processes ask for more threads than the machine has cores?

# %% [markdown]
# ## What the numbers say

# %%
say(f"""
- **Equivalence.** After {STEPS} SGD steps, {two['world']} DDP ranks and one process replaying the same shards hold
  weights at most {max_diff:.2g} apart, and FSDP's at most {fsdp_diff:.2g}: the averaged gradient is the
  full-batch gradient. One forward over all {BATCH} rows differs by {checked['full_batch_diff']:.2g}, because
  BatchNorm's statistics depend on which rows it sees; accumulation shows the same (audio-only model
  {diffs['audio_only']:.2g}, fusion model {diffs['late']:.2g}).
- **Cost.** Each step all-reduces {two['gradient_bytes']:,} bytes (4 per parameter, whatever the batch size);
  alone that took {two['allreduce_ms']:.2f} ms here, {comm_share:.0%} of a {two['step_ms']:.1f} ms two-process step.
- **Speed on this machine.** Two single-thread processes ran a global batch {scaling:.2f}x as fast as one core
  and {speedup:.2f}x as fast as one process with {CORES} threads ({verdict}). This measures how {CORES} shared cores are used, not what a cluster gives: there,
  each rank brings its own device, and the gain approaches N when the compute per step dwarfs the
  all-reduce.
- **Not shown here:** GPUs, NCCL, several machines; `make gpu-check` runs this module under `torchrun` with
  NCCL on a GPU machine.
""")

# %% [markdown]
# **Next:** that is the course. The README's "GPU" section says how to run all of it on a GPU
# (`make gpu-check`), and `11_errata.ipynb` collects broken patterns to avoid.
