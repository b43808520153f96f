# %% [markdown]
# # 05 · The fusion zoo: ten ways to combine an image and a sound
#
# A spoken "seven" and a handwritten 7 carry the same label through different senses. This
# lesson trains one model per fusion method on **AV-digits** (a real MNIST image paired with a
# real spoken recording of the same digit, both degraded so neither is enough alone) and compares
# them on equal terms: same encoders, data, recipe and seeds. Eight of them are *parallel* (each
# modality encoded on its own, then combined), one is *serial* (the sound steers the image
# encoder from the inside) and one *hybrid* (both). You will then move the modality
# weights of a weighted-sum model with sliders, corrupt or remove a modality, and see what
# happens to accuracy — and how training with modalities randomly dropped prepares a model for it.
#
# **Learning goals**
# - write early (concat), late (decision-level), weighted-sum, gated, FiLM, attention, tensor and
#   low-rank tensor fusion as formulas and as `(B, D)` tensor code;
# - sort architectures into parallel, serial and hybrid fusion, and build a serial one in which
#   the audio conditions the image CNN's intermediate feature maps;
# - measure each method's test accuracy (mean ± std over seeds), size and training time, with
#   every model selected on validation, and call one method better than another only when a
#   paired test over the seeds says so (`mmcourse.stats`), else "not resolved with N seeds";
# - see which methods survive a missing or noisy modality, why a model trained on complete pairs
#   can fail without one (co-adaptation), and what modality dropout changes;
# - measure when fusion pays (hard data) and when it barely does (clean data).
#
# **Prerequisites:** 01–02 (training loop, cross-entropy), 03 (the image and audio encoders).
#
# **Run time:** full mode 2.9 min of cell time on a first run (nothing cached; longest cell 38 s), 23 s once its trainings are cached; quick mode 33 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.
#
# Training drives it: 100 small models (12 models × 5 seeds on the hard data in §1–2, 3 × 5 ending
# on the last epoch in §2, 2 × 5 with modality dropout in §3, 3 × 5 on the clean data in §6), each
# a few seconds, trained in parallel processes and kept in the checkpoint cache, so a second Run
# All loads them in seconds.

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
from mmcourse import QUICK, check, claim, quick, say, stats, title
from mmcourse.adversarial import av_spaces
from mmcourse.data import load_av_digits
from mmcourse.probe import pixel_baseline
from mmcourse.fusion import TAXONOMY, ConditionedImageEncoder, FiLM2d, LowRankTensorFusion, WeightedSumFusion
from mmcourse.fusion.zoo import RECIPE, build_av_model, run_grid, summarize
from mmcourse.train import FitConfig, evaluate
from mmcourse.widgets import FusionWeightsPanel, corrupt

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

SEEDS = quick([0, 1, 2, 3, 4], [0, 1])  # every method is trained once per seed: mean ± std over them
N_TRAIN = quick(3500, 300)  # 3,500: the whole training split
CONFIG = RECIPE  # the course's one AV-digits recipe (zoo.RECIPE), unchanged in this lesson
runs = {}  # (name, seed) -> what zoo.run returns; a re-run cell overwrites its entries
print(f"{len(SEEDS)} seeds, {N_TRAIN} training pairs, {CONFIG.epochs} epochs ({CONFIG.schedule} schedule, "
      f"peak lr {CONFIG.lr:g}, batch {CONFIG.batch_size}) per model, each kept at its best validation epoch")


def train_grid(methods, splits=None, suffix="", config=CONFIG, **options):
    """Train (or load from the checkpoint cache) every method × seed; {(method + suffix, seed): run}."""
    results = run_grid(methods, SEEDS, *(splits or (train_sub, val, test)), config=config, **options)
    return {(r["method"] + suffix, r["seed"]): r for r in results}


def per_seed(rs, m):
    """Method m's test accuracy per seed, in SEEDS order (what every paired comparison takes)."""
    return [rs[(m, s)]["test_acc"] for s in SEEDS]


def pm(mean, std):
    """'0.812 ± 0.013' (no ± with a single seed: there is no spread to show)."""
    return f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f} ± {std:.3f}"


def shown(table, pixels=None):
    """The results table as a learner reads it: test accuracy as mean ± std over seeds.

    pixels: the pixel baseline's test accuracy, added as a last row (one fit, no seeds)."""
    out = pd.DataFrame({f"test acc (mean ± std, {len(SEEDS)} seeds)": [pm(m, s) for m, s in zip(table.test_mean, table.test_std)],
                        "val acc (mean)": table.val_mean.round(3).astype(object)}, index=table.index)
    if "params" in table:
        out["params"] = table.params.map("{:,}".format)
        out["train s"] = table.train_s.map("{:.1f}".format)
        out["epoch kept (mean)"] = (table.best_epoch + 1).map("{:.1f}".format)
    if pixels is not None:
        out.loc["pixels → logistic regression"] = [f"{pixels:.3f}", "–"] + ["–"] * (out.shape[1] - 2)
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
# $p(y \mid x_m) = \mathrm{softmax}(W f_m(x_m) + b)$. Beside them, the bar a learned image
# model must clear: logistic regression on the raw pixels, standardised, its L2 penalty chosen on
# validation (`mmcourse.probe.pixel_baseline`: the linear probe of lesson 03 on pixels). Lesson 00
# fits the same model more simply (gradient descent, no penalty, no selection) and lands a few
# points lower on hard images: a baseline deserves the same tuning as the model it is compared
# with. Whether the CNN beats it is decided by the course's one rule (`mmcourse.stats`, below).
#
# `run_grid` trains every (method, seed) with `mmcourse.train.fit` and the course's recipe
# (`zoo.RECIPE`: AdamW, one-cycle schedule, batch 64), in parallel worker processes, or loads it
# from the checkpoint cache when an identical run was trained before. `fit` keeps the weights of the
# epoch with the best **validation** accuracy; the test split is evaluated once, on those weights,
# and never chooses anything. Each run is seeded, so running a cell again gives the same numbers.

