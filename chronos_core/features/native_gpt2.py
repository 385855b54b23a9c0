"""GPT-2 from a Hugging Face config.json without importing `transformers`.

Importing transformers' GPT-2 classes takes about 4 s on a cold process (they pull in torch._dynamo,
torch.distributed.tensor and scipy), ten times what tracing GPT-2-Large's training step takes. This
module rebuilds `GPT2LMHeadModel` op for op: the same aten calls in the same order (the packed-
sequence check and causal-mask construction of transformers' masking utilities, Conv1D's addmm,
`gelu_new`'s eight kernels, sdpa or eager attention, the shifted causal-LM loss), the same
parameters (the LM head tied to the token embedding unless the config unties it) and the same
autograd graph, so a trace of it is the trace of transformers' model row for row.
`tests/test_native_gpt2.py` checks that against transformers on every precision, attention
implementation and mode.

`build(raw, attn)` returns the module on the meta device, or None where the config asks for
something this copy does not rebuild (cross-attention, upcast-reordered attention, a padding
token, another head or activation); the caller then builds transformers' own class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("GPT2LMHeadModel",)
IGNORE_INDEX = -100  # transformers' ForCausalLMLoss


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {
    "gelu_new": _gelu_new,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}
_UNSUPPORTED_TRUE = ("add_cross_attention", "reorder_and_upcast_attn", "is_encoder_decoder")


@dataclass(frozen=True)
class GPT2Shape:
    """The config fields the model reads, with GPT2Config's defaults and attribute aliases."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True

    @property
    def config(self) -> SimpleNamespace:
        """What opgraph reads off `module.config` (sequence length cap, tensor-parallel shape)."""
        return SimpleNamespace(
            n_positions=self.n_positions, max_position_embeddings=self.n_positions, n_embd=self.n_embd,
            hidden_size=self.n_embd, n_layer=self.n_layer, num_hidden_layers=self.n_layer,
            n_head=self.n_head, num_attention_heads=self.n_head, is_encoder_decoder=False,
            model_type="gpt2", _attn_implementation="sdpa",
        )  # fmt: skip


_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}


def shape_of(raw: dict[str, Any]) -> GPT2Shape | None:
    """The GPT-2 shape of a config.json's dict, or None where this module does not rebuild it."""
    if raw.get("model_type") != "gpt2":
        return None
    architectures = raw.get("architectures") or list(ARCHITECTURES)
    if architectures[0] not in ARCHITECTURES:
        return None
    if any(raw.get(name) for name in _UNSUPPORTED_TRUE) or raw.get("pad_token_id") is not None:
        return None
    fields = {_ALIASES.get(k, k): v for k, v in raw.items()}
    known = {k: fields[k] for k in GPT2Shape.__dataclass_fields__ if k in fields}
    shape = GPT2Shape(**known)
    ints = (shape.vocab_size, shape.n_positions, shape.n_embd, shape.n_layer, shape.n_head)
    if not all(isinstance(v, int) and v > 0 for v in ints) or shape.n_embd % shape.n_head:
        return None
    if shape.activation_function not in ACTIVATIONS:
        return None
    return shape


def build(raw: dict[str, Any], attn: str) -> nn.Module | None:
    """GPT2LMHeadModel's twin on the meta device, or None (see the module docstring)."""
    shape = shape_of(raw)
    if shape is None:
        return None
    with torch.device("meta"):
        return GPT2LMHead(shape, attn)


