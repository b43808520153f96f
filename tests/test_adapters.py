"""Our Houlsby adapters: the module by hand, identity at init, placement, what trains, the
parameter count, the gradient at step 0, bad input; and parity with AdapterHub's ``adapters``."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcourse.adapters import (Adapter, AdaptedOutput, adapter_parameter_count, adapters_of,
                               add_adapters, count_parameters)
from mmcourse.encoders import TextEncoder, tiny_bert
from mmcourse.finetune import SentenceClassifier

ROOT = Path(__file__).resolve().parents[1]


def _ids(vocab=1000):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


def _out(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).last_hidden_state


def test_adapter_hand_computed():
    a = Adapter(2, 1, act="relu")
    with torch.no_grad():
        a.down.weight.copy_(torch.tensor([[1.0, -1.0]]))
        a.down.bias.copy_(torch.tensor([0.5]))
        a.up.weight.copy_(torch.tensor([[2.0], [0.0]]))
        a.up.bias.copy_(torch.tensor([0.0, 1.0]))
    h = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    # row 1: relu(3 - 1 + 0.5) = 2.5 → up: [5, 1] → h + [5, 1] = [8, 2]
    # row 2: relu(0 - 2 + 0.5) = 0   → up: [0, 1] → h + [0, 1] = [0, 3]
    torch.testing.assert_close(a(h), torch.tensor([[8.0, 2.0], [0.0, 3.0]]))


def test_adapter_is_identity_at_init_and_gradcheck():
    torch.manual_seed(0)
    a = Adapter(4, 2).double()
    h = torch.randn(3, 5, 4, dtype=torch.float64)
    assert torch.equal(a(h), h)  # up = 0: exactly the identity, not just close
    assert torch.count_nonzero(a.down.weight) > 0
    nn.init.normal_(a.up.weight)  # non-zero: autograd vs finite differences through both maps
    h.requires_grad_(True)
    assert torch.autograd.gradcheck(a, (h,))


def test_parameter_count_formula():
    a = Adapter(384, 8)
    assert count_parameters(a) == adapter_parameter_count(384, 8) == 2 * 384 * 8 + 384 + 8 == 6536


def test_add_adapters_identity_placement_and_count_on_tiny_bert():
    base = tiny_bert()  # hidden 32, 2 layers
    model = copy.deepcopy(base)
    new = add_adapters(model, bottleneck=4)
    ids, mask = _ids()
    torch.testing.assert_close(_out(model.eval(), ids, mask), _out(base, ids, mask), rtol=0, atol=0)
    assert len(new) == 2 * 2 and adapters_of(model) == new
    for layer in model.encoder.layer:  # after attention's and the feed-forward's dense + dropout
        for block in (layer.attention.output, layer.output):
            assert isinstance(block.dropout, AdaptedOutput) and isinstance(block.dense, nn.Linear)
    d, m, layers = 32, 4, 2
    assert count_parameters(model) == (2 * d * m + d + m) * 2 * layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n for n in trainable)


def test_placement_changes_output_once_adapters_move():
    model = copy.deepcopy(tiny_bert())
    add_adapters(model, 4)
    ids, mask = _ids()
    before = _out(model.eval(), ids, mask)
    with torch.no_grad():
        nn.init.normal_(model.encoder.layer[1].output.dropout.adapter.up.weight)
    assert not torch.allclose(_out(model, ids, mask), before)


def test_only_adapters_and_head_train_in_a_classifier():
    backbone = copy.deepcopy(tiny_bert())
    add_adapters(backbone, 4)
    model = SentenceClassifier(TextEncoder(backbone, tokenizer=None, freeze=False, pad_id=0), n_classes=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert all(n.startswith("head.") or ".adapter." in n for n in trainable)
    assert count_parameters(model) == (2 * 32 * 4 + 32 + 4) * 4 + 32 * 2 + 2


def test_down_projection_gets_gradient_only_after_the_first_step():
    """At step 0 up = 0, so dL/d(down's output) = W_upᵀ · dL/d(out) = 0: down gets an exactly
    zero gradient while up's is non-zero. One step moves up off zero; then down learns too."""
    torch.manual_seed(0)
    backbone = copy.deepcopy(tiny_bert())
    adapters = add_adapters(backbone, 4)
    model = SentenceClassifier(TextEncoder(backbone, tokenizer=None, freeze=False, pad_id=0), n_classes=2)
    model.dropout.p = 0.0
    ids, mask = _ids()
    y = torch.tensor([0, 1])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model({"input_ids": ids, "attention_mask": mask}), y).backward()

    step()
    assert all(torch.count_nonzero(a.down.weight.grad) == 0 for a in adapters)
    assert any(torch.count_nonzero(a.up.weight.grad) > 0 for a in adapters)
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    opt.step()
    step()
    assert any(torch.count_nonzero(a.down.weight.grad) > 0 for a in adapters)