# %%
train, val, test = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
train_sub = ({k: v[:N_TRAIN] for k, v in train.inputs.items()}, train.labels[:N_TRAIN])
print(train, "| using", N_TRAIN, "for training")

UNIMODAL = ["image_only", "audio_only"]
runs.update(train_grid(UNIMODAL))
pixels = pixel_baseline((train_sub[0]["image"], train_sub[1]), val, test)
pixel_acc = pixels["test_acc"]
display(shown(summarize(runs[(m, s)] for m in UNIMODAL for s in SEEDS), pixels=pixel_acc))
# the CNN's seeds against the one pixel fit: the same paired rule, the baseline repeated per seed
image_vs_pixels = stats.say("image_only", "pixels → logistic regression", per_seed(runs, "image_only"),
                            [pixel_acc] * len(SEEDS))
image_vs_pixels_v = stats.paired_verdict(per_seed(runs, "image_only"), [pixel_acc] * len(SEEDS))
say(f"Pixels → logistic regression: penalty {pixels['weight_decay']:g} chosen on validation "
    f"(val accuracy by penalty: {', '.join(f'{k:g}: {v:.3f}' for k, v in pixels['val_by_penalty'].items())}), "
    f"test {pixel_acc:.3f}. The image CNN against it: {image_vs_pixels}. The hard images keep only 4 principal "
    "components, so every image model reads the same 4 numbers and none can go far: the audio has to supply the rest.")

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
# $W$, $b$ a learned weight and bias, $[\,\cdot\,;\,\cdot\,]$ concatenation, and
# $\mathrm{head}$ a small learned classifier (a linear layer, or one hidden layer and a linear one)
# that turns a fused vector $h$ into the 10 logits $z$:
#
# | method | formula | idea (and what the new symbols mean) |
# |---|---|---|
# | concat (early) | $z = \mathrm{head}([f_a; f_i])$ | one head sees every feature |
# | late | $z = \tfrac1M \sum_m (W_m f_m + b_m)$, or a vote | each modality decides ($M$ = 2 modalities), then they agree |
# | weighted sum | $h = \sum_m w_m P_m f_m$, $z = \mathrm{head}(h)$ | a knob $w_m$ per modality (fixed or learned); $P_m$ is a learned linear map that brings modality $m$ to a shared size |
# | gated (GMU) | $h = \sum_m g_m \odot \tanh(W_m f_m)$, $g = \mathrm{softmax}_m(W_g [f_a; f_i])$, $z = \mathrm{head}(h)$ | the data decide, per unit, whom to trust: the gates $g_m$ are between 0 and 1 and sum to 1 over $m$; $\odot$ multiplies element by element |
# | FiLM | $h = \gamma(f_a) \odot P f_i + \beta(f_a)$, $z = \mathrm{head}(h)$ | audio *modulates* the image features: $\gamma(f_a)$, a per-feature scale, and $\beta(f_a)$, a per-feature shift, are linear maps of the audio features; $P$ projects the image features |
# | cross-attention | $H = \mathrm{softmax}(QK^\top/\sqrt d)\,V$ over modality tokens, $z = \mathrm{head}(\text{mean of } H)$ | each modality queries the other: every modality's features become a token; $Q$, $K$, $V$ (queries, keys, values) are three learned linear maps of the tokens; $QK^\top$ scores how well each query matches each key, the softmax turns scores into weights that sum to 1, and each output is that weighted mix of the values ($d$: the token size) |
# | tensor | $z = \mathrm{head}(\mathrm{vec}([f_a;1] \otimes [f_i;1]))$ | every pairwise product, explicitly: $\otimes$ is the outer product (a matrix of all products), $\mathrm{vec}$ flattens it |
# | low-rank tensor | $h = \sum_r \lambda_r \prod_m [f_m;1] W_m^{(r)}$, $z = \mathrm{head}(h)$ | the same, factorised into $R$ rank-one terms $W_m^{(r)}$ with weights $\lambda_r$: never forms the product |
#
# **Cross-attention here is a gate.** Each modality enters as *one* pooled token, so attention runs
# over $M = 2$ tokens: each query's softmax over two keys is a single number $a \in (0, 1)$, and
# its output is $a\,v_a + (1 - a)\,v_i$, a data-dependent mix of two vectors — a softmax gate, close
# to the GMU row. Cross-modal attention earns its name on token *sequences*: the image as patches
# (e.g. the CNN's 7 × 7 positions) and the audio as frames (the 40 MFCC frames), so that each
# frame can attend to the strokes it matches; that is how transformers fuse modalities (lesson 07).
#
# Every class takes `dims={"audio": 32, "image": 32}` and a dict of `(B, D)` tensors and returns
# `(B, 10)` logits. Two of them in full, the weighted sum and the low-rank tensor fusion. The
# low-rank factors must be *registered* parameters (`nn.Parameter`s in an `nn.ParameterDict`, so
# that `model.parameters()` lists them): one well-known public implementation keeps them in a
# plain Python list instead, where the optimiser never sees them and they never train.

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
# Now the parallel methods, trained the same way over the same seeds: first the five that combine
# the final vectors by a concatenation, an average, a weighted sum, a gate or a modulation. The
# table shows them beside the single-modality models (a first look; the full table below ranks them all).

