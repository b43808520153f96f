"""Our hand-written LoRA against the rules (STYLE.md 13) and against peft on a tiny BERT."""

import copy

import pytest
import torch
from torch import nn

from mmcourse.encoders import tiny_bert
from mmcourse.lora import (LoRALinear, apply_lora, count_parameters, lora_layers, merge_lora,
                           unmerge_lora)

R, ALPHA, TARGETS = 4, 8.0, ["query", "value"]


def _ids():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


def _ours_and_peft():
    from peft import LoraConfig, get_peft_model
    base = tiny_bert()
    ours = apply_lora(copy.deepcopy(base), TARGETS, r=R, alpha=ALPHA)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS,
                                                            lora_dropout=0.0))
    # Same random A in both (each library drew its own): copy peft's into ours.
    for name, m in ours.named_modules():
        if isinstance(m, LoRALinear):
            p = theirs.base_model.model.get_submodule(name)
            m.lora_A.weight.data.copy_(p.lora_A["default"].weight)
            m.lora_B.weight.data.copy_(p.lora_B["default"].weight)
    return base, ours, theirs


def _out(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).last_hidden_state


def test_lora_linear_hand_computed():
    base = nn.Linear(3, 2)
    layer = LoRALinear(base, r=1, alpha=2.0)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
        layer.lora_A.weight.copy_(torch.tensor([[1.0, 1.0, 1.0]]))
        layer.lora_B.weight.copy_(torch.tensor([[1.0], [0.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # W x + b = [1.5, 1.5]; (alpha/r) B A x = 2 * [6, 0] = [12, 0]
    torch.testing.assert_close(layer(x), torch.tensor([[13.5, 1.5]]))


def test_identical_output_at_init_and_only_lora_trains():
    base = nn.Linear(4, 3)
    layer = LoRALinear(copy.deepcopy(base), r=2, alpha=4)
    x = torch.randn(5, 4)
    torch.testing.assert_close(layer(x), base(x))
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A.weight", "lora_B.weight"}
    assert torch.count_nonzero(layer.lora_B.weight) == 0 and torch.count_nonzero(layer.lora_A.weight) > 0


def test_merge_equals_unmerged_and_unmerge_restores():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(4, 3).double(), r=2, alpha=3, dropout=0.5)
    nn.init.normal_(layer.lora_B.weight)  # make the update non-zero
    layer.eval()  # dropout off for the comparison; eval() must NOT merge
    assert not layer.merged
    x = torch.randn(5, 4, dtype=torch.float64)
    w0, before = layer.base.weight.clone(), layer(x)
    layer.merge()
    assert layer.merged and not torch.allclose(layer.base.weight, w0)
    torch.testing.assert_close(layer(x), before)
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, w0)
    torch.testing.assert_close(layer(x), before)
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()


def test_errors():
    with pytest.raises(ValueError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(nn.Linear(2, 2), dropout=1.0)
    with pytest.raises(ValueError, match="no nn.Linear named"):
        apply_lora(tiny_bert(), ["qeury"])


def test_apply_lora_wraps_named_layers_of_tiny_bert():
    model = apply_lora(tiny_bert(layers=2), TARGETS, r=R, alpha=ALPHA)
    assert len(lora_layers(model)) == 4  # query and value in 2 layers
    assert all(n.endswith(("lora_A.weight", "lora_B.weight")) for n, p in model.named_parameters()
               if p.requires_grad)
    assert count_parameters(model) == 4 * R * (32 + 32)


# peft 0.21's get_peft_model reads transformers 5's deprecated `is_gradient_checkpointing`: its
# FutureWarning is about peft's code, not ours (notebook 08 silences the same message, only there).
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_same_as_peft_count_init_and_after_steps():
    base, ours, theirs = _ours_and_peft()
    ids, mask = _ids()
    assert count_parameters(ours) == count_parameters(theirs) == 4 * R * (32 + 32)
    torch.testing.assert_close(_out(ours, ids, mask), _out(base, ids, mask))
    torch.testing.assert_close(_out(theirs, ids, mask), _out(base, ids, mask))
    target = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    opts = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2) for m in (ours, theirs)]
    for _ in range(2):  # step 1 moves only B (A's gradient is 0 while B = 0); step 2 moves both
        for m, opt in zip((ours, theirs), opts):
            m.train(False)  # dropout off so the two see the same function
            loss = (_out(m, ids, mask) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    out_ours, out_theirs = _out(ours, ids, mask), _out(theirs, ids, mask)
    assert not torch.allclose(out_ours, _out(base, ids, mask))  # the steps did something
    torch.testing.assert_close(out_ours, out_theirs, atol=1e-5, rtol=1e-4)
    # merging ours gives the same model as peft's merge_and_unload
    merged_peft = theirs.merge_and_unload()
    merge_lora(ours)
    torch.testing.assert_close(_out(ours, ids, mask), _out(merged_peft, ids, mask), atol=1e-5, rtol=1e-4)
    unmerge_lora(ours)
    torch.testing.assert_close(_out(ours, ids, mask), out_theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf"), 0.0, -8.0])
def test_alpha_must_be_a_finite_positive_number(alpha):
    with pytest.raises(ValueError, match=rf"alpha must be a finite number > 0 .*got {alpha}"):
        LoRALinear(nn.Linear(3, 2), r=2, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        apply_lora(tiny_bert(), TARGETS, r=2, alpha=alpha)


@pytest.mark.parametrize("r", [0, -1, 2.5, True])
def test_rank_must_be_an_integer_at_least_one(r):
    with pytest.raises(ValueError, match=rf"rank r must be an integer >= 1, got {r!r}"):
        LoRALinear(nn.Linear(3, 2), r=r)


def test_alpha_accepts_ints_and_sets_the_scaling():
    layer = LoRALinear(nn.Linear(3, 2), r=4, alpha=2)
    assert layer.scaling == 0.5
