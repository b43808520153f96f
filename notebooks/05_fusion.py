# %% [markdown]
# # 05 · The fusion zoo: ten ways to combine an image and a sound
#
# A spoken "seven" and a handwritten 7 carry the same label through different senses. This
# lesson trains one model per fusion method on **AV-digits** (a real MNIST image paired with a
# real spoken recording of the same digit, both degraded so neither is enough alone) and compares
# them on equal terms: same encoders, data, epochs and seeds. Eight of them are *parallel* (each
# modality encoded on its own, then combined), one is *serial* (the sound steers the image
# encoder from the inside) and one *hybrid* (both). You will then move the modality
# weights of a weighted-sum model with sliders, corrupt or remove a modality, and see what
# happens to accuracy.
#
# **Learning goals**
# - write early (concat), late (decision-level), weighted-sum, gated, FiLM, attention, tensor and
#   low-rank tensor fusion as formulas and as `(B, D)` tensor code;
# - sort architectures into parallel, serial and hybrid fusion, and build a serial one in which
#   the audio conditions the image CNN's intermediate feature maps;
# - measure each method's test accuracy (mean ± std over seeds), size and training time, with
#   every model selected on validation, and call a difference smaller than the spread "noise";
# - see which methods survive a missing or noisy modality, and why;
# - measure when fusion pays (hard data) and when it barely does (clean data).
#
# **Prerequisites:** 01–02 (training loop, cross-entropy), 03 (the image and audio encoders).
#
# **Run time (measured on the course's 2-core CPU, one torch thread):** full mode 12 minutes with
# the machine otherwise nearly idle (the earlier version without serial and hybrid took 22 minutes
# while other jobs kept both cores busy); quick mode (the CI smoke test, `MMCOURSE_QUICK=1`) 27–32 s
# of cell time (110 s for the earlier version on a busy machine). Training drives it: 75 small
# models (12 models × 5 seeds on the hard data in §1–2 — 2 single-modality, 8 parallel, 1 serial,
# 1 hybrid — and 3 × 5 on the clean data in §6), 2–15 s each.

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
import statistics

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

import mmcourse
from mmcourse import QUICK, check, claim, quick, say, title
from mmcourse.data import load_av_digits
from mmcourse.fusion import TAXONOMY, ConditionedImageEncoder, FiLM2d, LowRankTensorFusion, WeightedSumFusion
from mmcourse.fusion.zoo import build_av_model, compare, noise, run, summarize, top_group
from mmcourse.throughput import LinearAV, breakdown, verdict
from mmcourse.train import FitConfig, evaluate
from mmcourse.widgets import FusionWeightsPanel, corrupt

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

SEEDS = quick([0, 1, 2, 3, 4], [0, 1])  # every method is trained once per seed: mean ± std over them
N_TRAIN = quick(3500, 300)
CONFIG = FitConfig(epochs=quick(8, 2), batch_size=64, lr=3e-3, device=str(device))
runs = {}  # (method, seed) -> what zoo.run returns; a re-run cell overwrites its entries
print(f"{len(SEEDS)} seeds, {N_TRAIN} training pairs, {CONFIG.epochs} epochs per model, "
      f"each model kept at its best validation epoch")


def pm(mean, std):
    """'0.812 ± 0.013' (no ± with a single seed: there is no spread to show)."""
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def shown(table):
    """The results table as a learner reads it: test accuracy as mean ± std over seeds."""
    out = pd.DataFrame({f"test acc (mean ± std, {len(SEEDS)} seeds)": [pm(m, s) for m, s in zip(table.test_mean, table.test_std)],
                        "val acc (mean)": table.val_mean.round(3)}, index=table.index)
    if "params" in table:
        out["params"] = table.params.map("{:,}".format)
        out["train s"] = table.train_s.map("{:.1f}".format)
        out["epoch kept (mean)"] = (table.best_epoch + 1).map("{:.1f}".format)
    return out


# %% [markdown]
# ## 1. The data and the single-modality baselines
#
# Each example is a pair $(x_{\text{image}}, x_{\text{audio}})$ with one label $y \in \{0..9\}$:
# images `(B, 1, 28, 28)`, MFCC sequences `(B, 40, 13)` (zero-padded). The "hard" variant keeps
# only 4 principal components of each image and adds noise of twice each MFCC coefficient's std
# (lesson 00 shows both). Every model below has the same two encoders, $f_{\text{image}}$ (a
# small CNN) and $f_{\text{audio}}$ (a 1-D CNN over time), each giving a `(B, 32)` feature
# vector; only the fusion differs. First, each modality alone: one encoder and a linear head,
# $p(y \mid x_m) = \mathrm{softmax}(W f_m(x_m) + b)$.
#
# `run` trains with `mmcourse.train.fit`, which keeps the weights of the epoch with the best
# **validation** accuracy; the test split is evaluated once, on those weights, and never chooses
# anything. Each run is seeded, so running a cell again gives the same numbers.

# %%
train, val, test = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
train_sub = ({k: v[:N_TRAIN] for k, v in train.inputs.items()}, train.labels[:N_TRAIN])
print(train, "| using", N_TRAIN, "for training")

UNIMODAL = ["image_only", "audio_only"]
for method in UNIMODAL:
    for seed in SEEDS:
        runs[(method, seed)] = run(method, train_sub, val, test, CONFIG, seed=seed)
display(shown(summarize(runs[(m, s)] for m in UNIMODAL for s in SEEDS)))

