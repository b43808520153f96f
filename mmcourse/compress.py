"""Compression: knowledge distillation, magnitude pruning, dynamic int8 quantization, and the
rulers that measure them (size on disk, CPU latency). Taught in ``notebooks/09_compression.ipynb``.

This module holds distillation and the lesson's teacher and students; pruning lives in
``mmcourse.pruning``, int8 quantization and the rulers in ``mmcourse.quantization``. Every name of
those two is re-exported here, so ``compress.magnitude_prune`` etc. keep working.

**Distillation** (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").
With teacher logits t and student logits s, both (B, C), and a temperature T > 0, write
p = softmax(t / T) (soft targets) and q = softmax(s / T). The distillation term is

    L_KD = T² · (1/B) Σᵢ KL(pᵢ ‖ qᵢ) = T² · (1/B) Σᵢ Σ_c p_ic (log p_ic − log q_ic).

Only q depends on s, and −Σ_c p_c log q_c is the cross-entropy of lesson 02 with a *soft* label
p instead of a one-hot one. Its gradient is that of cross-entropy, divided by T through the chain
rule s/T:

    ∂L_KD / ∂s_ic = T² · (1/B) · (q_ic − p_ic) / T = (T / B) · (q_ic − p_ic).

The T² factor is why: without it the soft term's gradients shrink like 1/T (and like 1/T² for
large T, since q − p ≈ (s − t)/(C T)), so changing T would silently re-weight the two losses.
``distillation_loss`` implements exactly

    L = α · L_KD + (1 − α) · CE(s, y),

α = 1 meaning pure distillation (no labels needed); ``tests/test_compress.py`` checks the formula
and the gradient above against autograd in float64.

**Pruning** (Han et al. 2015): zero the weights of smallest |w|, per layer or globally across
layers, through ``torch.nn.utils.prune`` (a mask ``weight_mask`` and a re-parametrisation
``weight = weight_orig * weight_mask``), then ``make_permanent`` folds the mask in
(``mmcourse.pruning``).

**Dynamic int8 quantization** (``torch.ao.quantization.quantize_dynamic``): ``nn.Linear``
weights stored as int8 with one scale per tensor; activations quantized on the fly per batch.
Convolutions are left in float32, so a conv-heavy model shrinks only by its linear layers
(``mmcourse.quantization``).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from mmcourse.checkpoint import load_or_train
from mmcourse.fusion.zoo import RECIPE, build_av_model
from mmcourse.pruning import (copy_model, finetune_pruned, magnitude_prune, make_permanent,  # re-exported
                              prunable, pruning_curve, sparsity)
from mmcourse.quantization import cpu_latency_ms, int8_bytes, quantize_int8, size_on_disk  # re-exported
from mmcourse.runtime import QUICK, quick, seed_everything
from mmcourse.train import FitConfig, Inputs, fit, logits_of, num_rows


# ---------------------------------------------------------------------------------- distillation
def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None,
                      T: float = 4.0, alpha: float = 0.9) -> Tensor:
    """α · T² · KL(softmax(t/T) ‖ softmax(s/T)) (batch mean) + (1 − α) · CE(s, y).

    Args:
        student_logits: s, (B, C); gradients flow into it.
        teacher_logits: t, (B, C); detached here (the teacher is not trained).
        labels: y, (B,) int64; needed only when ``alpha < 1``.
        T: temperature > 0; T = 1 compares the plain softmaxes, larger T softens both.
        alpha: weight of the distillation term in [0, 1].

    Returns:
        a scalar. Its gradient wrt s is (α T / B)(softmax(s/T) − softmax(t/T)) + (1 − α)/B ·
        (softmax(s) − onehot(y)).
    """
    if not 0 < T < float("inf"):  # also catches NaN
        raise ValueError(f"temperature T must be a finite number > 0, got {T}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have the same (B, C) shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if student_logits.numel() == 0:  # a mean over no rows is NaN, and NaN would train silently
        raise ValueError(f"distillation_loss got an empty batch {tuple(student_logits.shape)}: pass at least one "
                         "example (check the batch slicing or the data split)")
    log_q = F.log_softmax(student_logits / T, dim=-1)  # (B, C)
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)  # (B, C)
    kd = (log_p.exp() * (log_p - log_q)).sum(-1).mean() * T**2  # Σ_c p (log p − log q), batch mean
    if alpha == 1.0:
        return alpha * kd
    if labels is None:
        raise ValueError(f"alpha={alpha} < 1 mixes in hard-label cross-entropy: pass labels, or use alpha=1")
    return alpha * kd + (1 - alpha) * F.cross_entropy(student_logits, labels)


class DistillTargets(nn.Module):
    """Wrap a student so ``fit`` sees the teacher's logits next to the student's.

    ``fit`` calls ``loss_fn(model(batch), labels)``; the wrapper returns
    ``{"logits": student(batch), "teacher": teacher(batch)}`` (a frozen copy of the teacher, in
    eval mode, under ``no_grad``), and ``distill_loss_fn`` turns that into ``distillation_loss``.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student = student
        self.teacher = copy_model(teacher).eval().requires_grad_(False)  # the caller's model stays as it was

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    def forward(self, inputs: Inputs) -> dict[str, Tensor]:
        with torch.no_grad():
            t = logits_of(self.teacher(inputs))
        return {"logits": logits_of(self.student(inputs)), "teacher": t}


