"""Our adapters vs AdapterHub's ``adapters`` library on the real MiniLM; prints one JSON line.

Run by ``tests/test_adapters.py`` in a subprocess whose PYTHONPATH puts ``adapters`` 1.3.0 and the
``transformers`` 4.57 it needs in front of the course's environment (which has transformers 5,
which that library does not support); torch and ``mmcourse`` come from the course's environment.

Usage: ``python tests/adapterhub_parity.py BOTTLENECK``.
"""

import copy
import json
import sys

import torch

import adapters
import transformers
from adapters import DoubleSeqBnConfig
from transformers import AutoModel

from mmcourse.adapters import add_adapters, count_parameters
from mmcourse.data.text import minilm_path

m = int(sys.argv[1])
torch.manual_seed(0)
base = AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
d = base.config.hidden_size

ours = copy.deepcopy(base)
add_adapters(ours, m, act="silu")  # AdapterHub's Houlsby config uses "swish" = SiLU
theirs = copy.deepcopy(base)
adapters.init(theirs)
# Houlsby (2019) in AdapterHub: a bottleneck after the attention output (mh_adapter) and after the
# feed-forward output (output_adapter); bottleneck = d / reduction_factor; up-projection zero at init
theirs.add_adapter("houlsby", config=DoubleSeqBnConfig(reduction_factor=d / m, init_weights="mam_adapter"))
theirs.train_adapter("houlsby")  # freezes the rest, activates the adapter
ours.eval(), theirs.eval()

g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, 20000, (3, 12), generator=g)
mask = torch.ones_like(ids)
mask[1, 8:] = 0
with torch.no_grad():
    out = {k: mdl(input_ids=ids, attention_mask=mask).last_hidden_state
           for k, mdl in (("base", base), ("ours", ours), ("theirs", theirs))}

    # Now give both the same non-zero adapters (theirs, made random) and compare again: equal
    # outputs then mean the same placement, nonlinearity and residual, not just two identities.
    for i, layer in enumerate(theirs.encoder.layer):
        for name, block in (("attention", layer.attention.output), ("output", layer.output)):
            a = block.adapters["houlsby"]
            torch.nn.init.normal_(a.adapter_up.weight, std=0.05)
            torch.nn.init.normal_(a.adapter_up.bias, std=0.05)
            mine = (ours.encoder.layer[i].attention.output if name == "attention"
                    else ours.encoder.layer[i].output).dropout.adapter
            mine.down.load_state_dict(a.adapter_down[0].state_dict())
            mine.up.load_state_dict(a.adapter_up.state_dict())
    changed = {k: mdl(input_ids=ids, attention_mask=mask).last_hidden_state
               for k, mdl in (("ours", ours), ("theirs", theirs))}

print(json.dumps({
    "transformers": transformers.__version__, "adapters": adapters.__version__,
    "bottleneck": m, "dim": d, "layers": base.config.num_hidden_layers,
    "trainable_ours": count_parameters(ours), "trainable_theirs": count_parameters(theirs),
    "init_ours_vs_base": (out["ours"] - out["base"]).abs().max().item(),
    "init_theirs_vs_base": (out["theirs"] - out["base"]).abs().max().item(),
    "random_ours_vs_theirs": (changed["ours"] - changed["theirs"]).abs().max().item(),
    "random_vs_base": (changed["ours"] - out["base"]).abs().max().item(),
}))
