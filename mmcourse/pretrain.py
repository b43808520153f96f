"""Self-supervised contrastive pretraining (SimCLR, Chen et al. 2020) for images and audio.

No labels: two random *views* of every example are made by augmentation, and an encoder plus a
small projection head learn to map the two views of one example close together and apart from
every other example in the batch. The loss is NT-Xent (normalised temperature-scaled cross
entropy, Chen et al. 2020, eq. 1): for 2B views z (unit length), positive pair (i, j),

    ℓ(i, j) = −log  exp(zᵢ·zⱼ/τ) / Σ_{k≠i} exp(zᵢ·z_k/τ),   L = mean over all 2B anchors.

Taught in ``notebooks/03_pretraining_emergence.ipynb``; the encoders it produces are reused by
lessons 04 (homogenization), 05–06 (fusion) and 07–08 (alignment, fine-tuning) through
``pretrained_image_encoder`` / ``pretrained_audio_encoder``, which load a cached checkpoint
or train one (``mmcourse.checkpoint.load_or_train``). The checkpoint is keyed by every config
field, the augmentation's settings and the training tensors themselves, so changing any setting
or the data variant (e.g. ``HARD_IMAGE_VARIANCE``) trains a new run instead of loading a stale one.

Augmentations run on whole batches with *per-example* random parameters: torchvision's v2
transforms applied to a batch tensor draw one set of parameters for all of it (every image gets
the same crop), and looping over examples in Python is slow on a CPU. ``ImageAugment`` draws
RandomResizedCrop / RandomRotation-style parameters per image and applies them all in one
``grid_sample``; it then applies torchvision's ``RandomErasing`` per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mmcourse.encoders import AudioEncoder, ImageEncoder, frame_mask
from mmcourse.runtime import QUICK, quick


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent loss of two batches of views.

    Args:
        z1, z2: (B, D) projections of view 1 and view 2; row i of each comes from example i.
        temperature: τ > 0; small τ sharpens the softmax over the 2B − 1 candidates.

    Returns:
        scalar, the mean over all 2B anchors (each view is an anchor once).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent wants two (B, D) batches of the same shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=-1)  # (2B, D) unit vectors
    sim = z @ z.T / temperature  # (2B, 2B) cosine similarities / τ
    sim = sim.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(z.device)  # (2B,) partner
    return F.cross_entropy(sim, targets)


class ImageAugment(nn.Module):
    """Random resized crop + rotation + random erasing + brightness jitter, per image, batched.

    Args:
        scale: range of the crop's side as a fraction of the image (RandomResizedCrop's area
            range is its square).
        degrees: rotations drawn uniformly in [−degrees, degrees].
        erase_p: probability that a random rectangle of each image is blanked
            (torchvision ``RandomErasing`` with its default scale/ratio).
        jitter: brightness multiplied by a factor in [1 − jitter, 1 + jitter].

    Shapes:
        forward: (B, C, H, W) → (B, C, H, W), values clipped to [0, 1].
    """

    def __init__(self, scale=(0.7, 1.0), degrees: float = 15.0, erase_p: float = 0.5,
                 jitter: float = 0.3):
        super().__init__()
        self.scale, self.degrees, self.erase_p, self.jitter = scale, degrees, erase_p, jitter
        from torchvision.transforms import v2
        self.erase = v2.RandomErasing(p=1.0, value=0.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"ImageAugment wants (B, C, H, W), got {tuple(x.shape)}")
        B = len(x)
        u = lambda *s: torch.rand(*s, generator=generator)  # noqa: E731
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u(B)  # (B,) crop side fraction
        a = math.radians(self.degrees) * (2 * u(B) - 1)  # (B,) angles
        t = (1 - s).unsqueeze(1) * (2 * u(B, 2) - 1)  # (B, 2) crop centre inside the image
        cos, sin = torch.cos(a) * s, torch.sin(a) * s
        theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1),
                             torch.stack([sin, cos, t[:, 1]], 1)], 1)  # (B, 2, 3) output→input map
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # (B, H, W, 2)
        out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")  # (B, C, H, W)
        out = out * (1 + self.jitter * (2 * u(B, 1, 1, 1) - 1)).to(x)
        if self.erase_p > 0:
            which = torch.nonzero(u(B) < self.erase_p).flatten().tolist()
            for i in which:  # one small tensor op per erased image, no PIL
                out[i] = self.erase(out[i])
        return out.clamp(0, 1)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, degrees={self.degrees}, erase_p={self.erase_p}, jitter={self.jitter}"


class AudioAugment(nn.Module):
    """Random time crop + frame dropping + noise for zero-padded MFCC batches, per recording.

    A crop keeps a contiguous window of ``crop`` (a fraction range) of each recording's real
    frames, moved to the start; dropped frames become padding (exact zeros), which the
    ``AudioEncoder`` mask then ignores — the SSL analogue of masked frames.

    Shapes:
        forward: (B, T, F) with padded frames exactly zero → (B, T, F), same convention.
    """

    def __init__(self, crop=(0.6, 1.0), drop_p: float = 0.15, noise: float = 0.3):
        super().__init__()
        self.crop, self.drop_p, self.noise = crop, drop_p, noise

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"AudioAugment wants (B, T, F), got {tuple(x.shape)}")
        B, T, _ = x.shape
        u = lambda *s: torch.rand(*s, generator=generator)  # noqa: E731
        lengths = frame_mask(x).sum(1)  # (B,) real frames (padding is at the end)
        frac = self.crop[0] + (self.crop[1] - self.crop[0]) * u(B)
        new_len = (frac * lengths).ceil().clamp(min=1).long()  # (B,)
        start = ((lengths - new_len).clamp(min=0) * u(B)).floor().long()  # (B,)
        steps = torch.arange(T)  # (T,)
        src = (start.unsqueeze(1) + steps).clamp(max=T - 1)  # (B, T) source frame of each output frame
        out = torch.gather(x, 1, src.unsqueeze(-1).expand_as(x))  # (B, T, F)
        keep = (steps < new_len.unsqueeze(1)) & (u(B, T) >= self.drop_p)  # (B, T)
        keep[torch.arange(B), 0] = True  # never drop every frame of a recording
        out = out + self.noise * torch.randn(out.shape, generator=generator).to(x)
        out = out * keep.unsqueeze(-1).to(x)  # dropped and padded frames exactly zero
        # a real frame of pure zeros would read as padding; noise makes that measure-zero
        return out

    def extra_repr(self) -> str:
        return f"crop={self.crop}, drop_p={self.drop_p}, noise={self.noise}"


class SimCLR(nn.Module):
    """Encoder + projection head g (Linear–ReLU–Linear); the loss is taken on g(f(x)).

    The head is thrown away after pretraining: features *before* it transfer better
    (Chen et al. 2020, sec. 4.2). Shapes: forward (B, ...) → (B, proj_dim).
    """

    def __init__(self, encoder: nn.Module, proj_dim: int = 64):
        super().__init__()
        d = encoder.out_dim
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@dataclass
class PretrainConfig:
    steps: int = 600  # optimiser steps; images: 46 s on an idle 2-core CPU, 506 s on 1 busy thread (measured)
    batch_size: int = 256  # examples per step, so 2 × 256 views and 511 negatives per anchor
    lr: float = 2e-3
    temperature: float = 0.2  # SimCLR's CIFAR setting is 0.5; smaller suits small batches
    out_dim: int = 64  # encoder feature size D
    seed: int = 0
    snapshots: int = 6  # encoder copies kept along the way (for the emergence curve)

    def snapshot_steps(self) -> list[int]:
        """Roughly log-spaced steps, always including 0 (random init) and ``steps``."""
        if self.snapshots < 2:
            return [self.steps]
        pts = {0, self.steps} | {round(self.steps ** (i / (self.snapshots - 1)))
                                 for i in range(1, self.snapshots - 1)}
        return sorted(pts)

    def name(self, modality: str, difficulty: str) -> str:
        """The checkpoint's readable prefix; ``load_or_train`` appends the settings' fingerprint."""
        return f"simclr-{modality}-{difficulty}-{'quick' if QUICK else 'full'}"


class PretrainRun(nn.Module):
    """Everything one pretraining run produces, as one state_dict for ``load_or_train``:
    the SimCLR model, encoder snapshots at ``config.snapshot_steps()`` and the loss per step."""

    def __init__(self, make_encoder, config: PretrainConfig):
        super().__init__()
        self.config = config
        self.simclr = SimCLR(make_encoder())
        self.snapshots = nn.ModuleDict({str(s): make_encoder() for s in config.snapshot_steps()})
        self.register_buffer("losses", torch.full((config.steps,), float("nan")))

    @property
    def encoder(self) -> nn.Module:
        return self.simclr.encoder

    def snapshot(self, step: int) -> nn.Module:
        return self.snapshots[str(step)]


def pretrain(run: PretrainRun, data: torch.Tensor, augment: nn.Module, progress: bool = True) -> PretrainRun:
    """Train ``run.simclr`` with NT-Xent on two augmented views of random batches of ``data``.

    Args:
        run: a fresh ``PretrainRun`` (its config says steps, batch size, lr, τ, seed).
        data: (N, ...) unlabelled examples, e.g. (N, 1, 28, 28) images or (N, T, 13) MFCCs.
        augment: a module ``augment(x, generator) -> x'`` making one random view per example.
    """
    cfg = run.config
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(run.simclr.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1)
    keep = set(cfg.snapshot_steps())
    run.simclr.train()
    for step in tqdm(range(cfg.steps + 1), desc="SimCLR", disable=not progress, mininterval=2):
        if step in keep:
            run.snapshot(step).load_state_dict(run.simclr.encoder.state_dict())
        if step == cfg.steps:
            break
        idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=g)
        x = data[idx]
        loss = nt_xent(run.simclr(augment(x, g)), run.simclr(augment(x, g)), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run.losses[step] = loss.detach()
    run.eval()
    return run


def _train_split(modality: str, difficulty: str, seed: int) -> torch.Tensor:
    """The unlabelled pretraining data: the train split's images or distinct recordings."""
    from mmcourse.data import load_av_digits
    av = load_av_digits("train", difficulty, seed)
    ids = av.image_ids if modality == "image" else av.audio_ids
    first_row = {}
    for row, i in enumerate(ids.tolist()):
        first_row.setdefault(i, row)  # recordings repeat within a split; keep each once
    rows = torch.tensor(sorted(first_row.values()))
    return av.inputs[modality][rows]


