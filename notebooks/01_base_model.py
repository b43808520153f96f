# %% [markdown]
# # 01 · The base model, by hand
#
# Every multimodal model in this course ends in the same small piece: features go through a
# hidden layer and come out as class probabilities, trained with cross-entropy. In this notebook
# you build that piece from its formulas on real MNIST digits, compute its gradients by hand,
# check them against autograd, train it, and measure it honestly (accuracy, precision, recall,
# F1, ROC-AUC, confusion matrix), first on "3 vs 8", then on all ten digits.
#
# **Learning goals**
# - write the forward pass $h=\sigma(Wx+b)$, $\hat y=\sigma(w_h^\top h+b_h)$ as tensor code with named shapes;
# - derive and code the backward pass by hand and check it against autograd to rounding error;
# - train with a train/validation/test split and read loss curves;
# - compute classification metrics from their definitions and cross-check them with scikit-learn;
# - move from one sigmoid output to ten softmax outputs with `nn.Module`.
#
# **Prerequisites:** Python, NumPy-style array code, the chain rule. No earlier notebook.
# **Run time:** full mode 8 s of cell time on a first run (nothing cached; longest cell 4 s), 8 s once its trainings are cached; quick mode 6 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.

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

import matplotlib.pyplot as plt
import numpy as np
import sklearn.metrics as skm
import torch
import torch.nn as nn
from IPython.display import Markdown, display

import mmcourse
from mmcourse import check, metrics
from mmcourse.data import load_mnist
from mmcourse.losses import bce_grad_logit, bce_grad_prob, bce_with_logits, sigmoid, sgd_step, softmax_ce

gen = mmcourse.seed_everything(0)
device = mmcourse.pick_device()  # the nets here are tiny: every tensor stays on the CPU
STEPS = mmcourse.quick(200, 40)  # full-batch gradient steps for the binary net
EPOCHS = mmcourse.quick(20, 3)  # epochs for the 10-class net
print(mmcourse.describe(device))

# %% [markdown]
# ## 1 · Data: real MNIST digits, "3 vs 8"
#
# The idea: start with a binary task that is easy to look at. We take the threes and
# eights of the MNIST sample, flatten each 28×28 image into a vector
# $x\in[0,1]^{784}$, label an eight $y=1$ and a three $y=0$, and split them three ways:
# train / validation / test. The validation set picks settings; the test set is looked at once.

# %%
X_all, y_all = (torch.from_numpy(a) for a in load_mnist())  # (5000, 28, 28), (5000,)
X_all = X_all.reshape(len(X_all), -1)  # (N, D) with D = 784
keep = (y_all == 3) | (y_all == 8)
X, y = X_all[keep], (y_all[keep] == 8).float()  # (1000, 784), (1000,) with 1 = "eight"
perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))  # same split on every re-run
n_tr, n_va = int(0.6 * len(X)), int(0.2 * len(X))
split = {"train": perm[:n_tr], "val": perm[n_tr:n_tr + n_va], "test": perm[n_tr + n_va:]}
Xs = {k: X[i] for k, i in split.items()}
ys = {k: y[i] for k, i in split.items()}

# %%
# NBVAL_CHECK_OUTPUT
for k in split:
    print(f"{k:>5}: {tuple(Xs[k].shape)}, fraction of eights {ys[k].mean():.2f}")

# %%
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for ax, i in zip(axes.flat, range(16)):
    ax.imshow(Xs["train"][i].reshape(28, 28), cmap="gray_r")
    ax.set_title("8" if ys["train"][i] else "3", fontsize=9)
    ax.axis("off")