def test_identity_on_minilm():
    from mmcourse.data import text_encoder
    tokenizer, minilm = text_encoder()
    model = copy.deepcopy(minilm)
    add_adapters(model, 8)
    batch = tokenizer(["a fine film", "dull and far too long"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(**batch).last_hidden_state, minilm(**batch).last_hidden_state,
                                   rtol=0, atol=0)
    assert count_parameters(model) == adapter_parameter_count(384, 8) * 2 * 6 == 78_432
    assert not adapters_of(minilm)  # the shared, cached MiniLM is untouched: we adapted a copy


def test_bad_input():
    with pytest.raises(ValueError, match="bottleneck must be a positive int"):
        Adapter(8, 0)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        Adapter(8.0, 2)
    with pytest.raises(ValueError, match="unknown act 'tanh'"):
        Adapter(8, 2, act="tanh")
    with pytest.raises(ValueError, match="last dim must be 8"):
        Adapter(8, 2)(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="no BERT-style layer"):
        add_adapters(nn.Sequential(nn.Linear(3, 3)), 2)
    model = copy.deepcopy(tiny_bert())
    with pytest.raises(ValueError, match="bottleneck must be a positive int"):
        add_adapters(model, -1)
    assert not adapters_of(model) and all(p.requires_grad for p in model.parameters())  # untouched
    add_adapters(model, 2)
    with pytest.raises(ValueError, match="already has 4 adapters"):
        add_adapters(model, 2)  # a re-run cell must not stack a second set
    assert len(adapters_of(model)) == 4


# --------------------------------------------------------------------- parity with AdapterHub
# `adapters` 1.3.0 needs transformers ~=4.57.6, the course runs transformers 5: the test installs
# it and the three packages whose versions transformers 4.57 checks at import (no deps, ~20 s,
# once) into build/ (git-ignored) and runs the comparison in a subprocess whose PYTHONPATH puts
# that folder first; torch and mmcourse come from this environment. Later runs reuse the folder
# (~12 s for the comparison); without a package index the test skips in seconds, saying why.
ADAPTERHUB_PINS = ("adapters==1.3.0", "transformers==4.57.6", "tokenizers==0.22.2", "huggingface-hub==0.36.2")
ADAPTERHUB_SITE = ROOT / "build" / "adapterhub-site-1.3.0"


def _adapterhub_site() -> Path:
    if (ADAPTERHUB_SITE / ".complete").exists():
        return ADAPTERHUB_SITE
    tmp = ADAPTERHUB_SITE.with_name(f"{ADAPTERHUB_SITE.name}.part{os.getpid()}")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
           "--retries", "0", "--timeout", "15", "--target", str(tmp), *ADAPTERHUB_PINS]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"installing {' '.join(ADAPTERHUB_PINS)} took over 240 s; the parity check needs it")
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"cannot install {' '.join(ADAPTERHUB_PINS)} (offline, or no such files on the "
                    f"index): {r.stderr.strip().splitlines()[-1:]}; the parity check needs them")
    (tmp / ".complete").touch()
    try:
        tmp.rename(ADAPTERHUB_SITE)
    except OSError:  # another process finished first
        pass
    return ADAPTERHUB_SITE


def test_same_as_adapterhub_houlsby():
    """Same placement and size as AdapterHub's Houlsby config (``DoubleSeqBnConfig``: a bottleneck
    after the attention and after the feed-forward output, d / reduction_factor units, "swish"):
    the same number of trainable parameters, both exactly the base model at init, and equal
    outputs once both carry the same random (non-zero) adapters."""
    site = _adapterhub_site()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "adapterhub_parity.py"), "8"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(res)
    assert res["adapters"] == "1.3.0" and res["transformers"].startswith("4.57")
    assert res["trainable_ours"] == res["trainable_theirs"] == adapter_parameter_count(384, 8) * 2 * 6
    assert res["init_ours_vs_base"] == 0.0 and res["init_theirs_vs_base"] == 0.0
    assert res["random_vs_base"] > 1e-2  # the random adapters really change the output ...
    assert res["random_ours_vs_theirs"] < 1e-5  # ... and ours changes it exactly as theirs
