"""transformers' BertForMaskedLM and (encoder-only) BertLMHeadModel rebuilt natively (see `native_hf`):
word, position and token-type embeddings (the token types gathered from the zero buffer), post-norm
layers with sdpa or eager attention (no mask: a bidirectional mask without padding is skipped), the
MLM head with its decoder tied to the word embedding and its bias, and either head's loss.
Not rebuilt (transformers builds them): decoders (`is_decoder`), cross-attention, other heads and
position-embedding types, chunked feed-forward, activations outside `native_hf.ACTIVATIONS`."""

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
    positive_ints,
    sdpa,
    split_heads,
)

ARCHITECTURES = ("BertForMaskedLM", "BertLMHeadModel")
_UNSUPPORTED_TRUE = ("is_decoder", "add_cross_attention", "is_encoder_decoder", "chunk_size_feed_forward")


@dataclass(frozen=True)
class BertShape:
    """The config fields the model reads, with BertConfig's defaults."""

    architecture: str = "BertForMaskedLM"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True


def shape_of(raw: dict[str, Any]) -> BertShape | None:
    """The BERT shape of a config.json's dict, or None where this module does not rebuild it."""
    architecture = (raw.get("architectures") or ARCHITECTURES)[0]
    if raw.get("model_type") != "bert" or architecture not in ARCHITECTURES:
        return None
    if any(raw.get(name) for name in _UNSUPPORTED_TRUE):
        return None
    if raw.get("position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    shape = BertShape(architecture=architecture, **fields_of(raw, BertShape, {}))
    sizes = (shape.vocab_size, shape.hidden_size, shape.num_hidden_layers, shape.num_attention_heads,
             shape.intermediate_size, shape.max_position_embeddings, shape.type_vocab_size)  # fmt: skip
    if not positive_ints(*sizes) or shape.hidden_size % shape.num_attention_heads:
        return None
    return shape if shape.hidden_act in ACTIVATIONS else None


def build(shape: BertShape) -> BertLM:
    return BertLM(shape)


class Embeddings(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            shape.vocab_size, shape.hidden_size, padding_idx=shape.pad_token_id
        )
        self.position_embeddings = nn.Embedding(shape.max_position_embeddings, shape.hidden_size)
        self.token_type_embeddings = nn.Embedding(shape.type_vocab_size, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)
        positions = torch.arange(shape.max_position_embeddings).expand((1, -1))
        self.register_buffer("position_ids", positions, persistent=False)
        self.register_buffer(
            "token_type_ids", torch.zeros(positions.size(), dtype=torch.long), persistent=False
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        batch, length = input_ids.size()
        position_ids = self.position_ids[:, 0:length]
        token_types = self.token_type_ids.expand(position_ids.shape[0], -1)
        token_types = torch.gather(token_types, dim=1, index=position_ids).expand(batch, length)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_types)
        embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class Layer(nn.Module):
    def __init__(self, shape: BertShape, config: SimpleNamespace) -> None:
        super().__init__()
        size = shape.hidden_size
        self.config = config  # read at every call, as transformers reads its config's attention choice
        self.head_dim = size // shape.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.query, self.key, self.value = (nn.Linear(size, size) for _ in range(3))
        self.attn_dropout = nn.Dropout(shape.attention_probs_dropout_prob)
        self.attn_out = nn.Linear(size, size)
        self.attn_norm = nn.LayerNorm(size, eps=shape.layer_norm_eps)
        self.intermediate = nn.Linear(size, shape.intermediate_size)
        self.act = ACTIVATIONS[shape.hidden_act]
        self.output = nn.Linear(shape.intermediate_size, size)
        self.out_norm = nn.LayerNorm(size, eps=shape.layer_norm_eps)
        self.dropout = nn.Dropout(shape.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(hidden), self.head_dim) for proj in (self.query, self.key, self.value))
        dropout = self.attn_dropout.p if self.training else 0.0
        if self.config._attn_implementation == "eager":
            weights = F.softmax(torch.matmul(q, k.transpose(2, 3)) * self.scaling, dim=-1)
            weights = F.dropout(weights, p=dropout, training=self.training)
            out = torch.matmul(weights, v).transpose(1, 2).contiguous()
        else:
            out = sdpa(q, k, v, dropout, self.scaling, causal=False)
        out = out.reshape(*hidden.shape[:-1], -1).contiguous()
        attended = self.attn_norm(self.dropout(self.attn_out(out)) + hidden)
        mlp = self.dropout(self.output(self.act(self.intermediate(attended))))
        return self.out_norm(mlp + attended)


class BertLM(NativeModel):
    """BertForMaskedLM / BertLMHeadModel's forward without a mask or cache: `.loss`, `.logits`."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.shape = shape
        self.config = hf_config(
            "bert",
            shape.max_position_embeddings,
            shape.hidden_size,
            shape.num_hidden_layers,
            shape.num_attention_heads,
        )
        self.embeddings = Embeddings(shape)
        self.layer = nn.ModuleList([Layer(shape, self.config) for _ in range(shape.num_hidden_layers)])
        self.transform = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.act = ACTIVATIONS[shape.hidden_act]
        self.transform_norm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)
        self.decoder = nn.Linear(shape.hidden_size, shape.vocab_size)
        if shape.tie_word_embeddings:
            self.decoder.weight = self.embeddings.word_embeddings.weight
        else:  # transformers then unties the head's own bias from the decoder's too: it stays, unused
            self.bias = nn.Parameter(torch.zeros(shape.vocab_size))

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, use_cache: bool = False
    ) -> SimpleNamespace:
        del use_cache  # an encoder keeps no cache
        hidden = self.embeddings(input_ids)
        for layer in self.layer:
            hidden = layer(hidden)
        logits = self.decoder(self.transform_norm(self.act(self.transform(hidden))))
        loss = None
        if labels is not None:
            vocab = self.shape.vocab_size
            if self.shape.architecture == "BertLMHeadModel":
                loss = causal_lm_loss(logits, labels, vocab)
            else:
                loss = F.cross_entropy(logits.view(-1, vocab), labels.view(-1))
        return SimpleNamespace(loss=loss, logits=logits)