# %% [markdown]
# ## 2. Ten fusion models: eight parallel, one serial, one hybrid
#
# Multimodal architectures come in three families. **Parallel**: each modality is encoded on its
# own and the finished feature vectors are combined. **Serial**: one modality's processing feeds
# or conditions a later stage of another's, and the prediction comes from the end of that chain.
# **Hybrid**: both at once. The eight classic methods below are all parallel; a serial and a
# hybrid model follow.
#
# With features $f_m \in \mathbb{R}^{D_m}$ per modality (sorted keys: audio $a$, image $i$),
# $W$, $b$ a learned weight and bias, and $[\,\cdot\,;\,\cdot\,]$ concatenation:
#
# | method | formula | idea (and what the new symbols mean) |
# |---|---|---|
# | concat (early) | $z = W\,[f_a; f_i] + b$ | one layer sees every feature |
# | late | $z = \tfrac1M \sum_m (W_m f_m + b_m)$, or a vote | each modality decides ($M$ = 2 modalities), then they agree |
# | weighted sum | $z = \sum_m w_m P_m f_m$ | a knob $w_m$ per modality (fixed or learned); $P_m$ is a learned linear map that brings modality $m$ to a shared size |
# | gated (GMU) | $h = \sum_m g_m \odot \tanh(W_m f_m)$, $g = \mathrm{softmax}_m(W_g [f_a; f_i])$ | the data decide, per unit, whom to trust: the gates $g_m$ are between 0 and 1 and sum to 1 over $m$; $\odot$ multiplies element by element |
# | FiLM | $h = \gamma(f_a) \odot P f_i + \beta(f_a)$ | audio *modulates* the image features: $\gamma(f_a)$, a per-feature scale, and $\beta(f_a)$, a per-feature shift, are linear maps of the audio features; $P$ projects the image features |
# | cross-attention | $H = \mathrm{softmax}(QK^\top/\sqrt d)\,V$ over modality tokens | each modality queries the other: every modality's features become a token; $Q$, $K$, $V$ (queries, keys, values) are three learned linear maps of the tokens; $QK^\top$ scores how well each query matches each key, the softmax turns scores into weights that sum to 1, and each output is that weighted mix of the values ($d$: the token size) |
# | tensor | $z = W\,\mathrm{vec}([f_a;1] \otimes [f_i;1])$ | every pairwise product, explicitly: $\otimes$ is the outer product (a matrix of all products), $\mathrm{vec}$ flattens it |
# | low-rank tensor | $h = \sum_r \lambda_r \prod_m [f_m;1] W_m^{(r)}$ | the same, factorised into $R$ rank-one terms $W_m^{(r)}$ with weights $\lambda_r$: never forms the product |
#
# Every class takes `dims={"audio": 32, "image": 32}` and a dict of `(B, D)` tensors and returns
# `(B, 10)` logits. Two of them in full, the weighted sum and the low-rank tensor fusion, whose
# factors must be *registered* parameters (kept in a plain Python list, as in one well-known
# public implementation, the optimiser never sees them and they never train):

# %%
print(inspect.getsource(WeightedSumFusion.forward))
print(inspect.getsource(LowRankTensorFusion.forward))

# %% [markdown]
# The low-rank form really is the full tensor fusion with a factorised weight: here the two agree
# on random inputs in float64.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
lmf = LowRankTensorFusion({"audio": 3, "image": 4}, 5, rank=2, hidden=6).double()
f = {"audio": torch.randn(2, 3, dtype=torch.float64), "image": torch.randn(2, 4, dtype=torch.float64)}
one = torch.ones(2, 1, dtype=torch.float64)
W_full = torch.einsum("r,rah,rih->aih", lmf.rank_weights, lmf.factors["audio"], lmf.factors["image"])  # (4, 5, 6)
h_full = torch.einsum("ba,bi,aih->bh", torch.cat([f["audio"], one], 1), torch.cat([f["image"], one], 1), W_full) + lmf.bias
print("low-rank == full tensor fusion:", torch.allclose(lmf(f), lmf.head(h_full)))
print("factors are registered parameters:", {n for n, _ in lmf.named_parameters()} >= {"factors.audio", "factors.image"})

# %% [markdown]
# ### Serial and hybrid: the sound inside the image encoder
#
# In every method above the image CNN never sees the audio: both encoders finish, then fusion
# starts. In the **serial** model the audio features $f_a$ condition the image CNN's mid-level
# maps $h$ of shape `(B, C, 14, 14)` (after the second of its three conv blocks; $C = 16$
# channels here) by a per-channel scale and shift (FiLM on feature maps),
#
# $$h' = \bigl(1 + \Delta\gamma(f_a)\bigr) \odot h + \beta(f_a), \qquad \Delta\gamma, \beta \in \mathbb{R}^{B \times C}\ \text{(broadcast over the } 14 \times 14 \text{ positions)},$$
#
# where $\Delta\gamma$ and $\beta$ are one learned linear map of $f_a$. The last conv block,
# its batch norm, ReLU and pooling then run on $h'$, and a single linear head reads the image
# stream's output: $z = W f_i(x_i;\, f_a) + b$. The audio has no head of its own: it reaches the
# prediction only through the image encoder. The **hybrid** model keeps that link and adds late
# fusion of both streams' final features, $z = \tfrac12 (W_a f_a + b_a) + \tfrac12 (W_i f_i(x_i;\,
# f_a) + b_i)$: it is `late` plus the serial link, as `serial` is `image_only` plus the link.
#
# The FiLM row of the table above looks similar but is parallel: it scales the image encoder's
# *final* vector, after the encoder has finished. Moving our link past the last conv block would
# make it that again (a per-channel affine map commutes with the average pool), so the class
# refuses `after=2`. The linear map starts at zero, so the link starts as the identity and the
# model as `image_only`; without audio it falls back to that identity ($\gamma = 1$, $\beta = 0$)
# and the image stream runs unconditioned. Without the image, the serial model has nothing to
# predict from; the hybrid one answers from its audio head.

