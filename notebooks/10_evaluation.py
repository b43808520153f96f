# %% [markdown]
# # 10 · Capstone: judging a multimodal model properly
#
# One accuracy number hides almost everything that matters once a model leaves the notebook:
# which digits it confuses, how its scores trade false alarms for misses, whether a "90 % sure"
# is right 90 % of the time, which modality it actually uses, and what happens when a microphone
# hisses or a camera goes dark. This capstone asks all of those questions of lesson 09's teacher, a
# late-fusion audio-visual model chosen because it can run with a modality missing, with the
# package's hand-written metrics checked against scikit-learn. Every choice (the model's best epoch,
# the calibration temperature) is made on the validation split; the test split is only reported.
#
# **Learning goals**
# - read a per-class report and a confusion matrix, and find the model's systematic mistakes;
# - draw one-vs-rest ROC and precision–recall curves and say when each is the right picture;
# - measure calibration (reliability diagram, expected calibration error) and fix it with one
#   temperature;
# - attribute predictions to modalities (ablation, gradient × input) and test robustness to
#   noise and to a missing modality.
#
# **Prerequisites:** 01 (metrics by hand), 05 (late fusion, masking), 09 (the teacher model).
#
# **Run time**, measured on the course's 2-core CPU while other jobs shared its cores (load 5–8; an
# idle machine is faster, see the README table): full mode 20–50 s of cell time (40–80 s with kernel
# start) once lesson 09 has saved the teacher, mostly imports and the noise sweep over 1,000 test pairs;
# starting here, training the teacher adds 75 s. Quick mode (a CI smoke test, numbers meaningless):
# 20–40 s of cell time, most of it imports.

# %%
# Colab only: install the course package at this course version, without dependencies
# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.
# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.
import importlib.util
import subprocess
import sys
if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "mmcourse @ git+https://github.com/mmcourse/mmcourse@v0.1.0"], check=True)
    subprocess.run(pip + ["mlxtend>=0.23"], check=True)

# %%
import inspect

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import sklearn.metrics as skm
import torch
from IPython.display import display

import mmcourse
from mmcourse import calibration, check, compress, metrics, quick, say, title
from mmcourse.data import load_av_digits
from mmcourse.fusion.zoo import build_av_model
from mmcourse.train import predict
from mmcourse.widgets import corrupt

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

N_TEST = quick(1000, 300)  # test pairs evaluated (the whole split is 1000)
NOISE = quick([0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0], [0.0, 0.5, 4.0])  # noise stds for the robustness sweep
train, val, test = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
X, y = {k: v[:N_TEST] for k, v in test.inputs.items()}, test.labels[:N_TEST]
print(f"evaluating on {N_TEST} test pairs")

# %% [markdown]
# ## 1. The model
#
# The teacher of lesson 09: late fusion of an image CNN and an audio CNN
# (`compress.TEACHER`). The same call, with the same sizes, loads the checkpoint lesson 09 saved
# (or trains and saves it if you start here).

# %%
# NBVAL_IGNORE_OUTPUT
model = compress.load_or_train_teacher(train, val, epochs=quick(10, 1), n_train=quick(3500, 300))
logits = predict(model, X)  # (N, 10)
probs = logits.softmax(-1)  # (N, 10)
pred = probs.argmax(-1)  # (N,)
acc = metrics.accuracy(y, pred)
print(f"test accuracy {acc:.3f} on {N_TEST} pairs")

# %% [markdown]
# ## 2. Per-class report and confusion matrix
#
# For class $c$: precision $= TP/(TP+FP)$ (of the examples called $c$, how many are $c$),
# recall $= TP/(TP+FN)$ (of the true $c$, how many were found), $F_1$ their harmonic mean; the
# macro average weighs every class equally. All come from the confusion matrix
# $M_{tp}$ = #(true $t$, predicted $p$), rows true, columns predicted (lesson 01).

# %%
cm = metrics.confusion_matrix(y, pred, num_classes=10)  # (10, 10)
precision, recall, f1 = metrics.precision_recall_f1(cm)
report = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                       "support": cm.sum(1)}).rename_axis("digit")
display(report.round(3))
macro_f1 = float(f1.mean())
sk_f1 = skm.f1_score(y, pred, average="macro")
print(f"macro F1 by hand {macro_f1:.4f} | scikit-learn {sk_f1:.4f}")

