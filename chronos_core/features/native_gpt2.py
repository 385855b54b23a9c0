"""transformers' GPT2LMHeadModel rebuilt natively (see `native_hf`): the packed-sequence check and
causal-mask construction of transformers' masking utilities, Conv1D's addmm, sdpa or eager attention,
the LM head tied to the token embedding unless the config unties it, the shifted causal-LM loss.
Not rebuilt (transformers builds them): cross-attention, upcast-reordered attention, a padding token
(its input check), other heads, activations outside `native_hf.ACTIVATIONS`."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chronos_core.features.native_hf import (
    ACTIVATIONS,
    NativeModel,
    causal_lm_loss,
    fields_of,
    hf_config,
    packed_checked_causal_mask,
    positive_ints,
    sdpa,
    split_heads,
)

ARCHITECTURES = ("GPT2LMHeadModel",)
_UNSUPPORTED_TRUE = ("add_cross_attention", "reorder_and_upcast_attn", "is_encoder_decoder")
_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}


@dataclass(frozen=True)
class GPT2Shape:
    """The config fields the model reads, with GPT2Config's defaults."""

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


def shape_of(raw: dict[str, Any]) -> GPT2Shape | None:
    """The GPT-2 shape of a config.json's dict, or None where this module does not rebuild it."""
    if raw.get("model_type") != "gpt2" or (raw.get("architectures") or ARCHITECTURES)[0] not in ARCHITECTURES:
        return None
    if any(raw.get(name) for name in _UNSUPPORTED_TRUE) or raw.get("pad_token_id") is not None:
        return None
    shape = GPT2Shape(**fields_of(raw, GPT2Shape, _ALIASES))
    if not positive_ints(shape.vocab_size, shape.n_positions, shape.n_embd, shape.n_layer, shape.n_head):
        return None
    if shape.n_embd % shape.n_head or shape.activation_function not in ACTIVATIONS:
        return None
    return shape


def build(shape: GPT2Shape) -> GPT2LMHead:
    return GPT2LMHead(shape)


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
        key, value = split_heads(key, self.head_dim), split_heads(value, self.head_dim)
        query = split_heads(query, self.head_dim)
        dropout = self.attn_dropout.p if self.training else 0.0
        if self.config._attn_implementation == "eager":
            weights = torch.matmul(query, key.transpose(-1, -2)) * self.scaling
            if mask is not None:
                weights = weights + mask
            weights = F.softmax(weights, dim=-1).type(value.dtype)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, value).transpose(1, 2)
        else:  # transformers passes no mask to sdpa here (see `packed_checked_causal_mask`)
            out = sdpa(query, key, value, dropout, self.scaling, causal=True)
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


class GPT2LMHead(NativeModel):
    """GPT2LMHeadModel's forward (no key/value cache, no attention mask given): `.loss`, `.logits`."""

    def __init__(self, shape: GPT2Shape) -> None:
        super().__init__()
        self.shape = shape
        self.config = hf_config("gpt2", shape.n_positions, shape.n_embd, shape.n_layer, shape.n_head)
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
        mask = packed_checked_causal_mask(positions, batch, length, embeds.dtype, eager)
        hidden = self.drop(hidden)
        for block in self.h:
            hidden = block(hidden, mask)
        logits = self.lm_head(self.ln_f(hidden))
        loss = None if labels is None else causal_lm_loss(logits, labels, self.shape.vocab_size)
        return SimpleNamespace(loss=loss, logits=logits)