# %%
SIMPLE = ["concat", "late", "weighted_sum", "gated", "film"]
runs.update(train_grid(SIMPLE))
display(shown(summarize(runs[(m, s)] for m in SIMPLE + UNIMODAL for s in SEEDS)))

# %% [markdown]
# Then attention and the two tensor fusions: more parameters, more interactions between the
# modalities' features. Do they buy accuracy here?

# %%
INTERACTION = ["cross_attention", "tensor", "low_rank_tensor"]
runs.update(train_grid(INTERACTION))
display(shown(summarize(runs[(m, s)] for m in INTERACTION + ["concat"] + UNIMODAL for s in SEEDS)))

# %% [markdown]
# ### Serial and hybrid: the sound inside the image encoder
#
# In every method above the image CNN never sees the audio: both encoders finish, then fusion
# starts. In the **serial** model the audio features $f_a$ condition the image CNN's mid-level
# maps $h$ of shape `(B, C, 7, 7)` (after the second of its three conv blocks; $C = 16$
# channels here) by a per-channel scale and shift (FiLM on feature maps),
#
# $$h' = \bigl(1 + \Delta\gamma(f_a)\bigr) \odot h + \beta(f_a), \qquad \Delta\gamma, \beta \in \mathbb{R}^{B \times C}\ \text{(broadcast over the } 7 \times 7 \text{ positions)},$$
#
# where $\Delta\gamma$ and $\beta$ are one learned linear map of $f_a$. The last conv block,
# its batch norm and ReLU, the flatten and the projection then run on $h'$, and a single linear
# head reads the image stream's output: $z = W f_i(x_i;\, f_a) + b$. The audio has no head of its
# own: it reaches the prediction only through the image encoder. The **hybrid** model keeps that
# link and adds late fusion of both streams' final features, $z = \tfrac12 (W_a f_a + b_a) +
# \tfrac12 (W_i f_i(x_i;\, f_a) + b_i)$: it is `late` plus the serial link, as `serial` is
# `image_only` plus the link.
#
# The FiLM row of the table above looks similar but is parallel: it scales the image encoder's
# *final* vector, after the encoder has finished. Moving our link past the last conv block would
# leave only the flatten and a linear map after it, an affine modulation of the final features,
# i.e. parallel FiLM again, so the class refuses `after=2`. The linear map starts at zero, so the
# link starts as the identity and the model as `image_only`; without audio it falls back to that
# identity ($\gamma = 1$, $\beta = 0$) and the image stream runs unconditioned. Without the image,
# the serial model has nothing to predict from; the hybrid one answers from its audio head.

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
    maps, maps_other = (image_enc.maps(x4["image"], audio_enc(a["audio"])) for a in (x4, other4))  # (4, 16, 7, 7)
    print("other recordings change the image maps:", not torch.allclose(maps, maps_other))
    print("missing audio -> identity link:", torch.allclose(demo.features({"image": x4["image"]})["image"], plain))
    film_model = build_av_model("film").eval()
    print("parallel FiLM: image features independent of audio:",
          torch.equal(film_model.features(x4)["image"], film_model.features(other4)["image"]))

# %% [markdown]
# The serial and hybrid models, trained the same way, beside the models they extend:

# %%
SERIAL = ["serial", "hybrid"]
runs.update(train_grid(SERIAL))
display(shown(summarize(runs[(m, s)] for m in SERIAL + ["image_only", "late", "film"] for s in SEEDS)))

# %% [markdown]
# ### The epoch `fit` keeps
#
# `fit` keeps the weights of the best-validation epoch rather than the last. That raises
# *validation* accuracy by construction (it is the maximum over the epochs), so validation cannot
# tell whether the choice helps. Test can: three methods are trained again with the same seeds and
# `restore_best=False` — the very same training run, ending on the last epoch's weights instead —
# and the two are compared on test, paired over the seeds. Each line of the plot is one run of the
# ten fusion models; the dot marks the epoch whose weights were kept.

# %%
FUSED = list(TAXONOMY)  # eight parallel methods, serial, hybrid
LAST_METHODS = ["concat", "late", "gated"]
last_runs = train_grid(LAST_METHODS, config=FitConfig(**{**CONFIG.__dict__, "restore_best": False}))
best_epoch_acc = [statistics.mean(runs[(m, s)]["test_acc"] for m in LAST_METHODS) for s in SEEDS]  # per seed
last_epoch_acc = [statistics.mean(last_runs[(m, s)]["test_acc"] for m in LAST_METHODS) for s in SEEDS]

fig, ax = plt.subplots(figsize=(8, 3.2))
jumps, kept_last = [], 0
for (method, seed), r in runs.items():
    if method in FUSED:
        acc = r["history"]["val_acc"]
        jumps += [abs(b - a) for a, b in zip(acc, acc[1:])]
        kept_last += r["best_epoch"] == len(acc) - 1
        ax.plot(range(1, len(acc) + 1), acc, color="tab:gray", alpha=0.4, lw=1)
        ax.plot(r["best_epoch"] + 1, r["val_acc"], "o", color="tab:blue", ms=4)
n_fused_runs = len(FUSED) * len(SEEDS)
ax.set_xlabel("epoch"); ax.set_ylabel("val accuracy"); ax.set_ylim(0, 1); ax.set_xticks(range(1, CONFIG.epochs + 1))
ax.set_title(title(f"{n_fused_runs} fusion runs: the best-val epoch is the last one in {kept_last}; "
                   f"val accuracy moves up to {max(jumps, default=0):.2f} between epochs"), fontsize=10)
