"""transformers' LlamaForCausalLM rebuilt natively (see `native_hf`), and the same model under two
other names: Qwen2ForCausalLM (biased q/k/v projections) and MistralForCausalLM (without its sliding
window). RMSNorm in fp32, rotary position embeddings (default, linear or Llama-3 frequencies: they
differ only in the buffer's values), grouped key/value heads (sdpa's `enable_gqa`, or eager's
repeat_kv), the gated MLP, the packed-sequence check and causal mask of transformers' masking
utilities, the shifted causal-LM loss.
Not rebuilt (transformers builds them): dynamic, YaRN and other rotary types, Qwen2's sliding-window
layers, Mistral with a sliding window (its default), other heads, activations outside
`native_hf.ACTIVATIONS`."""

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

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
# their configs' defaults where they differ from LlamaConfig's (neither has bias switches)
DEFAULTS = {
    "qwen2": {"vocab_size": 151936, "intermediate_size": 22016, "num_key_value_heads": 32,
              "max_position_embeddings": 32768},
    "mistral": {"intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072},
}  # fmt: skip
DEFAULT_MISTRAL_WINDOW = 4096
ROPE_TYPES = ("default", "linear", "llama3")  # computed once at build: the same kernels at every step


@dataclass(frozen=True)
class LlamaShape:
    """The config fields the model reads, with LlamaConfig's defaults."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    max_position_embeddings: int = 2048
    qwen2: bool = False  # q/k/v projections with bias, the output and MLP ones without
    model_type: str = "llama"

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads if self.num_key_value_heads is not None else self.num_attention_heads

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


def shape_of(raw: dict[str, Any]) -> LlamaShape | None:
    """The Llama shape of a config.json's dict, or None where this module does not rebuild it."""
    kind = raw.get("model_type")
    if (
        kind not in ARCHITECTURES
        or (raw.get("architectures") or [ARCHITECTURES[kind]])[0] != ARCHITECTURES[kind]
    ):
        return None
    if kind == "qwen2" and (
        raw.get("use_sliding_window") or set(raw.get("layer_types") or []) - {"full_attention"}
    ):
        return None
    if kind == "mistral" and raw.get("sliding_window", DEFAULT_MISTRAL_WINDOW) is not None:
        return None  # a sliding window changes the mask whenever the sequence reaches it
    for rope in (raw.get("rope_scaling"), raw.get("rope_parameters")):
        if isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) not in ROPE_TYPES:
            return None
    fields = fields_of(raw, LlamaShape, {})
    if kind in DEFAULTS:
        fields = {**DEFAULTS[kind], **fields, "attention_bias": False, "mlp_bias": False}
        fields.update(qwen2=kind == "qwen2", model_type=kind)
    shape = LlamaShape(**fields)
    sizes = (shape.vocab_size, shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers,
             shape.num_attention_heads, shape.kv_heads, shape.dim)  # fmt: skip
    if not positive_ints(*sizes) or shape.num_attention_heads % shape.kv_heads or shape.dim > 256:
        return None  # (head dims over 256: transformers would repeat the heads for sdpa instead)
    return shape if shape.hidden_act in ACTIVATIONS else None


def build(shape: LlamaShape) -> LlamaLM:
    return LlamaLM(shape)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.eps)
        return self.weight * hidden.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]  # sliced in this order, as autograd then replays it
    return torch.cat((-second, first), dim=-1)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, heads, length, dim = x.shape
    if n_rep == 1:
        return x
    return (
        x[:, :, None, :, :]
        .expand(batch, heads, n_rep, length, dim)
        .reshape(batch, heads * n_rep, length, dim)
    )