fig.suptitle("Training digits: 784 pixel values in [0, 1] each; label 1 = eight, 0 = three")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · The forward pass, as the formulas
#
# One hidden layer of $H$ sigmoid units, one sigmoid output:
#
# $$h=\sigma(Wx+b),\qquad z_2=w_h^\top h+b_h,\qquad \hat y=\sigma(z_2),\qquad \sigma(z)=\frac1{1+e^{-z}}.$$
#
# For a batch $X$ of shape (N, D), the rows are examples, so $Wx$ becomes `X @ W.T`:
# $W$ is (H, D), $b$ is (H,), $h$ is (N, H), $w_h$ is (H,), $b_h$ a scalar, $z_2$ and $\hat y$ are (N,).
# We keep $z_2$ (the *logit*) as well as $\hat y$: notebook 02 shows why losses prefer it.

# %%
H, D = 16, X.shape[1]


def init_params(H: int, D: int, gen: torch.Generator) -> dict:
    """Small random weights (std 1/sqrt(fan-in)) so the sigmoids start in their linear range."""
    return {"W": torch.randn(H, D, generator=gen) * D**-0.5, "b": torch.zeros(H),
            "w2": torch.randn(H, generator=gen) * H**-0.5, "b2": torch.zeros(())}


def forward(X, P):
    h = sigmoid(X @ P["W"].T + P["b"])  # (N, H)
    z2 = h @ P["w2"] + P["b2"]  # (N,)
    return h, z2, sigmoid(z2)  # hidden, logit, probability


P = init_params(H, D, torch.Generator().manual_seed(0))
h, z2, p = forward(Xs["train"], P)
print(f"h {tuple(h.shape)}, z2 {tuple(z2.shape)}, p {tuple(p.shape)}; untrained p in "
      f"[{p.min():.2f}, {p.max():.2f}]")

# %% [markdown]
# ## 3 · The loss and its gradient, by hand
#
# Binary cross-entropy, mean over the $N$ examples:
# $L=-\frac1N\sum_i\big[y_i\log\hat y_i+(1-y_i)\log(1-\hat y_i)\big]$. Differentiating
# through the probability $\hat y$ first gives its gradient in *probability space*:
#
# $$\frac{\partial L}{\partial\theta}=-\frac1N\sum_i\Big(\frac{y_i}{\hat y_i}-\frac{1-y_i}{1-\hat y_i}\Big)\frac{\partial\hat y_i}{\partial\theta}.$$
#
# Through $\hat y=\sigma(z_2)$ with $\sigma'(z)=\sigma(z)(1-\sigma(z))$ the divisions cancel and
# $\partial L/\partial z_2=(\hat y-y)/N$. Then the chain rule, layer by layer. Name the hidden
# layer's pre-activation $a_1 = XW^\top + b$ (shape $(N, H)$), so that $h=\sigma(a_1)$ and
# $z_2 = h\,w_h + b_h$:
#
# $$\frac{\partial L}{\partial w_h}=h^\top\frac{\partial L}{\partial z_2},\qquad
# \frac{\partial L}{\partial b_h}=\sum_{i=1}^{N}\Big(\frac{\partial L}{\partial z_2}\Big)_i,\qquad
# \frac{\partial L}{\partial h}=\frac{\partial L}{\partial z_2}w_h^\top,$$
#
# $$\frac{\partial L}{\partial a_1}=\frac{\partial L}{\partial h}\odot h\odot(1-h),\qquad
# \frac{\partial L}{\partial W}=\Big(\frac{\partial L}{\partial a_1}\Big)^{\!\top}X,\qquad
# \frac{\partial L}{\partial b}=\sum_{i=1}^{N}\Big(\frac{\partial L}{\partial a_1}\Big)_{i,:}.$$
#
# A bias is added to every example's pre-activation with weight 1, so its gradient is the sum of
# the pre-activation's gradient over the batch: over the $N$ entries of $\partial L/\partial z_2$ for
# the scalar $b_h$, and over the $N$ rows of $\partial L/\partial a_1$ (shape $(N, H)$) for $b$ (shape $(H,)$).
#
# First, the two forms of $\partial L/\partial z_2$ agree (`bce_grad_prob` is the probability-space form,
# `bce_grad_logit` the simplified one; both live in `mmcourse.losses`, derived in notebook 02):

