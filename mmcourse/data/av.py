"""AV-digits: real MNIST images paired with real spoken digits by label, like AV-MNIST.

Pairs are built per class from a seeded shuffle. Train/val/test take disjoint 70/10/20 % slices
of *both* the 500 images and the 300 recordings of every class, so no image and no recording
appears in two splits. Each image in a split is paired with a recording of the same digit from
that split (recordings are reused within a split: 3,500 train images share 2,100 recordings).

Clean data is too easy for fusion to matter (logistic regression reaches about 0.89 on raw
MNIST-5k and 0.95 on pooled MFCCs), so ``difficulty="hard"`` (the default) degrades both
modalities the way AV-MNIST does:

- image: rebuilt from the top-k principal components, k the smallest number that keeps
  ``HARD_IMAGE_VARIANCE`` (28 %, k = 4 for seed 0) of the pixel variance; PCA is fitted on the
  train images only;
- audio: every MFCC coefficient is standardised with train statistics, then seeded Gaussian noise
  with std ``HARD_AUDIO_NOISE`` (2.0, i.e. twice each coefficient's std) is added to real frames.

Audio is padded/cropped to ``MAX_FRAMES`` (40) frames; ``lengths`` says how many are real.
These settings are read on every call: change one in a running kernel and the next
``load_av_digits`` returns the new data (so checkpoints keyed by the data retrain).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits
import torch

from mmcourse.data.loaders import load_mnist, load_spoken_digits, pad_sequences

SPLITS = {"train": (0.0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0)}
DIFFICULTIES = ("clean", "hard")
HARD_IMAGE_VARIANCE = 0.28
HARD_AUDIO_NOISE = 2.0
MAX_FRAMES = 40


@dataclass
class AVDigits:
    """One split of AV-digits. ``inputs`` follows the modality contract (sorted keys)."""

    inputs: dict[str, torch.Tensor]  # {"audio": (N, T, 13) float32, "image": (N, 1, 28, 28) float32}
    lengths: torch.Tensor  # (N,) int64, real audio frames per row
    labels: torch.Tensor  # (N,) int64 in 0..9
    image_ids: torch.Tensor  # (N,) int64, row of load_mnist()
    audio_ids: torch.Tensor  # (N,) int64, index into load_spoken_digits()
    split: str
    difficulty: str
    image_components: int  # k principal components kept (784 when clean)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in sorted(self.inputs.items()))
        return f"AVDigits(split={self.split!r}, difficulty={self.difficulty!r}, N={len(self)}, {shapes})"


def _slices(n: int, bounds: tuple[float, float]) -> slice:
    lo, hi = bounds
    return slice(round(lo * n), round(hi * n))


# The cached helpers take every setting they read as an argument, so a setting changed in a
# running kernel (e.g. ``av.HARD_IMAGE_VARIANCE = 0.5``) is a new cache entry, not the old arrays.
def _bounds() -> tuple[tuple[str, tuple[float, float]], ...]:
    return tuple((s, tuple(b)) for s, b in SPLITS.items())


@lru_cache(maxsize=None)
def _pairs(split: str, seed: int, bounds: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Image ids and audio ids of one split's pairs, shuffled; the same for every difficulty."""
    _, y_img = load_mnist()
    _, y_aud = load_spoken_digits()
    names = [s for s, _ in bounds]
    rng = np.random.default_rng([seed, names.index(split)])  # pairing and order: per split
    img_ids, aud_ids = [], []
    for c in range(10):
        # The class's shuffle must be the same for every split, so the slices are disjoint.
        shuffle = np.random.default_rng([seed, 100 + c])
        imgs = shuffle.permutation(np.flatnonzero(y_img == c))[_slices(500, dict(bounds)[split])]
        auds = shuffle.permutation(np.flatnonzero(y_aud == c))[_slices(300, dict(bounds)[split])]
        img_ids.append(imgs)
        aud_ids.append(auds[rng.permutation(np.arange(len(imgs)) % len(auds))])
    order = rng.permutation(sum(len(i) for i in img_ids))
    return np.concatenate(img_ids)[order], np.concatenate(aud_ids)[order]


