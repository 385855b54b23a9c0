"""Peak training memory on the meta device: breakdown, recipes, attention, batch scaling, CPU truth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chronos_core.errors import ChronosError
from chronos_core.features import memory
from chronos_core.features.memory import GIB, estimate_training_memory, measure_on_cpu


def mlp(device: str = "meta") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))


def tiny_gpt2(attn: str = "sdpa", activation: str = "gelu_new", device: str = "meta") -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=1024, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, activation_function=activation,
    )  # fmt: skip
    with torch.device(device):
        return GPT2LMHeadModel._from_config(config, attn_implementation=attn)


def lm_batch(batch: int, seq: int, device: str = "meta") -> dict:
    ids = torch.zeros((batch, seq), dtype=torch.long, device=device)
    return {"input_ids": ids, "labels": ids, "use_cache": False}


def gpt2_estimate(batch: int = 2, seq: int = 128, attn: str = "sdpa", **kwargs) -> memory.MemoryEstimate:
    model = tiny_gpt2(attn, kwargs.pop("activation", "gelu_new"))
    return estimate_training_memory(
        model, example_input=lm_batch(batch, seq), batch_size=batch, attn_implementation=attn, **kwargs
    )


def test_breakdown_sums_to_the_peak():
    e = gpt2_estimate(precision="amp")
    assert sum(v for _, v in e.at_peak) == e.peak_bytes
    assert e.peak_bytes <= e.upper_bound_bytes
    assert e.peak_phase in ("forward", "backward", "optimizer")
    for name in ("parameters", "gradients", "optimizer_states", "activations", "transient", "overhead"):
        assert getattr(e, name) > 0, name
    assert e.overhead >= memory.CUDA_CONTEXT_BYTES
    assert "peak" in e.describe() and e.as_dict()["peak_bytes"] == e.peak_bytes


def test_a_share_of_the_step_per_gpu_keeps_the_context():
    e = gpt2_estimate(precision="amp")
    four = e.sharded(4)
    assert e.sharded(1) is e
    assert sum(v for _, v in four.at_peak) == four.peak_bytes
    assert four.overhead == e.overhead and dict(four.at_peak)["overhead"] == dict(e.at_peak)["overhead"]
    assert four.parameters == -(-e.parameters // 4) and four.activations == -(-e.activations // 4)
    assert (four.peak_bytes - e.overhead) == pytest.approx(
        (e.peak_bytes - e.overhead) / 4, abs=len(e.at_peak)
    )


@pytest.mark.parametrize(
    ("precision", "recipe", "optimizer", "states", "copies"),
    [
        ("fp32", "autocast", "adam", 16, 0),  # 4 param + 4 grad + 8 (m, v)
        ("amp", "autocast", "adamw", 16, 2),  # torch AMP: fp32 params/grads/states + fp16 weight copies
        ("amp", "master", "adam", 16, 0),  # ZeRO: 2 + 2 + 4 master + 8 (m, v)
        ("bf16", "pure", "adam", 8, 0),  # everything bf16
        ("fp32", "autocast", "sgd", 12, 0),  # momentum: 4
    ],
)
def test_bytes_per_parameter_by_recipe(precision, recipe, optimizer, states, copies):
    e = gpt2_estimate(precision=precision, recipe=recipe, optimizer=optimizer, block_bytes=1)
    assert e.state_bytes / e.param_count == pytest.approx(states, abs=1e-9)
    # 2 B per matmul weight (position embeddings and norms are not cast): up to 2 B/param
    assert copies * 0.75 <= e.weight_copies / e.param_count <= copies
    if recipe == "master":
        assert e.master_weights == 4 * e.param_count and e.parameters == 2 * e.param_count


def test_sixteen_bit_recipe_needs_16_bit_precision():
    with pytest.raises(ChronosError, match="16-bit recipe"):
        gpt2_estimate(precision="fp32", recipe="master")
    with pytest.raises(ChronosError, match="recipe"):
        gpt2_estimate(precision="amp", recipe="zero3")


def test_eager_attention_saves_the_scores_sdpa_does_not():
    seq = 1024
    eager = gpt2_estimate(batch=1, seq=seq, attn="eager", precision="amp")
    sdpa = gpt2_estimate(batch=1, seq=seq, attn="sdpa", precision="amp")
    heads, layers = 4, 2
    # eager keeps the fp32 probabilities (autocast's softmax) and their fp16 cast: 6 B * s^2 per head
    # and layer (no dropout here), less the q/k/v/logsumexp only sdpa keeps
    assert eager.activations - sdpa.activations > 5.9 * heads * layers * seq * seq
    assert eager.peak_bytes > sdpa.peak_bytes


def test_activations_match_korthikanti_for_a_megatron_like_layer():
    """16-bit model, one-kernel GELU: s*b*h*(34 + 5*a*s/h) bytes per layer (34*s*b*h with flash)."""
    b, s, h, a = 2, 256, 128, 4
    for attn, paper in (("eager", s * b * h * (34 + 5 * a * s / h)), ("sdpa", 34 * s * b * h)):
        per_layer = []
        for layers in (1, 2):
            from transformers import GPT2Config, GPT2LMHeadModel

            config = GPT2Config(
                n_layer=layers, n_embd=h, n_head=a, vocab_size=1000, n_positions=1024,
                activation_function="gelu", bos_token_id=0, eos_token_id=0,
            )  # fmt: skip
            with torch.device("meta"):
                model = GPT2LMHeadModel._from_config(config, attn_implementation=attn)
            e = estimate_training_memory(
                model, example_input=lm_batch(b, s), batch_size=b, precision="amp", recipe="master",
                attn_implementation=attn, block_bytes=1,
            )  # fmt: skip
            per_layer.append(e.activations)
        assert (per_layer[1] - per_layer[0]) / paper == pytest.approx(1.0, abs=0.02), attn


def test_activations_scale_linearly_with_batch():
    acts = {b: gpt2_estimate(batch=b, block_bytes=1).activations for b in (2, 4, 8)}
    assert acts[8] - acts[4] == 2 * (acts[4] - acts[2])
    assert acts[2] / 2 == pytest.approx(acts[8] / 8, rel=0.01)
    m = {b: estimate_training_memory(mlp(), batch_size=b, input_shape=(512,), block_bytes=1) for b in (4, 8)}
    per_row = 4 * 512 + 4 * 1024 + 4 * 10 + 8  # input, relu output, log-softmax output, int64 target
    assert m[8].activations - m[4].activations == 4 * per_row
    assert m[8].parameters == m[4].parameters and m[8].gradients == m[4].gradients


def test_matches_a_real_cpu_step():
    torch.manual_seed(0)
    model = mlp("cpu")
    x, y = torch.randn(8, 512), torch.zeros(8, dtype=torch.long)
    est = estimate_training_memory(model, example_input=x, batch_size=8, optimizer="adam", block_bytes=1)
    real = measure_on_cpu(model, x, y, "adam")
    for part in ("parameters", "gradients", "optimizer_states", "activations"):
        assert getattr(est, part) == real[part], part
    if real["step_peak"] > 0:  # torch.profiler's memory timeline
        assert est.step_peak == pytest.approx(real["step_peak"], rel=0.02)
    assert all(p.device.type == "cpu" for p in model.parameters())  # the real module is untouched


def test_matches_a_real_cpu_step_of_a_transformer():
    torch.manual_seed(0)
    model = tiny_gpt2("sdpa", device="cpu")
    batch = lm_batch(2, 64, "cpu")
    est = estimate_training_memory(model, example_input=batch, batch_size=2, block_bytes=1)
    real = measure_on_cpu(model, batch, None, "adamw")
    assert est.activations == pytest.approx(real["activations"], rel=0.01)
    assert (
        est.state_bytes - est.master_weights
        == real["parameters"] + real["gradients"] + real["optimizer_states"]
    )
    if real["step_peak"] > 0:
        assert est.step_peak == pytest.approx(real["step_peak"], rel=0.05)


def test_fits_and_the_refusal_message():
    e = estimate_training_memory(mlp(), batch_size=64, input_shape=(512,))
    assert e.fits(24) and e.does_not_fit(24) is None
    assert not e.fits(0.25)
    message = e.does_not_fit(0.25, "a tiny GPU")
    assert message.startswith("does not fit on a tiny GPU: needs") and "GPU has 0.25 GB" in message
    assert e.fits(e.peak_bytes / GIB / memory.USABLE_FRACTION + 1e-6)


def test_inference_needs_no_gradients_or_optimizer_state():
    train = gpt2_estimate()
    infer = gpt2_estimate(mode="inference")
    assert infer.gradients == infer.optimizer_states == infer.activations == 0
    assert infer.peak_bytes < train.peak_bytes


def test_named_models_are_cached_and_sized():
    small = estimate_training_memory("SimpleCNN", batch_size=32, model_kwargs={"depth": 2, "base_filters": 8})
    again = estimate_training_memory("SimpleCNN", batch_size=32, model_kwargs={"depth": 2, "base_filters": 8})
    big = estimate_training_memory("SimpleCNN", batch_size=32, model_kwargs={"depth": 2, "base_filters": 32})
    assert small is again
    assert big.parameters > small.parameters and big.activations > small.activations
    with pytest.raises(ChronosError, match="batch_size"):
        estimate_training_memory("SimpleCNN", batch_size=0)