def image_config(**overrides) -> PretrainConfig:
    """The course's image SimCLR settings (quick mode: fewer steps, smaller batches).

    Selected on *validation* linear-probe accuracy for the width-8 strided ``ImageEncoder``
    (probe on all 3,500 train labels / on 10 per class, 500 val images; one pretraining seed):
    lr 2e-3 τ 0.2: 0.952 / 0.896; lr 5e-3 τ 0.2: 0.964 / 0.926; lr 2e-3 τ 0.5: 0.958 / 0.898;
    lr 5e-3 τ 0.5: 0.970 / 0.908; lr 1e-3 τ 0.2: 0.960 / 0.892; 1,200 steps at lr 2e-3 τ 0.2:
    0.970 / 0.916; lr 1e-2 τ 0.2: 0.956 / 0.894; lr 5e-3 τ 0.1: 0.956 / 0.868. Chosen: lr 5e-3,
    τ 0.2, 600 steps, the best with 10 labels per class, within a point of the best with all
    labels, and the cheapest (about 25 s on one idle CPU thread).
    """
    return PretrainConfig(**{"steps": quick(600, 40), "batch_size": quick(256, 128), "lr": 5e-3, **overrides})


def audio_config(**overrides) -> PretrainConfig:
    """The course's audio SimCLR settings (quick mode: fewer steps, smaller batches)."""
    return PretrainConfig(**{"steps": quick(600, 40), "batch_size": quick(256, 128),
                             "temperature": 0.3, **overrides})


