"""transformers' T5ForConditionalGeneration rebuilt natively (see `native_hf`): the shared embedding
tied to both stacks and the LM head (T5Config always ties them), RMS layer norms accumulated in fp32,
relative position buckets computed in each stack's first layer and reused by the others, sdpa with the
position bias as its float mask (causal in the decoder) or eager attention without scaling, the fp32 cast
before `wo`, the fp16 overflow clamps, the decoder output scaled by d_model**-0.5 unless the config
unties the embeddings (T5 v1.1) or sets `scale_decoder_outputs`, and the cross-entropy loss over all
labels.
Not rebuilt (transformers builds them): other heads (encoder-only, classification, question answering),
activations outside `native_hf.ACTIVATIONS`, malformed `feed_forward_proj` values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chronos_core.features.native_hf import (
    ACTIVATIONS,
    IGNORE_INDEX,
    NativeModel,
    causal_float_mask,
    fields_of,
    hf_config,
    positive_ints,
)

ARCHITECTURES = ("T5ForConditionalGeneration",)
_ALIASES = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
            "head_dim": "d_kv"}  # fmt: skip


@dataclass(frozen=True)
class T5Shape:
    """The config fields the model reads, with T5Config's defaults."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    n_positions: int | None = None  # not T5Config's: read only as the default sequence-length cap
    # T5Config derives these three (from feed_forward_proj and tie_word_embeddings) unless the config.json
    # gives them, as Flan-T5's and T5 v1.1's do: then their values win
    dense_act_fn: str = "relu"
    is_gated_act: bool = False
    scale_decoder_outputs: bool = True

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers if self.num_decoder_layers is not None else self.num_layers


def shape_of(raw: dict[str, Any]) -> T5Shape | None:
    """The T5 shape of a config.json's dict, or None where this module does not rebuild it."""
    if raw.get("model_type") != "t5" or (raw.get("architectures") or ARCHITECTURES)[0] not in ARCHITECTURES:
        return None
    projection = raw.get("feed_forward_proj", T5Shape.feed_forward_proj)
    parts = projection.split("-") if isinstance(projection, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        return None
    derived = {
        "dense_act_fn": "gelu_new" if projection == "gated-gelu" else parts[-1],
        "is_gated_act": parts[0] == "gated",
        "scale_decoder_outputs": raw.get("tie_word_embeddings") is not False,
    }
    shape = T5Shape(**{**derived, **fields_of(raw, T5Shape, _ALIASES)})
    sizes = (shape.vocab_size, shape.d_model, shape.d_kv, shape.d_ff, shape.num_layers, shape.decoder_layers,
             shape.num_heads, shape.relative_attention_num_buckets,
             shape.relative_attention_max_distance)  # fmt: skip
    if not positive_ints(*sizes) or shape.dense_act_fn not in ACTIVATIONS:
        return None
    return shape


def build(shape: T5Shape) -> T5LM:
    return T5LM(shape)


class LayerNorm(nn.Module):
    """T5LayerNorm: RMS norm without bias, the variance accumulated in fp32."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        variance = hidden.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            hidden = hidden.to(self.weight.dtype)
        return self.weight * hidden


def relative_position_bucket(
    position: torch.Tensor, bidirectional: bool, buckets: int, distance: int
) -> torch.Tensor:
    """T5Attention._relative_position_bucket, op for op."""
    relative_buckets = 0
    if bidirectional:
        buckets //= 2
        relative_buckets += (position > 0).to(torch.long) * buckets
        position = torch.abs(position)
    else:
        position = -torch.min(position, torch.zeros_like(position))
    max_exact = buckets // 2
    is_small = position < max_exact
    if_large = max_exact + (
        torch.log(position.float() / max_exact) / math.log(distance / max_exact) * (buckets - max_exact)
    ).to(torch.long)
    if_large = torch.min(if_large, torch.full_like(if_large, buckets - 1))
    relative_buckets += torch.where(is_small, position, if_large)
    return relative_buckets


def _position_bias_mask(
    bias: torch.Tensor, causal: bool, query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """transformers' create_position_bias_mask without an attention mask."""
    if causal:
        q_length, kv_length = query.shape[2], key.shape[2]
        allowed = (
            torch.arange(q_length, device=key.device)[:, None]
            >= torch.arange(kv_length, device=key.device)[None, :]
        )
        bias = torch.where(allowed.view(1, 1, q_length, kv_length), bias, torch.finfo(key.dtype).min)
    return bias.contiguous()


class Attention(nn.Module):
    def __init__(
        self, shape: T5Shape, config: SimpleNamespace, decoder: bool, causal: bool, bias: bool
    ) -> None:
        super().__init__()
        self.config = config  # read at every call, as transformers reads its config's attention choice
        self.is_decoder, self.is_causal, self.has_bias = decoder, causal, bias
        self.buckets, self.distance = (
            shape.relative_attention_num_buckets,
            shape.relative_attention_max_distance,
        )
        self.d_kv, self.n_heads, self.dropout = shape.d_kv, shape.num_heads, shape.dropout_rate
        inner = shape.num_heads * shape.d_kv
        self.q = nn.Linear(shape.d_model, inner, bias=False)
        self.k = nn.Linear(shape.d_model, inner, bias=False)
        self.v = nn.Linear(shape.d_model, inner, bias=False)
        self.o = nn.Linear(inner, shape.d_model, bias=False)
        if bias:
            self.relative_attention_bias = nn.Embedding(self.buckets, self.n_heads)

    def compute_bias(self, q_length: int, k_length: int, device: torch.device) -> torch.Tensor:
        context = torch.arange(q_length, dtype=torch.long, device=device)[:, None] + 0
        memory = torch.arange(k_length, dtype=torch.long, device=device)[None, :]
        buckets = relative_position_bucket(memory - context, not self.is_decoder, self.buckets, self.distance)
        return self.relative_attention_bias(buckets).permute([2, 0, 1]).unsqueeze(0)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        states: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        input_shape = hidden.shape[:-1]
        query = self.q(hidden).view((*input_shape, -1, self.d_kv)).transpose(1, 2)
        current = hidden if states is None else states
        kv_shape = (*current.shape[:-1], -1, self.d_kv)
        key = self.k(current).view(kv_shape).transpose(1, 2)
        value = self.v(current).view(kv_shape).transpose(1, 2)
        if position_bias is None:
            k_length = key.shape[-2]
            if not self.has_bias:
                shape = (1, self.n_heads, input_shape[1], k_length)
                position_bias = torch.zeros(shape, device=query.device, dtype=query.dtype)
            else:
                position_bias = self.compute_bias(input_shape[1], k_length, query.device)
        dropout = self.dropout if self.training else 0.0
        if self.config._attn_implementation == "eager":
            weights = torch.matmul(query, key.transpose(2, 3)) * 1.0  # T5 does not scale q.k
            weights = weights + position_bias
            if mask is not None:
                weights = weights + mask
            weights = F.softmax(weights, dim=-1)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, value).transpose(1, 2).contiguous()
        else:
            q_length = query.shape[2]
            causal = q_length > 1 and mask is None and self.is_causal
            attn_mask = _position_bias_mask(position_bias, causal, query, key)
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout, scale=1.0, is_causal=False
            )
            out = out.reshape(out.shape[0], -1, q_length, value.shape[-1]).transpose(1, 2).contiguous()
        out = out.reshape(*input_shape, -1).contiguous()
        return self.o(out), position_bias


