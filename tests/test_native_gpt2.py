"""The native GPT-2 (chronos_core.features.native_gpt2) traces exactly like transformers' GPT-2."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chronos_core.features import memory, native_gpt2
from chronos_core.features import opgraph as og

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "n_positions": 32, "n_ctx": 32}
VARIANTS = {
    "shipped": {},
    "untied head": {"tie_word_embeddings": False},
    "n_inner": {"n_inner": 96},
    "gelu": {"activation_function": "gelu"},
    "relu": {"activation_function": "relu"},
    "no dropout": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "layer-scaled attention": {"scale_attn_by_inverse_layer_idx": True},
    "alias names": {"hidden_size": 96, "num_attention_heads": 3, "n_embd": None, "n_head": None},
}


def _config(tmp_path: Path, **changes: object) -> Path:
    raw = json.loads((og.HF_CONFIG_DIR / "gpt2.json").read_text())
    raw.update(TINY)
    raw.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in raw.items() if v is not None}))
    return path


def _trace(path: Path, builder, precision: str, attn: str, mode: str, optimizer: str, seq: int):  # noqa: ANN001, ANN202
    train = mode == "train"
    step = og.build_step(
        str(path), batch_size=2, seq_len=seq, attn_implementation=attn, train=train, build_hf=builder
    )
    return og._run_step(step, precision, optimizer if mode == "train" else "none", mode, attn)


@pytest.mark.parametrize(("precision", "attn"), itertools.product(og.PRECISIONS, og.ATTN_IMPLEMENTATIONS))
def test_every_row_matches_transformers(tmp_path: Path, precision: str, attn: str) -> None:
    path = _config(tmp_path)
    assert isinstance(og._build_hf(path, attn), native_gpt2.GPT2LMHead)
    for mode, optimizer, seq in [("train", "adamw", 16), ("train", "sgd", 1), ("inference", "none", 16)]:
        ours = _trace(path, og._build_hf, precision, attn, mode, optimizer, seq)
        theirs = _trace(path, og._build_transformers, precision, attn, mode, optimizer, seq)
        assert len(ours) > 20
        assert ours.equals(theirs), (mode, optimizer, seq)
        assert ours.attrs == theirs.attrs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_variants_match_transformers(tmp_path: Path, variant: str) -> None:
    path = _config(tmp_path, **VARIANTS[variant])
    for precision, attn in [("fp32", "eager"), ("amp", "sdpa")]:
        ours = _trace(path, og._build_hf, precision, attn, "train", "adamw", 8)
        theirs = _trace(path, og._build_transformers, precision, attn, "train", "adamw", 8)
        assert ours.equals(theirs), (precision, attn)


@pytest.mark.parametrize("recipe", ["autocast", "pure"])
def test_memory_estimate_matches_transformers(tmp_path: Path, recipe: str) -> None:
    path = _config(tmp_path)
    estimates = []
    for builder in (og._build_hf, og._build_transformers):
        step = og.build_step(str(path), batch_size=2, seq_len=16, build_hf=builder)
        estimates.append(memory._simulate(step, "gpt2", 2, "bf16", "adamw", "train", "sdpa", recipe, 512))
    assert estimates[0] == estimates[1]
    assert estimates[0].peak_bytes > 0


@pytest.mark.parametrize(
    "changes",
    [{"add_cross_attention": True}, {"pad_token_id": 0}, {"reorder_and_upcast_attn": True},
     {"activation_function": "quick_gelu"}, {"architectures": ["GPT2ForSequenceClassification"]}],
)  # fmt: skip
def test_what_it_does_not_rebuild_goes_to_transformers(tmp_path: Path, changes: dict) -> None:
    path = _config(tmp_path, **changes)
    assert native_gpt2.shape_of(json.loads(path.read_text())) is None
    assert not isinstance(og._build_hf(path, "sdpa"), native_gpt2.GPT2LMHead)


def test_other_architectures_are_not_rebuilt() -> None:
    for name in og.shipped_hf_configs():
        raw = json.loads((og.HF_CONFIG_DIR / f"{name}.json").read_text())
        assert (native_gpt2.shape_of(raw) is not None) == (raw["model_type"] == "gpt2"), name


def test_tracing_gpt2_does_not_import_transformers(tmp_path: Path) -> None:
    code = (
        "import sys; from chronos_core.features import opgraph as og; "
        "df = og.trace_step('hf:gpt2', batch_size=1, seq_len=8); "
        "print(len(df), 'transformers' in sys.modules)"
    )
    env = {"CHRONOS_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    rows, imported = out.stdout.split()
    assert int(rows) > 100
    assert imported == "False"


def test_a_built_module_follows_the_attention_asked_for_at_trace_time(tmp_path: Path) -> None:
    path = _config(tmp_path)
    module = og._build_hf(path, "sdpa")
    for attn in og.ATTN_IMPLEMENTATIONS:
        as_module = og.trace_step(module, batch_size=2, seq_len=16, attn_implementation=attn)
        named = og.trace_step(str(path), batch_size=2, seq_len=16, attn_implementation=attn)
        assert as_module.equals(named), attn
    assert module.config._attn_implementation == "sdpa"  # restored after tracing