# %%
print(inspect.getsource(FiLM2d.forward))
print(inspect.getsource(ConditionedImageEncoder.forward))

# %% [markdown]
# Checked on a fresh serial model and four test pairs: the link is the identity at
# initialisation; once its weights are non-zero (as after training), other recordings change the
# image encoder's mid-level maps; without audio the link is the identity again. In the parallel
# FiLM model the image features do not depend on the audio at all.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
demo = build_av_model("serial").eval()
x4 = {k: v[:4] for k, v in test.inputs.items()}
other4 = {"audio": x4["audio"].flip(0), "image": x4["image"]}  # the same images, other recordings
image_enc, audio_enc = demo.encoders["image"], demo.encoders["audio"]
with torch.no_grad():
    plain = image_enc.encoder(x4["image"])  # the plain ImageEncoder: (4, 32)
    print("identity link at initialisation:", torch.allclose(demo.features(x4)["image"], plain))
    image_enc.link.film.weight.normal_(0, 0.3)  # as training would move it
    maps, maps_other = (image_enc.maps(x4["image"], audio_enc(a["audio"])) for a in (x4, other4))  # (4, 16, 14, 14)
    print("other recordings change the image maps:", not torch.allclose(maps, maps_other))
    print("missing audio -> identity link:", torch.allclose(demo.features({"image": x4["image"]})["image"], plain))
    film_model = build_av_model("film").eval()
    print("parallel FiLM: image features independent of audio:",
          torch.equal(film_model.features(x4)["image"], film_model.features(other4)["image"]))

# %% [markdown]
# Now every model, trained the same way over the same seeds.

# %%
# NBVAL_IGNORE_OUTPUT
from tqdm.auto import tqdm

for method in tqdm(list(TAXONOMY), desc="fusion models"):
    for seed in SEEDS:
        runs[(method, seed)] = run(method, train_sub, val, test, CONFIG, seed=seed)

# %% [markdown]
# First, why `fit` keeps the best-validation epoch rather than the last: at this learning rate
# a model's validation accuracy can jump from one epoch to the next. Each line below is one run;
# the dot marks the epoch whose weights were kept.

# %%
FUSED = list(TAXONOMY)  # eight parallel methods, serial, hybrid
fig, ax = plt.subplots(figsize=(8, 3.2))
jumps = []
for (method, seed), r in runs.items():
    if method in FUSED:
        acc = r["history"]["val_acc"]
        jumps += [abs(b - a) for a, b in zip(acc, acc[1:])]
        ax.plot(range(1, len(acc) + 1), acc, color="tab:gray", alpha=0.4, lw=1)
        ax.plot(r["best_epoch"] + 1, r["val_acc"], "o", color="tab:blue", ms=4)
last_vs_best = [r["val_acc"] - r["history"]["val_acc"][-1] for (m, _), r in runs.items() if m in FUSED]
ax.set_xlabel("epoch"); ax.set_ylabel("val accuracy"); ax.set_ylim(0, 1); ax.set_xticks(range(1, CONFIG.epochs + 1))
ax.set_title(title(f"{len(last_vs_best)} fusion runs: val accuracy moves up to {max(jumps, default=0):.2f} between "
                   f"epochs; ● = the epoch kept"), fontsize=10)
plt.tight_layout(); plt.show()
say(f"Keeping the best-validation epoch instead of the last one raised validation accuracy by "
    f"{statistics.mean(last_vs_best):.3f} on average (up to {max(last_vs_best):.3f} for one run); "
    f"{sum(d > 0 for d in last_vs_best)} of {len(last_vs_best)} runs ended below their best epoch.")

# %% [markdown]
# The results: test accuracy as mean ± std over the seeds, the mean validation accuracy that
# selected each model, its size, and its training time. Two methods whose means differ by less
# than their seed-to-seed spread $\sqrt{\sigma_1^2 + \sigma_2^2}$ are **within noise**: this run
# cannot rank them, and another set of seeds may well swap them. The same goes for the edge of a
# group "within noise of the best": a method close to that edge can move in or out with the seeds
# (or with the number of CPU threads, which changes the float rounding a run starts from).

# %%
table = summarize(runs.values())
display(shown(table))

best_uni = table.loc[UNIMODAL].test_mean.idxmax()
fused = table.loc[FUSED]
top = top_group(table, FUSED)
best_fused, worst_fused = top[0], fused.test_mean.idxmin()
gain = table.test_mean[best_fused] - table.test_mean[best_uni]
vs_uni = {m: compare(table, m, best_uni) for m in FUSED}
n_above, n_within, n_below = (sum(v == w for v in vs_uni.values()) for w in ("above", "within noise", "below"))

fig, ax = plt.subplots(figsize=(9, 3.8))
colors = ["tab:gray" if m in UNIMODAL else ("tab:blue" if m in top else "tab:cyan") for m in table.index]
bars = ax.bar(table.index, table.test_mean, yerr=table.test_std.fillna(0), color=colors, capsize=3)
for bar, m in zip(bars, table.index):  # the taxonomy: serial hatched //, hybrid xx, parallel plain
    bar.set_hatch({"serial": "//", "hybrid": "xx"}.get(TAXONOMY.get(m), ""))
ax.axhline(table.test_mean[best_uni], color="tab:red", ls="--", label=f"best single modality ({best_uni})")
ax.set_ylabel("test accuracy (mean ± std)"); ax.set_ylim(0, 1); ax.legend(loc="lower right")
ax.set_xlabel("model (hatched: serial //, hybrid xx; other fusions parallel; grey: one modality)")
ranked = len(SEEDS) >= 2
ax.set_title(title(
    (f"Hard AV-digits, {len(SEEDS)} seeds: {n_above} of {len(FUSED)} fusions beat {best_uni} beyond the spread; "
     + (f"top {len(top)} within noise (dark blue)" if len(top) > 1 else f"{best_fused} best beyond the spread"))
    if ranked else f"Hard AV-digits, one seed: no spread, so nothing is ranked"), fontsize=10)
