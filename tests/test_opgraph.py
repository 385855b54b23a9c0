"""The op graph of one training step on the meta device: rows, FLOPs, precision policy, cache."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from chronos_core.errors import ChronosError
from chronos_core.features import opgraph
from chronos_core.features.opgraph import (
    COLUMNS,
    FAMILIES,
    build_step,
    group_ops,
    loss_of,
    summarize,
    trace_step,
)

VIT = "timm:vit_tiny_patch16_224"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test traces into its own disk cache and starts with an empty memory cache."""
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path / "cache"))
    opgraph.clear_cache()
    yield tmp_path / "cache" / "opgraph"
    opgraph.clear_cache()


def mlp() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))


def matmul_flops(df: pd.DataFrame) -> int:
    return int(df.loc[df["family"].isin(["gemm", "conv", "attention"]), "flops"].sum())


def counter_flops(step: opgraph.Step) -> int:
    """FlopCounterMode's total for a plain forward + loss + backward (no tracer involved)."""
    step.module.train()
    with FlopCounterMode(display=False) as counter:
        loss_of(step.forward(), step.targets).backward()
    return counter.get_total_flops()


def test_frame_layout_and_mlp_rows():
    df = trace_step(mlp(), torch.empty(3, 5), optimizer="adam")
    assert tuple(df.columns) == COLUMNS
    assert set(df["family"]) <= set(FAMILIES)
    assert list(df["phase"].unique()) == ["forward", "backward", "optimizer"]
    assert (df["count"] == 1).all() and (df["bytes"] > 0).all()
    assert not df["aten"].str.contains(r"\.(?:view|t|detach|expand|empty|_unsafe_view)\.").any()
    with FlopCounterMode(display=False) as counter:
        step = opgraph._module_step(mlp(), torch.empty(3, 5), None, None, None, "sdpa")
        loss_of(step.forward(), step.targets).backward()
    assert matmul_flops(df) == counter.get_total_flops()


def test_trace_carries_its_trainable_parameter_count_through_the_cache():
    df = trace_step(mlp(), torch.empty(3, 5), optimizer="none")
    assert df.attrs["parameters"] == 5 * 8 + 8 + 8 * 4 + 4
    first = trace_step("ResNet18", batch_size=2, input_shape=(3, 32, 32), optimizer="sgd")
    opgraph.clear_cache()  # memory cache gone: the disk cache answers
    again = trace_step("ResNet18", batch_size=2, input_shape=(3, 32, 32), optimizer="sgd")
    assert first.attrs["parameters"] == again.attrs["parameters"] > 10_000_000


def test_linear_gemm_shapes_forward_and_both_gradients():
    # Second Linear(8 -> 4) on x[3, 8]: forward (M, N, K) = (b, out, in); input grad (b, in, out);
    # weight grad (out, in, b). The first layer's input needs no gradient: only its weight grad.
    df = trace_step(mlp(), torch.empty(3, 5), optimizer="none")
    gemm = df[df["family"] == "gemm"]
    shapes = {(p, int(m), int(n), int(k)) for p, m, n, k in gemm[["phase", "M", "N", "K"]].to_numpy()}
    assert ("forward", 3, 4, 8) in shapes and ("forward", 3, 8, 5) in shapes
    assert {("backward", 3, 8, 4), ("backward", 4, 8, 3), ("backward", 8, 5, 3)} <= shapes
    assert len(gemm[gemm["phase"] == "backward"]) == 3
    assert (gemm["B"] == 1).all()
    assert (gemm["flops"] == 2 * gemm["M"] * gemm["N"] * gemm["K"]).all()


