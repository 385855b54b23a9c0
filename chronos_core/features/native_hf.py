"""Hugging Face models rebuilt from a config.json without importing `transformers`.

Importing transformers' model classes takes 2-4 s on a cold process (they pull in torch._dynamo,
torch.distributed.tensor and scipy), several times what tracing a large model's training step takes.
The modules here (`native_gpt2`, `native_bert`, `native_opt`, `native_llama` with Qwen2 and Mistral,
`native_t5`)
rebuild transformers' own classes op for op: the same aten calls in the same order, the same
parameters and buffers (tied weights included) and the same autograd graph, so a trace of them is the
trace of transformers' model row for row.
`tests/test_native_hf.py` checks that against the pinned transformers on every precision, attention
implementation and mode.

`build(raw, attn)` returns the module on the meta device, or None where no native module rebuilds
the config (another architecture, or options a native module does not copy); the caller then builds
transformers' own class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # transformers' losses


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


# transformers' ACT2FN entries that are one plain function (the kernels they launch are the same)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": _gelu_new,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


class NativeModel(nn.Module):
    """A native twin of a transformers model: `config` holds what opgraph reads off an HF model's
    config (sequence-length cap, tensor-parallel shape, `_attn_implementation`, read at every call)."""

    config: SimpleNamespace


def hf_config(model_type: str, positions: int, hidden: int, layers: int, heads: int) -> SimpleNamespace:
    """The config namespace of a native model, under transformers' canonical names (the ones opgraph
    reads first): no encoder-decoder, attention sdpa until the builder sets it."""
    return SimpleNamespace(
        model_type=model_type, max_position_embeddings=positions, hidden_size=hidden,
        num_hidden_layers=layers, num_attention_heads=heads, is_encoder_decoder=False,
        _attn_implementation="sdpa",
    )  # fmt: skip


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim] (a view, as transformers does)."""
    return x.view((*x.shape[:-1], -1, head_dim)).transpose(1, 2)


def sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout: float,
    scale: float,
    causal: bool,
    grouped: bool = False,
) -> torch.Tensor:
    """transformers' sdpa_attention_forward without a mask: [batch, seq, heads, head_dim] out.
    `grouped`: fewer key/value heads than query heads, passed as sdpa's `enable_gqa` (as transformers
    does; the flag is left out otherwise)."""
    q_length = query.shape[2]
    gqa = {"enable_gqa": True} if grouped else {}
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=None, dropout_p=dropout, scale=scale, is_causal=q_length > 1 and causal,
        **gqa,
    )  # fmt: skip
    return out.reshape(out.shape[0], -1, q_length, value.shape[-1]).transpose(1, 2).contiguous()


def causal_float_mask(batch: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """transformers' eager causal mask without padding or cache (masking_utils' sdpa_mask, then
    eager_mask): index ranges, `kv <= q`, and 0 / the dtype's minimum, [batch, 1, length, length]."""
    torch.arange(batch, device=device)  # batch and head indices: built, unused by the causal pattern
    torch.arange(1, device=device)
    q_idx = (torch.arange(length, device=device) + 0)[None, None, :, None]
    kv_idx = (torch.arange(length, device=device) + 0)[None, None, None, :]
    allowed = (kv_idx <= q_idx).expand(batch, -1, length, length)
    return torch.where(allowed, torch.zeros((), device=device, dtype=dtype), torch.finfo(dtype).min)


def packed_checked_causal_mask(
    positions: torch.Tensor, batch: int, length: int, dtype: torch.dtype, eager: bool
) -> torch.Tensor | None:
    """transformers' create_causal_mask given position ids, without a padding mask or cache: the
    packed-sequence check on the position ids, then None for sdpa (its is_causal flag does it) or
    eager's float mask."""
    positions = positions.expand(batch, -1)
    first = positions[:, :1] - 1
    packed = (torch.diff(positions, prepend=first, dim=-1) != 1).cumsum(-1)
    (packed[:, -1] == 0).all()  # its `if` reads this on the host; meta answers "not packed"
    return causal_float_mask(batch, length, dtype, positions.device) if eager else None


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab: int) -> torch.Tensor:
    """transformers' ForCausalLMLoss: labels shifted left by padding with the ignore index, mean CE."""
    logits = logits.float()
    shifted = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].contiguous()
    return F.cross_entropy(logits.view(-1, vocab), shifted.view(-1), ignore_index=IGNORE_INDEX)


def fields_of(raw: dict[str, Any], defaults: type, aliases: dict[str, str]) -> dict[str, Any]:
    """The config.json values of a dataclass's fields, under their canonical names."""
    renamed = {aliases.get(k, k): v for k, v in raw.items()}
    return {k: renamed[k] for k in defaults.__dataclass_fields__ if k in renamed}


def positive_ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def build(raw: dict[str, Any], attn: str) -> NativeModel | None:
    """The native twin of a config.json's model on the meta device, or None (see the module docs)."""
    from chronos_core.features import native_bert, native_gpt2, native_llama, native_opt, native_t5

    for module in (native_gpt2, native_bert, native_opt, native_llama, native_t5):
        shape = module.shape_of(raw)
        if shape is not None:
            with torch.device("meta"):
                model = module.build(shape)
            model.config._attn_implementation = attn
            return model
    return None