plt.xticks(rotation=30, ha="right"); plt.tight_layout(); plt.show()

spread_best = noise(table, best_fused, best_uni)
say("\n".join([
    f"- Best single modality: **{best_uni}**, {pm(table.test_mean[best_uni], table.test_std[best_uni])} "
    f"({'; '.join(f'{m} {pm(table.test_mean[m], table.test_std[m])}' for m in UNIMODAL if m != best_uni)}).",
    (f"- The top {len(top)} fusion methods, **{', '.join(top)}**, are within noise of each other "
     f"({pm(table.test_mean[top[-1]], table.test_std[top[-1]])} to {pm(table.test_mean[best_fused], table.test_std[best_fused])}): "
     f"this run cannot rank them ({best_fused} merely has the highest mean)."
     if len(top) > 1 else
     f"- **{best_fused}** ({pm(table.test_mean[best_fused], table.test_std[best_fused])}) is ahead of every other "
     f"fusion method by more than the seed spread." if ranked else
     f"- With one seed there is no spread: {best_fused} has the highest accuracy, but nothing is ranked."),
    f"- Against {best_uni}: {n_above} of {len(FUSED)} fusion methods are above it by more than the spread, "
    f"{n_within} within noise of it, {n_below} below it"
    + (f" (the weakest, {worst_fused}, {pm(table.test_mean[worst_fused], table.test_std[worst_fused])})." if n_below else "."),
    f"- All {len(FUSED)} fusion means lie within {100 * (fused.test_mean.max() - fused.test_mean.min()):.1f} points of each "
    f"other, against a seed-to-seed std of up to {100 * fused.test_std.max():.1f} points"
    + (f", while fusing at all moves accuracy by {100 * gain:+.1f} points: here, *whether* to fuse matters far more than *how*."
       if vs_uni[best_fused] == "above" else "."),
]))

# %% [markdown]
# ### Where each model sits: parallel, serial, hybrid
#
# Every fusion model above, in the taxonomy, and why. Two pairs differ only in the serial link,
# so they measure what it buys: `serial` vs `image_only` (the same image stream and linear head,
# plus the audio inside the encoder) and `hybrid` vs `late` (late fusion, plus the link). A third
# pair compares where the audio enters the image stream: `serial` vs `film` (inside the image
# encoder vs on its final vector; `film` also adds a hidden layer).

# %%
WHY = {
    "concat": "both encoders finish alone; their final vectors are concatenated",
    "late": "each encoder and its own head run alone; only the decisions meet",
    "weighted_sum": "the final vectors are projected and added",
    "gated": "the gate reads both final vectors; neither encoder sees the other",
    "film": "audio scales and shifts the image encoder's final vector, after that encoder has finished",
    "cross_attention": "the final vectors are the tokens; attention mixes them after encoding",
    "tensor": "products of the final vectors",
    "low_rank_tensor": "products of the final vectors, factorised",
    "serial": "audio enters the image CNN between conv blocks 2 and 3; one head reads the end of that chain",
    "hybrid": "the serial link inside the encoders, then late fusion of both streams' final features",
}
assert set(WHY) == set(FUSED), f"give every trained fusion model a reason: missing {set(FUSED) - set(WHY)}"
with pd.option_context("display.max_colwidth", None):  # show every reason in full
    display(pd.DataFrame({"family": [TAXONOMY[m] for m in FUSED], "why": [WHY[m] for m in FUSED],
                          "test acc": [pm(table.test_mean[m], table.test_std[m]) for m in FUSED]},
                         index=pd.Index(FUSED, name="method")))

PARALLEL = [m for m in FUSED if TAXONOMY[m] == "parallel"]
top_parallel = top_group(table, PARALLEL)
link_pairs = [("serial", "image_only", "the link alone, on the image stream"),
              ("hybrid", "late", "the link added to late fusion"),
              ("serial", "film", "conditioning inside the encoder vs on its final vector")]
verdict_words = {"above": "above it, beyond the seed spread", "below": "below it, beyond the seed spread",
                 "within noise": "within noise of it", "unknown": "one seed: no spread to judge by"}
link_vs = {(a, b): compare(table, a, b) for a, b, _ in link_pairs}
say("\n".join(
    [f"- **{a}** ({pm(table.test_mean[a], table.test_std[a])}) vs **{b}** ({pm(table.test_mean[b], table.test_std[b])}), "
     f"{what}: {100 * (table.test_mean[a] - table.test_mean[b]):+.1f} points, {verdict_words[link_vs[(a, b)]]}."
     for a, b, what in link_pairs]
    + [f"- Against the best parallel mean, **{top_parallel[0]}** ({pm(table.test_mean[top_parallel[0]], table.test_std[top_parallel[0]])}): "
       + "; ".join(f"{m} is {verdict_words[compare(table, m, top_parallel[0])]}" for m in ("serial", "hybrid"))
       + f". In the top group of all {len(FUSED)} (the best mean and those within noise of it): "
       + f"{', '.join(m for m in top if TAXONOMY[m] != 'parallel') or 'neither of them'}."]))

# %% [markdown]
# The lesson's premise, checked: does the best fusion beat the best single modality by more than
# their seed-to-seed spread? (In full mode the notebook stops here if it does not: everything
# after builds on it.)

