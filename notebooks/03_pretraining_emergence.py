# %% [markdown]
# # 03 · Self-supervised pretraining and the emergence of useful features
#
# A *foundation model* is pretrained on unlabelled data and then adapted to many tasks with few
# labels. The claim is that useful features **emerge** from a self-supervised objective alone. In
# this lesson you pretrain a small image encoder with SimCLR on digit images *without their
# labels*, and then measure the claim: how well a linear classifier on the frozen features does as
# pretraining proceeds, and how many labels it needs compared with a network trained from scratch.
#
# **Learning goals**
# - make two random *views* of each image with batched, per-image augmentations;
# - derive the NT-Xent contrastive loss and check it against `mmcourse.pretrain.nt_xent`;
# - measure emergence: linear-probe accuracy vs pretraining steps and vs the number of labels,
#   against an encoder trained from scratch on the same labels;
# - look at the embedding space (PCA, t-SNE) and at what the probe still gets wrong;
# - do the same for spoken digits with an audio objective (time crops + dropped frames).
#
# **Prerequisites:** 00 (the data), 01–02 (a network, cross-entropy, `mmcourse.train.fit`).
#
# **Run time:** full mode 2.0 min of cell time on a first run (nothing cached; longest cell 39 s), 31 s once its trainings are cached; quick mode 19 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.
#
# What costs time on a first run: SimCLR pretraining of the image and the audio encoder and 26
# small networks trained from scratch (in parallel worker processes). All of it goes through the
# checkpoint cache (`checkpoints/`), so a second Run All, and lessons 04–08, load it in seconds.
# `MMCOURSE_QUICK=1` is a CI smoke test, not a lighter course: its numbers mean nothing.

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
import copy
import inspect
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from torch import nn

import mmcourse
from mmcourse import check, quick, stats
from mmcourse.data import load_av_digits
from mmcourse.parallel import run_many
from mmcourse.pretrain import ImageAugment, few_shot_rows, nt_xent, pretraining_run, scratch_run
from mmcourse.probe import fit_linear_probe

gen = mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

# %% [markdown]
# ## 1. The data: digits without labels
#
# We use the *clean* AV-digits splits (lesson 00): 3,500 train images, 500 validation, 1,000
# test, each `(N, 1, 28, 28)`. Pretraining sees **only the train images, never a label**; labels
# are used afterwards, to measure what was learnt.

# %%
splits = {s: load_av_digits(s, "clean") for s in ("train", "val", "test")}
X_tr, y_tr = splits["train"].inputs["image"], splits["train"].labels
X_te, y_te = splits["test"].inputs["image"], splits["test"].labels
print({s: tuple(d.inputs["image"].shape) for s, d in splits.items()})

# %% [markdown]
# ## 2. Two views of every image
#
# SimCLR's only supervision is "these two images are versions of the same picture". A view is a
# random crop and rescale, a small rotation, a brightness change and sometimes an erased
# rectangle. The augmentations define what the encoder must become *invariant* to.
#
# A trap: torchvision's v2 transforms applied to a whole batch tensor draw **one** set of random
# parameters for the batch, so every image gets the same crop, which gives the contrastive loss
# nothing to learn from within a batch. Looping in Python over 256 images per step is slow on a
# CPU. `ImageAugment` draws parameters per image and applies all the crops and rotations as one
# affine warp (`F.affine_grid` + `F.grid_sample`).

# %%
# NBVAL_CHECK_OUTPUT
from torchvision.transforms import v2

copies = X_tr[:1].expand(4, 1, 28, 28)  # four copies of the same image
tv = v2.RandomResizedCrop(28, scale=(0.3, 1.0))(copies)
ours = ImageAugment()(copies, torch.Generator().manual_seed(0))
print("torchvision on a batch: all four views identical:", all(torch.equal(tv[0], t) for t in tv))
print("ImageAugment: all four views identical:         ", all(torch.equal(ours[0], t) for t in ours))