plt.tight_layout(); plt.show()
epoch_text = stats.say("best-val epoch", "last epoch", best_epoch_acc, last_epoch_acc)
say(f"On **test** (mean of {', '.join(LAST_METHODS)} per seed): {epoch_text}. "
    f"With the one-cycle schedule the learning rate anneals to almost zero, so the last epochs barely move "
    f"the weights, and the best-val epoch was the last one in {kept_last} of {n_fused_runs} fusion runs. "
    "Selecting on validation still costs nothing and guards a run whose last epoch went wrong (at a constant, "
    "high learning rate validation accuracy can swing by tens of points between epochs).")

# %% [markdown]
# ### The results
#
# Test accuracy as mean ± std over the seeds, the mean validation accuracy that selected each
# model, its size, and its training time. **When is one method better than another?** Both were
# trained with the same seeds (same data order, and the same initial weights wherever their
# layers match), so we compare them seed by seed: the paired differences $d_s = a_s - b_s$ and a
# paired t-test on them ($t = \bar d / (s_d / \sqrt n)$, $n$ seeds). With ten methods ranked at
# once, all 45 pairs are tested and the p-values adjusted (Holm), so the chance of *any* false
# "better" in the table stays at 5 %. A method the test cannot separate from the best is **not
# resolved with these seeds** — not "equal": more seeds might separate them. This is
# `mmcourse.stats`, the course's one rule.

# %%
table = summarize(runs[(m, s)] for m in UNIMODAL + FUSED for s in SEEDS)
display(shown(table, pixels=pixel_acc))

best_uni = table.loc[UNIMODAL].test_mean.idxmax()
fused = table.loc[FUSED]
ranking = stats.versus_best({m: per_seed(runs, m) for m in FUSED})  # best / below best / not resolved
best_fused = next(m for m, v in ranking.items() if v == "best")
top = sorted((m for m in FUSED if ranking[m] != "below best"), key=lambda m: -table.test_mean[m])
worst_fused = fused.test_mean.idxmin()
gain = table.test_mean[best_fused] - table.test_mean[best_uni]
# every fusion method against the best single modality, Holm-adjusted over the ten comparisons
vs_uni_test = {m: stats.paired_test(per_seed(runs, m), per_seed(runs, best_uni)) for m in FUSED}
vs_uni_p = dict(zip(FUSED, stats.holm([vs_uni_test[m]["p"] for m in FUSED])))
vs_uni = {m: ("not resolved" if not vs_uni_p[m] < 0.05 else "above" if vs_uni_test[m]["mean_diff"] > 0 else "below")
          for m in FUSED}
n_above, n_unres, n_below = (sum(v == w for v in vs_uni.values()) for w in ("above", "not resolved", "below"))

fig, ax = plt.subplots(figsize=(9, 3.8))
colors = ["tab:gray" if m in UNIMODAL else ("tab:blue" if m in top else "tab:cyan") for m in table.index]
bars = ax.bar(table.index, table.test_mean, yerr=table.test_std.fillna(0), color=colors, capsize=3)
for bar, m in zip(bars, table.index):  # the taxonomy: serial hatched //, hybrid xx, parallel plain
    bar.set_hatch({"serial": "//", "hybrid": "xx"}.get(TAXONOMY.get(m), ""))
ax.axhline(table.test_mean[best_uni], color="tab:red", ls="--", label=f"best single modality ({best_uni})")
ax.axhline(pixel_acc, color="tab:gray", ls=":", label="pixels → logistic regression")
ax.set_ylabel("test accuracy (mean ± std)"); ax.set_ylim(0, 1.12); ax.legend(loc="upper right", fontsize=8, ncol=2)
ax.set_xlabel("model (hatched: serial //, hybrid xx; other fusions parallel; grey: one modality)")
ax.set_title(title(
    f"Hard AV-digits, {len(SEEDS)} seeds: {n_above} of {len(FUSED)} fusions better than {best_uni} (paired t, Holm); "
    + (f"{len(top) - 1} not separated from {best_fused} (dark blue)" if len(top) > 1 else f"{best_fused} better than every other fusion")),
    fontsize=10)
plt.xticks(rotation=30, ha="right"); plt.tight_layout(); plt.show()

say("\n".join([
    f"- Best single modality: **{best_uni}**, {pm(table.test_mean[best_uni], table.test_std[best_uni])} "
    f"({'; '.join(f'{m} {pm(table.test_mean[m], table.test_std[m])}' for m in UNIMODAL if m != best_uni)}; "
    f"pixels → logistic regression {pixel_acc:.3f}).",
    (f"- **{best_fused}** has the highest fusion mean ({pm(table.test_mean[best_fused], table.test_std[best_fused])}), "
     f"but {len(top) - 1} other fusion methods are not resolved from it with {len(SEEDS)} seeds "
     f"({', '.join(m for m in top if m != best_fused)}): this run cannot rank those."
     if len(top) > 1 else
     f"- **{best_fused}** ({pm(table.test_mean[best_fused], table.test_std[best_fused])}) is better than every other "
     f"fusion method (paired t over {len(SEEDS)} seeds, Holm over all pairs)."),
    f"- Against {best_uni}: {n_above} of {len(FUSED)} fusion methods are better, {n_unres} not resolved, "
    f"{n_below} worse" + (f" (the weakest, {worst_fused}, {pm(table.test_mean[worst_fused], table.test_std[worst_fused])})."
                          if n_below else "."),
    f"- All {len(FUSED)} fusion means lie within {100 * (fused.test_mean.max() - fused.test_mean.min()):.1f} points of each "
    f"other, against a seed-to-seed std of up to {100 * fused.test_std.max():.1f} points"
    + (f", while fusing at all moves accuracy by {100 * gain:+.1f} points: here, *whether* to fuse matters far more "
       "than *how*." if vs_uni[best_fused] == "above" and len(top) > 1 else "."),
]))