class SelfAttentionLayer(nn.Module):
    def __init__(self, shape: T5Shape, config: SimpleNamespace, decoder: bool, bias: bool) -> None:
        super().__init__()
        self.SelfAttention = Attention(shape, config, decoder, causal=decoder, bias=bias)
        self.layer_norm = LayerNorm(shape.d_model, shape.layer_norm_epsilon)
        self.dropout = nn.Dropout(shape.dropout_rate)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, position_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, position_bias = self.SelfAttention(self.layer_norm(hidden), mask, position_bias=position_bias)
        return hidden + self.dropout(out), position_bias


class CrossAttentionLayer(nn.Module):
    def __init__(self, shape: T5Shape, config: SimpleNamespace) -> None:
        super().__init__()
        self.EncDecAttention = Attention(shape, config, decoder=True, causal=False, bias=False)
        self.layer_norm = LayerNorm(shape.d_model, shape.layer_norm_epsilon)
        self.dropout = nn.Dropout(shape.dropout_rate)

    def forward(
        self, hidden: torch.Tensor, states: torch.Tensor, position_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, position_bias = self.EncDecAttention(self.layer_norm(hidden), None, states, position_bias)
        return hidden + self.dropout(out), position_bias


class DenseActDense(nn.Module):
    """T5DenseActDense, or T5DenseGatedActDense (`gated`: wi_0 activated times wi_1)."""

    def __init__(self, shape: T5Shape) -> None:
        super().__init__()
        self.gated = bool(shape.is_gated_act)
        if self.gated:
            self.wi_0 = nn.Linear(shape.d_model, shape.d_ff, bias=False)
            self.wi_1 = nn.Linear(shape.d_model, shape.d_ff, bias=False)
        else:
            self.wi = nn.Linear(shape.d_model, shape.d_ff, bias=False)
        self.wo = nn.Linear(shape.d_ff, shape.d_model, bias=False)
        self.dropout = nn.Dropout(shape.dropout_rate)
        self.act = ACTIVATIONS[shape.dense_act_fn]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.gated:
            hidden = self.act(self.wi_0(hidden)) * self.wi_1(hidden)
        else:
            hidden = self.act(self.wi(hidden))
        hidden = self.dropout(hidden)
        if hidden.dtype != self.wo.weight.dtype and self.wo.weight.dtype != torch.int8:
            hidden = hidden.to(self.wo.weight.dtype)  # wo is kept in fp32 under autocast
        return self.wo(hidden)


class FeedForwardLayer(nn.Module):
    def __init__(self, shape: T5Shape) -> None:
        super().__init__()
        self.DenseReluDense = DenseActDense(shape)
        self.layer_norm = LayerNorm(shape.d_model, shape.layer_norm_epsilon)
        self.dropout = nn.Dropout(shape.dropout_rate)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.dropout(self.DenseReluDense(self.layer_norm(hidden)))


def _clamp_fp16(hidden: torch.Tensor) -> torch.Tensor:
    """T5Block's overflow guard for fp16 hidden states."""
    if hidden.dtype != torch.float16:
        return hidden
    top = torch.finfo(hidden.dtype).max
    clamp_value = torch.where(torch.isinf(hidden).any(), top - 1000, top)
    return torch.clamp(hidden, min=-clamp_value, max=clamp_value)


class Block(nn.Module):
    def __init__(self, shape: T5Shape, config: SimpleNamespace, decoder: bool, bias: bool) -> None:
        super().__init__()
        self.is_decoder = decoder
        self.layer = nn.ModuleList([SelfAttentionLayer(shape, config, decoder, bias)])
        if decoder:
            self.layer.append(CrossAttentionLayer(shape, config))
        self.layer.append(FeedForwardLayer(shape))

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        position_bias: torch.Tensor | None,
        states: torch.Tensor | None,
        cross_bias: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        hidden, position_bias = self.layer[0](hidden, mask, position_bias)
        hidden = _clamp_fp16(hidden)
        if self.is_decoder and states is not None:
            hidden, cross_bias = self.layer[1](hidden, states, cross_bias)
            hidden = _clamp_fp16(hidden)
        else:
            cross_bias = None
        return _clamp_fp16(self.layer[-1](hidden)), position_bias, cross_bias


class Stack(nn.Module):
    def __init__(self, shape: T5Shape, config: SimpleNamespace, embed: nn.Embedding, decoder: bool) -> None:
        super().__init__()
        self.embed_tokens = embed
        self.is_decoder = decoder
        self.config = config
        layers = shape.decoder_layers if decoder else shape.num_layers
        self.block = nn.ModuleList([Block(shape, config, decoder, bias=i == 0) for i in range(layers)])
        self.final_layer_norm = LayerNorm(shape.d_model, shape.layer_norm_epsilon)
        self.dropout = nn.Dropout(shape.dropout_rate)

    def forward(self, input_ids: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)
        mask = None  # bidirectional without padding: skipped; causal: sdpa's position-bias mask does it
        if self.is_decoder and self.config._attn_implementation == "eager":
            batch, length = embeds.shape[:2]
            mask = causal_float_mask(batch, length, embeds.dtype, embeds.device)
        position_bias = cross_bias = None
        hidden = self.dropout(embeds)
        for block in self.block:
            hidden, position_bias, cross = block(hidden, mask, position_bias, states, cross_bias)
            if self.is_decoder and states is not None:
                cross_bias = cross
        return self.dropout(self.final_layer_norm(hidden))


class T5LM(NativeModel):
    """T5ForConditionalGeneration's forward (no key/value cache, no attention masks): `.loss`, `.logits`."""

    def __init__(self, shape: T5Shape) -> None:
        super().__init__()
        self.shape = shape
        self.config = hf_config("t5", shape.n_positions, shape.d_model, shape.num_layers, shape.num_heads)
        self.config.is_encoder_decoder = True
        self.shared = nn.Embedding(shape.vocab_size, shape.d_model)
        self.encoder = Stack(shape, self.config, self.shared, decoder=False)
        self.decoder = Stack(shape, self.config, self.shared, decoder=True)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        self.lm_head.weight = self.shared.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool = False,
    ) -> SimpleNamespace:
        del use_cache  # no cache is ever built here (transformers builds none when it is False)
        if decoder_input_ids is None:  # opgraph always passes them (transformers would shift the labels)
            raise ValueError("the native T5 needs decoder_input_ids")
        states = self.encoder(input_ids)
        decoded = self.decoder(decoder_input_ids, states)  # held to the end, as transformers' output holds it
        out = decoded * (self.shape.d_model**-0.5) if self.shape.scale_decoder_outputs else decoded
        logits = self.lm_head(out)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=IGNORE_INDEX
            )
        # transformers' output holds the encoder's states too: they live as long as the output does
        return SimpleNamespace(loss=loss, logits=logits, encoder_last_hidden_state=states)