# %%
# NBVAL_CHECK_OUTPUT
print("hand-written F1 equals scikit-learn's:", abs(macro_f1 - sk_f1) < 1e-9)

# %%
off = cm.clone().fill_diagonal_(0)
worst = divmod(int(off.argmax()), 10)  # (true, predicted) of the most frequent mistake
fig, ax = plt.subplots(figsize=(5.5, 4.5))
sns.heatmap(cm.numpy(), annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
ax.set_xlabel("predicted digit")
ax.set_ylabel("true digit")
ax.set_title(title(f"Most frequent mistake: {worst[0]} read as {worst[1]} ({int(off.max())} times)"))
plt.show()

# %% [markdown]
# Failures, not only successes: the test pairs the model got wrong with the highest confidence.
# Whether these are *confident* mistakes depends on the run: the title says how sure the model was.

# %%
CONFIDENT = 0.8  # a mistake made with p >= 0.8 counts as confident
conf, _ = probs.max(-1)
wrong = torch.nonzero(pred != y).flatten()
worst_idx = wrong[conf[wrong].argsort(descending=True)][:6]
if len(worst_idx) == 0:
    print(f"no mistakes among the {N_TEST} test pairs")
else:
    fig, axes = plt.subplots(1, len(worst_idx), figsize=(2 * len(worst_idx), 2.6), squeeze=False)
    for ax, i in zip(axes[0], worst_idx.tolist()):
        ax.imshow(X["image"][i, 0], cmap="gray")
        ax.set_title(f"true {int(y[i])}, said {int(pred[i])}\np = {conf[i]:.2f}", fontsize=9)
        ax.axis("off")
    lo, hi = float(conf[worst_idx].min()), float(conf[worst_idx].max())
    n_conf = int((conf[wrong] >= CONFIDENT).sum())
    fig.suptitle(title(f"Confident mistakes: the {len(worst_idx)} most confident of {len(wrong)} have p = {lo:.2f}–{hi:.2f} "
                       f"({n_conf} mistakes with p ≥ {CONFIDENT})" if lo >= CONFIDENT else
                       f"Mistakes with the highest confidence (p = {lo:.2f}–{hi:.2f}): {n_conf} of {len(wrong)} "
                       f"mistakes reach p ≥ {CONFIDENT}"), fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 3. ROC and precision–recall curves (one digit against the rest)
#
# For digit $c$ the score is $p(c \mid x)$ and the positives are the true $c$. Lowering the
# threshold traces the ROC curve (false-positive rate, true-positive rate) and the
# precision–recall curve. ROC's area (AUC) is the probability that a random positive outscores a
# random negative; with one positive in ten, it can look excellent while precision is poor, and
# the PR curve is where that would show. Precision–recall by hand, the same way `metrics.roc_curve`
# works:

# %%
def pr_curve(y_true, scores):
    """Precision and recall at every distinct threshold, highest score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    hits = y_true[order].double()
    tp, seen = torch.cumsum(hits, 0), torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return tp / seen, tp / hits.sum()  # precision, recall


def average_precision(y_true, scores):
    """AP = Σ_k P_k (R_k − R_{k−1}), scikit-learn's definition (no interpolation)."""
    precision_k, recall_k = pr_curve(y_true, scores)
    return float((precision_k * torch.diff(recall_k, prepend=torch.zeros(1, dtype=torch.float64))).sum())


aucs = [metrics.roc_auc((y == c).long(), probs[:, c]) for c in range(10)]
aps = [average_precision((y == c).long(), probs[:, c]) for c in range(10)]
sk_ap = skm.average_precision_score(torch.nn.functional.one_hot(y, 10), probs, average=None)
print(f"macro AUC {sum(aucs) / 10:.3f} | macro AP {sum(aps) / 10:.3f} | "
      f"AP agrees with scikit-learn: {max(abs(a - b) for a, b in zip(aps, sk_ap)) < 1e-6}")

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
for c in range(10):
    fpr, tpr, _ = metrics.roc_curve((y == c).long(), probs[:, c])
    a1.plot(fpr, tpr, lw=1, label=f"{c} (AUC {aucs[c]:.2f})")
    p_c, r_c = pr_curve((y == c).long(), probs[:, c])
    a2.plot(r_c, p_c, lw=1, label=f"{c} (AP {aps[c]:.2f})")
a1.plot([0, 1], [0, 1], "k:", lw=1)
a1.set(xlabel="false-positive rate", ylabel="true-positive rate",
       title=title(f"ROC: every digit AUC ≥ {min(aucs):.2f}"))
worst_ap = min(range(10), key=aps.__getitem__)
a2.set(xlabel="recall", ylabel="precision",
       title=title(f"{'PR is harsher' if min(aps) < min(aucs) else 'PR'}: lowest AP {min(aps):.2f} (digit {worst_ap})"))
a1.legend(fontsize=7, ncol=2)
a2.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# ## 4. Calibration
#
# Group the predictions by confidence $\max_c p_c$ into $K$ equal bins. Calibrated means: in
# each bin, accuracy ≈ mean confidence. The **expected calibration error**
#
# $$\mathrm{ECE} = \sum_{k=1}^{K} \frac{|B_k|}{N}\,\bigl|\mathrm{acc}(B_k) - \mathrm{conf}(B_k)\bigr|$$
#
# is the bin-size-weighted gap. **Temperature scaling** (Guo et al. 2017) divides the logits by
# one scalar $T$ fitted on the *validation* split by minimising cross-entropy; the argmax, and
# so the accuracy, does not change. $T > 1$ softens the probabilities: the fit asks for it when the
# raw model is *overconfident* on validation data; $T < 1$ sharpens them (*underconfident*). Whether
# the fix works is then judged on data the fit never saw, the test split: did ECE go down, and by
# more than its resampling noise? (A bootstrap: recompute both ECEs on test sets resampled with
# replacement, and look at the spread of the difference.)

# %%
print(inspect.getsource(calibration.expected_calibration_error))
val_logits = predict(model, val.inputs)
T_fit = calibration.fit_temperature(val_logits, val.labels)
probs_T = (logits / T_fit).softmax(-1)
ece_before = calibration.expected_calibration_error(probs, y)
ece_after = calibration.expected_calibration_error(probs_T, y)
boot = torch.randint(0, len(y), (200, len(y)), generator=torch.Generator().manual_seed(0))  # 200 resamples of test
ece_gain = torch.tensor([calibration.expected_calibration_error(probs[b], y[b])
                         - calibration.expected_calibration_error(probs_T[b], y[b]) for b in boot])
gain_lo, gain_hi = (float(q) for q in ece_gain.quantile(torch.tensor([0.025, 0.975])))
print(f"ECE on test {ece_before:.3f} → {ece_after:.3f} after temperature scaling with T = {T_fit:.2f} (fitted on val); "
      f"bootstrap 95% interval of the decrease: {gain_lo:+.3f} to {gain_hi:+.3f}")

# %%
# NBVAL_CHECK_OUTPUT
print("temperature scaling leaves the predictions unchanged:", torch.equal(probs_T.argmax(-1), pred))

# %%
fig, ax = plt.subplots(figsize=(5, 4.5))
for p, name in ((probs, f"raw (ECE {ece_before:.3f})"), (probs_T, f"T = {T_fit:.2f} (ECE {ece_after:.3f})")):
    b = calibration.reliability_bins(p, y, n_bins=10)
    keep = b["count"] > 0
    ax.plot(b["conf"][keep], b["acc"][keep], "o-", label=name)
ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
ax.set_xlabel("mean confidence in bin")
ax.set_ylabel("accuracy in bin")
if T_fit > 1.05:
    verdict = "overconfident"
elif T_fit < 0.95:
    verdict = "underconfident"
else:
    verdict = "about calibrated"
if gain_lo > 0:
    effect = "improves test ECE"
elif gain_hi < 0:
    effect = "makes test ECE worse"
else:
    effect = "changes test ECE within noise"
ax.set_title(title(f"T = {T_fit:.2f} fitted on validation: raw model {verdict};\n"
                   f"scaling {effect} ({ece_before:.3f} → {ece_after:.3f})"), fontsize=10)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Which modality does the model use?
#
# **Ablation.** Late fusion averages the logits of the modalities present, so it can run with one
# left out of the input dict. Accuracy without the image says how much the image carried.
# Feeding zeros instead works for any fusion, but zeros are inputs the model never saw.
#
# **Gradient × input.** For the logit $z_y$ of the true class, the first-order Taylor expansion
# around 0 gives $z_y \approx \sum_m \sum_j x_{m,j}\,\partial z_y / \partial x_{m,j}$; the inner sum
# is modality $m$'s attribution $a_m$. Its absolute size per modality is a cheap, local measure
# of reliance (and only that: it is exact for linear models, an approximation here).

# %%
drop = calibration.modality_ablation(model, X, y, how="drop")
zero = calibration.modality_ablation(model, X, y, how="zero")
attr = calibration.gradient_x_input(model, X, y)
shares = calibration.attribution_shares(attr)
display(pd.DataFrame({"drop from input": drop, "replace by zeros": zero}).round(3))
print("share of |gradient × input|:", {k: round(v, 3) for k, v in shares.items()})

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
a1.bar(list(drop), list(drop.values()), color="tab:gray")
a1.axhline(0.1, color="k", ls=":", lw=1)
a1.set_ylabel("test accuracy")
lean = max(shares, key=shares.get)
lost = {k: drop["all"] - drop[f"without {k}"] for k in ("audio", "image")}
needed = max(lost, key=lost.get)
a1.set_title(title(f"Ablation: removing {needed} costs the most\n({100 * lost[needed]:.0f} points)"
                   if lost[needed] > 0 else "Ablation: removing either modality\ncosts no accuracy"), fontsize=10)
right = (pred == y)
a2.scatter(attr["image"][right], attr["audio"][right], s=6, alpha=0.5, label="right")
a2.scatter(attr["image"][~right], attr["audio"][~right], s=6, alpha=0.7, color="tab:red", label="wrong")
a2.set_xlabel("image gradient × input")
a2.set_ylabel("audio gradient × input")
a2.set_title(title(f"Gradient × input: {lean} carries\n{shares[lean]:.0%} of the attribution"), fontsize=10)
a2.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 6. Robustness: noise and a missing modality
#
# `widgets.corrupt` adds Gaussian noise of a given std to one modality (audio: real frames
# only). A robust multimodal model should degrade gracefully, falling back on the clean one.

# %%
rows = []
for std in NOISE:
    for k in ("audio", "image"):
        noisy = corrupt(X, k, std)
        rows.append({"std": std, "noisy modality": k,
                     "acc": metrics.accuracy(y, predict(model, noisy).argmax(-1))})
robust = pd.DataFrame(rows).pivot(index="std", columns="noisy modality", values="acc")
display(robust.round(3))

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for k in robust.columns:
    ax.plot(robust.index, robust[k], "o-", label=f"noise on {k}")
ax.axhline(drop["without audio"], color="tab:blue", ls="--", lw=1, label="audio removed")
ax.axhline(drop["without image"], color="tab:orange", ls="--", lw=1, label="image removed")
ax.set_xlabel("noise std (in units of the input's scale)")
ax.set_ylabel("test accuracy")
# "worse than missing" only when the gap exceeds 2 binomial standard errors of the accuracy on N_TEST pairs
margin = {k: 2 * (drop[f"without {k}"] * (1 - drop[f"without {k}"]) / N_TEST) ** 0.5 for k in robust.columns}
worse_than_missing = [k for k in robust.columns if robust[k].min() < drop[f"without {k}"] - margin[k]]
ax.set_title(title(("A noisy " + " / ".join(worse_than_missing) + " hurts more than a missing one")
                   if worse_than_missing else "Noise never hurts clearly more than removing the modality"))
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# A fusion that cannot mask fails loudly rather than silently when a modality is missing:

# %%
# NBVAL_CHECK_OUTPUT
concat = build_av_model("concat").eval()
try:
    concat({"audio": X["audio"][:2]})
except KeyError as e:
    print("KeyError:", e.args[0])

# %% [markdown]
# ## Exercises
#
# **1. ECE by hand.** Write `my_ece(probs, labels, n_bins)` for (N, C) probabilities, with bins
# $(k/K, (k+1)/K]$. Then compare with `calibration.expected_calibration_error(probs, y)`.

# %%
def my_ece(probs, labels, n_bins):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.ece(my_ece)

# %% [markdown]
# **2. Gradient × input.** Write `my_grad_x_input(model, inputs, target)` returning
# `{modality: (N,)}`, without using `calibration.gradient_x_input`. Try it on `model` and `X`.

# %%
def my_grad_x_input(model, inputs, target):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.grad_times_input(my_grad_x_input)

# %% [markdown]
# **3. (open)** Try `calibration.fit_temperature(predict(model, test.inputs), test.labels)`: it
# refuses the test split.
# Fit $T$ on the test split by hand anyway (minimise the cross-entropy of `logits / T` over a grid
# of $T$) and compute the test ECE with it. Whatever it comes out as, why is that number not to be
# reported?

# %% [markdown]
# ## What the numbers say

# %%
worst_auc = min(range(10), key=aucs.__getitem__)
agree = "The two measures disagree here: " if lean != needed else "Both point the same way, but "
noisy_note = ("A noisy " + " / ".join(worse_than_missing) + " is worse than a missing one (by more than two "
              "standard errors): late fusion averages the noisy head's confidently wrong logits instead of "
              "ignoring them, so detecting bad inputs and dropping them pays. ") if worse_than_missing else ""
calib = {"improves test ECE": "temperature scaling helps on data it was not fitted on",
         "makes test ECE worse": "the temperature fitted on validation does not carry over to test here",
         "changes test ECE within noise": "the change on test is within its bootstrap noise"}[effect]
say(f"""
- **Overall.** Test accuracy {acc:.3f} and macro F1 {macro_f1:.3f} on {N_TEST} pairs; the weakest digit by F1 is
  {int(f1.argmin())} ({float(f1.min()):.3f}), the most frequent confusion {worst[0]} → {worst[1]}
  ({int(off.max())} times).
- **Ranking vs precision.** Every one-vs-rest AUC is at least {min(aucs):.3f} (digit {worst_auc} lowest), while
  average precision goes down to {min(aps):.3f} (digit {worst_ap}): AUC ranks each positive against all nine
  times as many negatives, AP asks how many of the top-scored examples are right.
- **Calibration.** The temperature fitted on validation is T = {T_fit:.2f}, so on validation data the raw model
  was {verdict} (T > 1 softens the probabilities, T < 1 sharpens them). On test, ECE goes from {ece_before:.3f} to {ece_after:.3f}
  (bootstrap 95 % interval of the decrease {gain_lo:+.3f} to {gain_hi:+.3f}): {calib}. The predictions, and so the
  accuracy, are the same.
- **Modalities.** All: {drop['all']:.3f}; without audio {drop['without audio']:.3f}; without image
  {drop['without image']:.3f}, so by ablation the model needs **{needed}** most. Gradient × input gives
  {shares[lean]:.0%} of the attribution to **{lean}**. {agree}gradient × input
  sums over inputs with different units and sizes (784 pixels in [0, 1] vs 40 × 13 standardised MFCCs) and is
  local (one linearisation per example), while ablation measures what is lost. Report both, with their caveats.
- **Robustness.** With noise std {NOISE[-1]:g} on audio the accuracy is {robust.loc[NOISE[-1], 'audio']:.3f}
  (without audio altogether {drop['without audio']:.3f}), on the image {robust.loc[NOISE[-1], 'image']:.3f}
  (without the image {drop['without image']:.3f}). {noisy_note}Late fusion keeps working with a modality missing;
  concatenation raises a `KeyError` instead of guessing.
""")

# %% [markdown]
# **Next:** `11_errata.ipynb` — broken patterns from popular tutorials, each run, failing, and fixed.