# %%
# NBVAL_CHECK_OUTPUT
y_tr = ys["train"]
p64 = sigmoid(z2.double())  # float64 so that only the formulas differ, not the rounding
dz2_prob = bce_grad_prob(p64, y_tr.double()) * p64 * (1 - p64)  # dL/dp · σ'(z2)
same_dz2 = check.cmp("dL/dz2 two ways", dz2_prob, bce_grad_logit(z2.double(), y_tr.double()), decimals=10)


# %%
def backward_by_hand(X, y, P):
    """Gradients of the mean BCE with respect to every parameter, by the chain rule."""
    h, z2, _ = forward(X, P)
    dz2 = bce_grad_logit(z2, y)  # (N,)   = (ŷ - y) / N
    da1 = dz2[:, None] * P["w2"] * h * (1 - h)  # (N, H) = dL/dh ⊙ σ'(a1)
    return {"W": da1.T @ X, "b": da1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum()}


# %% [markdown]
# **Check against autograd.** Autograd differentiates the same loss mechanically. In float64
# all four hand gradients, the two biases included, should agree to rounding error, far below
# any tolerance:

# %%
# NBVAL_CHECK_OUTPUT
P64 = {k: v.double().requires_grad_() for k, v in P.items()}
X64, y64 = Xs["train"].double(), y_tr.double()
bce_with_logits(forward(X64, P64)[1], y64).backward()
hand = backward_by_hand(X64, y64, {k: v.detach() for k, v in P64.items()})
grads_ok = all([check.cmp(f"dL/d{k}", hand[k], P64[k].grad, decimals=10) for k in P64])

# %% [markdown]
# ### Exercise 1 · the same net with tanh hidden units
#
# *How the checkers work:* run the checker cell after writing your answer. A wrong answer gets a
# specific message and a hint; `check.hint("tanh_net_grads")` gives the next hint without an attempt, and
# `check.solution("tanh_net_grads")` shows a reference solution once you have tried.
#
# Replace $\sigma$ in the hidden layer by $\tanh$ (so $h=\tanh(Wx+b)$; the output stays
# $\hat y=\sigma(w_h^\top h+b_h)$) and write all four gradients. Only one factor of
# `backward_by_hand` changes — which one? ($\tanh'(a)=1-\tanh^2(a)$.)

# %%
def tanh_net_grads(X, y, P):
    """Return {"W": ..., "b": ..., "w2": ..., "b2": ...}: mean-BCE gradients of the tanh net."""
    raise NotImplementedError("your code here")


check.tanh_net_grads(tanh_net_grads)

# %% [markdown]
# ## 4 · Training with the hand gradients
#
# Gradient descent: $\theta\leftarrow\theta-\eta\nabla_\theta L$, here on the whole (small)
# training set at each step. `mmcourse.losses.sgd_step` is exactly this update, in
# place; we log train and validation loss and accuracy to see over-fitting when it starts.

# %%
print(inspect.getsource(sgd_step))


# %%
def evaluate(P, split_name):
    _, z2, _ = forward(Xs[split_name], P)
    return bce_with_logits(z2, ys[split_name]).item(), metrics.accuracy(ys[split_name], z2 > 0)


LR = 1.0
P = init_params(H, D, torch.Generator().manual_seed(1))
P_start = {k: v.clone() for k, v in P.items()}  # kept for the autograd comparison below
history = {"train": [], "val": []}
for step in range(STEPS):
    grads = backward_by_hand(Xs["train"], ys["train"], P)
    sgd_step([P[k] for k in grads], grads.values(), lr=LR)
    for s in history:
        history[s].append(evaluate(P, s))
hand_P = P
best_step = int(np.argmin([loss for loss, _ in history["val"]]))

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
for s, style in (("train", "-"), ("val", "--")):
    a1.plot([l for l, _ in history[s]], style, label=s)
    a2.plot([a for _, a in history[s]], style, label=s)