def test_conv_backward_gives_input_and_weight_gradient_rows():
    with torch.device("meta"):
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        )
    df = trace_step(net, torch.empty(2, 3, 10, 10), optimizer="none")
    conv = df[df["family"] == "conv"]
    second = conv[conv["in_channels"] == 8]
    assert list(second["aten"]) == [
        "aten.convolution.default",
        "aten.convolution_backward.default[grad_input]",
        "aten.convolution_backward.default[grad_weight]",
    ]
    columns = ["out_channels", "kernel_size", "input_size", "stride", "padding", "groups"]
    assert second[columns].drop_duplicates().to_numpy().tolist() == [[16, 3, 8, 2, 1, 1]]
    assert second["flops"].nunique() == 1  # each gradient costs one forward conv
    first = conv[(conv["in_channels"] == 3) & (conv["phase"] == "backward")]
    assert list(first["aten"]) == ["aten.convolution_backward.default[grad_weight]"]
    assert (df["aten"] == "aten.convolution_backward.default[grad_bias]").sum() == 1


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [("resnet18", {"batch_size": 2}), (VIT, {"batch_size": 2})],
)
def test_flops_match_flop_counter(model, kwargs):
    traced = trace_step(model, optimizer="none", attn_implementation="eager", **kwargs)
    reference = counter_flops(build_step(model, attn_implementation="eager", **kwargs))
    assert matmul_flops(traced) == pytest.approx(reference, rel=0.01)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hf_gpt2_flops_match_flop_counter_and_attention_rows(attn):
    # GPT-2 checks its position ids with .item(), which plain meta tensors refuse: FlopCounterMode
    # listens below the tracer, so both count the same ops.
    step = build_step("hf:gpt2", batch_size=2, seq_len=128, attn_implementation=attn)
    with FlopCounterMode(display=False) as counter:
        traced = trace_step(
            step.module, batch_size=2, seq_len=128, optimizer="none", attn_implementation=attn
        )
    assert matmul_flops(traced) == pytest.approx(counter.get_total_flops(), rel=0.01)
    named = trace_step("hf:gpt2", batch_size=2, seq_len=128, optimizer="none", attn_implementation=attn)
    assert matmul_flops(named) == matmul_flops(traced)
    attention = named[named["family"] == "attention"]
    if attn == "eager":
        assert attention.empty
        return
    assert len(attention) == 24 and set(attention["phase"]) == {"forward", "backward"}
    assert attention[["B", "M", "N", "K"]].drop_duplicates().to_numpy().tolist() == [[24, 128, 128, 64]]
    forward, backward = attention.groupby("phase")["flops"].first()[["forward", "backward"]]
    assert forward == 4 * 24 * 128 * 128 * 64 and backward == 2.5 * forward


def test_timm_vit_sdpa_uses_fused_attention_rows():
    df = trace_step(VIT, batch_size=2, optimizer="none")
    attention = df[df["family"] == "attention"]
    assert len(attention) == 24  # 12 blocks, forward and backward
    assert attention[["B", "M", "N", "K"]].drop_duplicates().to_numpy().tolist() == [[6, 197, 197, 64]]
    assert "aten.bmm.default" not in set(df["aten"])


def test_optimizer_rows_are_foreach_elementwise_over_all_parameters():
    net = mlp()
    params = sum(p.numel() for p in net.parameters())
    for name, calls in (("sgd", 3), ("adam", 7), ("adamw", 8)):
        df = trace_step(net, torch.empty(3, 5), optimizer=name)
        opt = df[df["phase"] == "optimizer"]
        assert len(opt) == calls, name
        assert (opt["family"] == "elementwise").all() and opt["aten"].str.contains("_foreach_").all()
        assert (opt["tensors"] == 4).all() and (opt["elems"] == params).all()
    adam = df[df["phase"] == "optimizer"]
    assert 10 * 4 * params <= adam["bytes"].sum() <= 40 * 4 * params  # params, grads and two moments
    assert not (trace_step(net, torch.empty(3, 5), optimizer="none")["phase"] == "optimizer").any()


def test_amp_policy_fp16_matmuls_fp32_norms_and_grad_scaler():
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 10))
    x = torch.empty(4, 16)
    amp = trace_step(net, x, precision="amp", optimizer="sgd")
    gemm = amp[amp["family"] == "gemm"]
    assert len(gemm) == 5 and (gemm["dtype"] == "fp16").all()
    assert set(amp.loc[amp["family"] == "norm", "dtype"]) == {"fp32"}
    casts = amp[(amp["aten"] == "aten._to_copy.default") & (amp["phase"] == "forward")]
    assert len(casts) >= 4  # input, both weights, the norm's input back to fp32
    opt = amp[amp["phase"] == "optimizer"]
    assert "aten._amp_foreach_non_finite_check_and_unscale_.default" in set(opt["aten"])
    assert set(opt.loc[opt["aten"].str.startswith("aten._foreach_"), "dtype"]) == {"fp32"}

    bf16 = trace_step(net, x, precision="bf16", optimizer="sgd")
    assert set(bf16.loc[bf16["family"] == "gemm", "dtype"]) == {"bf16"}
    assert not bf16["aten"].str.contains("_amp_").any()
    tf32 = trace_step(net, x, precision="tf32", optimizer="none")
    fp32 = trace_step(net, x, precision="fp32", optimizer="none")
    assert set(tf32.loc[tf32["family"] == "gemm", "dtype"]) == {"tf32"}
    assert set(tf32.loc[tf32["family"] == "norm", "dtype"]) == {"fp32"}
    assert tf32.drop(columns="dtype").equals(fp32.drop(columns="dtype"))


def test_autocast_lists_cover_torch_autocast_cuda_ops():
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("aten::")]
    registered = {
        n[6:].split(".")[0]
        for n in names
        if torch._C._dispatch_has_kernel_for_dispatch_key(n, "AutocastCUDA")
    }
    lists = (
        opgraph.AUTOCAST_LOWER
        | opgraph.AUTOCAST_FP32
        | opgraph.AUTOCAST_FP32_OUTPUT
        | opgraph.AUTOCAST_PROMOTE
        | opgraph.AUTOCAST_BANNED
    )
    assert registered and registered <= lists


