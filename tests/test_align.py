"""The CLIP objective, recall@k, the aligner and prompt classifier, and the lesson-07 checkers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.align import (ContrastiveAligner, LogitScale, PromptClassifier, chance_recall_at_k,
                            clip_loss, embed_all, recall_at_k, retrieval_table)
from mmcourse.finetune import zero_shot_predict


def _direct(a, b, s):
    """InfoNCE written out term by term: −log exp(Sᵢᵢ) / Σⱼ exp(Sᵢⱼ), both directions."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    B = len(a)
    total = 0.0
    for i in range(B):
        sa = torch.stack([s * a[i] @ b[j] for j in range(B)])
        sb = torch.stack([s * b[i] @ a[j] for j in range(B)])
        total = total - torch.log(sa[i].exp() / sa.exp().sum()) - torch.log(sb[i].exp() / sb.exp().sum())
    return total / (2 * B)


def test_clip_loss_matches_direct_formula_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(clip_loss(a, b, 7.0), _direct(a, b, 7.0))
    torch.testing.assert_close(clip_loss(a, b, 7.0), clip_loss(b, a, 7.0))


def test_clip_loss_hand_computed_and_gradcheck():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # perfectly aligned pairs, orthogonal negatives: each row is softmax([s, 0]) → loss log(1 + e^{-s})
    torch.testing.assert_close(clip_loss(a, a, 2.0), torch.tensor(math.log(1 + math.exp(-2.0)), dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (x, y, s))


def test_clip_loss_errors():
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(torch.randn(3, 2), torch.randn(4, 2), 1.0)
    with pytest.raises(ValueError, match="logit_scale"):
        clip_loss(torch.randn(3, 2), torch.randn(3, 2), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        LogitScale(0.0)


def test_logit_scale_starts_at_one_over_temperature_and_clamps_the_parameter():
    s = LogitScale(0.07)
    torch.testing.assert_close(s(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        s.log_scale.fill_(10.0)
    s.clamp_()
    torch.testing.assert_close(s.log_scale.detach(), torch.tensor(math.log(100.0)))
    torch.testing.assert_close(s(), torch.tensor(100.0))
    s.clamp_(50.0)
    torch.testing.assert_close(s(), torch.tensor(50.0))


def test_logit_scale_gradient_does_not_vanish_at_the_bound():
    # a clamp inside forward (exp(t).clamp(max=100)) has zero gradient wrt t once exp(t) > 100
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 4, generator=g)
    b = a + 0.5 * torch.randn(8, 4, generator=g)
    for t in (math.log(100.0), math.log(100.0) + 0.5):
        s = LogitScale(0.07)
        with torch.no_grad():
            s.log_scale.fill_(t)
        clip_loss(a, b, s()).backward()
        assert s.log_scale.grad.abs().item() > 1e-6


def test_clamp_callback_runs_after_the_optimiser_step_in_fit():
    from mmcourse.align import MAX_LOGIT_SCALE, ClampLogitScale
    from mmcourse.train import FitConfig, fit
    x = {"audio": torch.randn(8, 3), "image": torch.randn(8, 5)}
    y = torch.zeros(8, dtype=torch.long)

    def push_up(out, labels):  # a loss that always wants a larger s: every step moves t up
        return -out["logit_scale"]

    def run(callbacks):
        torch.manual_seed(0)
        al = _tiny_aligner()
        with torch.no_grad():
            al.logit_scale.log_scale.fill_(math.log(MAX_LOGIT_SCALE) - 1e-3)  # just under the bound
        seen = []

        class Spy:  # listed after the clamp: sees t as the next forward pass will
            def on_batch_end(self, state):
                seen.append(al.logit_scale.log_scale.item())

        fit(al, (x, y), None, FitConfig(epochs=3, batch_size=4, lr=0.1, device="cpu"), loss_fn=push_up,
            callbacks=[*callbacks, Spy()])
        return al, seen

    clamped, seen = run([ClampLogitScale()])
    assert len(seen) == 6 and max(seen) == pytest.approx(math.log(MAX_LOGIT_SCALE))
    torch.testing.assert_close(clamped.logit_scale(), torch.tensor(MAX_LOGIT_SCALE))
    free, seen = run([])  # without the callback the same steps leave the bound
    assert seen[0] > math.log(MAX_LOGIT_SCALE) and free.logit_scale().item() > MAX_LOGIT_SCALE


def test_recall_at_k_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[0.9, 0.1], [0.1, 0.9], [1.0, 0.5]])
    # q0 ranks g0 (label 1), g2 (0), g1 (1); q1 ranks g1 (1), g2, g0
    ql, gl = torch.tensor([0, 1]), torch.tensor([1, 1, 0])
    assert recall_at_k(q, g, ql, gl, 1) == pytest.approx(0.5)
    assert recall_at_k(q, g, ql, gl, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(q, g, ql, gl, 4)
    with pytest.raises(ValueError, match="one label per row"):
        recall_at_k(q, g, ql[:1], gl, 1)


def test_chance_recall():
    labels = torch.arange(10).repeat(10)  # 10 per class, G = 100
    assert chance_recall_at_k(labels, labels, 1) == pytest.approx(0.1)
    assert chance_recall_at_k(labels, labels, 5) == pytest.approx(1 - math.comb(90, 5) / math.comb(100, 5))
    # random embeddings score about chance
    g = torch.Generator().manual_seed(0)
    big = torch.arange(10).repeat(200)
    r = recall_at_k(torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g), big, big, 1)
    assert abs(r - 0.1) < 0.03


def _tiny_aligner(freeze=False):
    enc = nn.ModuleDict({"audio": nn.Linear(3, 4), "image": nn.Linear(5, 4)})
    for m in enc.values():
        m.out_dim = 4
    return ContrastiveAligner(enc, proj_dim=2, hidden=None, freeze_encoders=freeze)


def test_aligner_shapes_loss_and_freezing():
    torch.manual_seed(0)
    al = _tiny_aligner(freeze=True)
    x = {"audio": torch.randn(6, 3), "image": torch.randn(6, 5)}
    out = al(x)
    assert out["audio"].shape == out["image"].shape == (6, 2)
    torch.testing.assert_close(out["image"].norm(dim=1), torch.ones(6))
    torch.testing.assert_close(al.loss(out), clip_loss(out["audio"], out["image"], out["logit_scale"]))
    trainable = {n for n, p in al.named_parameters() if p.requires_grad}
    assert trainable == {"proj.audio.weight", "proj.audio.bias", "proj.image.weight", "proj.image.bias",
                         "logit_scale.log_scale"}
    emb = embed_all(al, x, batch_size=4)
    torch.testing.assert_close(emb["audio"], out["audio"].detach())
    table = retrieval_table(emb, torch.tensor([0, 1, 0, 1, 0, 1]), ks=(1,))
    assert set(table) == {"audio→image R@1", "image→audio R@1"}
    with pytest.raises(KeyError, match="unknown modality"):
        al({"text": torch.randn(2, 3)})
    with pytest.raises(ValueError, match="exactly two"):
        ContrastiveAligner(nn.ModuleDict({"audio": al.encoders["audio"]}))


def test_alignment_training_lowers_the_loss():
    from mmcourse.train import FitConfig, fit
    torch.manual_seed(0)
    al = _tiny_aligner()
    z = torch.randn(64, 4)
    x = {"audio": z[:, :3], "image": torch.cat([z, z[:, :1]], 1)}  # both views see the same z
    before = al.loss(al(x)).item()
    fit(al, (x, torch.zeros(64, dtype=torch.long)), None,
        FitConfig(epochs=30, batch_size=32, lr=1e-2, device="cpu"), loss_fn=al.loss)
    assert al.loss(al(x)).item() < before - 0.3


def test_prompt_classifier_and_zero_shot():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    enc.out_dim = 3
    prompts = torch.eye(4)[:2]  # (C=2, D_text=4)
    pc = PromptClassifier(enc, prompts)
    x = torch.randn(5, 1, 2, 2)
    assert pc(x).shape == (5, 2)
    pc.set_prompts(torch.eye(4))
    assert pc(x).shape == (5, 4)
    with pytest.raises(ValueError, match="prompts must be"):
        pc.set_prompts(torch.randn(3, 5))
    texts = torch.tensor([[1.0, 0.1], [0.2, 3.0], [-1.0, 0.0]])
    assert zero_shot_predict(texts, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0, 1, 1]


def test_k_occurrence_counts_by_hand_and_finds_a_hub():
    from mmcourse.align import hub_share, k_occurrence
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.1], [0.9, -0.2], [0.1, 1.0]])
    # top-1: g0, g0, g1; top-2: {g0, g1}, {g0, g1}, {g1, g0}
    assert k_occurrence(queries, gallery, k=1).tolist() == [2, 1, 0]
    assert k_occurrence(queries, gallery, k=2).tolist() == [3, 3, 0]
    assert hub_share(queries, gallery, k=1, top=1) == pytest.approx(2 / 3)
    # a gallery item next to every query is a hub: it is in every top-1 list
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(50, 8, generator=g) * 0.1 + 1.0, dim=-1)
    gal = torch.cat([torch.ones(1, 8), torch.randn(20, 8, generator=g)])
    counts = k_occurrence(q, gal, k=1)
    assert counts[0] == 50 and counts.sum() == 50
    with pytest.raises(ValueError, match="k must be"):
        k_occurrence(queries, gallery, k=4)
    with pytest.raises(ValueError, match="k_occurrence wants"):
        k_occurrence(queries, gallery[:, :1], k=1)