# %%
print(f"best fusion {best_fused}: {pm(table.test_mean[best_fused], table.test_std[best_fused])} | best unimodal "
      f"{best_uni}: {pm(table.test_mean[best_uni], table.test_std[best_uni])} | gain {100 * gain:+.1f} points "
      f"(spread of the difference {100 * spread_best:.1f})")
fusion_pays = claim(vs_uni[best_fused] == "above",
                    f"the best fusion beats the best single modality by more than the seed spread "
                    f"({100 * gain:+.1f} vs {100 * spread_best:.1f} points)")
if not QUICK:  # the lesson's premise: on hard data fusion pays (quick mode trains too little to tell)
    assert fusion_pays, "on hard AV-digits the best fusion should beat the best single modality beyond the spread"

# %% [markdown]
# ## 3. A missing modality
#
# At test time a sensor can fail. Methods that combine modalities by a sum or an average over
# what is present (late, weighted sum, attention with a key mask) can simply leave the absent one
# out; methods whose layers are shaped for every modality (concat, gated, FiLM, tensor) cannot,
# and the course's classes say so instead of guessing. The serial model sits in between: without
# audio its link falls back to the identity and the image stream answers alone, but without the
# image it has no stream left to predict from. The hybrid model answers either way.

# %%
# NBVAL_CHECK_OUTPUT
for method, keep in (("concat", "image"), ("serial", "audio")):
    try:
        runs[(method, SEEDS[0])]["model"]({keep: test.inputs[keep][:4]})
    except KeyError as e:
        print(f"{method} with only the {keep} -> KeyError:", e.args[0])

# %% [markdown]
# The four masking models with one modality removed, and the serial one without its audio,
# against the models trained on that modality alone (mean ± std over seeds):

# %%
MASKING = ["late", "weighted_sum", "cross_attention", "hybrid"]
KEEPS = {**{m: ("audio", "image") for m in MASKING}, "serial": ("image",)}  # serial cannot answer without the image
rows = []
for (method, seed), r in runs.items():
    for keep in KEEPS.get(method, ()):
        acc = evaluate(r["model"], {keep: test.inputs[keep]}, test.labels)["acc"]
        rows.append({"method": method, "seed": seed, "kept": keep, "acc": acc})
miss = pd.DataFrame(rows).groupby(["method", "kept"]).acc.agg(["mean", "std"])
missing = pd.DataFrame({f"{k} only": [pm(*miss.loc[(m, k)]) if k in KEEPS[m] else "no answer (KeyError)" for m in KEEPS]
                        for k in ("audio", "image")}, index=list(KEEPS))
missing["both"] = [pm(table.test_mean[m], table.test_std[m]) for m in KEEPS]
missing.loc["trained on that modality alone"] = [pm(table.test_mean[f"{k}_only"], table.test_std[f"{k}_only"])
                                                 for k in ("audio", "image")] + ["–"]
display(missing)
worst_case = {m: min(miss.loc[(m, k), "mean"] for k in ("audio", "image")) for m in MASKING}
robust = max(worst_case, key=worst_case.get)
serial_no_audio, serial_no_audio_std = miss.loc[("serial", "image")]
gap = serial_no_audio - table.test_mean["image_only"]
spread = (serial_no_audio_std ** 2 + table.test_std["image_only"] ** 2) ** 0.5  # NaN with one seed
serial_vs_image = ("unknown" if pd.isna(spread) else "within noise" if abs(gap) <= spread else
                   "above" if gap > 0 else "below")
say(f"Without audio the serial model's link is the identity (γ = 1, β = 0): it keeps "
    f"{pm(serial_no_audio, serial_no_audio_std)} ({100 * (serial_no_audio - table.test_mean['serial']):+.1f} points "
    f"against itself with audio), {100 * gap:+.1f} points against the image_only model "
    f"({pm(table.test_mean['image_only'], table.test_std['image_only'])}): " + {
        "below": "below it beyond the seed spread. Its image stream was trained with the audio steering it, "
                 "and the identity is a setting it never saw in training.",
        "within noise": "within noise of it: the unconditioned stream does as well as a model trained on images alone.",
        "above": "above it beyond the seed spread: the stream trained with audio is better even without it.",
        "unknown": "one seed, so no spread to judge it by."}[serial_vs_image])

# %% [markdown]
# ## 4. A noisy modality
#
# Add Gaussian noise of growing std to one modality's *input* at test time (the model was never
# trained on it) and watch each method degrade. Each curve is the mean over the seeds' models (the
# shaded band ± one std); the dashed line is the model trained on the *other* modality alone,
# which the corruption cannot touch. A fused model that ends below that line has not learned to
# ignore a broken modality.

# %%
noise_levels = [0.0, 0.5, 1.0, 2.0]
CURVE_METHODS = ["concat", "late", "weighted_sum", "cross_attention", "serial", "hybrid"]
N_NOISE = quick(len(test.labels), 250)  # test examples per evaluation (all of them in full mode)
noisy_in, noisy_y = {k: v[:N_NOISE] for k, v in test.inputs.items()}, test.labels[:N_NOISE]
curves = {}  # (method, corrupted modality) -> (seeds, levels) accuracies
for method in CURVE_METHODS:
    for seed in SEEDS:
        model = runs[(method, seed)]["model"]
        clean_acc = evaluate(model, noisy_in, noisy_y)["acc"]  # std 0: the same for both modalities
        for modality in ("audio", "image"):
            accs = [clean_acc] + [evaluate(model, corrupt(noisy_in, modality, std), noisy_y)["acc"]
                                  for std in noise_levels[1:]]
            curves.setdefault((method, modality), {})[seed] = accs
curves = {key: torch.tensor([by_seed[s] for s in SEEDS]) for key, by_seed in curves.items()}