# %% [markdown]
# ### Where each model sits: parallel, serial, hybrid
#
# Every fusion model above, in the taxonomy, and why. Two pairs differ only in the serial link,
# so they measure what it buys: `serial` vs `image_only` (the same image stream and linear head,
# plus the audio inside the encoder) and `hybrid` vs `late` (late fusion, plus the link). A third
# pair compares where the audio enters the image stream: `serial` vs `film` (inside the image
# encoder vs on its final vector; `film` also adds a hidden layer). Each pair is one planned
# comparison: a paired t-test over the seeds.

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

link_pairs = [("serial", "image_only", "the link alone, on the image stream"),
              ("hybrid", "late", "the link added to late fusion"),
              ("serial", "film", "conditioning inside the encoder vs on its final vector")]
link_text = {(a, b): stats.say(a, b, per_seed(runs, a), per_seed(runs, b)) for a, b, _ in link_pairs}
RANK_WORDS = {"best": "has the best mean of all", "below best": "is below the best (Holm over all pairs)",
              "not resolved": "is not separated from the best"}
say("\n".join([f"- {what}: {link_text[(a, b)]}." for a, b, what in link_pairs]
              + [f"- Among all {len(FUSED)} fusion models: "
                 + "; ".join(f"{m} {RANK_WORDS[ranking[m]]}" for m in ("serial", "hybrid")) + "."]))

# %% [markdown]
# The lesson's premise, checked: is the best fusion better than the best single modality? (Holm
# over the ten fusion methods' comparisons with it, since the best was picked after looking. In
# full mode the notebook stops here if it is not: everything after builds on it.)

# %%
print(f"best fusion {best_fused}: {pm(table.test_mean[best_fused], table.test_std[best_fused])} | best unimodal "
      f"{best_uni}: {pm(table.test_mean[best_uni], table.test_std[best_uni])} | gain {100 * gain:+.1f} points "
      f"(95% CI {100 * vs_uni_test[best_fused]['low']:+.1f} to {100 * vs_uni_test[best_fused]['high']:+.1f}, "
      f"Holm-adjusted p {vs_uni_p[best_fused]:.2g})")
fusion_pays = claim(vs_uni[best_fused] == "above",
                    f"the best fusion is better than the best single modality (paired t over {len(SEEDS)} seeds, Holm)")
if not QUICK:  # the lesson's premise: on hard data fusion pays (quick mode trains too little to tell)
    assert fusion_pays, "on hard AV-digits the best fusion should beat the best single modality"

# %% [markdown]
# ## 3. A missing modality
#
# At test time a sensor can fail. Methods that combine modalities by a sum or an average over
# what is present (late, weighted sum, attention with a key mask) can still *run* without the
# absent one: they leave its term out. Methods whose layers are shaped for every modality (concat,
# gated, FiLM, tensor) cannot, and the course's classes say so instead of guessing. The serial
# model sits in between: without audio its link falls back to the identity and the image stream
# answers alone, but without the image it has no stream left to predict from. The hybrid model
# answers either way.

# %%
# NBVAL_CHECK_OUTPUT
for method, keep in (("concat", "image"), ("serial", "audio")):
    try:
        runs[(method, SEEDS[0])]["model"]({keep: test.inputs[keep][:4]})
    except KeyError as e:
        print(f"{method} with only the {keep} -> KeyError:", e.args[0])

# %% [markdown]
# Running is not the same as answering well. The four masking models with one modality removed,
# and the serial one without its audio, against the models trained on that modality alone
# (mean ± std over seeds):

# %%
MASKING = ["late", "weighted_sum", "cross_attention", "hybrid"]
KEEPS = {**{m: ("audio", "image") for m in MASKING}, "serial": ("image",)}  # serial cannot answer without the image


def missing_accs(rs, method, keep):
    """Test accuracy per seed of method's models given only the `keep` modality."""
    return [evaluate(rs[(method, s)]["model"], {keep: test.inputs[keep]}, test.labels)["acc"] for s in SEEDS]


miss = {(m, k): missing_accs(runs, m, k) for m, keeps in KEEPS.items() for k in keeps}
missing = pd.DataFrame({f"{k} only": [pm(statistics.mean(miss[(m, k)]), pd.Series(miss[(m, k)]).std())
                                      if k in KEEPS[m] else "no answer (KeyError)" for m in KEEPS]
                        for k in ("audio", "image")}, index=list(KEEPS))
missing["both"] = [pm(table.test_mean[m], table.test_std[m]) for m in KEEPS]
missing.loc["trained on that modality alone"] = [pm(table.test_mean[f"{k}_only"], table.test_std[f"{k}_only"])
                                                 for k in ("audio", "image")] + ["–"]
display(missing)
alone_text = {(m, k): stats.say(f"{m} given only the {k}", f"{k}_only", miss[(m, k)], per_seed(runs, f"{k}_only"))
              for m in ("late", "serial") for k in KEEPS[m]}
late_gap = {k: statistics.mean(miss[("late", k)]) - table.test_mean[f"{k}_only"] for k in ("audio", "image")}
say("\n".join(f"- {alone_text[key]}." for key in alone_text))

