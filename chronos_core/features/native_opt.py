"""transformers' OPTForCausalLM rebuilt natively (see `native_hf`): positions from the cumulative sum
of an all-ones mask (offset by 2), pre- or post-norm layers (`do_layer_norm_before`, OPT-350M is
post-norm), the down-projected word embedding (`word_embed_proj_dim`), sdpa or eager causal attention,
the LM head tied to the token embedding unless the config unties it, the shifted causal-LM loss.
Not rebuilt (transformers builds them): layer drop (random per step), other heads, activations
outside `native_hf.ACTIVATIONS`."""

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
    causal_float_mask,
    causal_lm_loss,
    fields_of,
    hf_config,
    positive_ints,
    sdpa,
    split_heads,
)

ARCHITECTURES = ("OPTForCausalLM",)
POSITION_OFFSET = 2  # OPT's learned positions start at index 2


@dataclass(frozen=True)
class OPTShape:
    """The config fields the model reads, with OPTConfig's defaults."""

    vocab_size: int = 50272
    hidden_size: int = 768
    num_hidden_layers: int = 12
    ffn_dim: int = 3072
    max_position_embeddings: int = 2048
    do_layer_norm_before: bool = True
    word_embed_proj_dim: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    num_attention_heads: int = 12
    activation_function: str = "relu"
    layerdrop: float = 0.0
    pad_token_id: int | None = 1
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    tie_word_embeddings: bool = True

    @property
    def embed_dim(self) -> int:
        return self.word_embed_proj_dim if self.word_embed_proj_dim is not None else self.hidden_size


def shape_of(raw: dict[str, Any]) -> OPTShape | None:
    """The OPT shape of a config.json's dict, or None where this module does not rebuild it."""
    if raw.get("model_type") != "opt" or (raw.get("architectures") or ARCHITECTURES)[0] not in ARCHITECTURES:
        return None
    shape = OPTShape(**fields_of(raw, OPTShape, {}))
    sizes = (shape.vocab_size, shape.hidden_size, shape.num_hidden_layers, shape.ffn_dim,
             shape.max_position_embeddings, shape.num_attention_heads, shape.embed_dim)  # fmt: skip
    if not positive_ints(*sizes) or shape.hidden_size % shape.num_attention_heads or shape.layerdrop:
        return None
    return shape if shape.activation_function in ACTIVATIONS else None


def build(shape: OPTShape) -> OPTLM:
    return OPTLM(shape)


class Layer(nn.Module):
    def __init__(self, shape: OPTShape, config: SimpleNamespace) -> None:
        super().__init__()
        size, bias, affine = shape.hidden_size, shape.enable_bias, shape.layer_norm_elementwise_affine
        self.config = config  # read at every call, as transformers reads its config's attention choice
        self.shape = shape
        self.head_dim = size // shape.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (
            nn.Linear(size, size, bias=bias) for _ in range(4)
        )
        self.self_attn_layer_norm = nn.LayerNorm(size, elementwise_affine=affine)
        self.fc1 = nn.Linear(size, shape.ffn_dim, bias=bias)
        self.fc2 = nn.Linear(shape.ffn_dim, size, bias=bias)
        self.act = ACTIVATIONS[shape.activation_function]
        self.final_layer_norm = nn.LayerNorm(size, elementwise_affine=affine)

    def _attention(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = hidden.size()
        query = split_heads(self.q_proj(hidden) * self.scaling, self.head_dim)
        key, value = (
            split_heads(self.k_proj(hidden), self.head_dim),
            split_heads(self.v_proj(hidden), self.head_dim),
        )
        dropout = self.shape.attention_dropout if self.training else 0.0
        if self.config._attn_implementation == "eager":
            weights = torch.matmul(query, key.transpose(-1, -2)) * 1.0
            if mask is not None:
                weights = weights + mask
            weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, value).transpose(1, 2).contiguous()
        else:
            out = sdpa(query, key, value, dropout, 1.0, causal=True)
        return self.out_proj(out.reshape(batch, length, -1).contiguous())

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pre = self.shape.do_layer_norm_before
        residual = hidden
        if pre:
            hidden = self.self_attn_layer_norm(hidden)
        hidden = F.dropout(self._attention(hidden, mask), p=self.shape.dropout, training=self.training)
        hidden = residual + hidden
        if not pre:
            hidden = self.self_attn_layer_norm(hidden)
        shape = hidden.shape
        hidden = hidden.reshape(-1, hidden.size(-1))
        residual = hidden
        if pre:
            hidden = self.final_layer_norm(hidden)
        hidden = self.fc2(self.act(self.fc1(hidden)))
        hidden = F.dropout(hidden, p=self.shape.dropout, training=self.training)
        hidden = (residual + hidden).view(shape)
        return hidden if pre else self.final_layer_norm(hidden)


class OPTLM(NativeModel):
    """OPTForCausalLM's forward (no key/value cache, no attention mask given): `.loss`, `.logits`."""

    def __init__(self, shape: OPTShape) -> None:
        super().__init__()
        self.shape = shape
        size, embed = shape.hidden_size, shape.embed_dim
        self.config = hf_config(
            "opt", shape.max_position_embeddings, size, shape.num_hidden_layers, shape.num_attention_heads
        )
        self.embed_tokens = nn.Embedding(shape.vocab_size, embed, shape.pad_token_id)
        self.embed_positions = nn.Embedding(shape.max_position_embeddings + POSITION_OFFSET, size)
        self.project_out = nn.Linear(size, embed, bias=False) if embed != size else None
        self.project_in = nn.Linear(embed, size, bias=False) if embed != size else None
        affine = shape.layer_norm_elementwise_affine
        self.final_layer_norm = (
            nn.LayerNorm(size, elementwise_affine=affine) if shape.do_layer_norm_before else None
        )
        self.layers = nn.ModuleList([Layer(shape, self.config) for _ in range(shape.num_hidden_layers)])
        self.lm_head = nn.Linear(embed, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, use_cache: bool = False
    ) -> SimpleNamespace:
        del use_cache  # no cache is ever built here (transformers builds none when it is False)
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        embeds = self.embed_tokens(input_ids)
        batch, length = embeds.shape[0], embeds.shape[1]
        ones = torch.ones(batch, length, device=embeds.device)
        positions = (torch.cumsum(ones, dim=1) * ones - 1).long()[:, 0:]
        eager = self.config._attn_implementation == "eager"
        mask = causal_float_mask(batch, length, embeds.dtype, embeds.device) if eager else None
        pos_embeds = self.embed_positions(positions + POSITION_OFFSET)
        if self.project_in is not None:
            embeds = self.project_in(embeds)
        hidden = embeds + pos_embeds
        for layer in self.layers:
            hidden = layer(hidden, mask)
        if self.final_layer_norm is not None:
            hidden = self.final_layer_norm(hidden)
        if self.project_out is not None:
            hidden = self.project_out(hidden)
        logits = self.lm_head(hidden).contiguous()
        loss = None if labels is None else causal_lm_loss(logits, labels, self.shape.vocab_size)
        return SimpleNamespace(loss=loss, logits=logits)
