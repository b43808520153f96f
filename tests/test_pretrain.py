"""Tests of mmcourse.pretrain: NT-Xent by hand, batched augmentations, the checkpoint cache."""

import math

import pytest
import torch

from mmcourse.encoders import ImageEncoder, frame_mask
from mmcourse.pretrain import (AudioAugment, ImageAugment, PretrainConfig, PretrainRun,
                               nt_xent, pretrain, pretraining_run)


def _nt_xent_loop(z1, z2, tau):
    """NT-Xent written anchor by anchor from Chen et al. 2020, eq. 1."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=-1)
    n, B = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + B) % n
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def test_nt_xent_matches_loop_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(_nt_xent_loop(z1, z2, 0.5), rel=1e-10)
    torch.testing.assert_close(nt_xent(z1, z2, 0.5), nt_xent(z2, z1, 0.5))
    # identical, orthogonal views: each anchor's positive has similarity 1, negatives 0
    e = torch.eye(2, dtype=torch.float64)
    want = -math.log(math.exp(2) / (math.exp(2) + 2))  # τ = 0.5: logits 2 (positive), 0, 0
    assert nt_xent(e, e, 0.5).item() == pytest.approx(want)


def test_nt_xent_errors():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(2, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(2, 3), torch.randn(2, 3), temperature=0)


def test_image_augment_per_example_and_in_range():
    x = torch.rand(1, 1, 28, 28).expand(4, 1, 28, 28).contiguous()  # four copies of one image
    v = ImageAugment()(x, torch.Generator().manual_seed(0))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1
    assert not torch.allclose(v[0], v[1])  # each copy got its own crop/rotation
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ImageAugment()(torch.rand(28, 28))


def test_image_augment_identity_settings():
    aug = ImageAugment(scale=(1.0, 1.0), degrees=0.0, erase_p=0.0, jitter=0.0)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(aug(x), x, atol=1e-5, rtol=0)


def test_audio_augment_keeps_padding_convention():
    x = torch.randn(3, 10, 13)
    x[0, 6:] = 0.0
    x[2, 2:] = 0.0
    v = AudioAugment()(x, torch.Generator().manual_seed(0))
    lengths, kept = frame_mask(x).sum(1), frame_mask(v)
    assert v.shape == x.shape
    assert (kept.sum(1) <= lengths).all() and kept[:, 0].all()
    assert not (v != 0).any(-1)[0, 6:].any()  # nothing appears after the recording's end
    with pytest.raises(ValueError, match=r"\(B, T, F\)"):
        AudioAugment()(torch.randn(3, 10))


def test_pretrain_records_losses_and_snapshots():
    cfg = PretrainConfig(steps=4, batch_size=8, snapshots=3)
    assert cfg.snapshot_steps() == [0, 2, 4]
    run = PretrainRun(lambda: ImageEncoder(out_dim=8, width=4), cfg)
    init = {k: v.clone() for k, v in run.encoder.state_dict().items()}
    pretrain(run, torch.rand(20, 1, 28, 28), ImageAugment(), progress=False)
    assert torch.isfinite(run.losses).all()
    for k, v in run.snapshot(0).state_dict().items():  # step 0 is the random init
        torch.testing.assert_close(v, init[k])
    for k, v in run.snapshot(4).state_dict().items():  # the last snapshot is the final encoder
        torch.testing.assert_close(v, run.encoder.state_dict()[k])


def test_pretraining_run_cache_round_trip_and_corrupt_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    cfg = PretrainConfig(steps=2, batch_size=8, out_dim=8, snapshots=2)
    first = pretraining_run("audio", "clean", cfg, progress=False)
    assert "trained" in capsys.readouterr().out
    name = cfg.name("audio", "clean")
    saved = list(tmp_path.glob(f"{name}-*.pt"))  # <name>-<fingerprint>.pt (mmcourse.checkpoint)
    assert len(saved) == 1 and ("quick" in name or "full" in name)
    second = pretraining_run("audio", "clean", cfg, progress=False)
    assert "loaded" in capsys.readouterr().out
    for k, v in first.state_dict().items():
        torch.testing.assert_close(v, second.state_dict()[k], equal_nan=True)
    saved[0].write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="delete it"):
        pretraining_run("audio", "clean", cfg, progress=False)
    with pytest.raises(ValueError, match="modality"):
        pretraining_run("video", "clean", cfg)


def test_a_changed_data_variant_or_setting_retrains(tmp_path, monkeypatch, capsys):
    """Issue 13: after changing HARD_IMAGE_VARIANCE (the hard images' PCA variance), 03 still
    loaded the old SimCLR run. The training tensors are in the key, so any data change retrains."""
    from mmcourse.data import av

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    cfg = PretrainConfig(steps=2, batch_size=8, out_dim=8, snapshots=2)
    pretraining_run("audio", "hard", cfg, progress=False)
    pretraining_run("audio", "hard", cfg, progress=False)
    pretraining_run("audio", "hard", PretrainConfig(steps=2, batch_size=8, out_dim=8, snapshots=2, lr=1e-3),
                    progress=False)
    monkeypatch.setattr(av, "HARD_AUDIO_NOISE", av.HARD_AUDIO_NOISE * 2)
    pretraining_run("audio", "hard", cfg, progress=False)
    out = capsys.readouterr().out
    assert out.count("saved simclr-audio-hard") == 3 and out.count("loaded checkpoint simclr-audio-hard") == 1


def test_few_shot_rows_per_class_reproducible_and_refuses_too_many():
    from mmcourse.pretrain import few_shot_rows

    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    rows = few_shot_rows(labels, 2, seed=3)
    assert rows.tolist() == few_shot_rows(labels, 2, seed=3).tolist()
    assert torch.bincount(labels[rows]).tolist() == [2, 2, 2]
    assert sorted(few_shot_rows(labels, None, seed=0).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="smallest class has 3"):
        few_shot_rows(labels, 4, seed=0)


def test_scratch_run_caches_and_is_reproducible(tmp_path, monkeypatch):
    from mmcourse.pretrain import scratch_run

    monkeypatch.setenv("MMCOURSE_CHECKPOINTS", str(tmp_path))
    first = scratch_run(per_class=2, draw=0, steps=2)
    again = scratch_run(per_class=2, draw=0, steps=2)
    assert not first["loaded"] and again["loaded"] and first["test_acc"] == again["test_acc"]
    assert 0.0 <= first["test_acc"] <= 1.0 and len(list(tmp_path.glob("scratch-image-clean-2pc-draw0-*.pt"))) == 1
    assert not scratch_run(per_class=2, draw=1, steps=2)["loaded"]  # another draw: other rows, other seed