def test_locked_image_tuning_trains_only_the_text_side():
    from mmcourse.align import LockedImageTuning
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    enc.out_dim = 3
    lit = LockedImageTuning(enc, torch.randn(2, 5))  # C=2 prompts of D_text=5
    assert {n for n, p in lit.named_parameters() if p.requires_grad} == {
        "text_head.weight", "text_head.bias", "logit_scale.log_scale"}
    x = torch.randn(6, 1, 2, 2)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    lit.train()
    assert not lit.encoder.training  # locked: batch-norm statistics stay
    out = lit(x)
    assert out.shape == (6, 2)
    F.cross_entropy(out, torch.tensor([0, 1, 0, 1, 0, 1])).backward()
    assert lit.text_head.weight.grad is not None
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, before[k])
    # logits = s * cos(f(x), g(t_c)) by hand
    with torch.no_grad():
        lit.eval()
        f = F.normalize(enc(x), dim=-1)
        t = F.normalize(lit.text_head(lit.prompts), dim=-1)
        torch.testing.assert_close(lit(x), lit.logit_scale() * f @ t.T)
    assert lit.set_prompts(torch.randn(4, 5))(x).shape == (6, 4)
    with pytest.raises(ValueError, match="prompts must be"):
        lit.set_prompts(torch.randn(3, 4))