# %% [markdown]
# ### Why leaving a modality out is not enough: co-adaptation, and modality dropout
#
# A late-fusion model is trained on the *average* of its two heads' logits, $z = \tfrac12(z_a + z_i)$,
# and the loss sees only that average. Nothing asks either head to be right on its own: the two
# **co-adapt**. Where the audio is strong, the loss is already low and the image head gets little
# pressure to fix its own mistakes; a head may also shift or scale its logits in ways the other
# one compensates for. Remove one head at test time and the other is left answering a question it
# was never trained to answer alone — and (as in the table above) it can do worse than a model
# trained on that modality from the start. The serial model shows the same effect from the inside:
# its image stream was trained with the audio steering it, and "no audio" is a setting it never saw.
#
# **Modality dropout** (ModDrop, Neverova et al. 2016) trains for the test: in training, each
# example loses each modality with probability $p$ (never both), and the absent term is left out of
# that example's average exactly as it is at test time, so each head must also be right alone. It
# is an option of the masking fusions: `build_av_model("late", modality_dropout=0.3)`. Below: late
# and weighted-sum fusion trained with $p = 0.3$, the same seeds and recipe, then tested with both
# modalities and with one.

# %%
P_DROP = 0.3
runs.update(train_grid(["late", "weighted_sum"], suffix=" + dropout", modality_dropout=P_DROP))
DROPPED = ["late + dropout", "weighted_sum + dropout"]
for m in DROPPED:
    for k in ("audio", "image"):
        miss[(m, k)] = missing_accs(runs, m, k)
rows = {}
for m in ["late", "late + dropout", "weighted_sum", "weighted_sum + dropout"]:
    rows[m] = {"both": per_seed(runs, m), "audio only": miss[(m, "audio")], "image only": miss[(m, "image")]}
rows["trained on that modality alone"] = {"both": None, "audio only": per_seed(runs, "audio_only"),
                                          "image only": per_seed(runs, "image_only")}
display(pd.DataFrame({col: [pm(statistics.mean(r[col]), pd.Series(r[col]).std()) if r[col] else "–" for r in rows.values()]
                      for col in ("both", "audio only", "image only")}, index=list(rows)))
dropout_text = {
    "image": stats.say("late + dropout given only the image", "late given only the image",
                       miss[("late + dropout", "image")], miss[("late", "image")]),
    "image_only": stats.say("late + dropout given only the image", "image_only",
                            miss[("late + dropout", "image")], per_seed(runs, "image_only")),
    "audio": stats.say("late + dropout given only the audio", "late given only the audio",
                       miss[("late + dropout", "audio")], miss[("late", "audio")]),
    "both": stats.say("late + dropout", "late (both modalities)", per_seed(runs, "late + dropout"), per_seed(runs, "late")),
    "ws_image": stats.say("weighted_sum + dropout given only the image", "weighted_sum given only the image",
                          miss[("weighted_sum + dropout", "image")], miss[("weighted_sum", "image")]),
}
dropout_vs_alone = stats.paired_verdict(miss[("late + dropout", "image")], per_seed(runs, "image_only"))
say("\n".join(f"- {t}." for t in dropout_text.values()) + "\n- " + {
    "b": "Modality dropout narrows the gap to the single-modality model but does not close it here: a head that "
         "shares its training with another modality still learns less about its own than a model trained on it alone "
         "(lesson 06 looks at why).",
    "not resolved": "With modality dropout the image head alone is not separated from image_only: training for the "
                    "missing modality is what makes leaving it out work.",
    "a": "With modality dropout the image head alone even beats image_only."}[dropout_vs_alone])

# %% [markdown]
# ## 4. A noisy modality
#
# Add Gaussian noise of growing std to one modality's *input* at test time (the models were never
# trained on it) and watch each method degrade. A pixel and an MFCC value live on different scales,
# so the noise is counted per modality in units of that modality's standard deviation on the
# *training* split, $\sigma_m$ (as lesson 10 counts its attacks): level 1 adds noise as large as
# the modality's own spread. Each curve is the mean over the seeds' models (the shaded band ± one
# std); the dashed line is the model trained on the *other* modality alone, which the corruption
# cannot touch. A fused model that ends below that line has not learned to ignore a broken modality.

# %%
sigma = {m: space.scale for m, space in av_spaces(train.inputs).items()}  # σ_m on the training split
print("train std per modality:", {m: round(s, 3) for m, s in sigma.items()},
      "(pixels in [0, 1]; MFCCs standardised, then noised in the hard variant; padded frames excluded)")
noise_levels = [0.0, 0.5, 1.0, 2.0]  # in units of σ_m
CURVE_METHODS = ["concat", "late", "weighted_sum", "cross_attention", "serial", "hybrid", "late + dropout"]
N_NOISE = quick(len(test.labels), 250)  # test examples per evaluation (all of them in full mode)
noisy_in, noisy_y = {k: v[:N_NOISE] for k, v in test.inputs.items()}, test.labels[:N_NOISE]
curves = {}  # (method, corrupted modality) -> (seeds, levels) accuracies
for method in CURVE_METHODS:
    for seed in SEEDS:
        model = runs[(method, seed)]["model"]
        clean_acc = evaluate(model, noisy_in, noisy_y)["acc"]  # level 0: the same for both modalities
        for modality in ("audio", "image"):
            accs = [clean_acc] + [evaluate(model, corrupt(noisy_in, modality, level * sigma[modality]), noisy_y)["acc"]
                                  for level in noise_levels[1:]]
            curves.setdefault((method, modality), {})[seed] = accs
curves = {key: torch.tensor([by_seed[s] for s in SEEDS]) for key, by_seed in curves.items()}

other = {"audio": "image", "image": "audio"}
ref_acc = {mod: [evaluate(runs[(f"{other[mod]}_only", s)]["model"], {other[mod]: noisy_in[other[mod]]}, noisy_y)["acc"]
                 for s in SEEDS] for mod in ("audio", "image")}  # the untouched modality's own model, per seed
drop = {mod: statistics.mean((curves[(m, mod)][:, 0] - curves[(m, mod)][:, -1]).mean().item() for m in CURVE_METHODS)
        for mod in ("audio", "image")}