class Conv1D(nn.Module):
    """transformers' Conv1D: a linear layer with its weight stored [in, out], one addmm."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


class Attention(nn.Module):
    def __init__(self, shape: GPT2Shape, layer: int, config: SimpleNamespace) -> None:
        super().__init__()
        self.embed_dim, self.head_dim = shape.n_embd, shape.n_embd // shape.n_head
        self.config = config  # read at every call, as transformers reads its config's attention choice
        self.scaling = self.head_dim**-0.5 if shape.scale_attn_weights else 1.0
        if shape.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(layer + 1)
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(shape.attn_pdrop)
        self.resid_dropout = nn.Dropout(shape.resid_pdrop)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        query, key, value = self.c_attn(hidden).split(self.embed_dim, dim=2)
        heads = (*key.shape[:-1], -1, self.head_dim)
        key, value = key.view(heads).transpose(1, 2), value.view(heads).transpose(1, 2)
        query = query.view((*query.shape[:-1], -1, self.head_dim)).transpose(1, 2)
        dropout = self.attn_dropout.p if self.training else 0.0
        if self.config._attn_implementation == "eager":
            weights = torch.matmul(query, key.transpose(-1, -2)) * self.scaling
            if mask is not None:
                weights = weights + mask
            weights = F.softmax(weights, dim=-1).type(value.dtype)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, value).transpose(1, 2)
        else:
            q_length = query.shape[2]
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout, scale=self.scaling,
                is_causal=q_length > 1 and mask is None,
            )  # fmt: skip
            out = out.reshape(out.shape[0], -1, q_length, value.shape[-1]).transpose(1, 2).contiguous()
        out = out.reshape(*out.shape[:-2], -1).contiguous()
        return self.resid_dropout(self.c_proj(out))


class Block(nn.Module):
    def __init__(self, shape: GPT2Shape, layer: int, config: SimpleNamespace) -> None:
        super().__init__()
        inner = shape.n_inner if shape.n_inner is not None else 4 * shape.n_embd
        self.ln_1 = nn.LayerNorm(shape.n_embd, eps=shape.layer_norm_epsilon)
        self.attn = Attention(shape, layer, config)
        self.ln_2 = nn.LayerNorm(shape.n_embd, eps=shape.layer_norm_epsilon)
        self.c_fc = Conv1D(inner, shape.n_embd)
        self.c_proj = Conv1D(shape.n_embd, inner)
        self.act = ACTIVATIONS[shape.activation_function]
        self.dropout = nn.Dropout(shape.resid_pdrop)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.attn(self.ln_1(hidden), mask) + hidden
        mlp = self.dropout(self.c_proj(self.act(self.c_fc(self.ln_2(hidden)))))
        return hidden + mlp


class GPT2LMHead(nn.Module):
    """GPT2LMHeadModel's forward (no key/value cache, no attention mask given): `.loss`, `.logits`."""

    def __init__(self, shape: GPT2Shape, attn: str) -> None:
        super().__init__()
        self.shape, self.config = shape, shape.config
        self.config._attn_implementation = attn
        self.wte = nn.Embedding(shape.vocab_size, shape.n_embd)
        self.wpe = nn.Embedding(shape.n_positions, shape.n_embd)
        self.drop = nn.Dropout(shape.embd_pdrop)
        self.h = nn.ModuleList([Block(shape, i, self.config) for i in range(shape.n_layer)])
        self.ln_f = nn.LayerNorm(shape.n_embd, eps=shape.layer_norm_epsilon)
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.wte.weight

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, use_cache: bool = False
    ) -> SimpleNamespace:
        del use_cache  # no cache is ever built here (transformers builds none when it is False)
        batch, length = input_ids.shape
        embeds = self.wte(input_ids)
        positions = (torch.arange(length, device=embeds.device) + 0).unsqueeze(0)
        hidden = embeds + self.wpe(positions)
        eager = self.config._attn_implementation == "eager"
        mask = _causal_mask(positions, batch, length, embeds.dtype, eager)
        hidden = self.drop(hidden)
        for block in self.h:
            hidden = block(hidden, mask)
        logits = self.lm_head(self.ln_f(hidden))
        loss = None if labels is None else _causal_lm_loss(logits, labels, self.shape.vocab_size)
        return SimpleNamespace(loss=loss, logits=logits)


def _causal_mask(
    positions: torch.Tensor, batch: int, length: int, dtype: torch.dtype, eager: bool
) -> torch.Tensor | None:
    """transformers' create_causal_mask without a padding mask or cache: the packed-sequence check on
    the position ids, then None for sdpa (its is_causal flag does it) or eager's float mask."""
    positions = positions.expand(batch, -1)
    first = positions[:, :1] - 1
    packed = (torch.diff(positions, prepend=first, dim=-1) != 1).cumsum(-1)
    (packed[:, -1] == 0).all()  # its `if` reads this on the host; meta answers "not packed"
    if not eager:
        return None
    device = positions.device
    batch_idx = torch.arange(batch, device=device)[:, None, None, None]
    head_idx = torch.arange(1, device=device)[None, :, None, None]
    q_idx = (torch.arange(length, device=device) + 0)[None, None, :, None]
    kv_idx = (torch.arange(length, device=device) + 0)[None, None, None, :]
    del batch_idx, head_idx  # built (and launched) by transformers, unused by the causal pattern
    allowed = (kv_idx <= q_idx).expand(batch, -1, length, length)
    return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)


def _causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab: int) -> torch.Tensor:
    """transformers' ForCausalLMLoss: labels shifted left by padding with the ignore index, mean CE."""
    logits = logits.float()
    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].contiguous()
    return F.cross_entropy(logits.view(-1, vocab), shifted.view(-1), ignore_index=IGNORE_INDEX)