a1.axvline(best_step, color="gray", lw=0.8)
overfits = best_step < STEPS - 1 and history["val"][-1][0] > history["val"][best_step][0]
a1.set(xlabel="gradient step", ylabel="mean BCE", yscale="log",
       title=mmcourse.title(f"Validation loss bottoms out at step {best_step}, then rises" if overfits
                            else "Validation loss still falls at the last step"))
a2.set(xlabel="gradient step", ylabel="accuracy", ylim=(0.5, 1.01),
       title=f"3 vs 8: train accuracy ends at {history['train'][-1][1]:.3f}, val at {history['val'][-1][1]:.3f}")
a1.legend(), a2.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **What did the hidden units learn?** Each row of $W$ is a 784-vector: show it as a 28×28 image.
# Red pixels push a unit on, blue pixels push it off.

# %%
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
lim = hand_P["W"].abs().max()
for j, ax in enumerate(axes.flat):
    ax.imshow(hand_P["W"][j].reshape(28, 28), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"unit {j}, $w_h$={hand_P['w2'][j]:+.1f}", fontsize=8)
    ax.axis("off")
fig.suptitle(f"The {H} hidden units as 28×28 weight images (red: ink there turns the unit on)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5 · The same with autograd, then with `nn.Module`
#
# Autograd builds the backward pass for us: mark the parameters `requires_grad`, call
# `loss.backward()`, read `.grad`. Starting from the same weights, a few steps with autograd
# follow the hand-gradient trajectory to float32 rounding:

# %%
# NBVAL_CHECK_OUTPUT
P_auto = {k: v.clone().requires_grad_() for k, v in P_start.items()}
P_hand = {k: v.clone() for k, v in P_start.items()}
for step in range(5):
    loss = bce_with_logits(forward(Xs["train"], P_auto)[1], ys["train"])
    loss.backward()
    sgd_step(P_auto.values(), [v.grad for v in P_auto.values()], lr=LR)
    for v in P_auto.values():
        v.grad = None
    grads = backward_by_hand(Xs["train"], ys["train"], P_hand)
    sgd_step([P_hand[k] for k in grads], grads.values(), lr=LR)
print("after 5 steps, hand == autograd (atol 1e-5):",
      all(torch.allclose(P_hand[k], P_auto[k].detach(), atol=1e-5) for k in P_hand))


# %% [markdown]
# `nn.Module` packages the parameters with the forward pass; `torch.optim.SGD` does the update.
# This is the form every later notebook uses.

# %%
class BaseNet(nn.Module):
    """h = σ(W x + b); logits = W_h h + b_h: one hidden sigmoid layer, C outputs (logits)."""

    def __init__(self, D: int, H: int, C: int):
        super().__init__()
        self.hidden, self.out = nn.Linear(D, H), nn.Linear(H, C)

    def forward(self, x):  # x: (B, D) -> logits (B, C)
        return self.out(torch.sigmoid(self.hidden(x)))


torch.manual_seed(1)
net = BaseNet(D, H, 1)
opt = torch.optim.SGD(net.parameters(), lr=LR)
for step in range(STEPS):
    loss = bce_with_logits(net(Xs["train"]).squeeze(1), ys["train"])  # (N, 1) -> (N,)
    opt.zero_grad()
    loss.backward()
    opt.step()
with torch.no_grad():
    module_acc = metrics.accuracy(ys["val"], net(Xs["val"]).squeeze(1) > 0)
print(f"nn.Module net, validation accuracy {module_acc:.3f} "
      f"(hand-gradient net: {history['val'][-1][1]:.3f})")

# %% [markdown]
# ## 6 · Measuring the binary classifier, by hand
#
# On the **test** set (untouched so far) we threshold $\hat y$ at 0.5 and count the four kinds
# of outcome: TP (an eight called eight), FP (a three called eight), FN, TN. Then
# $\text{precision}=\frac{TP}{TP+FP}$ (how many predicted eights are eights),
# $\text{recall}=\frac{TP}{TP+FN}$ (how many eights we found), $\text{accuracy}=\frac{TP+TN}{N}$.

# %%
_, z_te, p_te = forward(Xs["test"], hand_P)
y_te = ys["test"].long()
pred_te = (p_te > 0.5).long()
TP = int(((pred_te == 1) & (y_te == 1)).sum())
FP = int(((pred_te == 1) & (y_te == 0)).sum())
FN = int(((pred_te == 0) & (y_te == 1)).sum())
TN = int(((pred_te == 0) & (y_te == 0)).sum())
precision, recall = TP / (TP + FP), TP / (TP + FN)
acc = (TP + TN) / len(y_te)
print(f"TP={TP} FP={FP} FN={FN} TN={TN}: accuracy {acc:.3f}, precision {precision:.3f}, recall {recall:.3f}")

# %% [markdown]
# The reusable versions live in `mmcourse.metrics` (scikit-learn's conventions: arguments
# `(y_true, y_pred)`, confusion matrix with true classes as rows). All three must agree:

# %%
# NBVAL_CHECK_OUTPUT
cm = metrics.confusion_matrix(y_te, pred_te, num_classes=2)  # [[TN, FP], [FN, TP]]
P_c, R_c, F1_c = metrics.precision_recall_f1(cm)
sk_p, sk_r, sk_f1, _ = skm.precision_recall_fscore_support(y_te, pred_te, average="binary")
print("confusion matrix == [[TN, FP], [FN, TP]]:", cm.tolist() == [[TN, FP], [FN, TP]])
print("confusion matrix == sklearn:", cm.tolist() == skm.confusion_matrix(y_te, pred_te).tolist())
print("precision, recall by hand == mmcourse == sklearn:",
      np.allclose([precision, recall], [P_c[1], R_c[1]]) and np.allclose([precision, recall], [sk_p, sk_r]))
print("F1 mmcourse == sklearn:", np.isclose(F1_c[1], sk_f1))
print("accuracy mmcourse == sklearn:", np.isclose(metrics.accuracy(y_te, pred_te), skm.accuracy_score(y_te, pred_te)))

# %% [markdown]
# ### Exercise 2 · F1 from the confusion matrix
#
# F1 is the harmonic mean of precision and recall, $F_1=\frac{2PR}{P+R}$. Write it directly from
# a 2×2 confusion matrix `cm = [[TN, FP], [FN, TP]]` (rows: true class) and simplify: you need
# only three of the four counts.

# %%
def f1_from_confusion(cm):
    """F1 of class 1 from a 2x2 confusion matrix [[TN, FP], [FN, TP]]."""
    raise NotImplementedError("your code here")


check.f1_from_confusion(f1_from_confusion)

# %% [markdown]
# **ROC curve and AUC.** Precision and recall depend on the threshold 0.5. The ROC curve sweeps
# every threshold and plots the true-positive rate against the false-positive rate; the area
# under it (AUC) is the probability that a random eight scores higher than a random three.

# %%
# NBVAL_CHECK_OUTPUT
fpr, tpr, thr = metrics.roc_curve(y_te, p_te)
auc = metrics.roc_auc(y_te, p_te)
print("ROC-AUC mmcourse == sklearn:", np.isclose(auc, skm.roc_auc_score(y_te, p_te.detach())))

# %%
wrong = torch.nonzero(pred_te != y_te).squeeze(1)
n_show = min(len(wrong), 15)  # every mistake, up to three rows of five
n_rows = max(1, -(-n_show // 5))
fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.4]})
axes[0].plot(fpr, tpr, drawstyle="steps-post")
axes[0].plot([0, 1], [0, 1], ":", color="gray")
axes[0].set(xlabel="false-positive rate", ylabel="true-positive rate",
            title=f"ROC on the test set: AUC = {auc:.3f}")