def distill_loss_fn(T: float = 4.0, alpha: float = 0.9):
    """A ``loss_fn(output, labels)`` for ``mmcourse.train.fit`` on a ``DistillTargets`` model."""
    def loss_fn(out: dict[str, Tensor], labels: Tensor) -> Tensor:
        return distillation_loss(out["logits"].float(), out["teacher"].float(), labels, T=T, alpha=alpha)
    return loss_fn


# The teacher shared by notebooks 09 and 10: late fusion at twice the zoo width. It is chosen for what
# it can do, not for a ranking: with one head per modality it runs with a modality missing, which
# lesson 10's robustness section needs. The notebooks print its own accuracy. It is trained with the
# course's one recipe (``zoo.RECIPE``) on TEACHER_N_TRAIN training pairs; 09 and 10 call
# ``load_or_train_teacher(train, val)`` with nothing else, so both load the same file.
TEACHER = {"method": "late", "dim": 64, "image_width": 16, "audio_hidden": 64}
TEACHER_N_TRAIN = quick(3500, 300)
STUDENT = {"method": "late", "dim": 16, "image_width": 4, "audio_hidden": 16}


def load_or_train_teacher(train, val, config: FitConfig | None = None, n_train: int | None = None,
                          seed: int = 0, return_info: bool = False):
    """Build ``TEACHER``; load its checkpoint, or train it on AV-digits and save it.

    Args:
        train, val: ``AVDigits`` splits; the first ``n_train`` training rows are used (default
            ``TEACHER_N_TRAIN``: all 3500 in full mode). ``fit`` keeps the epoch with the best
            accuracy on ``val`` (never on test: ``fit`` refuses test labels).
        config: the ``FitConfig``; default ``zoo.RECIPE`` (the course's AV recipe).
        return_info: also return ``checkpoint.load_or_train``'s info (``"loaded"``, ``"path"``,
            ``"result"``: the training history).

    The checkpoint is keyed by everything that determines the weights (``TEACHER``, every
    ``FitConfig`` field, the training and validation tensors, the seed), so notebook 10 reuses
    exactly what notebook 09 trained, and any other setting trains a new teacher.
    """
    config = RECIPE if config is None else config
    n = TEACHER_N_TRAIN if n_train is None else n_train
    name = f"av-teacher-{TEACHER['method']}-{'quick' if QUICK else 'full'}"
    torch.manual_seed(seed)
    model = build_av_model(**TEACHER)
    data = ({k: v[:n] for k, v in train.inputs.items()}, train.labels[:n])
    config = FitConfig(**{**config.__dict__, "seed": seed})
    key = {"teacher": TEACHER, "config": config, "n_train": n, "init_seed": seed,
           "train": data, "val": (val.inputs, val.labels)}
    model, info = load_or_train(name, model, lambda m: fit(m, data, (val.inputs, val.labels), config,
                                                           callbacks=[EpochBar(config.epochs, "teacher")]),
                                key=key, return_info=True)
    return (model.eval(), info) if return_info else model.eval()


# ------------------------------------------------------------------- distilling from cached logits
TEACHER_KEY = "teacher_logits"  # the extra input entry that carries the frozen teacher's logits


