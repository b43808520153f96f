"""Unimodal encoders: each maps one modality's raw tensor to a (B, D) feature vector.

Every encoder exposes ``out_dim`` (its D), so fusion layers can be built from
``{name: enc.out_dim for name, enc in encoders.items()}``. Taught in
``notebooks/03_pretraining_emergence.ipynb``; reused by the fusion (05–06) and alignment (07–08)
lessons.

- ``ImageEncoder``: a small CNN, (B, 1, 28, 28) → (B, D). Three conv blocks (two strided), flatten.
- ``AudioEncoder``: MFCC sequences, (B, T, 13) → (B, D). Padded frames are exactly zero
  (``mmcourse.data.pad_sequences``), so the encoder derives its own mask as
  ``x.abs().sum(-1) > 0`` and pools only over real frames: the tensor alone is the input.
- ``TextEncoder``: the pretrained all-MiniLM-L6-v2 (or any ``BertModel``), token ids (B, L) →
  (B, 384) by mean pooling under the attention mask (sentence-transformers' recipe); frozen by
  default.
- ``tiny_bert``: a randomly initialised 2-layer BERT from a ``BertConfig`` for fast tests.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mmcourse.data.text import mean_pool


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class ImageEncoder(nn.Module):
    """A small CNN for 28×28 grey images.

    conv(1→w, stride 2) → conv(w→2w, stride 2) → conv(2w→2w) → flatten → linear → D, each conv
    (3×3) followed by batch norm and ReLU. Two design choices make it both stronger and cheaper
    than the textbook "convs at full resolution, then global average pooling":

    - the first conv is strided, so no layer ever runs at 28×28 (a 28×28 conv was the slowest
      layer on a CPU, and digits need no 1-pixel detail);
    - the 7×7 maps are flattened, not averaged: *where* a stroke is tells digits apart, and
      global average pooling throws that away (the earlier pooled encoder scored 0.62 on hard
      AV-digits images and 0.83 on clean ones, this one 0.67 and 0.96; ``benchmarks/train_grid.py``
      runs the earlier path and this one side by side).

    About 29k parameters and 0.1 MFLOP per image at ``width=8`` (the course's setting).

    Args:
        out_dim: D, the feature size.
        width: w, channels of the first conv block (2w in the later ones).

    Shapes:
        forward: (B, 1, 28, 28) float → (B, D).
    """

    def __init__(self, out_dim: int = 64, width: int = 8):
        super().__init__()
        if out_dim < 1 or width < 1:
            raise ValueError(f"out_dim and width must be >= 1, got out_dim={out_dim}, width={width}")
        self.out_dim, self.width = out_dim, width
        self.features = nn.Sequential(
            _conv_block(1, width, stride=2),  # (B, w, 14, 14)
            _conv_block(width, 2 * width, stride=2),  # (B, 2w, 7, 7)
            _conv_block(2 * width, 2 * width),  # (B, 2w, 7, 7)
            nn.Flatten(),  # (B, 2w·49): keep where each stroke is
        )
        self.proj = nn.Linear(2 * width * 49, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3 and x.shape[1:] == (28, 28):
            raise ValueError(f"ImageEncoder wants (B, 1, 28, 28) but got {tuple(x.shape)}; "
                             "add the channel axis with x.unsqueeze(1)")
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"ImageEncoder wants (B, 1, 28, 28) grey images, got {tuple(x.shape)}; "
                             "resize other sizes to 28×28 (e.g. torch.nn.functional.interpolate)")
        return self.proj(self.features(x))  # (B, D)

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, width={self.width}"


def frame_mask(x: torch.Tensor) -> torch.Tensor:
    """Which frames of a zero-padded sequence batch are real.

    Args:
        x: (B, T, F) with padded frames exactly zero.

    Returns:
        (B, T) bool, True for real frames. (A real frame that is exactly zero would be taken
        for padding; MFCC frames never are.)
    """
    return x.abs().sum(-1) > 0


class AudioEncoder(nn.Module):
    """A 1-D CNN over MFCC frames with masked mean pooling.

    Two convolutions over time (kernel 5, 'same' padding) then the mean over *real* frames,
    then linear → D. Padding is masked out after every convolution so a recording's features do
    not depend on how much padding follows it.

    Args:
        out_dim: D.
        n_mfcc: F, coefficients per frame (13 in this course).
        hidden: channels of the convolutions.

    Shapes:
        forward: (B, T, F) float, padded frames exactly zero → (B, D).
    """

    def __init__(self, out_dim: int = 64, n_mfcc: int = 13, hidden: int = 64):
        super().__init__()
        if min(out_dim, n_mfcc, hidden) < 1:
            raise ValueError(f"sizes must be >= 1, got out_dim={out_dim}, n_mfcc={n_mfcc}, hidden={hidden}")
        self.out_dim, self.n_mfcc, self.hidden = out_dim, n_mfcc, hidden
        self.conv1 = nn.Conv1d(n_mfcc, hidden, 5, padding=2)
        self.conv2 = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.norm = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_mfcc:
            raise ValueError(f"AudioEncoder wants (B, T, {self.n_mfcc}) MFCC frames, got "
                             f"{tuple(x.shape)}; pad a list of recordings with "
                             "mmcourse.data.pad_sequences")
        mask = frame_mask(x).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = x.transpose(1, 2)  # (B, F, T): Conv1d wants channels first
        h = torch.relu(self.conv1(h)) * mask  # (B, H, T), padding zeroed again
        h = torch.relu(self.conv2(h)) * mask  # (B, H, T)
        pooled = h.sum(-1) / mask.sum(-1).clamp(min=1.0)  # (B, H) mean over real frames
        return self.proj(self.norm(pooled))  # (B, D)

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, n_mfcc={self.n_mfcc}, hidden={self.hidden}"


def tiny_bert(vocab_size: int = 1000, hidden: int = 32, layers: int = 2, heads: int = 2,
              max_len: int = 64, seed: int = 0):
    """A small randomly initialised ``transformers.BertModel`` for fast tests (~70k parameters).

    Same code path as MiniLM (which is a 6-layer BERT), so whatever works on it works there.
    """
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden,
                        max_position_embeddings=max_len)
    return BertModel(config).eval()


class TextEncoder(nn.Module):
    """A BERT-style model + mean pooling under the attention mask: token ids → sentence vectors.

    Args:
        model: a ``BertModel``-like module returning ``last_hidden_state``; default a *copy* of
            the packaged all-MiniLM-L6-v2 (``mmcourse.data.text_encoder``), so fine-tuning it never
            changes the shared cached one. A model you pass in is used as is, not copied:
            ``freeze=True`` freezes *that* module in place (pass ``copy.deepcopy(m)`` to keep ``m``
            trainable elsewhere).
        tokenizer: used by ``tokenize``; default MiniLM's.
        freeze: no gradients into ``model`` and keep it in eval mode (dropout off), so the
            encoder is a fixed feature extractor; ``freeze=False`` fine-tunes it.
        pad_id: the padding token id, from which the mask is derived when none is given.

    Shapes:
        forward: input_ids (B, L) int64 [, attention_mask (B, L)] → (B, D), D = hidden size.
    """

    def __init__(self, model: nn.Module | None = None, tokenizer=None, freeze: bool = True,
                 pad_id: int | None = None):
        super().__init__()
        if model is None:
            from mmcourse.data.text import text_encoder
            tok, base = text_encoder()
            model, tokenizer = copy.deepcopy(base), tokenizer or tok
        self.model, self.tokenizer, self.freeze = model, tokenizer, freeze
        self.pad_id = pad_id if pad_id is not None else (
            tokenizer.pad_token_id if tokenizer is not None else model.config.pad_token_id or 0)
        self.out_dim = model.config.hidden_size
        if freeze:
            self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen extractor never uses dropout
        return self

    def tokenize(self, texts: list[str], max_length: int = 128) -> dict[str, torch.Tensor]:
        """Strings → ``{"input_ids": (B, L), "attention_mask": (B, L)}`` padded to the longest."""
        if self.tokenizer is None:
            raise ValueError("this TextEncoder has no tokenizer; pass tokenizer=... when building it")
        if isinstance(texts, str):
            raise ValueError("tokenize wants a list of strings; wrap one text as [text]")
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(f"TextEncoder wants integer token ids of shape (B, L), got "
                             f"{tuple(input_ids.shape)} {input_ids.dtype}; use .tokenize(texts)")
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()  # (B, L)
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match "
                             f"input_ids {tuple(input_ids.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)  # (B, D)

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, freeze={self.freeze}"