class Layer(nn.Module):
    def __init__(self, shape: LlamaShape, config: SimpleNamespace) -> None:
        super().__init__()
        size, heads, dim = shape.hidden_size, shape.num_attention_heads, shape.dim
        self.config = config  # read at every call, as transformers reads its config's attention choice
        self.shape, self.groups, self.scaling = shape, heads // shape.kv_heads, dim**-0.5
        qkv_bias = shape.attention_bias or shape.qwen2
        self.q_proj = nn.Linear(size, heads * dim, bias=qkv_bias)
        self.k_proj = nn.Linear(size, shape.kv_heads * dim, bias=qkv_bias)
        self.v_proj = nn.Linear(size, shape.kv_heads * dim, bias=qkv_bias)
        self.o_proj = nn.Linear(heads * dim, size, bias=shape.attention_bias)
        mlp_bias = shape.mlp_bias
        self.gate_proj = nn.Linear(size, shape.intermediate_size, bias=mlp_bias)
        self.up_proj = nn.Linear(size, shape.intermediate_size, bias=mlp_bias)
        self.down_proj = nn.Linear(shape.intermediate_size, size, bias=mlp_bias)
        self.act = ACTIVATIONS[shape.hidden_act]
        self.input_layernorm = RMSNorm(size, shape.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(size, shape.rms_norm_eps)

    def _attention(
        self, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        input_shape = hidden.shape[:-1]
        query, key, value = (
            split_heads(p(hidden), self.shape.dim) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        cos, sin = (t.unsqueeze(1) for t in rotary)
        query = (query * cos) + (_rotate_half(query) * sin)
        key = (key * cos) + (_rotate_half(key) * sin)
        dropout = self.shape.attention_dropout if self.training else 0.0
        if self.config._attn_implementation == "eager":
            key, value = _repeat_kv(key, self.groups), _repeat_kv(value, self.groups)
            weights = torch.matmul(query, key.transpose(2, 3)) * self.scaling
            if mask is not None:
                weights = weights + mask
            weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, value).transpose(1, 2).contiguous()
        else:  # grouped heads handled by sdpa itself
            out = sdpa(query, key, value, dropout, self.scaling, causal=True, grouped=self.groups > 1)
        return self.o_proj(out.reshape(*input_shape, -1).contiguous())

    def forward(
        self, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden = hidden + self._attention(self.input_layernorm(hidden), rotary, mask)
        normed = self.post_attention_layernorm(hidden)
        return hidden + self.down_proj(self.act(self.gate_proj(normed)) * self.up_proj(normed))


class LlamaLM(NativeModel):
    """LlamaForCausalLM's (Qwen2ForCausalLM's) forward without a key/value cache or attention mask:
    `.loss`, `.logits`."""

    def __init__(self, shape: LlamaShape) -> None:
        super().__init__()
        self.shape = shape
        self.config = hf_config(
            shape.model_type,
            shape.max_position_embeddings,
            shape.hidden_size,
            shape.num_hidden_layers,
            shape.num_attention_heads,
        )
        self.embed_tokens = nn.Embedding(shape.vocab_size, shape.hidden_size, shape.pad_token_id)
        self.layers = nn.ModuleList([Layer(shape, self.config) for _ in range(shape.num_hidden_layers)])
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        inv_freq = torch.empty(len(range(0, shape.dim, 2)), dtype=torch.float32)  # values never matter here
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _rotary(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * 1.0).to(dtype=x.dtype), (emb.sin() * 1.0).to(dtype=x.dtype)

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, use_cache: bool = False
    ) -> SimpleNamespace:
        del use_cache  # no cache is ever built here (transformers builds none when it is False)
        hidden = self.embed_tokens(input_ids)
        batch, length = hidden.shape[0], hidden.shape[1]
        positions = (torch.arange(length, device=hidden.device) + 0).unsqueeze(0)
        eager = self.config._attn_implementation == "eager"
        mask = packed_checked_causal_mask(positions, batch, length, hidden.dtype, eager)
        rotary = self._rotary(hidden, positions)
        for layer in self.layers:
            hidden = layer(hidden, rotary, mask)
        logits = self.lm_head(self.norm(hidden))
        loss = None if labels is None else causal_lm_loss(logits, labels, self.shape.vocab_size)
        return SimpleNamespace(loss=loss, logits=logits)