def pretraining_run(modality: str = "image", difficulty: str = "clean",
                    config: PretrainConfig | None = None, progress: bool = True) -> PretrainRun:
    """Load a cached SimCLR run for ``modality`` ("image" or "audio") or train and cache it.

    Pretraining data: the AV-digits *train* split only (3,500 images or 2,100 recordings),
    without labels, so val/test examples are never seen, not even unlabelled.
    """
    from mmcourse.checkpoint import load_or_train
    if modality not in ("image", "audio"):
        raise ValueError(f"unknown modality {modality!r}; use 'image' or 'audio'")
    if config is None:
        config = image_config() if modality == "image" else audio_config()
    make = (lambda: ImageEncoder(config.out_dim)) if modality == "image" else (
        lambda: AudioEncoder(config.out_dim))
    augment = ImageAugment() if modality == "image" else AudioAugment()
    torch.manual_seed(config.seed)  # the initial weights (snapshot 0) come from the config's seed
    run = PretrainRun(make, config)
    data = _train_split(modality, difficulty, config.seed)
    settings = {k: v for k, v in sorted(vars(augment).items())  # the augmentation's hyperparameters
                if isinstance(v, (bool, int, float, str, tuple)) and k != "training"}
    key = {"config": config, "modality": modality, "difficulty": difficulty, "data": data,
           "augment": {"class": type(augment).__name__, **settings}}
    load_or_train(config.name(modality, difficulty), run,
                  lambda r: pretrain(r, data, augment, progress=progress), key=key)
    return run.eval()


