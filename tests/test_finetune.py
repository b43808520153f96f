"""The fine-tuning helpers of lesson 08: tokenising, the sentence classifier, zero-shot, the bootstrap."""

import pytest
import torch
from torch import nn

from mmcourse.finetune import SentenceClassifier, paired_bootstrap, zero_shot_predict


def test_paired_bootstrap_hand_cases():
    a = torch.tensor([1, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    diff, low, high = paired_bootstrap(a, a)
    assert (diff, low, high) == (0.0, 0.0, 0.0)  # identical predictions: no noise in the difference
    b = torch.zeros(10, dtype=torch.bool)
    diff, low, high = paired_bootstrap(a, b, n_boot=4000)
    assert diff == pytest.approx(0.7)
    assert low < 0.7 < high and low > 0.3  # ~ 0.7 ± 1.96 · sqrt(0.21 / 10)
    # one method right everywhere the other is, plus one row more: the difference is never negative
    c = a.clone()
    c[3] = True
    diff, low, high = paired_bootstrap(c, a)
    assert diff == pytest.approx(0.1) and low >= 0.0


def test_paired_bootstrap_is_seeded_and_checks_inputs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(200, generator=g) < 0.8, torch.rand(200, generator=g) < 0.7
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError, match="one right/wrong flag"):
        paired_bootstrap(a, b[:10])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=95)


def test_sentence_classifier_shapes_and_errors():
    class Enc(nn.Module):
        out_dim = 4

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)

        def forward(self, ids, mask=None):
            return self.emb(ids).mean(1)  # (B, D)

    model = SentenceClassifier(Enc(), n_classes=3)
    batch = {"input_ids": torch.tensor([[1, 2, 0], [3, 4, 5]]), "attention_mask": torch.ones(2, 3)}
    assert model(batch).shape == (2, 3)
    with pytest.raises(KeyError, match="input_ids"):
        model({"ids": batch["input_ids"]})


def test_zero_shot_predict_errors():
    with pytest.raises(ValueError, match="need"):
        zero_shot_predict(torch.randn(3, 2), torch.randn(2, 3))


def test_trim_padding_drops_only_all_padding_columns_and_keeps_the_output():
    from mmcourse.finetune import trim_padding
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 8, 9, 0, 0]])
    mask = (ids != 0).long()
    t_ids, t_mask = trim_padding(ids, mask)
    assert t_ids.tolist() == [[5, 6, 0], [7, 8, 9]] and t_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    left = torch.tensor([[0, 0, 5], [0, 7, 8]])  # left padding: no trailing all-pad column
    assert trim_padding(left, (left != 0).long())[0].shape == (2, 3)
    assert trim_padding(ids, None)[1] is None
    assert trim_padding(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))[0].shape == (2, 1)
    # a real (tiny) BERT: the trimmed batch gives the same sentence features
    transformers = pytest.importorskip("transformers")
    from mmcourse.encoders import TextEncoder
    cfg = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16)
    torch.manual_seed(0)
    enc = TextEncoder(transformers.BertModel(cfg).eval(), None, pad_id=0)
    model = SentenceClassifier(enc, n_classes=2).eval()
    with torch.no_grad():
        full = model.head(enc(ids, mask))
        torch.testing.assert_close(model({"input_ids": ids, "attention_mask": mask}), full)
