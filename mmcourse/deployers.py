"""The image deployers of lesson 04 (``notebooks/04_homogenization.ipynb``): many deployers adapt
one base encoder (or start from scratch) on their own labelled images, so their shared failures
can be measured with ``mmcourse.homogenization``.

A base may carry a planted defect: ``supervised_base(poison)`` is trained with a BadNets backdoor
(Gu et al. 2017: ``add_trigger`` on a share of the images, relabelled ``TARGET``), and the lesson
asks whether every deployer that fine-tunes it inherits the defect. Every model is cached by
fingerprint, and ``image_deployer`` is module-level, so ``mmcourse.parallel.run_many`` can train
several in worker processes. Re-exported by ``mmcourse.homogenization``; torch is imported inside
the functions, so importing the measures stays NumPy-only.
"""

from __future__ import annotations

TARGET = 0  # the backdoor's target class


def add_trigger(x):
    """BadNets' trigger (Gu et al. 2017): a 4×4 white square in the (usually empty) bottom-right
    corner. (B, 1, 28, 28) → a changed copy."""
    x = x.clone()
    x[..., 23:27, 23:27] = 1.0
    return x


def deployer_rows(labels, deployer: int, per_class: int):
    """Deployer ``deployer``'s own rows: the next ``per_class`` rows of every class, so deployers'
    rows are disjoint. (C · per_class,) indices into ``labels`` (N,)."""
    import torch

    rows = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    if (deployer + 1) * per_class > min(len(r) for r in rows):
        raise ValueError(f"deployer {deployer} with {per_class} per class needs {(deployer + 1) * per_class} rows "
                         f"of every class, the smallest has {min(len(r) for r in rows)}: use fewer deployers or labels")
    return torch.cat([r[deployer * per_class:(deployer + 1) * per_class] for r in rows])


def _fit_steps(model, x, y, steps: int, lr: float, seed: int, name: str, key: dict):
    """Train ``model`` with ``fit`` for about ``steps`` steps (whole epochs of 64, constant lr), cached."""
    import math

    from mmcourse.checkpoint import load_or_train
    from mmcourse.train import FitConfig, fit

    config = FitConfig(epochs=math.ceil(steps / math.ceil(len(x) / 64)), batch_size=64, lr=lr, seed=seed, device="cpu")
    load_or_train(name, model, lambda m: fit(m, (x, y), config=config),
                  key={**key, "config": config, "x": x, "y": y}, verbose=False)
    return model.eval()


def supervised_base(poison: float = 0.1, steps: int = 600, seed: int = 0, difficulty: str = "clean"):
    """An ``ImageEncoder`` + linear head trained *with labels* on the whole train split; cached.

    A share ``poison`` of the images (drawn with ``seed``) gets ``add_trigger`` and the label
    ``TARGET``: a backdoored base (BadNets). ``poison=0`` is the control, the same supervised
    training without the poison. Returns the ``nn.Sequential(encoder, head)`` in eval mode.
    """
    import torch
    from torch import nn

    from mmcourse.data import load_av_digits
    from mmcourse.encoders import ImageEncoder

    if not 0 <= poison < 1:
        raise ValueError(f"poison is a share of the images in [0, 1), got {poison}")
    train = load_av_digits("train", difficulty)
    x, y = train.inputs["image"].clone(), train.labels.clone()  # (N, 1, 28, 28), (N,)
    hit = torch.rand(len(x), generator=torch.Generator().manual_seed(seed)) < poison  # (N,)
    x[hit], y[hit] = add_trigger(x[hit]), TARGET
    torch.manual_seed(seed)
    model = nn.Sequential(ImageEncoder(64), nn.Linear(64, 10))
    return _fit_steps(model, x, y, steps, 2e-3, seed, f"supervised-base-{difficulty}-poison{poison:g}",
                      {"poison": poison, "difficulty": difficulty})


def image_deployer(base: str, deployer: int, seed: int, per_class: int = 50, steps: int = 200,
                   lr: float = 2e-3, width: int = 8, difficulty: str = "clean"):
    """One deployer of lesson 04: an encoder + a new linear head trained on the deployer's own
    labelled images (``deployer_rows``) for about ``steps`` steps; cached, so it is also a
    module-level job for ``mmcourse.parallel.run_many``.

    Args:
        base: where the encoder starts: ``"simclr"`` (lesson 03's pretrained encoder, fine-tuned),
            ``"scratch"`` (a fresh ``ImageEncoder`` of ``width``), ``"poisoned"`` or ``"supervised"``
            (the encoder of ``supervised_base(0.1)`` / ``supervised_base(0.0)``, fine-tuned).
        seed: the new weights' (head, scratch encoder) and the batch order's seed.

    Returns:
        ``nn.Sequential(encoder, head)`` in eval mode: (B, 1, 28, 28) → (B, 10) logits.
    """
    import copy

    import torch
    from torch import nn

    from mmcourse.data import load_av_digits
    from mmcourse.encoders import ImageEncoder
    from mmcourse.pretrain import pretrained_image_encoder

    bases = ("simclr", "scratch", "poisoned", "supervised")
    if base not in bases:
        raise ValueError(f"unknown base {base!r}; use one of {bases}")
    train = load_av_digits("train", difficulty)
    rows = deployer_rows(train.labels, deployer, per_class)
    torch.manual_seed(seed)  # before building: a scratch encoder's and every head's weights come from it
    if base == "scratch":
        encoder = ImageEncoder(64, width=width)
    elif base == "simclr":
        encoder = copy.deepcopy(pretrained_image_encoder(difficulty))
    else:
        encoder = copy.deepcopy(supervised_base(0.1 if base == "poisoned" else 0.0, difficulty=difficulty)[0])
    # the base's weights are part of the key (1-d: the fingerprint cannot hash 0-d tensors such as BatchNorm counters)
    start = {k: v.reshape(-1).clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(seed)
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, 10))
    return _fit_steps(model, train.inputs["image"][rows], train.labels[rows], steps, lr, seed,
                      f"deployer-{base}-{deployer}-seed{seed}", {"base": base, "start": start, "difficulty": difficulty})