class CachedTargets(nn.Module):
    """Distil from the teacher's logits computed once, not once per batch and epoch.

    A frozen teacher in eval mode gives the same logits for a training row every epoch, so they
    can be computed once (``predict(teacher, train_inputs)``) and stored with the row as the
    input entry ``TEACHER_KEY``; ``fit``'s batching then hands each batch its rows' logits. The
    output is ``DistillTargets``'s: ``{"logits": student(x), "teacher": the cached rows}`` (None
    for validation inputs, which carry no teacher logits: ``fit`` evaluates them by accuracy).
    Same loss as ``DistillTargets``, without the teacher's forward pass per step.
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, inputs: Inputs) -> dict:
        x = {k: v for k, v in inputs.items() if k != TEACHER_KEY}
        return {"logits": logits_of(self.student(x)), "teacher": inputs.get(TEACHER_KEY)}


class _NotCached(Exception):
    pass


def train_student(seed: int, distill: bool, train, val, teacher_logits: Tensor | None = None,
                  config: FitConfig | None = None, T: float = 4.0, alpha: float = 0.9,
                  cached_only: bool = False):
    """Train one student (``STUDENT``) on labels or by distillation, cached by fingerprint.

    A module-level function, so ``mmcourse.parallel.run_many`` can train several in worker processes.

    Args:
        seed: seeds the initial weights (the same for both recipes) and the batch order.
        distill: train on α·L_KD + (1 − α)·CE against ``teacher_logits`` (else on labels alone).
        train, val: ``(inputs, labels)``.
        teacher_logits: (N_train, C) the frozen teacher's logits for the training rows, in order.
        config: default ``zoo.RECIPE``.
        cached_only: return None instead of training when no checkpoint matches.

    Returns:
        ``{"seed", "distill", "model", "history", "loaded"}`` (``history`` is ``fit``'s, kept with the
        checkpoint), or None with ``cached_only`` and nothing cached.
    """
    if distill and (teacher_logits is None or len(teacher_logits) != num_rows(train[0])):
        raise ValueError("distill=True needs teacher_logits: one (C,) row per training row, "
                         "e.g. predict(teacher, train_inputs)")
    config = FitConfig(**{**(RECIPE if config is None else config).__dict__, "seed": seed})
    seed_everything(seed)  # the same initial student for both recipes
    student = build_student()
    key = {"student": STUDENT, "config": {**config.__dict__, "device": None}, "seed": seed, "distill": distill,
           "train": train, "val": val, **({"teacher_logits": teacher_logits, "T": T, "alpha": alpha} if distill else {})}

    def train_fn(m):
        if not distill:
            return fit(m, train, val, config)
        data = ({**train[0], TEACHER_KEY: teacher_logits}, train[1])
        return fit(CachedTargets(m), data, val, config, loss_fn=distill_loss_fn(T, alpha))

    def refuse(_m):
        raise _NotCached

    name = f"student-{'kd' if distill else 'labels'}-seed{seed}"
    try:
        student, info = load_or_train(name, student, refuse if cached_only else train_fn, key=key,
                                      verbose=False, return_info=True)
    except _NotCached:
        return None
    return {"seed": seed, "distill": distill, "model": student.eval(), "history": info["result"],
            "loaded": info["loaded"]}


def train_students(seeds, distill: bool, train, val, teacher_logits: Tensor | None = None,
                   config: FitConfig | None = None, T: float = 4.0, alpha: float = 0.9, workers: int | None = None):
    """``train_student`` for every seed: cached ones load here, the rest train in parallel processes.

    Returns:
        ``{seed: model}`` in the order of ``seeds``; prints how many were loaded and trained.
    """
    from mmcourse.parallel import run_many

    jobs = [dict(seed=s, distill=distill, train=train, val=val, config=config, T=T, alpha=alpha,
                 teacher_logits=teacher_logits if distill else None) for s in seeds]
    t0 = time.perf_counter()
    out = [train_student(**job, cached_only=True) for job in jobs]
    todo = [i for i, r in enumerate(out) if r is None]
    what = "distilled" if distill else "labels only"
    for i, r in zip(todo, run_many(train_student, [jobs[i] for i in todo], workers=workers,
                                   desc=f"training {len(todo)} students ({what})")):
        out[i] = r
    print(f"{len(jobs)} students ({what}): {len(jobs) - len(todo)} loaded from the checkpoint cache, "
          f"{len(todo)} trained; {time.perf_counter() - t0:.1f} s")
    return {r["seed"]: r["model"] for r in out}


class EpochBar:
    """A ``fit`` hook: a tqdm bar over epochs showing the validation accuracy."""

    def __init__(self, epochs: int, desc: str):
        self.bar = tqdm(total=epochs, desc=desc, unit="epoch")

    def on_epoch_end(self, state) -> None:
        self.bar.update(1)
        if state.history["val_acc"]:
            self.bar.set_postfix(val_acc=f"{state.history['val_acc'][-1]:.3f}")
        if self.bar.n >= self.bar.total:
            self.bar.close()


def build_student(**overrides) -> nn.Module:
    """A small AV-digits model (``STUDENT``): the zoo's encoders and fusion at a fraction of the teacher's width."""
    return build_av_model(**{**STUDENT, **overrides})


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