# ------------------------------------------------------------- the from-scratch comparison (lesson 03)
def few_shot_rows(labels: torch.Tensor, per_class: int | None, seed: int) -> torch.Tensor:
    """``per_class`` random row indices of every class (every row when ``per_class`` is None).

    Args:
        labels: (N,) int class labels.

    Returns:
        (C · per_class,) row indices, class by class; the same ``seed`` gives the same rows.
    """
    g = torch.Generator().manual_seed(seed)
    rows = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    if per_class is not None and per_class > min(len(r) for r in rows):
        raise ValueError(f"per_class={per_class} but the smallest class has {min(len(r) for r in rows)} rows; "
                         "use fewer per class or None for every row")
    return torch.cat([r[torch.randperm(len(r), generator=g)[:per_class]] for r in rows])


def scratch_run(per_class: int | None, draw: int, steps: int = 300, difficulty: str = "clean",
                lr: float = 5e-3, batch_size: int = 64, out_dim: int = 64, verbose: bool = False) -> dict:
    """``ImageEncoder`` + a linear head trained from scratch on few labelled images; cached.

    The labelled images are ``few_shot_rows(train labels, per_class, seed=draw)``; ``draw`` also
    seeds the initial weights and the batch order. The budget is fixed, about ``steps`` optimiser
    steps (whole epochs of ``batch_size``, the course's one-cycle schedule up to ``lr``), with no
    validation data: in a few-shot setting there are no labels to spare for selecting or stopping.
    Goes through ``checkpoint.load_or_train`` (a re-run loads), and is a module-level function,
    so ``mmcourse.parallel.run_many`` can train several in worker processes.

    Returns:
        ``{"per_class", "draw", "test_acc", "loaded"}``: accuracy on the test split.
    """
    from mmcourse.checkpoint import load_or_train
    from mmcourse.data import load_av_digits
    from mmcourse.train import FitConfig, fit

    train, test = load_av_digits("train", difficulty), load_av_digits("test", difficulty)
    rows = few_shot_rows(train.labels, per_class, draw)
    x, y = train.inputs["image"][rows], train.labels[rows]  # (n, 1, 28, 28), (n,)
    epochs = math.ceil(steps / math.ceil(len(rows) / batch_size))
    config = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, schedule="onecycle", seed=draw, device="cpu")
    torch.manual_seed(draw)  # before building: the initial weights come from the draw's seed
    model = nn.Sequential(ImageEncoder(out_dim), nn.Linear(out_dim, 10))
    key = {"config": config, "difficulty": difficulty, "x": x, "y": y}
    model, info = load_or_train(f"scratch-image-{difficulty}-{per_class or 'all'}pc-draw{draw}", model,
                                lambda m: fit(m, (x, y), config=config), key=key, verbose=verbose, return_info=True)
    with torch.no_grad():
        pred = model.eval()(test.inputs["image"]).argmax(1)  # (N_test,)
    return {"per_class": per_class, "draw": draw, "test_acc": (pred == test.labels).float().mean().item(),
            "loaded": info["loaded"]}


def pretrained_image_encoder(difficulty: str = "clean", **config) -> ImageEncoder:
    """The SimCLR-pretrained ``ImageEncoder`` (cached), D = 64; see ``pretraining_run``."""
    return pretraining_run("image", difficulty, image_config(**config)).encoder


def pretrained_audio_encoder(difficulty: str = "clean", **config) -> AudioEncoder:
    """The SimCLR-pretrained ``AudioEncoder`` (cached), D = 64; see ``pretraining_run``."""
    return pretraining_run("audio", difficulty, audio_config(**config)).encoder