worse = max(drop, key=drop.get)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, modality in zip(axes, ("audio", "image")):
    for method in CURVE_METHODS:
        c = curves[(method, modality)]
        mean, std = c.mean(0), (c.std(0) if len(SEEDS) > 1 else torch.zeros(len(noise_levels)))
        ax.plot(noise_levels, mean, marker="o", label=method, ls=":" if "dropout" in method else "-")
        ax.fill_between(noise_levels, mean - std, mean + std, alpha=0.15)
    ax.axhline(statistics.mean(ref_acc[modality]), color="k", ls="--", lw=1, label=f"{other[modality]}_only model")
    ax.set_xlabel(f"noise std in units of the modality's train std\n(σ_{modality} = {sigma[modality]:.2f})")
    ax.set_title(f"corrupting {modality}")
    ax.legend(fontsize=7)
axes[0].set_ylabel("test accuracy")
fig.suptitle(title(f"Test-time noise in one modality ({len(SEEDS)} seeds): corrupting the {worse} costs more "
                   f"({100 * drop[worse]:.0f} vs {100 * drop[other[worse]]:.0f} points at {noise_levels[-1]:g} σ)"))
plt.tight_layout(); plt.show()

VERDICT = {"a": "above", "b": "below", "not resolved": "not resolved"}
at_max = {(m, mod): VERDICT[stats.paired_verdict(curves[(m, mod)][:, -1].tolist(), ref_acc[mod])]
          for m in CURVE_METHODS for mod in ("audio", "image")}
lines = []
for modality in ("image", "audio"):
    ref = f"{other[modality]}_only"
    groups = {w: [m for m in CURVE_METHODS if at_max[(m, modality)] == w] for w in ("below", "not resolved", "above")}
    parts = [f"{w}: {', '.join(ms)}" for w, ms in groups.items() if ms]
    lines.append(f"- Corrupting the **{modality}** ({noise_levels[-1]:g} σ), against the {ref} model "
                 f"({statistics.mean(ref_acc[modality]):.3f}), which never sees it (paired t per method) — {'; '.join(parts)}.")
below_any = any(v == "below" for v in at_max.values())
if drop["image"] > drop["audio"]:
    lines.append(f"- Per unit of σ the image is the fragile one: the hard images are smooth reconstructions from 4 "
                 f"principal components, so pixel noise of {noise_levels[-1]:g} σ buries the little they carry, while the "
                 f"hard audio already holds noise of twice each coefficient's std and its σ includes it.")
lines.append("- A fused model below that line leans on the broken modality: it never learned to ignore one, "
             "because training never showed one." if below_any else
             "- No fused model is below the single-modality line here: at this noise level each still gets "
             "at least as much from the intact modality as a model trained on it alone.")
say("\n".join([f"- Averaged over the {len(CURVE_METHODS)} models, noise of {noise_levels[-1]:g} σ costs "
               f"{100 * drop['image']:.1f} points on the image and {100 * drop['audio']:.1f} on the audio.", *lines]))

# %% [markdown]
# Modality dropout trains for a modality that is *absent*, not for one that is noisy: noise still
# reaches a head that trusts its input (compare the dotted curve with `late`). Training with the
# inputs noised as well, or a model that estimates each modality's reliability, goes further;
# lesson 06 looks at how the two modalities share the training signal.

# %% [markdown]
# ## 5. Move the weights yourself
#
# The weighted-sum model computes $h = w_{\text{image}} P_i f_i + w_{\text{audio}} P_a f_a$ and
# then the logits $z = \mathrm{head}(h)$. It was trained with $w = (0.5, 0.5)$; the sliders change
# the weights *after* training, so you see how much the trained head relies on each term. The
# noise sliders corrupt a modality (in units of its train std σ, as in §4), the check boxes remove
# one. Features are cached, so each move is a few milliseconds. Which of the seeds'
# weighted-sum models to show is chosen on validation, never by looking at test: the one with the
# median validation accuracy.

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
panel = FusionWeightsPanel(ws_model, test.inputs, test.labels, example=EXAMPLE, scales=sigma)
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
# and keeps the model (`trainer.model`). Nothing trains until you press Start; the status line
# under the buttons always says what is ready, training or finished.

# %%
# NBVAL_IGNORE_OUTPUT
from mmcourse.live import LiveTrainer

trainer = LiveTrainer(train_sub, val, epochs=quick(8, 1), method="gated")
display(trainer.widget())
print(f"LiveTrainer on {list(trainer.device.options)}: nothing trains until you press Start")

# %% [markdown]
# ## 6. When fusion barely pays: the clean variant
#
# On clean data each modality alone is already strong. The same recipe, three models, and the
# pixel baseline:

# %%
clean = {s: load_av_digits(s, "clean") for s in ("train", "val", "test")}
clean_sub = ({k: v[:N_TRAIN] for k, v in clean["train"].inputs.items()}, clean["train"].labels[:N_TRAIN])
clean_runs = train_grid(["image_only", "audio_only", "late"], splits=(clean_sub, clean["val"], clean["test"]))
clean_pixel_acc = pixel_baseline((clean_sub[0]["image"], clean_sub[1]), clean["val"], clean["test"])["test_acc"]
clean_table = summarize(clean_runs.values())
display(shown(clean_table[["test_mean", "test_std", "val_mean"]], pixels=clean_pixel_acc))
clean_best_uni = clean_table.loc[UNIMODAL].test_mean.idxmax()
clean_gain = clean_table.test_mean["late"] - clean_table.test_mean[clean_best_uni]
clean_text = stats.say("late", clean_best_uni, per_seed(clean_runs, "late"), per_seed(clean_runs, clean_best_uni))
clean_vs = stats.paired_verdict(per_seed(clean_runs, "late"), per_seed(clean_runs, clean_best_uni))
clean_image_text = stats.say("image_only", "pixels → logistic regression", per_seed(clean_runs, "image_only"),
                             [clean_pixel_acc] * len(SEEDS))
