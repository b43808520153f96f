"""Adapting a pretrained encoder to a task: a classification head on a sentence encoder.

The source material's recipe (BERT fine-tuned for sentiment): take the pretrained encoder, add
a task layer, train on labelled examples and stop early when validation accuracy stops rising.
``SentenceClassifier`` is that model; it takes the tokenised batch as a dict, so the course's
ordinary loop ``mmcourse.train.fit`` (with ``FitConfig(patience=...)`` for early stopping)
trains it like any other model. Which parameters train decides the method:

- linear probe: encoder frozen (``TextEncoder(freeze=True)``), only the head trains;
- full fine-tuning: everything trains;
- LoRA: the encoder's weights are frozen and low-rank updates train (``mmcourse.lora``).
- adapters: the encoder is frozen and small bottleneck modules inserted in each layer train
  (``mmcourse.adapters``).

Zero-shot classification needs no training at all: score each text by its cosine similarity with
one prompt embedding per class (``zero_shot_predict``). Comparing methods on one test set needs
an idea of its sampling noise: ``paired_bootstrap`` gives an interval for an accuracy difference.

Taught in ``notebooks/08_fine_tuning.ipynb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def tokenize(tokenizer, texts: list[str], max_length: int = 48) -> dict[str, Tensor]:
    """Strings → ``{"attention_mask": (N, L), "input_ids": (N, L)}``, padded to ``max_length``.

    Padding every row to the same L lets ``fit`` index batches out of one tensor.
    """
    if isinstance(texts, str):
        raise ValueError("tokenize wants a list of strings; wrap one text as [text]")
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                      return_tensors="pt")
    return {"attention_mask": batch["attention_mask"], "input_ids": batch["input_ids"]}


def trim_padding(input_ids: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Drop the trailing columns that are padding in *every* row of the batch.

    ``tokenize`` pads every text to ``max_length`` so ``fit`` can slice batches out of one
    tensor; a batch of short snippets then spends most of its compute on padding (attention is
    O(L²)). Masked positions never change the real tokens' outputs nor the mean pooling, so
    cutting them changes the result only by float rounding, and it is much cheaper.

    Args:
        input_ids: (B, L); attention_mask: (B, L) 0/1, or None (then nothing is trimmed).

    Returns:
        (B, L') ids and mask, L' = 1 + the last column holding a real token in any row.
    """
    if attention_mask is None or attention_mask.ndim != 2 or attention_mask.shape != input_ids.shape:
        return input_ids, attention_mask  # the encoder reports a malformed mask itself
    real = attention_mask.bool().any(0).nonzero()  # (L_real, 1) columns with a real token somewhere
    keep = int(real.max()) + 1 if len(real) else 1
    return input_ids[:, :keep], attention_mask[:, :keep]  # (B, L')


class SentenceClassifier(nn.Module):
    """text encoder (mean-pooled, (B, D)) → dropout → linear head (B, C).

    Args:
        encoder: a ``mmcourse.encoders.TextEncoder`` (frozen or not).
        n_classes: C.
        dropout: on the pooled features, as in BERT's classification head.

    Shapes:
        forward: {"input_ids": (B, L), "attention_mask": (B, L)} → (B, C) logits. Columns that are
        padding in every row are dropped first (``trim_padding``): same result, less compute.
    """

    def __init__(self, encoder: nn.Module, n_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.out_dim, n_classes)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if "input_ids" not in batch:
            raise KeyError(f"SentenceClassifier wants a dict with 'input_ids' (and 'attention_mask'), "
                           f"got keys {sorted(batch)}; build it with mmcourse.finetune.tokenize")
        ids, mask = trim_padding(batch["input_ids"], batch.get("attention_mask"))
        feats = self.encoder(ids, mask)  # (B, D)
        return self.head(self.dropout(feats))  # (B, C)


def zero_shot_predict(texts: Tensor, prompts: Tensor) -> Tensor:
    """Class of each text = the prompt it is most cosine-similar to.

    Args:
        texts: (N, D) text embeddings; prompts: (C, D), one embedding per class.

    Returns:
        (N,) int64 predicted classes.
    """
    if texts.ndim != 2 or prompts.ndim != 2 or texts.shape[1] != prompts.shape[1]:
        raise ValueError(f"need (N, D) texts and (C, D) prompts, got {tuple(texts.shape)} and "
                         f"{tuple(prompts.shape)}")
    return (F.normalize(texts, dim=-1) @ F.normalize(prompts, dim=-1).T).argmax(1)  # (N,)


@torch.no_grad()
def frozen_features(encoder: nn.Module, batch: dict[str, Tensor], batch_size: int = 128) -> Tensor:
    """Run a frozen text encoder over a tokenised set: (N, D) float32 on the CPU."""
    encoder.eval()
    n = len(batch["input_ids"])
    out = [encoder(batch["input_ids"][i:i + batch_size], batch["attention_mask"][i:i + batch_size])
           for i in range(0, n, batch_size)]
    return torch.cat(out).float().cpu()


def paired_bootstrap(correct_a: Tensor, correct_b: Tensor, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference acc(a) − acc(b) on the same test examples, with a percentile interval.

    Each resample draws N test rows with replacement and scores *both* methods on those rows, so
    the interval reflects test-set sampling noise of the difference (Efron & Tibshirani 1993,
    ch. 13). It says nothing about seed-to-seed variation of training, which comes on top.

    Args:
        correct_a, correct_b: (N,) bools (or 0/1), whether method a / b got each test row right.
        n_boot: number of resamples; level: coverage of the interval.

    Returns:
        (difference, low, high) in accuracy units; the difference is "within test noise" when
        the interval contains 0.
    """
    a, b = torch.as_tensor(correct_a).float().flatten(), torch.as_tensor(correct_b).float().flatten()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need one right/wrong flag per test row for both methods, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(a), (n_boot, len(a)), generator=g)  # (n_boot, N) resampled rows
    diffs = (a[idx] - b[idx]).mean(1)  # (n_boot,)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2])
    low, high = torch.quantile(diffs, q).tolist()
    return (a - b).mean().item(), low, high