# %%
aug = ImageAugment()
g = torch.Generator().manual_seed(1)
fig, axes = plt.subplots(4, 7, figsize=(8, 4.8))
for r, i in enumerate([0, 1, 2, 3]):
    axes[r, 0].imshow(X_tr[i, 0], cmap="gray_r")
    for c in range(1, 7):
        axes[r, c].imshow(aug(X_tr[i:i + 1], g)[0, 0], cmap="gray_r")
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
axes[0, 0].set_title("original"); axes[0, 3].set_title("six random views")
fig.suptitle("Views differ in crop, angle, brightness and erasure; a few are hard to read even for us")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 3. The NT-Xent loss
#
# An encoder $f$ and a small projection head $g$ map the $2B$ views of a batch to unit vectors
# $z_i = g(f(x_i)) / \lVert g(f(x_i)) \rVert$. For a view $i$ whose partner (the other view of the
# same image) is $j$, the loss is a softmax cross-entropy over the $2B-1$ other views with the
# partner as the correct "class" (Chen et al. 2020, eq. 1):
#
# $$\ell(i, j) = -\log \frac{\exp(z_i^\top z_j / \tau)}{\sum_{k \ne i} \exp(z_i^\top z_k / \tau)},
# \qquad L = \frac{1}{2B} \sum_{i} \ell(i, j(i)).$$
#
# The temperature $\tau$ sets how sharply the softmax focuses on the hardest negatives. In code:
# a $(2B, 2B)$ similarity matrix, the diagonal masked out, and `cross_entropy` whose target for
# row $i$ is $i+B$ (and $i-B$ for the second half).

# %%
# NBVAL_CHECK_OUTPUT
def nt_xent_by_hand(z1, z2, tau):
    B = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D) unit vectors
    sim = z @ z.T / tau  # (2B, 2B)
    sim.fill_diagonal_(float("-inf"))  # a view is not its own candidate
    partner = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])  # (2B,)
    return F.cross_entropy(sim, partner)


g_demo = torch.Generator().manual_seed(0)  # its own generator: re-running the cell prints the same
z1, z2 = torch.randn(8, 5, generator=g_demo), torch.randn(8, 5, generator=g_demo)
same = torch.allclose(nt_xent_by_hand(z1, z2, 0.2), nt_xent(z1, z2, 0.2))
chance = np.log(2 * 8 - 1)
print(f"matches mmcourse.pretrain.nt_xent: {same}")
print(f"random vectors: loss {nt_xent(z1, z2, 0.5):.2f} (about log(2B - 1) = {chance:.2f} as tau grows); "
      f"identical views: {nt_xent(z1, z1, 0.2):.2f}")

# %% [markdown]
# With random vectors the loss sits near $\log(2B-1)$, the loss of a uniform guess among the
# candidates; when each view's partner is itself it drops towards zero. This is
# `mmcourse.pretrain.nt_xent`:

# %%
print(inspect.getsource(nt_xent))

# %% [markdown]
# ## 4. Pretraining
#
# `pretraining_run` trains `ImageEncoder` (three 3×3 conv blocks, the first two strided, then
# flatten and a linear layer to $D = 64$; width 8) plus the projection head with AdamW and
# NT-Xent on random batches of train images, keeping copies of the encoder at a few steps along
# the way. Its learning rate and temperature were chosen by the *validation* probe accuracy
# (`mmcourse.pretrain.image_config` lists the settings tried). It goes through the course's
# checkpoint cache: the first call trains and saves `checkpoints/simclr-image-clean-<mode>-…pt`,
# every later call (and lessons 04–08) loads it.

# %%
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
run = pretraining_run("image", "clean")
pretrain_seconds = time.perf_counter() - t0
cfg = run.config
print(cfg)