@lru_cache(maxsize=None)
def _hard_image_basis(seed: int, variance: float, bounds: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Mean (784,) and top-k principal directions (784, k) of the *train* images, k the smallest
    number of components that keeps ``variance`` of the pixel variance."""
    X, _ = load_mnist()
    Xtr = X[_pairs("train", seed, bounds)[0]].reshape(-1, 784).astype(np.float64)  # (N, 784)
    mean = Xtr.mean(0)
    with threadpool_limits(1):  # one BLAS thread: the same bytes whatever OMP_NUM_THREADS says
        evals, evecs = np.linalg.eigh(np.cov(Xtr - mean, rowvar=False))  # ascending order
    evals, evecs = evals[::-1], evecs[:, ::-1]
    k = int(np.searchsorted(np.cumsum(evals) / evals.sum(), variance) + 1)
    return mean, evecs[:, :k]


@lru_cache(maxsize=None)
def _audio_stats(seed: int, bounds: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient mean and std (13,) over the real frames of the train recordings."""
    seqs, _ = load_spoken_digits()
    frames = np.concatenate([seqs[i] for i in np.unique(_pairs("train", seed, bounds)[1])])  # (frames, 13)
    return frames.mean(0), frames.std(0)


# Every test split handed out in this process is marked, so that ``fit`` / ``fit_temperature``
# refuse it as validation data — also sliced, shuffled or index-selected: model selection (best
# epoch, early stopping, temperature, threshold) must never look at test examples.
_TEST_LABELS: dict[str, bytes] = {}  # sha1 of a split's labels -> its labels, one byte each
_TEST_ROWS: dict[tuple[int, str], set[int]] = {}  # (bytes per row, dtype) -> hashes of test input rows
MIN_RUN = 32  # a run of >= 32 labels found in a test split's is no chance: 1000 · 10^-32


def _fingerprint(labels) -> str:
    arr = np.ascontiguousarray(torch.as_tensor(labels).detach().cpu().numpy().astype(np.int64))
    return hashlib.sha1(arr.tobytes()).hexdigest()


def _row_hashes(x: torch.Tensor) -> tuple[tuple[int, str], list[int]]:
    """One hash per example (row) of ``x`` (N, ...): its exact bytes. ~1 µs per row."""
    a = np.ascontiguousarray(x.detach().cpu().numpy()).reshape(len(x), -1)  # (N, features)
    return (a.shape[1] * a.itemsize, str(a.dtype)), [hash(r.tobytes()) for r in a]


def _mark_test(labels: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:
    _TEST_LABELS[_fingerprint(labels)] = labels.numpy().astype(np.uint8).tobytes()
    for x in inputs.values():
        key, hashes = _row_hashes(x)
        _TEST_ROWS.setdefault(key, set()).update(hashes)


def is_test_labels(labels, runs: bool = True) -> bool:
    """True when ``labels`` are a test split's labels handed out by ``load_av_digits``, or (with
    ``runs``) a contiguous run of at least ``MIN_RUN`` of them (a slice: ``test.labels[:200]``).

    ``mmcourse.train.fit`` uses it (with ``test_rows``) to refuse test data as validation data.
    """
    if not _TEST_LABELS:
        return False
    labels = torch.as_tensor(labels).detach().cpu()
    if _fingerprint(labels) in _TEST_LABELS:
        return True
    if not runs or len(labels) < MIN_RUN or labels.dim() != 1 or labels.min() < 0 or labels.max() > 255:
        return False
    run = labels.numpy().astype(np.uint8).tobytes()
    return any(run in seq for seq in _TEST_LABELS.values())


def test_rows(inputs) -> int:
    """How many examples of ``inputs`` (a (N, ...) tensor or a dict of them) are rows of a test
    split handed out by ``load_av_digits``: any subset, order or selection of its audio or image
    tensors (also flattened) is found, by the exact bytes of each row. Derived features are not."""
    found = 0
    for x in (inputs.values() if isinstance(inputs, dict) else [inputs]):
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or len(x) == 0:
            continue
        row_bytes = x[0].numel() * x.element_size()
        marked = _TEST_ROWS.get((row_bytes, str(x.dtype).removeprefix("torch.")))
        if marked:  # only tensors shaped like a test input are hashed: nearly free otherwise
            found = max(found, sum(h in marked for h in _row_hashes(x)[1]))
    return found


def load_av_digits(split: str, difficulty: str = "hard", seed: int = 0) -> AVDigits:
    """Image+audio digit pairs for one split (see the module docstring for every setting).

    Args:
        split: ``"train"`` (3,500 pairs), ``"val"`` (500) or ``"test"`` (1,000).
        difficulty: ``"hard"`` (degraded, the default of the fusion lessons) or ``"clean"``.
        seed: seeds the pairing, the splits and the audio noise.

    Returns:
        An ``AVDigits`` whose ``inputs`` are ``{"audio": (N, 40, 13), "image": (N, 1, 28, 28)}``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; use one of {list(DIFFICULTIES)}")
    bounds = _bounds()
    img_ids, aud_ids = _pairs(split, seed, bounds)
    X, y = load_mnist()
    seqs, _ = load_spoken_digits()
    images = X[img_ids].reshape(-1, 784)  # (N, 784)
    mu, sd = _audio_stats(seed, bounds)
    audio, lengths = pad_sequences([(seqs[i] - mu) / sd for i in aud_ids], MAX_FRAMES)  # (N, T, 13)
    k = 784
    if difficulty == "hard":
        mean, V = _hard_image_basis(seed, HARD_IMAGE_VARIANCE, bounds)
        k = V.shape[1]
        with threadpool_limits(1):  # multi-threaded BLAS sums in another order: other bytes, other checkpoints
            images = np.clip((images - mean) @ V @ V.T + mean, 0.0, 1.0)  # rank-k reconstruction
        rng = np.random.default_rng([seed, 10 + list(SPLITS).index(split)])  # noise stream
        real = np.arange(MAX_FRAMES)[None, :] < lengths[:, None]  # (N, T) mask of real frames
        audio = audio + HARD_AUDIO_NOISE * rng.standard_normal(audio.shape) * real[..., None]
    labels = torch.from_numpy(y[img_ids].copy())
    inputs = {"audio": torch.tensor(audio, dtype=torch.float32),
              "image": torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)}
    if split == "test":
        _mark_test(labels, inputs)
    return AVDigits(
        inputs=inputs,
        lengths=torch.from_numpy(lengths),
        labels=labels,
        image_ids=torch.from_numpy(img_ids.copy()),
        audio_ids=torch.from_numpy(aud_ids.copy()),
        split=split,
        difficulty=difficulty,
        image_components=k,
    )