other = {"audio": "image", "image": "audio"}
drop = {mod: statistics.mean((curves[(m, mod)][:, 0] - curves[(m, mod)][:, -1]).mean().item() for m in CURVE_METHODS)
        for mod in ("audio", "image")}
worse = max(drop, key=drop.get)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, modality in zip(axes, ("audio", "image")):
    for method in CURVE_METHODS:
        c = curves[(method, modality)]
        mean, std = c.mean(0), (c.std(0) if len(SEEDS) > 1 else torch.zeros(len(noise_levels)))
        ax.plot(noise_levels, mean, marker="o", label=method)
        ax.fill_between(noise_levels, mean - std, mean + std, alpha=0.15)
    ref = f"{other[modality]}_only"
    ax.axhline(table.test_mean[ref], color="k", ls="--", lw=1, label=f"{ref} model")
    ax.set_xlabel(f"noise std added to the {modality} input"); ax.set_title(f"corrupting {modality}")
    ax.legend(fontsize=8)
axes[0].set_ylabel("test accuracy")
fig.suptitle(title(f"Test-time noise in one modality ({len(SEEDS)} seeds): corrupting the {worse} costs more "
                   f"({100 * drop[worse]:.0f} vs {100 * drop[other[worse]]:.0f} points at std {noise_levels[-1]:g})"))
plt.tight_layout(); plt.show()


def verdict_at_max(method, modality):
    """'below' / 'within noise' / 'above' the other modality's own model at the largest noise."""
    c, ref = curves[(method, modality)][:, -1], f"{other[modality]}_only"
    if len(SEEDS) < 2:
        return "unknown"
    spread = (c.std().item() ** 2 + table.test_std[ref] ** 2) ** 0.5
    diff = c.mean().item() - table.test_mean[ref]
    return "within noise" if abs(diff) <= spread else ("above" if diff > 0 else "below")


lines = []
for modality in ("image", "audio"):
    v = {m: verdict_at_max(m, modality) for m in CURVE_METHODS}
    ref = f"{other[modality]}_only"
    groups = {w: [m for m in CURVE_METHODS if v[m] == w] for w in ("below", "within noise", "above", "unknown")}
    parts = [f"{w}: {', '.join(ms)}" for w, ms in groups.items() if ms]
    lines.append(f"- Corrupting the **{modality}** (std {noise_levels[-1]:g}), against the {ref} model "
                 f"({pm(table.test_mean[ref], table.test_std[ref])}), which never sees it — {'; '.join(parts)}.")
below_any = any(verdict_at_max(m, mod) == "below" for m in CURVE_METHODS for mod in ("audio", "image"))
lines.append("- A fused model below that line leans on the broken modality: it never learned to ignore one, "
             "because training never showed one." if below_any else
             "- No fused model falls below the single-modality line here: at this noise level each still gets "
             "at least as much from the intact modality as a model trained on it alone.")
say("\n".join([f"- Averaged over the {len(CURVE_METHODS)} methods, noise of std {noise_levels[-1]:g} costs "
               f"{100 * drop['image']:.1f} points on the image and {100 * drop['audio']:.1f} on the audio.", *lines]))

# %% [markdown]
# Training with a modality randomly dropped or noised ("modality dropout") is the usual cure for a
# model that leans on a broken modality; lesson 06 looks at how the two modalities share the
# training signal.

# %% [markdown]
# ## 5. Move the weights yourself
#
# The weighted-sum model computes $z = w_{\text{image}} P_i f_i + w_{\text{audio}} P_a f_a$. It
# was trained with $w = (0.5, 0.5)$; the sliders change the weights *after* training, so you see
# how much the trained head relies on each term. The noise sliders corrupt a modality, the
# check boxes remove one. Features are cached, so each move is a few milliseconds. Which of the
# seeds' weighted-sum models to show is chosen on validation, never by looking at test: the one
# with the median validation accuracy.

# %%
ws_runs = sorted((r for (m, _), r in runs.items() if m == "weighted_sum"), key=lambda r: (r["val_acc"], r["seed"]))
ws_run = ws_runs[len(ws_runs) // 2]
ws_model = ws_run["model"]
by_seed = ", ".join(f"seed {r['seed']}: {r['val_acc']:.3f}" for r in ws_runs)
print(f"panel model: weighted_sum of seed {ws_run['seed']}, the median validation accuracy ({by_seed}); "
      f"its test accuracy {ws_run['test_acc']:.3f}")
EXAMPLE = 7
fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 2.6), gridspec_kw={"width_ratios": [1, 2]})
a1.imshow(test.inputs["image"][EXAMPLE, 0], cmap="gray_r"); a1.set_title(f"image (digit {test.labels[EXAMPLE].item()})"); a1.axis("off")
n = test.lengths[EXAMPLE].item()
a2.imshow(test.inputs["audio"][EXAMPLE, :n].T, aspect="auto", origin="lower", cmap="magma")
a2.set_title("its recording (MFCC, noisy)"); a2.set_xlabel("frame"); a2.set_ylabel("coefficient")
plt.tight_layout(); plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
panel = FusionWeightsPanel(ws_model, test.inputs, test.labels, example=EXAMPLE)
display(panel.widget())
print(f"initial state: test accuracy {panel.state()['acc']:.3f} with weights {panel.fusion.weights()}")

# %% [markdown]
# What the sliders show, computed: accuracy as the image weight goes from 0 to 1 with the audio
# weight at 1 − w, and the slowest of those updates (the panel's own latency).

# %%
W_IMAGE = [0.0, 0.25, 0.5, 0.75, 1.0]
sweep, latencies = [], []
for w_img in W_IMAGE:
    panel.weight["image"].value, panel.weight["audio"].value = w_img, 1 - w_img
    sweep.append(panel.state()["acc"])
    latencies.append(panel.last_latency_ms)