# %%
losses = run.losses.numpy()
smooth = pd.Series(losses).rolling(max(1, cfg.steps // 30), min_periods=1).mean()
plt.figure(figsize=(6, 3.2))
plt.plot(losses, alpha=0.3, label="per step")
plt.plot(smooth, label="running mean")
plt.axhline(np.log(2 * cfg.batch_size - 1), ls="--", c="gray", label="uniform guess log(2B-1)")
plt.xlabel("pretraining step"); plt.ylabel("NT-Xent loss"); plt.legend()
falls = smooth.iloc[-1] < smooth.iloc[0]
plt.title(mmcourse.title(f"The contrastive loss {'falls' if falls else 'does not fall'} from {smooth.iloc[0]:.2f} "
                         f"to {smooth.iloc[-1]:.2f} without a single label"), fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 5. Emergence I: probe accuracy vs pretraining steps
#
# A **linear probe** freezes the encoder and fits only a logistic regression on its features
# $f(x) \in \mathbb{R}^{64}$ (`fit_linear_probe`: standardised features, L2-penalised softmax
# regression fitted by L-BFGS). If the probe does well, the information is there in a *linearly
# readable* form. We probe every saved snapshot, with all 3,500 training labels and with only 10
# per class. Step 0 is the randomly initialised encoder, an important baseline: compare every
# later step with it, not with chance (0.10), since random convolutional features already carry
# some information about the digit. The dashed lines are the **pixel baseline**: the same
# logistic regression on the 784 raw pixels, no encoder at all. A learned encoder is only worth
# its cost if it beats that line.

# %%
@torch.no_grad()
def features(encoder, x):
    encoder.eval()
    return torch.cat([encoder(b) for b in x.split(1000)]).numpy()  # (N, D)


def probe_accuracy(feats, rows):
    """Fit a probe on the train features ``rows``; test accuracy. ``feats = (train, test)``."""
    probe = fit_linear_probe(feats[0][rows], y_tr[rows], n_classes=10)
    return probe.score(feats[1], y_te)


all_rows, ten_rows = few_shot_rows(y_tr, None, 0), few_shot_rows(y_tr, 10, 0)
pixels = (X_tr.flatten(1).numpy(), X_te.flatten(1).numpy())  # (N, 784): the pixel baseline's "features"
pixel_all, pixel_ten = probe_accuracy(pixels, all_rows), probe_accuracy(pixels, ten_rows)
feats = {s: (features(run.snapshot(s), X_tr), features(run.snapshot(s), X_te)) for s in cfg.snapshot_steps()}
by_step = pd.DataFrame(
    [{"step": s, "all labels": probe_accuracy(feats[s], all_rows),
      "10 labels / class": probe_accuracy(feats[s], ten_rows),
      "NT-Xent loss": float(run.losses[min(s, cfg.steps - 1)])} for s in cfg.snapshot_steps()]
).set_index("step")
display(by_step.round(3))
print(f"pixel baseline (logistic regression on raw pixels): {pixel_all:.3f} with all labels, "
      f"{pixel_ten:.3f} with 10 per class")

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
steps_axis = np.array(by_step.index) + 1  # log axis: step 0 is drawn at 1
for j, (col, m, px) in enumerate((("all labels", "o-", pixel_all), ("10 labels / class", "s-", pixel_ten))):
    ax.plot(steps_axis, by_step[col], m, c=f"C{j}", label=f"SimCLR snapshot + probe, {col}")
    ax.axhline(px, ls="--", c=f"C{j}", lw=1, label=f"pixels + probe, {col}")
ax.set_xscale("log"); ax.set_xlabel("pretraining step + 1 (log scale)"); ax.set_ylabel("linear-probe test accuracy")
ax.legend(fontsize=7)
rise = by_step["all labels"].iloc[-1] - by_step["all labels"].iloc[0]
ax.set_title(mmcourse.title(f"{'Features emerge' if rise > 0 else 'No emergence in this run'}: probe accuracy "
                            f"{by_step['all labels'].iloc[0]:.2f} → {by_step['all labels'].iloc[-1]:.2f} (all labels)"),
             fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# **The dip.** Look at the first snapshots: the probe can be *worse* after a few steps than at
# random init. Is the encoder learning something bad first? In the first steps the one-cycle
# schedule's learning rate is still tiny (it warms up from lr/25), so the weights barely move. But
# every training-mode forward pass also updates the **BatchNorm running statistics** (momentum
# 0.1), which the frozen encoder uses in eval mode: after a few steps they are a mix of their
# initial values and the statistics of *augmented* views. The cell below takes an early snapshot
# apart: its weights with the random init's BatchNorm statistics, and the random init's weights
# with its BatchNorm statistics.

# %%
def swap_bn_stats(weights_from, stats_from):
    """A copy of ``weights_from`` whose BatchNorm running mean/var/count come from ``stats_from``."""
    enc = copy.deepcopy(weights_from)
    for m, src in zip(enc.modules(), stats_from.modules()):
        if isinstance(m, nn.BatchNorm2d):
            m.load_state_dict(src.state_dict() | {k: v for k, v in m.state_dict().items() if "running" not in k
                                                  and "num_batches" not in k})
    return enc


dip_step = by_step["all labels"].idxmin()
dip = dip_step > 0 and by_step.loc[dip_step, "all labels"] < by_step["all labels"].iloc[0] - 0.005
if dip:
    init, early = run.snapshot(0), run.snapshot(dip_step)
    moved = max((a - b).abs().max().item() for a, b in zip(early.parameters(), init.parameters()))
    parts = {f"step-{dip_step} weights, random-init BatchNorm statistics": swap_bn_stats(early, init),
             f"random-init weights, step-{dip_step} BatchNorm statistics": swap_bn_stats(init, early)}
    swapped = {name: probe_accuracy((features(e, X_tr), features(e, X_te)), all_rows) for name, e in parts.items()}
    (w_name, w_acc), (s_name, s_acc) = swapped.items()
    bn_explains = s_acc < by_step["all labels"].iloc[0] - 0.005 and w_acc > by_step.loc[dip_step, "all labels"] + 0.005
    mmcourse.say(
        f"In this run the probe (all labels) falls from {by_step['all labels'].iloc[0]:.3f} at random init to "
        f"{by_step.loc[dip_step, 'all labels']:.3f} at step {dip_step} before rising to {by_step['all labels'].iloc[-1]:.3f}. "
        f"By step {dip_step} no weight has moved by more than {moved:.4f}. Probe accuracy with {w_name}: {w_acc:.3f}; "
        f"with {s_name}: {s_acc:.3f}. "
        + ("So the dip comes from the BatchNorm statistics, not from what the weights learnt: an artefact of "
           "snapshotting an encoder trained on augmented views. The rise after it is learning: by the last "
           f"snapshot the probe is {by_step['all labels'].iloc[-1] - by_step['all labels'].iloc[0]:+.3f} above random "
           "init." if bn_explains else
           "Swapping the BatchNorm statistics does not account for the dip here, so this run leaves it unexplained."))
else:
    mmcourse.say(f"In this run the probe does not dip: it never falls below its random-init value "
                 f"{by_step['all labels'].iloc[0]:.3f} by more than half a point.")

# %% [markdown]
# ## 6. Emergence II: how many labels do you need?
#
# Now fix the pretrained encoder and vary the number of labelled examples per class. Four
# contestants see exactly the same labelled images:
# 1. **SimCLR + probe**: the pretrained encoder, frozen, with a logistic regression;
# 2. **random + probe**: the same architecture at its random initialisation, frozen, with a probe;
# 3. **pixels + probe**: the same logistic regression on the raw pixels (no encoder);
# 4. **from scratch**: the same architecture trained end to end with `fit` (`scratch_run`): about
#    300 optimiser steps of 64 images with the course's one-cycle schedule up to 5e-3 (no
#    validation labels: in a few-shot setting there are none to spare, so nothing is selected or
#    stopped early).
#
# Each labelled subset is drawn five times (at 350 per class every draw holds all the labels; the
# draws then differ only in the scratch network's initial weights and batch order). Two contestants
# are compared **draw by draw** with `mmcourse.stats`: a paired t-test over the draws at 5 %
# decides "better", else the comparison is "not resolved with 5 draws".
#
# The probes are cheap; first they:

# %%
label_counts = quick([1, 3, 10, 30, 100, 350], [1, 10, 350])
draws = quick(5, 2)
jobs = [{"per_class": n, "draw": d} for n in label_counts for d in range(draws)]
rows_out = []
for job in jobs:
    rows = few_shot_rows(y_tr, job["per_class"], seed=job["draw"])
    rows_out.append({"labels / class": job["per_class"], "draw": job["draw"],
                     "SimCLR + probe": probe_accuracy(feats[cfg.steps], rows),
                     "random + probe": probe_accuracy(feats[0], rows),
                     "pixels + probe": probe_accuracy(pixels, rows)})
per_draw = pd.DataFrame(rows_out)
display(per_draw.groupby("labels / class").mean().drop(columns="draw").round(3))

# %% [markdown]
# Then the networks trained from scratch, one per subset and draw. They are independent, so
# `run_many` trains them in parallel worker processes (one thread each; the results equal a
# serial run's), and each goes through the checkpoint cache: a second run loads them.

# %%
# NBVAL_IGNORE_OUTPUT
scratch_steps = quick(300, 20)
t0 = time.perf_counter()
scratch = run_many(scratch_run, [{**job, "steps": scratch_steps} for job in jobs], desc="from scratch")
print(f"{len(scratch)} scratch networks: {sum(r['loaded'] for r in scratch)} loaded from the checkpoint cache, "
      f"{sum(not r['loaded'] for r in scratch)} trained; {time.perf_counter() - t0:.0f} s")
per_draw["from scratch"] = [r["test_acc"] for r in scratch]  # same order as jobs

# %%
cols = ["SimCLR + probe", "from scratch", "pixels + probe", "random + probe"]
by_labels = per_draw.groupby("labels / class")[cols].mean()
spread = per_draw.groupby("labels / class")[cols].std(ddof=1)  # over the draws
display(by_labels.map("{:.3f}".format) + " ± " + spread.map("{:.3f}".format))


def draws_of(n, col):
    """The per-draw accuracies of one contestant at n labels per class, in draw order."""
    return per_draw[per_draw["labels / class"] == n].sort_values("draw")[col].to_numpy()


verdicts = pd.DataFrame({f"SimCLR + probe vs {other}": {
    n: {"a": "SimCLR better", "b": f"{other} better", "not resolved": "not resolved"}[
        stats.paired_verdict(draws_of(n, "SimCLR + probe"), draws_of(n, other))]
    for n in label_counts} for other in ("from scratch", "pixels + probe")})
verdicts.index.name = "labels / class"
display(verdicts)

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for col, m in (("SimCLR + probe", "o-"), ("from scratch", "s-"), ("pixels + probe", "d--"), ("random + probe", "^:")):
    ax.errorbar(by_labels.index, by_labels[col], yerr=spread[col], fmt=m, capsize=3, label=col)
ax.set_xscale("log"); ax.set_xlabel("labelled examples per class (log scale)"); ax.set_ylabel("test accuracy")
ax.legend(fontsize=8)
say10 = stats.say("SimCLR + probe", "scratch", draws_of(10, "SimCLR + probe"), draws_of(10, "from scratch"), runs="draws")
ax.set_title(textwrap.fill(mmcourse.title(f"10 labels per class: {say10}"), 80), fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 7. Looking at the embedding space
#
# PCA keeps the two directions of largest variance; t-SNE keeps neighbourhoods. Colours are the
# labels the encoder never saw. The silhouette score (−1 to 1, computed in the full 64-d space)
# measures how much closer each point is to its own digit than to the nearest other digit: about
# 0 means the digits' clouds overlap (no cluster structure), and the usual reading (Kaufman &
# Rousseeuw 1990) calls below 0.25 "no substantial structure" and above 0.5 "reasonable". A
# probe can still separate digits that do not form clusters: it only needs them on different
# sides of a few hyperplanes. And do not read t-SNE's islands as clusters in the feature space:
# t-SNE keeps neighbourhoods and pushes groups apart, so it draws islands even where the 64-d
# clouds overlap. Which digits does SimCLR still mix up?

# %%
n_show = quick(1000, 300)
emb = {"random init": feats[0][1][:n_show], "SimCLR": feats[cfg.steps][1][:n_show]}
labels_show = y_te[:n_show].numpy()
sil = {name: silhouette_score(StandardScaler().fit_transform(E), labels_show) for name, E in emb.items()}
P = PCA(2).fit_transform(StandardScaler().fit_transform(emb["SimCLR"]))  # (n_show, 2)
sil_pca = silhouette_score(P, labels_show)  # the same score in the top-2 PCA plane
fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
axes[0].scatter(P[:, 0], P[:, 1], c=labels_show, cmap="tab10", s=5)
axes[0].set_title(f"PCA, SimCLR features (silhouette {sil_pca:.2f})"); axes[0].set_xlabel("PC 1"); axes[0].set_ylabel("PC 2")
for ax, (name, E) in zip(axes[1:], emb.items()):
    T = TSNE(2, init="pca", perplexity=30, max_iter=quick(1000, 250), random_state=0).fit_transform(E)
    sc = ax.scatter(T[:, 0], T[:, 1], c=labels_show, cmap="tab10", s=5)
    for c in range(10):
        ax.annotate(str(c), T[labels_show == c].mean(0), fontsize=13, weight="bold")
    ax.set_title(f"t-SNE, {name} (silhouette {sil[name]:.2f})"); ax.set_xlabel("t-SNE 1"); ax.set_ylabel("t-SNE 2")
fig.colorbar(sc, ax=axes, label="digit (never used in pretraining)")


def structure(s):
    """Kaufman & Rousseeuw's reading of a silhouette score."""
    return ("no substantial cluster structure" if s < 0.25 else "weak clusters" if s < 0.5 else
            "reasonable clusters" if s < 0.7 else "strong clusters")


fig.suptitle(mmcourse.title(
    f"Silhouette {sil['SimCLR']:.2f} after SimCLR vs {sil['random init']:.2f} at random init (64-d): "
    f"{structure(sil['SimCLR'])} after pretraining{' either' if structure(sil['SimCLR']) == structure(sil['random init']) else ''}, "
    f"though a linear probe separates the digits; top-2 PCA plane {sil_pca:.2f}"))
plt.show()

# %% [markdown]
# And the failures: test digits that the probe on SimCLR features (all labels) gets wrong.

# %%
probe = fit_linear_probe(feats[cfg.steps][0], y_tr)
with torch.no_grad():
    pred = probe(feats[cfg.steps][1]).argmax(1).numpy()
wrong = np.flatnonzero(pred != y_te.numpy())
confusions = pd.Series([f"{t}→{p}" for t, p in zip(y_te.numpy()[wrong], pred[wrong])]).value_counts()
fig, axes = plt.subplots(2, 8, figsize=(9, 2.8))
for ax, i in zip(axes.flat, wrong):
    ax.imshow(X_te[i, 0], cmap="gray_r"); ax.set_xticks([]); ax.set_yticks([])
    ax.set_title(f"{y_te[i].item()} → {pred[i]}", fontsize=9)
fig.suptitle(mmcourse.title(f"{len(wrong)} of {len(y_te)} test digits are misread (true → predicted); "
                            f"most common: {confusions.index[0]} ({confusions.iloc[0]}×)"))
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 8. The same idea for sound
#
# For spoken digits (MFCC sequences `(B, T, 13)`, zero-padded), a view is a random **time crop**
# (60–100 % of the real frames), with 15 % of frames **dropped** (set to zero, so the encoder's
# mask treats them as padding, the contrastive cousin of masked-frame prediction) and Gaussian
# noise. The loss is the same NT-Xent, the encoder `AudioEncoder` (1-D convolutions, masked mean
# pooling). We probe it as in section 5, with the same 10 labelled train pairs per class, and
# score it on the test split.

# %%
# NBVAL_IGNORE_OUTPUT
audio_run = pretraining_run("audio", "clean")

# %%
A_tr, A_te = splits["train"].inputs["audio"], splits["test"].inputs["audio"]
clf_audio = {}
for name, enc in (("random + probe", audio_run.snapshot(0)), ("SimCLR + probe", audio_run.encoder)):
    probe_a = fit_linear_probe(features(enc, A_tr[ten_rows]), y_tr[ten_rows], n_classes=10)
    clf_audio[name] = probe_a.score(features(enc, A_te), y_te)
print("audio, 10 labels per class, test accuracy:", {k: round(v, 3) for k, v in clf_audio.items()})

# %% [markdown]
# ## 9. Interactive: what the temperature does
#
# Take eight test digits, two views each, through the pretrained SimCLR model. The bars are the
# softmax in $\ell(i, j)$ for the first view: the probability it assigns to each of the
# $2B - 1 = 15$ candidates. Move $\tau$: small values put almost all the mass on the closest
# candidate (the partner, if pretraining worked, else the hardest negative), large values spread it.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

with torch.no_grad():
    run.simclr.eval()
    xb = X_te[:8]
    gv = torch.Generator().manual_seed(0)
    zb1, zb2 = run.simclr(aug(xb, gv)), run.simclr(aug(xb, gv))
zb = F.normalize(torch.cat([zb1, zb2]), dim=1)  # (16, 64)
out = widgets.Output()
tau_slider = widgets.FloatLogSlider(value=0.2, base=10, min=-2, max=0.5, step=0.05, description="τ")


def show_softmax(change=None):
    tau = tau_slider.value
    sims = (zb[0] @ zb[1:].T) / tau  # (15,) candidates of view 0; index 7 is its partner
    p = torch.softmax(sims, 0).numpy()
    with out:
        out.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.bar(range(15), p, color=["C3" if k == 7 else "C0" for k in range(15)])
        ax.set_xlabel("candidate view (red: the partner)"); ax.set_ylabel("softmax probability")
        ax.set_title(f"τ = {tau:.3f}: partner gets p = {p[7]:.2f}, loss of this anchor {-np.log(p[7]):.2f}; "
                     f"batch NT-Xent {nt_xent(zb1, zb2, tau):.2f}", fontsize=9)
        ax.set_ylim(0, 1); plt.tight_layout(); plt.show()


tau_slider.observe(show_softmax, names="value")
show_softmax()
display(widgets.VBox([tau_slider, out]))

# %% [markdown]
# ## 10. Exercises
#
# **Exercise 1 · alignment and uniformity.** Wang & Isola (2020) explain contrastive learning by
# two properties of the normalised features $u = z / \lVert z \rVert$: **alignment**, the mean
# squared distance between the two views of an image, $\mathbb{E}\,\lVert u_1 - u_2 \rVert^2$
# (small is good), and **uniformity**, $\log \mathbb{E}_{i<j}\, e^{-2 \lVert u_i - u_j \rVert^2}$
# over pairs of different images (more negative = spread more evenly over the sphere). Write
# `alignment_uniformity(z1, z2)` for two `(B, D)` batches of views, returning both (uniformity of
# `z1`'s rows). Then compare the random-init and the SimCLR encoder on test views.

# %%
def alignment_uniformity(z1, z2):
    # YOUR CODE HERE: return (alignment, uniformity)
    raise NotImplementedError


check.alignment_uniformity(alignment_uniformity)

# %% [markdown]
# **Exercise 2 · a k-NN probe.** A second, parameter-free way to evaluate an encoder: classify each
# test image by a majority vote of its $k$ most cosine-similar training images. Write
# `knn_accuracy(train_feats, train_labels, test_feats, test_labels, k)` and use it on
# `features(run.encoder, X_tr)`; does it agree with the linear probe?

# %%
def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k):
    # YOUR CODE HERE: return the accuracy as a float
    raise NotImplementedError


check.knn_accuracy(knn_accuracy)

# %% [markdown]
# ## What the numbers say

# %% tags=["hide-input"] jupyter={"source_hidden": true}
first, last = by_step.iloc[0], by_step.iloc[-1]
b, n_all = by_labels, label_counts[-1]


def vs(n, other):
    """'0.912 vs 0.873: <stats sentence>' for SimCLR + probe against another contestant at n labels per class."""
    return (f"{b.loc[n, 'SimCLR + probe']:.3f} vs {b.loc[n, other]:.3f}: "
            + stats.say("SimCLR + probe", other, draws_of(n, "SimCLR + probe"), draws_of(n, other), runs="draws"))


mmcourse.say(f"""
- `pretraining_run` took {pretrain_seconds:.1f} s in this run (a first run trains {cfg.steps} steps on {len(X_tr):,}
  unlabelled images; later runs load the cached checkpoint: the line it printed says which). NT-Xent
  {"fell" if smooth.iloc[-1] < smooth.iloc[0] else "did not fall"} from {smooth.iloc[0]:.2f} to {smooth.iloc[-1]:.2f}
  (running mean; a uniform guess is {np.log(2 * cfg.batch_size - 1):.2f}).
- Emergence with steps: the linear probe on frozen features goes from {first['all labels']:.3f} (random init)
  to {last['all labels']:.3f} with all labels, and from {first['10 labels / class']:.3f} to
  {last['10 labels / class']:.3f} with 10 per class (one pretraining run). Random features alone reach {first['all labels']:.3f},
  so the gain from pretraining is the difference, {last['all labels'] - first['all labels']:+.3f}, not the final number.
  The pixel baseline (logistic regression on raw pixels) scores {pixel_all:.3f} / {pixel_ten:.3f}:
  the pretrained encoder's probe is {"above" if last['all labels'] > pixel_all else "not above"} it with all labels and
  {"above" if last['10 labels / class'] > pixel_ten else "not above"} it with 10 per class (one draw of labels here; the
  comparison over five draws follows).
- Emergence with labels, over {draws} draws each (paired t-test, 5 %):
  - 1 label per class, SimCLR + probe vs scratch {vs(label_counts[0], "from scratch")};
  - 10 per class vs scratch {vs(10, "from scratch")}; vs the pixel baseline {vs(10, "pixels + probe")};
  - all {n_all} per class vs scratch {vs(n_all, "from scratch")}; vs the pixel baseline {vs(n_all, "pixels + probe")}.
  {dict(a=f"So pretraining helps most with few labels; with every label its lead shrinks to "
          f"{100 * (b.loc[n_all, 'SimCLR + probe'] - b.loc[n_all, 'from scratch']):.1f} points at this scratch budget.",
        b="With every label the scratch network is the better model: pretraining buys label efficiency here, "
          "not a higher ceiling.",
        **{"not resolved": "With every label the two cannot be told apart with these draws: pretraining buys label "
                           "efficiency here, not (resolvably) a higher ceiling."})[
       stats.paired_verdict(draws_of(n_all, "SimCLR + probe"), draws_of(n_all, "from scratch"))]}
- The embedding has {structure(sil['SimCLR'])} by silhouette ({sil['SimCLR']:.2f}; {sil['random init']:.2f} at random init):
  pretraining made the digits *linearly separable* without making them form tight clusters.
- Audio: with 10 labels per class the probe on SimCLR audio features reaches {clf_audio['SimCLR + probe']:.3f} vs
  {clf_audio['random + probe']:.3f} on random features (one draw of labels, one pretraining run: a description, not a verdict).
- What this does not show: one small architecture, one pretraining seed, one easy data set (clean digits, where
  even raw pixels do well); the from-scratch budget is fixed, not tuned per label count. A bigger encoder, longer
  pretraining or a harder domain would change the size of every gap.
""")


# %% [markdown]
# **Next:** [04 · Homogenization](04_homogenization.ipynb) — many deployers adapting one
# pretrained base: do they fail on the same examples?