def test_inference_has_forward_rows_only():
    df = trace_step("resnet18", batch_size=2, mode="inference")
    assert set(df["phase"]) == {"forward"}
    assert not df["aten"].str.contains("native_dropout|_foreach_").any()
    train = trace_step("resnet18", batch_size=2, optimizer="none")
    forward = train[train["phase"] == "forward"]
    assert matmul_flops(df) == matmul_flops(forward)


def test_zoo_dataset_sizes_the_input():
    df = trace_step("resnet18", batch_size=2, dataset="imagenet", optimizer="none")
    first = df[(df["family"] == "conv") & (df["phase"] == "forward")].iloc[0]
    assert first["input_size"] == 224 and first["in_channels"] == 3


def test_hf_config_path(tmp_path):
    config = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 64,
              "vocab_size": 100, "architectures": ["GPT2LMHeadModel"]}  # fmt: skip
    path = tmp_path / "tiny" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    from_file = trace_step(str(path), batch_size=3, seq_len=16)
    from_dir = trace_step(str(path.parent), batch_size=3, seq_len=16)
    assert from_file.equals(from_dir)
    attention = from_file[from_file["family"] == "attention"]
    assert len(attention) == 4
    assert attention[["B", "M", "N", "K"]].drop_duplicates().to_numpy().tolist() == [[12, 16, 16, 16]]
    logits = from_file[(from_file["family"] == "gemm") & (from_file["N"] == 100)]
    assert not logits.empty  # the LM head: labels put the loss in the graph


def test_shipped_configs_are_listed():
    assert {"gpt2", "gpt2-large", "bert-base-uncased", "t5-small", "tinyllama-1.1b", "opt-1.3b"} <= set(
        opgraph.shipped_hf_configs()
    )


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"model": "resnet18", "precision": "fp8"}, "'fp8'"),
        ({"model": "resnet18", "optimizer": "lamb"}, "'lamb'"),
        ({"model": "resnet18", "mode": "eval"}, "'eval'"),
        ({"model": "resnet18", "attn_implementation": "flash"}, "'flash'"),
        ({"model": "resnet9000"}, "'resnet9000'"),
        ({"model": "hf:gpt5"}, "'gpt5'"),
        ({"model": "/no/such/dir/config.json"}, "/no/such/dir/config.json"),
        ({"model": "resnet18", "batch_size": 0}, "0"),
        ({"model": "resnet18", "seq_len": -4}, "-4"),
        ({"model": "resnet18", "dataset": "cifar11"}, "'cifar11'"),
    ],
)
def test_bad_input_raises_one_line_naming_the_value(kwargs, named):
    with pytest.raises(ChronosError) as error:
        trace_step(**kwargs)
    message = str(error.value)
    assert named in message and "\n" not in message
    if "Unknown" in message:
        assert "Known:" in message


def test_module_without_input_raises():
    with pytest.raises(ChronosError, match="example_input"):
        trace_step(mlp())


def test_cache_returns_equal_frames_fast_without_rebuilding(cache_dir, monkeypatch):
    first = trace_step("SimpleCNN", batch_size=4, optimizer="sgd")
    assert len(list(cache_dir.glob("*.pkl"))) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("a cached configuration must not rebuild the model")

    monkeypatch.setattr(opgraph, "build_step", no_build)
    start = time.perf_counter()
    again = trace_step("simplecnn", batch_size=4, optimizer="SGD")  # any spelling, same key
    assert time.perf_counter() - start < 0.05
    assert again.equals(first)
    again.loc[0, "flops"] = -1  # callers get copies
    assert trace_step("SimpleCNN", batch_size=4, optimizer="sgd").equals(first)

    opgraph.clear_cache()  # memory gone: the disk copy answers
    start = time.perf_counter()
    from_disk = trace_step("SimpleCNN", batch_size=4, optimizer="sgd")
    assert time.perf_counter() - start < 0.05
    assert from_disk.equals(first)
    with pytest.raises(AssertionError):
        trace_step("SimpleCNN", batch_size=8, optimizer="sgd")  # another configuration: traced


def test_group_ops_and_summarize():
    df = trace_step("resnet18", batch_size=2, optimizer="sgd")
    grouped = group_ops(df)
    assert tuple(grouped.columns) == COLUMNS
    assert len(grouped) < len(df)
    assert grouped["count"].sum() == len(df)
    assert grouped["flops"].sum() == df["flops"].sum() and grouped["bytes"].sum() == df["bytes"].sum()
    totals = summarize(df)
    assert totals["kernels"] == len(df)
    assert totals["flops"] == sum(totals[f"flops_{p}"] for p in ("forward", "backward", "optimizer"))
    assert totals["flops_matmul"] == matmul_flops(df)
    assert totals["kernels_optimizer"] == 3
