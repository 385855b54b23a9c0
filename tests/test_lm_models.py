"""Hugging Face / timm models and token corpora: resolution, sequence lengths, the kernel time model,
tokens/s, the CLI, and one-line errors. Everything is built on the meta device; nothing downloads."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

from chronos_core import ChronosError
from chronos_core.api import TIME_KERNEL, TIME_WHOLE, TrainingTimePredictor
from chronos_core.catalog.datasets import Datasets
from chronos_core.catalog.models import ExternalModelSpec, Models, get_model, hf_config_dir, resolve_model
from chronos_core.cli import main

WT103_TOKENS = 103_227_021
OLD_SUMMARY_KEYS = {"model", "dataset", "gpu", "batch_size", "precision", "optimizer", "learning_rate",
                    "steps_per_epoch", "time_source", "epoch_time_s", "epochs", "total_time_s",
                    "price_per_hr_usd"}  # fmt: skip


@pytest.fixture(scope="module")
def mirror_module():
    from conftest import mirror_path

    if mirror_path() is None:
        pytest.skip("public data mirror not present")


@pytest.fixture(scope="module")
def gpt2_large(mirror_module) -> TrainingTimePredictor:
    return TrainingTimePredictor(model="hf:gpt2-large", dataset="wikitext-103", seq_len=1024, batch_size=8,
                                 precision="bf16", optimizer="AdamW", gpu="H100-SXM")  # fmt: skip


def _tiny_config(tmp_path, layers: int = 2):
    folder = tmp_path / "tiny-gpt2"
    folder.mkdir()
    raw = json.loads((hf_config_dir() / "gpt2.json").read_text())
    raw.update(n_layer=layers, n_embd=256, n_head=4)
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


# ------------------------------------------------------------------------------------------ resolution


def test_hf_names_prefixes_and_short_aliases_resolve_to_one_spec():
    spec = get_model("hf:gpt2-large")
    assert isinstance(spec, ExternalModelSpec) and spec.kind == "hf"
    assert (spec.name, spec.family, spec.framework, spec.max_positions) == ("hf:gpt2-large", "Transformer",
                                                                            "torch", 1024)  # fmt: skip
    assert (
        get_model("gpt2-large") is spec
        and get_model("GPT2-Large") is spec
        and resolve_model("hf:gpt2-large") is spec
    )
    assert get_model("bert-large").name == "hf:bert-large-uncased"
    assert get_model("gpt2").name == "hf:gpt2" and get_model("tinyllama").name == "hf:tinyllama-1.1b"
    assert get_model("vit") is Models.ViT and get_model("distilbert") is Models.DistilBERT  # the zoo first
    assert "hf:gpt2" not in Models  # the zoo catalog itself is unchanged


def test_config_json_path_and_folder(tmp_path):
    folder = _tiny_config(tmp_path)
    by_file = get_model(str(folder / "config.json"))
    assert by_file.kind == "hf" and by_file.name == str(folder / "config.json")
    assert get_model(f"hf:{folder}").config_path == by_file.config_path
    built = by_file.build("WikiText-2")
    assert type(built).__name__ == "GPT2LMHeadModel" and next(built.parameters()).is_meta
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ChronosError, match="has no 'model_type'"):
        get_model(str(tmp_path / "bad.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ChronosError, match="not readable JSON"):
        get_model(str(tmp_path / "broken.json"))


@pytest.mark.parametrize(
    ("name", "params"),
    [("gpt2", 124_439_808), ("opt-125m", 125_239_296), ("opt-350m", 331_196_416), ("t5-base", 222_903_552),
     ("llama-3.2-1b", 1_235_814_400)],
)  # fmt: skip
def test_shipped_configs_build_on_meta_with_their_published_sizes(name, params):
    model = get_model(f"hf:{name}").build("WikiText-103")
    assert sum(p.numel() for p in model.parameters()) == params
    assert all(p.is_meta for p in model.parameters())


def test_labelled_text_gets_a_classification_head():
    bert = get_model("bert-base").build("SST2")
    assert type(bert).__name__ == "BertForSequenceClassification" and bert.config.num_labels == 2
    gpt2 = get_model("gpt2").build("AG_NEWS")
    assert type(gpt2).__name__ == "GPT2ForSequenceClassification" and gpt2.config.num_labels == 4
    assert type(get_model("bert-base").build("WikiText-2")).__name__ == "BertForMaskedLM"


def test_timm_models_resolve_with_their_input_size():
    vit = get_model("timm:vit_base_patch16_224")
    assert (vit.kind, vit.family, vit.default_dataset) == ("timm", "Transformer", "ImageNet")
    assert vit.input_shape("ImageNet") == (3, 224, 224) and vit.input_shape("CIFAR10") == (3, 224, 224)
    assert get_model("timm:convnext_tiny").family == "CNN"
    assert get_model("timm:efficientnet_b0").family == "CNN"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("hf:gpt5", ["'gpt5'", "gpt2-large", "config.json"]),
        ("timm:vit_base", ["'vit_base'", "Close matches", "timm.list_models"]),
        ("gpt5", ["'gpt5'", "VGG16", "hf:gpt2", "timm:NAME"]),
        ("/no/such/dir/config.json", ["/no/such/dir/config.json", "not found"]),
        ("hf:", ["hf:NAME", "gpt2"]),
    ],
)
def test_unknown_models_are_one_line(name, words):
    with pytest.raises(ChronosError) as info:
        get_model(name)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


# ------------------------------------------------------------------------------------------ datasets


def test_token_corpora_are_cut_into_sequences():
    wt = Datasets.get("wikitext-103")
    assert wt.train_tokens == WT103_TOKENS and wt.is_language_modelling and wt.seq_len == 1024
    assert wt.train_size == WT103_TOKENS // 1024
    half = wt.with_seq_len(512)
    assert half.train_size == WT103_TOKENS // 512 and half.train_tokens == WT103_TOKENS
    assert Datasets.get("openwebtext").train_tokens == 9_035_582_198
    assert not Datasets.get("SST2").is_language_modelling
    with pytest.raises(ChronosError, match="seq_len applies to text"):
        Datasets.get("ImageNet").with_seq_len(128)


def test_a_custom_token_corpus(mirror):
    data = {"name": "my-corpus", "train_tokens": 10_000_000, "input_shape": (1000,), "num_classes": 50257}
    p = TrainingTimePredictor(model="hf:gpt2", dataset=data, batch_size=10, seq_len=500, gpu="A100",
                              precision="bf16", optimizer="adamw")  # fmt: skip
    assert p.dataset.train_size == 20_000 and p.steps_per_epoch == 2_000
    with pytest.raises(ChronosError, match="train_tokens is for text corpora"):
        TrainingTimePredictor(
            model="gpt2", dataset={**data, "name": "x", "input_shape": (3, 8, 8)}, gpu="A100"
        )


# ------------------------------------------------------------------------------------------ predictions


def test_gpt2_large_on_wikitext_103_with_the_kernel_model(gpt2_large):
    p = gpt2_large
    assert p.seq_len == 1024 and p.steps_per_epoch == math.ceil(WT103_TOKENS // 1024 / 8) == 12_601
    epoch = p.predict_epoch_time()
    assert math.isfinite(epoch) and 0 < epoch.lo < epoch < epoch.hi
    s = p.summary()
    assert OLD_SUMMARY_KEYS <= set(s)
    assert s["time_model"] == TIME_KERNEL and s["param_count"] == 774_030_080
    it = s["iteration_time_ms"]["value"]
    tok = s["tokens_per_s"]
    assert tok["value"] == pytest.approx(8 * 1024 * 1000 / it)
    assert tok["lo"] < tok["value"] < tok["hi"] and tok["unit"] == "tokens/s"
    # a 774M-parameter step of 8k tokens: 4.3e13 FLOPs, between 15% and 100% of the H100's bf16 peak
    assert 40 < it < 300, it
    pred = p._predicted().iloc[0]  # noqa: SLF001
    assert pred["pred_loader_ms"] == 0.0  # pre-tokenized corpus
    epochs = p.predict_number_of_epochs()  # the convergence model answers for a 774M LM too
    assert 1 <= epochs.lo <= epochs <= epochs.hi <= p.max_epochs
    total = p.predict_total_time()
    assert total.lo < total < total.hi and total.cost_usd > 0
    why = p.explain()
    assert why["time_model"]["name"] == TIME_KERNEL and "Hugging Face" in why["time_model"]["why"]
    assert why["data"]["time"]["interval_regime"].startswith("kernel model")
    assert "seq_len=1024" in repr(p)


def test_vit_b16_from_timm_on_imagenet_on_an_a100(mirror):
    p = TrainingTimePredictor(model="timm:vit_base_patch16_224", dataset="imagenet-1k", batch_size=128,
                              precision="bf16", optimizer="AdamW", gpu="A100")  # fmt: skip
    assert p.steps_per_epoch == math.ceil(1_281_167 / 128) and p.seq_len is None
    epoch = p.predict_epoch_time()
    assert 0 < epoch.lo < epoch < epoch.hi
    s = p.summary()
    assert s["time_model"] == TIME_KERNEL and s["param_count"] == 86_567_656 and "tokens_per_s" not in s
    images_per_s = 128 * 1000 / s["iteration_time_ms"]["value"]
    assert 300 < images_per_s < 5000, images_per_s  # ViT-B/16 bf16 training on an A100: ~1,000/s


def test_a_config_json_path_runs_end_to_end(mirror, tmp_path):
    folder = _tiny_config(tmp_path)
    p = TrainingTimePredictor(model=str(folder / "config.json"), dataset="WikiText-2", batch_size=4,
                              seq_len=256, precision=16, optimizer="adam", gpu="T4")  # fmt: skip
    epoch = p.predict_epoch_time()
    assert 0 < epoch.lo < epoch < epoch.hi and p.summary()["time_model"] == TIME_KERNEL
    assert p.steps_per_epoch == math.ceil(2_088_628 // 256 / 4)


def test_bert_fine_tuning_on_sst2_and_the_default_sequence_length(mirror):
    p = TrainingTimePredictor(model="bert-base", dataset="SST2", batch_size=32, precision=16,
                              optimizer="AdamW", gpu="T4")  # fmt: skip
    assert p.seq_len == 128 and p.steps_per_epoch == math.ceil(67_349 / 32)
    s = p.summary()
    assert s["tokens_per_s"]["value"] > 0 and s["time_model"] == TIME_KERNEL
    capped = TrainingTimePredictor(model="bert-base", dataset="wikitext-103", gpu="T4")
    assert capped.seq_len == 512 and capped.dataset.train_size == WT103_TOKENS // 512  # BERT's positions


def test_zoo_models_keep_the_regressor_and_big_user_models_get_the_kernel_model(mirror):
    zoo = TrainingTimePredictor(model="VGG16", dataset="CIFAR100", batch_size=32, precision=16, gpu="T4")
    assert zoo.summary()["time_model"] == TIME_WHOLE and "tokens_per_s" not in zoo.summary()
    big = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8192), nn.ReLU(), nn.Linear(8192, 8192),
                        nn.ReLU(), nn.Linear(8192, 8192), nn.ReLU(), nn.Linear(8192, 10))  # fmt: skip
    p = TrainingTimePredictor(model=big, dataset="CIFAR10", batch_size=64, optimizer="Adam", gpu="A100")
    assert p.features()["param_count"] > 135_088_392  # beyond the regressor's tables
    assert p.time_model == TIME_KERNEL and 0 < p.predict_epoch_time()


def test_a_zoo_models_step_beyond_its_rows_in_the_tables_gets_the_kernel_model(mirror):
    """ResNet-50 on ImageNet (224x224) has ~12x the training FLOPs per sample of its largest table
    rows (TinyImageNet, 64x64): the kernel model prices it; on TinyImageNet the regressor stays."""
    from chronos_core.predict.time_models import flops_ceilings

    ceilings = flops_ceilings()
    assert ceilings["ResNet50"] == pytest.approx(2.00432e9, rel=1e-3)  # the CHRONOS rows, spelt resnet50
    args = dict(model="ResNet50", batch_size=64, precision=16, optimizer="SGD", gpu="V100-SXM2-16GB")
    inside = TrainingTimePredictor(dataset="TinyImageNet", **args)
    assert inside.time_model == TIME_WHOLE
    imagenet = TrainingTimePredictor(dataset="ImageNet", **args)
    assert imagenet.features()["flops_train_per_sample"] > 10 * ceilings["ResNet50"]
    assert imagenet.time_model == TIME_KERNEL
    assert "step is larger than any in the regressor's tables" in imagenet.explain()["time_model"]["why"]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"seq_len": 2048}, ["2048", "1024", "hf:gpt2"]),
        ({"dataset": "CIFAR10"}, ["hf:gpt2", "text", "CIFAR10"]),
        ({"gpu": "cpu"}, ["hf:gpt2", "GPU", "cpu"]),
        ({"seq_len": 0}, ["seq_len", "0"]),
        ({"batch_size": 4096, "gpu": "T4"}, ["does not fit on T4"]),
    ],
)
def test_bad_lm_runs_are_one_line(changes, words):
    with pytest.raises(ChronosError) as info:
        args = {"model": "hf:gpt2", "dataset": "wikitext-103", "gpu": "A100", **changes}
        TrainingTimePredictor(**args).predict_epoch_time()
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_image_dataset_refuses_a_sequence_length():
    with pytest.raises(
        ChronosError, match="seq_len applies to text and sequence datasets; ImageNet is image"
    ):
        TrainingTimePredictor(model="ResNet50", dataset="ImageNet", seq_len=128, gpu="A100")


# ------------------------------------------------------------------------------------------ CLI

LM_ARGS = ["--model", "hf:gpt2", "--dataset", "wikitext-103", "--seq-len", "512", "--precision", "bf16",
           "--optimizer", "adamw"]  # fmt: skip


def test_cli_predict_a_language_model(mirror, capsys):
    assert main(["predict", *LM_ARGS, "--gpu", "A100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seq_len"] == 512 and out["steps_per_epoch"] == math.ceil(WT103_TOKENS // 512 / 32)
    assert out["tokens_per_s"]["lo"] < out["tokens_per_s"]["value"] < out["tokens_per_s"]["hi"]
    assert out["time_model"] == TIME_KERNEL and out["model"] == "hf:gpt2"
    assert main(["predict", *LM_ARGS, "--gpu", "A100"]) == 0
    text = capsys.readouterr().out
    assert "seq_len 512" in text and "tokens/s" in text and "time model" in text


def test_cli_compare_a_language_model_over_three_gpus(mirror, capsys):
    gpus = ["--gpu", "T4", "--gpu", "A100", "--gpu", "H100-SXM"]
    assert main(["compare", *LM_ARGS, "--batch-size", "8", *gpus, "--json", "--no-cache"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["gpu"] for r in rows][0] == "T4" and len(rows) == 3
    assert all(r["fits"] and 0 < r["peak_memory_gb"] < r["gpu_memory_gb"] for r in rows)
    assert all(r["tokens_per_s_lo"] < r["tokens_per_s"] < r["tokens_per_s_hi"] for r in rows)
    assert rows[2]["tokens_per_s"] > rows[0]["tokens_per_s"] and rows[2]["epoch_s"] < rows[0]["epoch_s"]
    assert {"epoch_s", "epochs", "total_h", "cost_usd", "time_source", "time_model"} <= set(rows[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "hf:gpt5", "--dataset", "wikitext-103"], ["'gpt5'", "gpt2-large"]),
        (["--model", "timm:vit_base", "--dataset", "imagenet"], ["'vit_base'", "Close matches"]),
        (["--model", "gpt2", "--dataset", "wikitext-103", "--seq-len", "4096"], ["4096", "1024"]),
        (["--model", "gpt2", "--dataset", "cifar10"], ["text", "CIFAR10"]),
    ],
)
def test_cli_bad_models_exit_2_with_one_line(args, words, capsys):
    assert main(["predict", *args, "--gpu", "A100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    for word in words:
        assert word in err


def test_cli_bad_seq_len_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", "gpt2", "--dataset", "wikitext-103", "--seq-len", "0"])
    assert exc.value.code == 2
    assert "--seq-len" in capsys.readouterr().err


def test_shipped_configs_are_plain_json():
    for path in hf_config_dir().glob("*.json"):
        raw = json.loads(path.read_text())
        assert "model_type" in raw and raw["_source"].startswith("https://huggingface.co/"), path.name


def test_cli_compare_says_which_gpus_a_run_does_not_fit(mirror, capsys):
    assert main(["compare", *LM_ARGS, "--batch-size", "64", "--gpu", "T4", "--gpu", "H100-SXM"]) == 0
    out = capsys.readouterr().out
    assert "does not fit on T4: needs ~" in out and "does not fit on H100-SXM" not in out
    assert main(["predict", *LM_ARGS, "--batch-size", "64", "--gpu", "T4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit on T4" in err