say(f"On clean data: {clean_text}. The image CNN against pixels → logistic regression ({clean_pixel_acc:.3f}): "
    f"{clean_image_text}.")

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

# %% tags=["hide-input"] jupyter={"source_hidden": true}
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
LINE = {"below": "below", "above": "above", "not resolved": "not resolved from"}
gain_text = {"above": "better (paired t, Holm over the ten fusions)", "below": "worse (paired t, Holm)",
             "not resolved": f"not resolved with {len(SEEDS)} seeds"}
if vs_uni[best_fused] == "above" and clean_vs == "not resolved":
    contrast = ("Fusion pays where each modality lacks information the other has (hard), and not measurably "
                "where one modality already has it all (clean).")
elif vs_uni[best_fused] == "above" and clean_vs == "a":
    contrast = "Fusion pays on both variants here, far more on the hard one."
elif vs_uni[best_fused] == "above":
    contrast = "Fusion pays on the hard variant; on the clean one late fusion is even below the best single modality."
else:
    contrast = "This run does not show fusion paying on the hard variant, so it cannot show the contrast either."
say(f"""
- On hard AV-digits ({len(SEEDS)} seeds, {CONFIG.epochs} epochs one-cycle, {N_TRAIN} training pairs, each model kept at its
  best validation epoch) the best single modality is **{best_uni}** ({pm(table.test_mean[best_uni], table.test_std[best_uni])});
  the image CNN scores {table.test_mean['image_only']:.3f} against {pixel_acc:.3f} for logistic regression on the pixels
  ({image_vs_pixels}{"" if image_vs_pixels_v == "a" else ": with only 4 principal components in each image, a CNN has little that a linear model cannot read too"}).
  The best fusion mean, **{best_fused}** ({pm(table.test_mean[best_fused], table.test_std[best_fused])}), differs
  from {best_uni} by **{100 * gain:+.1f} points**: {gain_text[vs_uni[best_fused]]}.
  {n_above} of {len(FUSED)} fusion methods are better than {best_uni}, {n_unres} not resolved, {n_below} worse.
- {f"{len(top) - 1} fusion methods ({', '.join(m for m in top if m != best_fused)}) are not separated from {best_fused} with {len(SEEDS)} seeds: the ranking among them is not something this run can tell." if len(top) > 1 else f"{best_fused} is better than every other fusion method."}
  The fusion means span {fused.test_mean.min():.3f} to {fused.test_mean.max():.3f} (std across seeds up to
  {fused.test_std.max():.3f}) while their sizes differ by {fused.params.max() / fused.params.min():.1f}×; the rank
  correlation of size and accuracy is {rho:+.2f}: {size_text}.
- Serial and hybrid: {link_text[("serial", "image_only")]}; {link_text[("hybrid", "late")]}; {link_text[("serial", "film")]}.
- Keeping the best-validation epoch, on test: {epoch_text}.
- A missing modality: late fusion given only the image scores {statistics.mean(miss[('late', 'image')]):.3f}, against
  {table.test_mean['image_only']:.3f} for image_only ({100 * late_gap['image']:+.1f} points); given only the audio
  {statistics.mean(miss[('late', 'audio')]):.3f} against {table.test_mean['audio_only']:.3f} ({100 * late_gap['audio']:+.1f}).
  Trained with modality dropout (p = {P_DROP}) it keeps {statistics.mean(miss[('late + dropout', 'image')]):.3f} with the image
  alone and {statistics.mean(miss[('late + dropout', 'audio')]):.3f} with the audio alone; {dropout_text['image']}; against a
  model trained on images alone, {dropout_text['image_only']}. With both modalities: {dropout_text['both']}.
- Noise at test time, counted in each modality's train std: {noise_levels[-1]:g} σ costs {100 * drop['image']:.1f} points
  on the image and {100 * drop['audio']:.1f} on the audio (mean over {len(CURVE_METHODS)} models); with the image noised,
  {sum(at_max[(m, 'image')] == 'below' for m in CURVE_METHODS)} of {len(CURVE_METHODS)} fall below the audio_only model, with the
  audio noised {sum(at_max[(m, 'audio')] == 'below' for m in CURVE_METHODS)} below the image_only one. Late fusion with modality dropout
  (trained for an absent modality, not a noisy one) is {LINE[at_max[('late + dropout', 'image')]]} that line with the image noised,
  plain late fusion {LINE[at_max[('late', 'image')]]} it.
- Moving the weighted-sum weights (seed {ws_run['seed']}, chosen on validation) from audio-only to image-only gives test
  accuracies {', '.join(f'{a:.2f}' for a in sweep)}: {f"a mix beats either extreme by {100 * mix_gain:.1f} points, so the trained head uses both terms" if mix_gain > 0.01 else "no mix beats the better extreme by more than a point, so the head leans on one term"}.
- On clean data the best single modality, {clean_best_uni}, already reaches {pm(clean_table.test_mean[clean_best_uni], clean_table.test_std[clean_best_uni])}
  (pixels → logistic regression {clean_pixel_acc:.3f}; the image CNN against it: {clean_image_text}); {clean_text}, against {100 * gain:+.1f} points for the best
  fusion on the hard variant. {contrast}
""")

# %% [markdown]
# **Next:** [06 · Loss weighting and modality imbalance](06_loss_weighting.ipynb) — why a fused
# model can under-train one of its encoders, and how to fix it.
