"""Adapters, small bottleneck modules inside a frozen transformer (Houlsby et al. 2019, §2.1, Fig. 2).

An adapter maps a sublayer's output h ∈ R^d through a bottleneck of m ≪ d units and adds the
result back:

    Adapter(h) = h + W_up · f(W_down · h + b_down) + b_up,   W_down: (m, d), W_up: (d, m),

so one adapter trains 2·d·m + d + m numbers. ``W_up`` and ``b_up`` start at zero, so at
initialisation Adapter(h) = h *exactly* and the adapted model computes what the base model
computes (Houlsby et al. initialise near the identity, with small random weights; exact zero is
this course's choice, also AdapterHub's
``init_weights="mam_adapter"`` and the rule LoRA uses for B). Houlsby et al. insert two
adapters per transformer layer: after the attention block's output projection and after the
feed-forward block's, each after that projection's dropout and before the residual + LayerNorm,

    LayerNorm(x + Adapter(Dropout(Dense(sublayer(x))))),

and train only the adapters (plus the task head) with the pretrained weights frozen. (The paper
also trains the LayerNorms; we, like AdapterHub's ``DoubleSeqBnConfig``, keep them frozen.)
Unlike LoRA, an adapter cannot be merged into the frozen weights: the nonlinearity sits between
its two matrices, so it costs a little extra at inference.

``tests/test_adapters.py`` checks ours against the ``adapters`` library (AdapterHub) where it
installs. Taught in ``notebooks/08_fine_tuning.ipynb``.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmcourse.lora import count_parameters  # noqa: F401  (re-exported: trainable-parameter count)

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}  # "silu" is AdapterHub's "swish"


def adapter_parameter_count(dim: int, bottleneck: int) -> int:
    """Parameters of one adapter: W_down (m·d) + b_down (m) + W_up (d·m) + b_up (d)."""
    return 2 * dim * bottleneck + dim + bottleneck


class Adapter(nn.Module):
    """``h + up(act(down(h)))`` with ``up`` zero-initialised: the identity at init.

    Args:
        dim: d, the size of the hidden states it adapts.
        bottleneck: m, the number of bottleneck units (1 ≤ m; m ≪ d to save parameters).
        act: the nonlinearity f, one of ``ACTIVATIONS``.

    Shapes:
        forward: (..., d) → (..., d).
    """

    def __init__(self, dim: int, bottleneck: int, act: str = "gelu"):
        super().__init__()
        for name, value in (("dim", dim), ("bottleneck", bottleneck)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown act {act!r}; choose one of {sorted(ACTIVATIONS)}")
        self.dim, self.bottleneck, self.act_name = dim, bottleneck, act
        self.down = nn.Linear(dim, bottleneck)  # (m, d): nn.Linear init, so f sees varied inputs
        self.act = ACTIVATIONS[act]()
        self.up = nn.Linear(bottleneck, dim)  # (d, m)
        nn.init.zeros_(self.up.weight)  # up = 0: the adapter starts as the identity
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        if h.shape[-1] != self.dim:
            raise ValueError(f"Adapter(dim={self.dim}) got hidden states of shape {tuple(h.shape)}; "
                             f"the last dim must be {self.dim}")
        return h + self.up(self.act(self.down(h)))  # (..., d) → (..., m) → (..., d), plus the skip

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bottleneck={self.bottleneck}, act={self.act_name}"


class AdaptedOutput(nn.Module):
    """``adapter(inner(x))``: the adapter placed right after ``inner`` (a sublayer's dropout).

    Shapes:
        forward: (B, L, d) → (B, L, d).
    """

    def __init__(self, inner: nn.Module, adapter: Adapter):
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(self.inner(x))


def _bert_layers(model: nn.Module) -> list[nn.Module]:
    """The BERT-style layers of ``model``: modules with ``attention.output`` and ``output`` blocks
    that each have a ``dense`` projection and a ``dropout`` (``BertSelfOutput``, ``BertOutput``)."""
    def block_ok(block) -> bool:
        return isinstance(getattr(block, "dense", None), nn.Linear) and hasattr(block, "dropout")

    def attention_output(m):
        return getattr(getattr(m, "attention", None), "output", None)

    return [m for m in model.modules() if block_ok(getattr(m, "output", None)) and block_ok(attention_output(m))]


def adapters_of(model: nn.Module) -> list[Adapter]:
    """Every ``Adapter`` inside ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, Adapter)]


def add_adapters(model: nn.Module, bottleneck: int, act: str = "gelu") -> list[Adapter]:
    """Freeze ``model`` and insert two adapters into each of its BERT-style layers (Houlsby).

    One adapter follows the attention block's output projection (``attention.output``), one the
    feed-forward block's (``output``); each acts on that block's ``dense`` → ``dropout`` output,
    before the residual + LayerNorm. Changed in place; only the adapters train. A task head
    built afterwards (e.g. ``SentenceClassifier``) stays trainable.

    Args:
        model: a ``transformers`` BERT-like model (e.g. MiniLM from ``mmcourse.data.text_encoder``;
            pass a ``copy.deepcopy`` to keep the original as it is).
        bottleneck: m, units per adapter; ``act``: its nonlinearity.

    Returns:
        The new adapters, 2 per layer, in layer order (attention's first).

    Raises:
        ValueError: when the model already has adapters (a second call would stack a second set),
            or has no BERT-style layer.
    """
    if adapters_of(model):
        raise ValueError(f"the model already has {len(adapters_of(model))} adapters; adding again would "
                         "stack a second set. Call add_adapters on a fresh copy of the base model")
    layers = _bert_layers(model)
    if not layers:
        raise ValueError(f"no BERT-style layer (with attention.output.dense and output.dense) in "
                         f"{type(model).__name__}; add_adapters expects a transformers BertModel-like model")
    Adapter(1, bottleneck, act)  # validate bottleneck and act before changing anything
    model.requires_grad_(False)
    new = []
    for layer in layers:
        for block in (layer.attention.output, layer.output):  # after attention, after feed-forward
            w = block.dense.weight
            adapter = Adapter(block.dense.out_features, bottleneck, act).to(device=w.device, dtype=w.dtype)
            block.dropout = AdaptedOutput(block.dropout, adapter)
            new.append(adapter)
    return new