axes[1].axis("off")
axes[1].set_title(f"All {len(wrong)} test digits it gets wrong (ŷ = P(eight))" if n_show == len(wrong) else
                  f"{n_show} of the {len(wrong)} test digits it gets wrong (ŷ = P(eight))")
for j, i in enumerate(wrong[:n_show].tolist()):
    ax = axes[1].inset_axes([(j % 5) * 0.2, 1 - (j // 5 + 1) / n_rows, 0.18, 0.82 / n_rows])
    ax.imshow(Xs["test"][i].reshape(28, 28), cmap="gray_r")
    ax.set_title(f"true {'8' if y_te[i] else '3'}, ŷ={p_te[i]:.2f}", fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Interactive: move the threshold
#
# Raising the threshold makes the model call "eight" less often: precision rises, recall falls.
# The slider recomputes the confusion matrix with `mmcourse.metrics` and marks the operating
# point on the ROC curve. (Without a live kernel the cell prints its initial state.)

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets

out = widgets.Output()


def show_threshold(t: float) -> str:
    pred = (p_te > t).long()
    cm_t = metrics.confusion_matrix(y_te, pred, num_classes=2)
    prec, rec, f1 = (v[1].item() for v in metrics.precision_recall_f1(cm_t))
    fpr_t, tpr_t = cm_t[0, 1] / cm_t[0].sum(), cm_t[1, 1] / cm_t[1].sum()
    with out:
        out.clear_output(wait=True)
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
        a.plot(fpr, tpr, drawstyle="steps-post")
        a.plot([fpr_t], [tpr_t], "ro")
        a.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"threshold {t:.2f}")
        b.imshow(cm_t, cmap="Blues")
        for (r, c), v in np.ndenumerate(cm_t.numpy()):
            b.text(c, r, v, ha="center", va="center")
        b.set(xticks=[0, 1], xticklabels=["3", "8"], yticks=[0, 1], yticklabels=["3", "8"],
              xlabel="predicted", ylabel="true", title=f"P={prec:.2f}  R={rec:.2f}  F1={f1:.2f}")
        plt.tight_layout()
        plt.show()
    return f"threshold {t:.2f}: precision {prec:.3f}, recall {rec:.3f}, F1 {f1:.3f}"


slider = widgets.FloatSlider(value=0.5, min=0.01, max=0.99, step=0.01, description="threshold")
display(widgets.VBox([slider, out]))
# the readout is a display handle that every slider move updates in place (no stale line)
readout = display(Markdown(show_threshold(slider.value)), display_id=True)
slider.observe(lambda change: readout.update(Markdown(show_threshold(change["new"]))), names="value")

# %% [markdown]
# ## 7 · Ten classes: softmax outputs
#
# For $C=10$ digits the output layer has ten logits $z\in\mathbb R^{10}$ and
# $\text{softmax}(z)_c=e^{z_c}/\sum_k e^{z_k}$ turns them into probabilities. The loss is
# softmax cross-entropy, $L=-\frac1B\sum_i\log\text{softmax}(z_i)_{y_i}$, whose gradient is
# $(\text{softmax}(z)-\text{onehot}(y))/B$ (derived in notebook 02; here we use
# `mmcourse.losses.softmax_ce`). Same `BaseNet` with a wider hidden layer, all the digits
# split three ways again, and mini-batch SGD.

# %%
gen10 = torch.Generator().manual_seed(10)  # this cell's own stream: a re-run repeats it exactly
perm10 = torch.randperm(len(X_all), generator=gen10)
n_tr10, n_va10 = int(0.6 * len(X_all)), int(0.2 * len(X_all))
idx10 = {"train": perm10[:n_tr10], "val": perm10[n_tr10:n_tr10 + n_va10], "test": perm10[n_tr10 + n_va10:]}
torch.manual_seed(2)
H10 = 64  # a wider hidden layer for ten classes
net10 = BaseNet(D, H10, 10)
opt10 = torch.optim.SGD(net10.parameters(), lr=0.5)
hist10 = {"train": [], "val": []}
Xtr10, ytr10 = X_all[idx10["train"]], y_all[idx10["train"]]
for epoch in range(EPOCHS):
    for b in torch.randperm(len(Xtr10), generator=gen10).split(64):  # one epoch of mini-batches
        loss = softmax_ce(net10(Xtr10[b]), ytr10[b])
        opt10.zero_grad()
        loss.backward()
        opt10.step()
    with torch.no_grad():
        for s in hist10:
            logits = net10(X_all[idx10[s]])
            hist10[s].append((softmax_ce(logits, y_all[idx10[s]]).item(),
                              metrics.accuracy(y_all[idx10[s]], logits.argmax(1))))
with torch.no_grad():
    pred10 = net10(X_all[idx10["test"]]).argmax(1)  # (N_test,)
y10_te = y_all[idx10["test"]]
acc10 = metrics.accuracy(y10_te, pred10)
cm10 = metrics.confusion_matrix(y10_te, pred10, num_classes=10)
print(f"10-class test accuracy {acc10:.3f} after {EPOCHS} epochs")

# %%
# NBVAL_CHECK_OUTPUT
print("10-class confusion matrix == sklearn:", cm10.tolist() == skm.confusion_matrix(y10_te, pred10, labels=range(10)).tolist())
_, _, f1_10 = metrics.precision_recall_f1(cm10)
print("per-class F1 == sklearn:", np.allclose(f1_10, skm.f1_score(y10_te, pred10, average=None)))

# %%
off = cm10.clone().fill_diagonal_(0)
t_, p_ = divmod(int(off.argmax()), 10)
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.1]})
a1.plot([l for l, _ in hist10["train"]], "-o", label="train")
a1.plot([l for l, _ in hist10["val"]], "--o", label="val")
a1.set(xlabel="epoch", ylabel="softmax cross-entropy", title=f"10 digits: test accuracy {acc10:.1%}")
a1.legend()
im = a2.imshow(cm10, cmap="Blues")
for (r, c), v in np.ndenumerate(cm10.numpy()):
    if v:
        a2.text(c, r, v, ha="center", va="center", fontsize=7, color="white" if v > cm10.max() / 2 else "black")