panel.weight["image"].value, panel.weight["audio"].value = 0.5, 0.5
print("image weight:   ", W_IMAGE)
print("test accuracy:  ", [round(a, 3) for a in sweep])
print(f"slowest update: {max(latencies):.1f} ms (goal: < 150 ms)")
mix_gain = max(sweep[1:-1]) - max(sweep[0], sweep[-1])

# %% [markdown]
# ### Train it yourself
#
# `LiveTrainer` trains a fresh model with `mmcourse.train.fit` while you watch: pick the device
# (the GPU is chosen when there is one), the fusion method, the auxiliary-loss weights λ of
# lesson 06, the learning rate and the epochs, then press **Start**. The settings are fixed when
# you press Start (the plot's title names them); **Stop** ends training after the current batch
# and keeps the model (`trainer.model`). Nothing trains until you press Start.

# %%
# NBVAL_IGNORE_OUTPUT
from mmcourse.live import LiveTrainer

trainer = LiveTrainer(train_sub, val, epochs=quick(8, 1), method="gated")
display(trainer.widget())
print(f"ready: {trainer.method.value} on {trainer.device.value} (devices here: {list(trainer.device.options)}); press Start")

# %% [markdown]
# ### Why `fit` batches by index
#
# Most tutorials feed a model through a `Dataset` whose `__getitem__` builds one sample's tensors
# and a `DataLoader` that collates them into a batch: Python runs once per *sample*. `fit` keeps
# the whole split in tensors (on the GPU when there is one) and takes a batch with one index op
# per modality. `mmcourse.throughput.breakdown` times the parts of one batch separately, on the
# CPU, for the dashboard's model and batch size, and for a linear softmax model on the same raw
# inputs (`LinearAV`, the cheapest step there is). Fractions of a millisecond are at the mercy of
# whatever else the machine is doing, so every part is timed in several interleaved rounds, and a
# ratio is stated only when every round agrees on it.

# %%
# NBVAL_IGNORE_OUTPUT
BATCH = FitConfig().batch_size  # what LiveTrainer trains with
timing = {name: breakdown(model, *train_sub, batch_size=BATCH, max_batches=quick(None, 4), repeats=quick(20, 3),
                          rounds=quick(5, 2))
          for name, model in (("gated CNN (dashboard)", build_av_model("gated")), ("linear softmax", LinearAV()))}
display(pd.DataFrame(timing).T[["loader_ms", "index_ms", "step_ms", "gather_x", "speedup", "speedup_lo", "speedup_hi"]].round(3))


def x(r):
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def ratio_text(t, key):
    """A ratio with its range over the rounds, or what the rounds cannot tell."""
    lo, mid, hi = t[f"{key}_lo"], t[key], t[f"{key}_hi"]
    v = verdict(lo, hi)
    if v == "faster":
        return f"**{x(mid)} faster** (every round between {x(lo)} and {x(hi)})"
    if v == "slower":
        return f"**{x(1 / mid)} slower** (every round between {x(1 / hi)} and {x(1 / lo)} slower)"
    return f"**not measurably different**: the rounds ranged from {x(lo)} to {x(hi)}, too close to 1 or too scattered to tell"


gated_t, linear_t = timing["gated CNN (dashboard)"], timing["linear softmax"]
say(f"""
Per batch of {BATCH} (medians of {gated_t['rounds']} rounds): the per-sample loader takes {gated_t['loader_ms']:.2f} ms
and index batching {gated_t['index_ms']:.3f} ms, so getting a batch by index is {ratio_text(gated_t, 'gather_x')}.
A batch must also be trained, though. The gated CNN's step costs {gated_t['step_ms']:.1f} ms; end to end, index
batching is {ratio_text(gated_t, 'speedup')} for it. The linear model's step costs {linear_t['step_ms']:.2f} ms,
and there index batching is {ratio_text(linear_t, 'speedup')}. The loader's cost is fixed per sample, so it
matters most when the step is cheap: a small model, or a step that runs on a GPU.
""")

# %% [markdown]
# ## 6. When fusion barely pays: the clean variant
#
# On clean data each modality alone is already strong. The same recipe, three models:

# %%
clean = {s: load_av_digits(s, "clean") for s in ("train", "val", "test")}
clean_sub = ({k: v[:N_TRAIN] for k, v in clean["train"].inputs.items()}, clean["train"].labels[:N_TRAIN])
clean_runs = {(m, s): run(m, clean_sub, clean["val"], clean["test"], CONFIG, seed=s)
              for m in ("image_only", "audio_only", "late") for s in SEEDS}
clean_table = summarize(clean_runs.values())
display(shown(clean_table[["test_mean", "test_std", "val_mean"]]))
clean_best_uni = clean_table.loc[UNIMODAL].test_mean.idxmax()
clean_gain = clean_table.test_mean["late"] - clean_table.test_mean[clean_best_uni]
clean_vs = compare(clean_table, "late", clean_best_uni)

# %% [markdown]
# ## 7. Exercises
#
# **Exercise 1.** Write the weighted sum $z = \sum_m w_m f_m$ for a dict of `(B, D)` features and
# a dict of weights (use the weights as given; don't renormalise).

# %%
def weighted_sum(feats, weights):
    # YOUR CODE HERE: return a (B, D) tensor
    raise NotImplementedError


check.weighted_sum(weighted_sum)

# %% [markdown]
# **Exercise 2.** Write the core of tensor fusion for two modalities: append a 1 to each feature
# vector and return the flattened outer product, shape `(B, (D_a + 1)(D_b + 1))`.

# %%
def outer_with_one(a, b):
    # YOUR CODE HERE
    raise NotImplementedError


