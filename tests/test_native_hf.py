"""The native Hugging Face models (chronos_core.features.native_hf) trace exactly like transformers'."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chronos_core.errors import ChronosError
from chronos_core.features import (
    memory,
    native_bert,
    native_gpt2,
    native_hf,
    native_llama,
    native_opt,
    native_t5,
)
from chronos_core.features import opgraph as og

DROP = object()  # a change that removes the key (None writes JSON null)
FAMILIES = {
    "gpt2": ("gpt2", {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "n_positions": 32}),
    "bert": (
        "bert-base-uncased",
        {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
         "vocab_size": 100, "max_position_embeddings": 32},
    ),
    "opt": (
        "opt-125m",
        {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "ffn_dim": 128,
         "vocab_size": 100, "max_position_embeddings": 32, "word_embed_proj_dim": 64},
    ),
    "llama": (
        "llama-3.2-1b",
        {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 32},
    ),
    "qwen2": (  # no Qwen2 config is shipped: the tiny Llama as a Qwen2
        "llama-3.2-1b",
        {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "rope_scaling": None,
         "attention_bias": DROP, "mlp_bias": DROP, "use_sliding_window": False, "num_hidden_layers": 2,
         "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 32},
    ),
    "mistral": (  # nor a Mistral one: the tiny Llama as a Mistral without a sliding window
        "llama-3.2-1b",
        {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "rope_scaling": None,
         "attention_bias": DROP, "mlp_bias": DROP, "sliding_window": None, "num_hidden_layers": 2,
         "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 32},
    ),
    "t5": (
        "t5-small",
        {"num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "d_kv": 16, "num_heads": 4, "d_ff": 128,
         "vocab_size": 100, "n_positions": 32},
    ),
}  # fmt: skip
VARIANTS = [
    ("gpt2", {"tie_word_embeddings": False}),
    ("gpt2", {"n_inner": 96}),
    ("gpt2", {"activation_function": "gelu"}),
    ("gpt2", {"activation_function": "relu"}),
    ("gpt2", {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}),
    ("gpt2", {"hidden_size": 96, "num_attention_heads": 3, "n_embd": DROP, "n_head": DROP}),
    ("gpt2", {"architectures": DROP}),
    ("bert", {"architectures": ["BertLMHeadModel"]}),
    ("bert", {"tie_word_embeddings": False}),
    ("bert", {"hidden_act": "gelu_new", "pad_token_id": None}),
    ("bert", {"type_vocab_size": 1, "hidden_dropout_prob": 0.0}),
    ("bert", {"architectures": DROP}),
    ("opt", {"do_layer_norm_before": False, "word_embed_proj_dim": 32}),  # OPT-350M's layout
    ("opt", {"tie_word_embeddings": False, "attention_dropout": 0.1}),
    ("opt", {"enable_bias": False, "layer_norm_elementwise_affine": False}),
    ("opt", {"activation_function": "gelu", "word_embed_proj_dim": DROP}),
    ("llama", {"num_key_value_heads": 4}),
    ("llama", {"rope_scaling": None, "tie_word_embeddings": False}),  # TinyLlama's layout
    ("llama", {"num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True, "attention_dropout": 0.1}),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "pad_token_id": 0}),
    ("qwen2", {"tie_word_embeddings": False, "num_key_value_heads": 4, "attention_bias": True}),
    ("qwen2", {"layer_types": ["full_attention", "full_attention"], "sliding_window": 8}),
    ("mistral", {"tie_word_embeddings": True, "num_key_value_heads": 4, "head_dim": DROP}),
    ("t5", {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}),  # T5 v1.1 / Flan-T5
    ("t5", {"num_decoder_layers": 3, "dropout_rate": 0.0}),
    ("t5", {"d_kv": 8, "feed_forward_proj": "gated-silu"}),
    ("t5", {"architectures": DROP, "n_positions": DROP}),
    ("t5", {"hidden_size": 48, "d_model": DROP, "num_attention_heads": 2, "num_heads": DROP}),
    ("t5", {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 16}),
    # fields T5Config derives, given in the config.json (Flan-T5's carry them): the given value wins
    ("t5", {"dense_act_fn": "gelu_new", "is_gated_act": True}),
    ("t5", {"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": False}),
    ("t5", {"scale_decoder_outputs": False}),
]
NOT_REBUILT = [
    ("gpt2", {"add_cross_attention": True}),
    ("gpt2", {"pad_token_id": 0}),
    ("gpt2", {"reorder_and_upcast_attn": True}),
    ("gpt2", {"activation_function": "quick_gelu"}),
    ("gpt2", {"architectures": ["GPT2ForSequenceClassification"]}),
    ("bert", {"is_decoder": True}),
    ("bert", {"position_embedding_type": "relative_key"}),
    ("bert", {"chunk_size_feed_forward": 8}),
    ("bert", {"architectures": ["BertForSequenceClassification"]}),
    ("opt", {"layerdrop": 0.1}),
    ("opt", {"activation_function": "quick_gelu"}),
    ("opt", {"architectures": ["OPTForSequenceClassification"]}),
    ("llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}),
    ("llama", {"hidden_act": "quick_gelu"}),
    ("llama", {"architectures": ["LlamaForSequenceClassification"]}),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}),
    ("qwen2", {"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 8}),
    ("mistral", {"sliding_window": 8}),
    ("mistral", {"sliding_window": DROP}),  # MistralConfig's default window, 4096
    ("t5", {"architectures": ["T5EncoderModel"]}),
    ("t5", {"architectures": ["T5ForSequenceClassification"]}),
    ("t5", {"feed_forward_proj": "quick_gelu"}),
]
NATIVE_CLASSES = {
    "gpt2": native_gpt2.GPT2LMHead,
    "bert": native_bert.BertLM,
    "opt": native_opt.OPTLM,
    "llama": native_llama.LlamaLM,
    "qwen2": native_llama.LlamaLM,
    "mistral": native_llama.LlamaLM,
    "t5": native_t5.T5LM,
}


def _config(tmp_path: Path, family: str, **changes: object) -> Path:
    shipped, tiny = FAMILIES[family]
    raw = json.loads((og.HF_CONFIG_DIR / f"{shipped}.json").read_text())
    raw.update(tiny)
    raw.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in raw.items() if v is not DROP}))
    return path


def _trace(path: Path, builder, precision: str, attn: str, mode: str, optimizer: str, seq: int):  # noqa: ANN001, ANN202
    train = mode == "train"
    step = og.build_step(
        str(path), batch_size=2, seq_len=seq, attn_implementation=attn, train=train, build_hf=builder
    )
    return og._run_step(step, precision, optimizer if train else "none", mode, attn)


@pytest.mark.parametrize(
    ("family", "precision", "attn"), itertools.product(FAMILIES, og.PRECISIONS, og.ATTN_IMPLEMENTATIONS)
)
def test_every_row_matches_transformers(tmp_path: Path, family: str, precision: str, attn: str) -> None:
    path = _config(tmp_path, family)
    assert isinstance(og._build_hf(path, attn), NATIVE_CLASSES[family])
    for mode, optimizer, seq in [("train", "adamw", 16), ("train", "sgd", 1), ("inference", "none", 16)]:
        ours = _trace(path, og._build_hf, precision, attn, mode, optimizer, seq)
        theirs = _trace(path, og._build_transformers, precision, attn, mode, optimizer, seq)
        assert len(ours) > 20
        assert ours.equals(theirs), (mode, optimizer, seq)
        assert ours.attrs == theirs.attrs


@pytest.mark.parametrize(("family", "changes"), VARIANTS)
def test_config_variants_match_transformers(tmp_path: Path, family: str, changes: dict) -> None:
    path = _config(tmp_path, family, **changes)
    assert isinstance(og._build_hf(path, "sdpa"), NATIVE_CLASSES[family])
    for precision, attn in [("fp32", "eager"), ("amp", "sdpa")]:
        ours = _trace(path, og._build_hf, precision, attn, "train", "adamw", 8)
        theirs = _trace(path, og._build_transformers, precision, attn, "train", "adamw", 8)
        assert ours.equals(theirs), (precision, attn)
        assert ours.attrs == theirs.attrs


@pytest.mark.parametrize(("family", "recipe"), itertools.product(FAMILIES, ["autocast", "pure"]))
def test_memory_estimate_matches_transformers(tmp_path: Path, family: str, recipe: str) -> None:
    path = _config(tmp_path, family)
    estimates = []
    for builder in (og._build_hf, og._build_transformers):
        step = og.build_step(str(path), batch_size=2, seq_len=16, build_hf=builder)
        estimates.append(memory._simulate(step, family, 2, "bf16", "adamw", "train", "sdpa", recipe, 512))
    assert estimates[0] == estimates[1]
    assert estimates[0].peak_bytes > 0


@pytest.mark.parametrize(("family", "changes"), NOT_REBUILT)
def test_what_it_does_not_rebuild_goes_to_transformers(tmp_path: Path, family: str, changes: dict) -> None:
    path = _config(tmp_path, family, **changes)
    assert native_hf.build(json.loads(path.read_text()), "sdpa") is None
    assert not isinstance(og._build_hf(path, "sdpa"), native_hf.NativeModel)


def test_every_shipped_config_is_native() -> None:
    for name in og.shipped_hf_configs():
        raw = json.loads((og.HF_CONFIG_DIR / f"{name}.json").read_text())
        assert native_hf.build(raw, "sdpa") is not None, name


def test_a_built_module_follows_the_attention_asked_for_at_trace_time(tmp_path: Path) -> None:
    for family in FAMILIES:
        path = _config(tmp_path, family)
        module = og._build_hf(path, "sdpa")
        for attn in og.ATTN_IMPLEMENTATIONS:
            as_module = og.trace_step(module, batch_size=2, seq_len=16, attn_implementation=attn)
            named = og.trace_step(str(path), batch_size=2, seq_len=16, attn_implementation=attn)
            assert as_module.equals(named), (family, attn)
        assert module.config._attn_implementation == "sdpa"  # restored after tracing
        og.clear_cache()


def test_tracing_a_native_model_does_not_import_transformers(tmp_path: Path) -> None:
    code = (
        "import sys; from chronos_core.features import opgraph as og; "
        "names = ('hf:gpt2', 'hf:bert-base-uncased', 'hf:opt-125m', 'hf:tinyllama-1.1b', 'hf:t5-small'); "
        "rows = [len(og.trace_step(m, batch_size=1, seq_len=8)) for m in names]; "
        "print(min(rows), 'transformers' in sys.modules)"
    )
    env = {"CHRONOS_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    rows, imported = out.stdout.split()
    assert int(rows) > 100
    assert imported == "False"


@pytest.mark.parametrize("family", ["opt", "gpt2"])
def test_a_config_no_builder_can_build_gets_a_one_line_error(tmp_path: Path, family: str) -> None:
    changes = {"pad_token_id": 500} if family == "opt" else {"n_head": 5}  # native, then transformers
    path = _config(tmp_path, family, **changes)
    with pytest.raises(ChronosError, match=r"cannot be built: .*") as caught:
        og.trace_step(str(path), batch_size=1, seq_len=8)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