a2.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
       title=f"Most common confusion: true {t_} called {p_} ({off.max()} times)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What the numbers say

# %%
P_bin, R_bin, F1_bin = (v[1].item() for v in (P_c, R_c, F1_c))
fit_note = (f"Validation loss was lowest at step {best_step} of {STEPS} and rose after it while the "
            "training loss kept falling: over-fitting, visible even on this easy task." if overfits else
            f"Validation loss was still falling at step {STEPS}: no over-fitting within this budget.")
mmcourse.say(f"""
- **Hand gradients are right:** all four hand-derived gradients ($W$, $b$, $w_h$, $b_h$) matched autograd
  in float64 ({grads_ok}); the probability-space and logit-space forms of $\\partial L/\\partial z_2$ agree ({same_dz2}).
- **3 vs 8** (hidden net, {STEPS} full-batch steps, {len(split['test'])} test digits): accuracy
  {acc:.3f}, precision {P_bin:.3f}, recall {R_bin:.3f}, F1 {F1_bin:.3f}, ROC-AUC {auc:.3f}. With only
  {len(split['test'])} test digits, one mistake moves accuracy by {1 / len(split['test']):.3f}: the
  third decimal is noise. It gets {len(wrong)} test digits wrong; the figure shows {"all of them" if n_show == len(wrong) else f"the first {n_show}"}.
- {fit_note}
- **Ten digits** (BaseNet with {H10} hidden units, {EPOCHS} epochs): test accuracy {acc10:.3f}; the most
  frequent confusion is a true {t_} predicted as {p_} ({off.max()} of {len(y10_te)} test digits).
- Every metric computed by hand equalled scikit-learn's. This shows our code is right, not that the
  model is good: the test set is small and drawn from one MNIST sample of {len(X_all):,} digits.
""")

# %% [markdown]
# **Next:** [02 · Cross-entropy, derived and checked](02_cross_entropy.ipynb) — where these
# gradient formulas come from, and why the logit form is the one to compute.