check.outer_with_one(outer_with_one)

# %% [markdown]
# ## What the numbers say

# %%
rho = fused.params.corr(fused.test_mean, method="spearman")  # over the fusion methods only
# The |ρ| a rank correlation of n = len(fused) methods must reach to be significant at 5 % (two-sided),
# from random orderings (no link at all), ρ = 1 − 6 Σ d² / (n (n² − 1)): the smallest value that
# at most 5 % of them reach (0.738 for n = 8 and 0.648 for n = 10, as in printed tables).
n_f = len(fused)
perm_ranks = torch.rand(200_000, n_f, generator=torch.Generator().manual_seed(0)).argsort(1).float()  # (P, n)
rho_null = (1 - 6 * ((perm_ranks - torch.arange(n_f)) ** 2).sum(1) / (n_f * (n_f ** 2 - 1))).abs()  # (P,)
RHO_5PCT = round(min(v for v in rho_null.unique().tolist() if (rho_null >= v - 1e-6).float().mean() <= 0.05), 3)
size_text = (f"a bigger fusion tends to score {'higher' if rho > 0 else 'lower'} here" if abs(rho) >= RHO_5PCT else
             f"with {n_f} methods that is no evidence of a link (|ρ| would need to reach {RHO_5PCT}): "
             "a bigger fusion is not simply a better one")
gain_text = {"above": "more than the seed spread", "within noise": "within noise",
             "below": "below it by more than the seed spread", "unknown": "one seed, so no spread to judge it by"}
judged = {"above": "above, beyond the seed spread", "below": "below, beyond the seed spread",
          "within noise": "within noise", "unknown": "one seed: no spread to judge by"}
family_text = {(a, b): f"{a} vs {b} {100 * (table.test_mean[a] - table.test_mean[b]):+.1f} points ({judged[link_vs[(a, b)]]})"
               for a, b, _ in link_pairs}
in_top = [m for m in top if TAXONOMY[m] != "parallel"]
if vs_uni[best_fused] == "above" and clean_vs != "above":
    contrast = ("Fusion pays where each modality lacks information the other has (hard), and not measurably "
                "where one modality already has it all (clean).")
elif vs_uni[best_fused] == "above":
    contrast = "Fusion pays on both variants here."
else:
    contrast = "This run does not show fusion paying on the hard variant, so it cannot show the contrast either."
say(f"""
- On hard AV-digits ({len(SEEDS)} seeds, {CONFIG.epochs} epochs, {N_TRAIN} training pairs, each model kept at its
  best validation epoch) the best single modality is **{best_uni}** ({pm(table.test_mean[best_uni], table.test_std[best_uni])}).
  The best fusion mean, **{best_fused}** ({pm(table.test_mean[best_fused], table.test_std[best_fused])}), differs
  from it by **{100 * gain:+.1f} points**: {gain_text[vs_uni[best_fused]]}.
  {n_above} of {len(FUSED)} fusion methods beat {best_uni} by more than the spread, {n_within} are within noise of it,
  {n_below} are below it.
- {f"The top {len(top)} methods ({', '.join(top)}) are within noise of each other: the ranking among them is not something this run can tell." if len(top) > 1 else (f"{best_fused} leads every other fusion method by more than the seed spread." if len(SEEDS) > 1 else "With one seed nothing can be ranked.")}
  The fusion means span {fused.test_mean.min():.3f} to {fused.test_mean.max():.3f} (std across seeds up to
  {fused.test_std.max():.3f}) while their sizes differ by {fused.params.max() / fused.params.min():.1f}×; the rank
  correlation of size and accuracy is {rho:+.2f}: {size_text}.
- The {len(PARALLEL)} classic methods are parallel. The serial model (audio conditions the image CNN's mid-level maps, one
  image head) is image_only plus that link, the hybrid one late fusion plus it: {family_text[("serial", "image_only")]},
  {family_text[("hybrid", "late")]}; against audio conditioning of the image's final vector (parallel FiLM),
  {family_text[("serial", "film")]}. {" and ".join(in_top).capitalize() if in_top else "Neither serial nor hybrid"}
  {"are" if len(in_top) > 1 else "is"} in the top group of all {len(FUSED)} fusion models.
- With a modality missing at test time only the masking methods still answer; the one whose worse case is best,
  **{robust}**, keeps {miss.loc[(robust, 'audio'), 'mean']:.3f} (audio only) and {miss.loc[(robust, 'image'), 'mean']:.3f}
  (image only) without any training for it, against {table.test_mean['audio_only']:.3f} and {table.test_mean['image_only']:.3f}
  for models trained on one modality.
- Moving the weighted-sum weights (seed {ws_run['seed']}, chosen on validation) from audio-only to image-only gives test
  accuracies {', '.join(f'{a:.2f}' for a in sweep)}: {f"a mix beats either extreme by {100 * mix_gain:.1f} points, so the trained head uses both terms" if mix_gain > 0.01 else "no mix beats the better extreme by more than a point, so the head leans on one term"}.
- On clean data the best single modality, {clean_best_uni}, already reaches {pm(clean_table.test_mean[clean_best_uni], clean_table.test_std[clean_best_uni])};
  late fusion ({pm(clean_table.test_mean['late'], clean_table.test_std['late'])}) differs from it by
  {100 * clean_gain:+.1f} points ({judged[clean_vs]}), against {100 * gain:+.1f} points ({judged[vs_uni[best_fused]]})
  for the best fusion on the hard variant. {contrast}
""")

# %% [markdown]
# **Next:** [06 · Loss weighting and modality imbalance](06_loss_weighting.ipynb) — why a fused
# model can under-train one of its encoders, and how to fix it.
