"""Tests of mmcourse.encoders: shapes, masking, pooling by hand, freezing, clear errors."""

import pytest
import torch

from mmcourse.data.text import mean_pool
from mmcourse.encoders import AudioEncoder, ImageEncoder, TextEncoder, frame_mask, tiny_bert


def test_image_encoder_shapes_and_grads():
    enc = ImageEncoder(out_dim=4, width=4)
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    z = enc(x)
    assert z.shape == (2, 4)
    z.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in enc.parameters())
    assert "out_dim=4" in repr(enc)


def test_image_encoder_errors():
    enc = ImageEncoder(out_dim=4, width=4)
    with pytest.raises(ValueError, match="unsqueeze"):
        enc(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="grey"):
        enc(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match=">= 1"):
        ImageEncoder(out_dim=0)


def test_frame_mask_by_hand():
    x = torch.zeros(2, 3, 2)
    x[0, :2] = 1.0
    x[1, 0, 1] = -0.5
    assert frame_mask(x).tolist() == [[True, True, False], [True, False, False]]


def test_audio_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = AudioEncoder(out_dim=3, hidden=4).eval()
    x = torch.randn(2, 5, 13)
    x[1, 3:] = 0.0  # the second recording has 3 real frames
    padded = torch.cat([x, torch.zeros(2, 7, 13)], 1)  # (2, 12, 13): more padding
    torch.testing.assert_close(enc(x), enc(padded))
    assert enc(x).shape == (2, 3)
    # a recording alone equals itself inside a batch with a longer one
    torch.testing.assert_close(enc(x[1:, :3]), enc(x)[1:])


def test_audio_encoder_errors():
    enc = AudioEncoder(out_dim=3)
    with pytest.raises(ValueError, match="pad_sequences"):
        enc(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"\(B, T, 13\)"):
        enc(torch.randn(2, 5, 12))


def test_text_encoder_tiny_bert_mean_pooling_by_hand():
    bert = tiny_bert(vocab_size=50, hidden=8)
    enc = TextEncoder(bert, freeze=True, pad_id=0)
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])  # second sentence: 2 tokens + padding
    z = enc(ids)
    assert z.shape == (2, 8) and enc.out_dim == 8
    h = bert(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state  # (2, 3, 8)
    torch.testing.assert_close(z[1], h[1, :2].mean(0))
    torch.testing.assert_close(z, mean_pool(h, (ids != 0).long()))
    torch.testing.assert_close(z, enc(ids, torch.tensor([[1, 1, 1], [1, 1, 0]])))


def test_text_encoder_freeze():
    frozen = TextEncoder(tiny_bert(vocab_size=50, hidden=8), freeze=True, pad_id=0).train()
    assert not frozen.model.training and not any(p.requires_grad for p in frozen.parameters())
    assert not frozen(torch.tensor([[1, 2]])).requires_grad
    tuned = TextEncoder(tiny_bert(vocab_size=50, hidden=8), freeze=False, pad_id=0).train()
    tuned(torch.tensor([[1, 2]])).sum().backward()
    assert tuned.model.training and tuned.model.embeddings.word_embeddings.weight.grad is not None


def test_text_encoder_errors():
    enc = TextEncoder(tiny_bert(vocab_size=50, hidden=8), pad_id=0)
    with pytest.raises(ValueError, match="token ids"):
        enc(torch.rand(2, 3))
    with pytest.raises(ValueError, match="must match"):
        enc(torch.tensor([[1, 2]]), torch.tensor([[1, 1, 1]]))
    with pytest.raises(ValueError, match="no tokenizer"):
        enc.tokenize(["a film"])


def test_text_encoder_minilm_matches_embed_texts():
    from mmcourse.data import embed_texts
    enc = TextEncoder()  # a copy of the packaged MiniLM
    texts = ["a gripping, funny film", "dull"]
    z = torch.nn.functional.normalize(enc(**enc.tokenize(texts)), dim=-1)
    torch.testing.assert_close(z, embed_texts(texts), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\[text\]"):
        enc.tokenize("one string")
