"""Model-level checks of the kernel time model: NeuSight's measured inference latencies and the
CHRONOS per-batch compute times (leave-one-GPU-out), against the whole-model regressors.

NeuSight labels: fp32 (TF32 off) inference of Hugging Face models with eager attention (PyTorch
2.1), on the four GPUs whose kernels are in the fit; and GPT-2-Large training on four A100-SXM4-40GB
(data, tensor, pipeline parallel), a board whose kernels are not in the fit (its PCIe sibling's
are). CHRONOS: `compute_ms` per training batch of zoo models on eight GPUs, each behind its own
host; the host's per-op and per-step costs are fitted on the other GPUs' rows (leave-one-GPU-out),
so the held-out GPU is never seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices
from chronos_core.data import registry
from chronos_core.errors import ChronosError
from chronos_core.pickle_cache import load_or_build
from chronos_core.predict.kernels import KernelModel
from chronos_core.predict.step import HostOverhead, host_step_ms, predict_ops

# NeuSight label name -> (config source, task head): BERT ran with a 2-class classifier head.
NEUSIGHT_MODELS = {
    "bert_large": ("neusight-config-bert-large", "sequence-classification"),
    "gpt2_large": ("neusight-config-gpt2-large", "causal-lm"),
    "gpt3_xl": ("neusight-config-gpt3-xl", "causal-lm"),
    "gpt3_27": ("neusight-config-gpt3-27", "causal-lm"),
    "opt_13": ("neusight-config-opt-13", "causal-lm"),
}
# CHRONOS table model names -> zoo names and the row columns that size them.
CHRONOS_MODELS = {
    "vgg16": ("VGG16", ()),
    "resnet50": ("ResNet50", ()),
    "mobilenetv2": ("MobileNetV2", ()),
    "mixer": ("MLP-Mixer", ("depth", "embed_dim", "patch_size", "token_mlp_dim", "channel_mlp_dim")),
    "resmlp": ("ResMLP", ("depth", "embed_dim", "patch_size", "channel_mlp_dim")),
    "ViT": ("ViT", ()),
    "DistilBERT": ("DistilBERT", ("depth", "d_model", "n_heads", "d_ff")),
}
_OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw"}


def _cache_dir() -> Path:
    root = Path(os.environ.get("CHRONOS_CACHE_DIR", Path.home() / ".cache" / "chronos"))
    return root.expanduser() / "opgraph"


def _cached(key: dict, build) -> pd.DataFrame:
    """A traced op frame from the disk cache, or traced now and stored."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return load_or_build(_cache_dir() / f"eval-{digest}.pkl", build)


# ---------------------------------------------------------------------------------------------- NeuSight


def _labels(mode: str) -> list[dict]:
    """NeuSight's labels of one mode ("inf", "train") for the models in NEUSIGHT_MODELS, parsed from
    names like gpt2_large-inf-1024-4 or gpt2_large-train-1024-4-dp4 (`suffix`: what follows the batch)."""
    rows = []
    for name, src in registry.SOURCES.items():
        if src.kind != "model_label":
            continue
        model, label_mode, seq, batch, *suffix = Path(src.mirror_path).stem.split("-")
        if model not in NEUSIGHT_MODELS or label_mode != mode:
            continue
        gpu = Path(src.mirror_path).parent.name.replace("_", " ")
        rows.append(
            {
                "gpu": Devices.get(gpu).name,
                "gpu_name": gpu,
                "model": model,
                "seq_len": int(seq),
                "batch_size": int(batch),
                "suffix": "-".join(suffix),
                "measured_ms": float(json.loads(registry.read_text(name))["e2e_latency"]),
            }
        )
    return rows


def neusight_labels() -> pd.DataFrame:
    """One row per labelled (GPU, model, seq_len, batch): measured end-to-end inference ms."""
    return pd.DataFrame(_labels("inf")).drop(columns="suffix")


def neusight_ops(model: str, seq_len: int, batch_size: int) -> pd.DataFrame:
    """The traced fp32 inference op graph of one NeuSight model (eager attention, as measured)."""
    source, head = NEUSIGHT_MODELS[model]

    def build() -> pd.DataFrame:
        import torch
        import transformers

        from chronos_core.features.opgraph import trace_step

        config = transformers.AutoConfig.for_model(**json.loads(registry.read_text(source)))
        config._attn_implementation = "eager"
        if head == "sequence-classification":
            config.num_labels = 2
            auto = transformers.AutoModelForSequenceClassification
        else:
            auto = transformers.AutoModelForCausalLM
        with torch.device("meta"):
            module = auto.from_config(config, attn_implementation="eager")
        ids = torch.zeros((batch_size, seq_len), dtype=torch.long, device="meta")
        return trace_step(
            module, {"input_ids": ids}, precision="fp32", mode="inference", attn_implementation="eager"
        )

    return _cached({"neusight": model, "seq": seq_len, "batch": batch_size, "v": 1}, build)


def check_neusight(model: KernelModel, host: HostOverhead) -> pd.DataFrame:
    """Predicted vs measured inference latency for every NeuSight label."""
    labels = neusight_labels()
    preds = []
    for row in labels.itertuples():
        ops = neusight_ops(row.model, row.seq_len, row.batch_size)
        priced = predict_ops(ops, row.gpu, model, host)
        gpu_ms = float(priced["pred_ms"].sum())
        host_ms = float(priced["count"].sum()) * host.dispatch_ms
        preds.append(max(gpu_ms, host_ms))
    labels["pred_ms"] = preds
    labels["ape"] = (labels["pred_ms"] - labels["measured_ms"]).abs() / labels["measured_ms"] * 100
    return labels


def neusight_parallel_labels() -> pd.DataFrame:
    """NeuSight's multi-GPU training labels: one row per (GPU, model, parallelism), measured e2e ms."""
    rows = []
    for rec in _labels("train"):
        kind = re.match(r"([a-z]+)(\d+)(?:_(\d+))?", rec["suffix"])  # dp4, tp4, pp4_1 (GPipe chunks)
        rows.append(
            {
                "gpu": rec["gpu"],
                "model": rec["model"],
                "seq_len": rec["seq_len"],
                "batch_size": rec["batch_size"],  # global batch
                "parallel": rec["suffix"],
                "scheme": kind.group(1) if kind else rec["suffix"],
                "num_gpus": int(kind.group(2)) if kind else 1,
                "microbatches": int(kind.group(3)) if kind and kind.group(3) else np.nan,
                "measured_ms": rec["measured_ms"],
            }
        )
    return pd.DataFrame(rows)


def check_neusight_parallel(model: KernelModel | None = None) -> pd.DataFrame:
    """Predicted vs measured multi-GPU training steps (NeuSight's labels; fp32, eager attention).

    Data, tensor and pipeline parallel (`parallel.py`), forward + backward as NeuSight times a
    training step (optimizer "none"; with AdamW beside it). A label's number after the underscore
    (pp4_1) is read as GPipe's micro-batch count (`chunks`).
    """
    from chronos_core.predict.kernel_cli import predict_step_frame

    labels = neusight_parallel_labels()
    optimizers = ("none", "adamw")
    inputs = [
        {
            "label": i, "optimizer": optimizer, "precision": "fp32", "mode": "train",
            "model": str(registry.path(NEUSIGHT_MODELS[row.model][0])), "batch_size": row.batch_size,
            "seq_len": row.seq_len, "gpu": row.gpu, "attn_implementation": "eager", "num_gpus": row.num_gpus,
            "parallel": row.scheme, "microbatches": row.microbatches,
        }
        for i, row in labels.iterrows()
        for optimizer in optimizers
    ]  # fmt: skip
    preds = (
        predict_step_frame(pd.DataFrame(inputs), model)
        if inputs
        else pd.DataFrame(columns=["label", "optimizer", "pred_step_ms", "pred_comm_ms", "error"])
    )
    failed = preds[preds["error"] != ""]
    if len(failed):
        raise ChronosError(f"NeuSight multi-GPU check failed: {failed['error'].iloc[0]}")
    out = labels.copy()
    for optimizer in optimizers:
        part = preds[preds["optimizer"] == optimizer].set_index("label")
        out[f"pred_ms_{optimizer}"] = part["pred_step_ms"].reindex(out.index).astype(float)
        if optimizer == "none":
            out["pred_comm_ms"] = part["pred_comm_ms"].reindex(out.index).astype(float)
        out[f"ape_{optimizer}"] = (
            (out[f"pred_ms_{optimizer}"] - out["measured_ms"]).abs() / out["measured_ms"] * 100
        )
    return out[[*labels.columns, "pred_comm_ms", "pred_ms_none", "pred_ms_adamw", "ape_none", "ape_adamw"]]


# ---------------------------------------------------------------------------------------------- CHRONOS


def chronos_rows() -> pd.DataFrame:
    """The CHRONOS per-batch compute rows the op graph can build (zoo models, SGD/Adam/AdamW)."""
    from chronos_core.predict.time_models import training_table

    table = training_table()
    # the training table's row: notebook 04's stored predictions use it
    table = pd.concat([table, pd.Series(table.index, index=table.index, name="row")], axis=1)
    table = table[table["source"].str.startswith("chronos-time")]
    table = table[table["model"].isin(CHRONOS_MODELS) & table["optimizer"].isin(_OPTIMIZERS)]
    table = table[pd.to_numeric(table["compute_ms"], errors="coerce") > 0].copy()
    table["gpu"] = [Devices.get(name).name for name in table["gpu_name"]]
    table["config"] = [json.dumps(_config(row), sort_keys=True) for _, row in table.iterrows()]
    return table.reset_index(drop=True)


def _config(row: pd.Series) -> dict:
    zoo, sized_by = CHRONOS_MODELS[row["model"]]
    kwargs = {col: int(row[col]) for col in sized_by if pd.notna(row.get(col))}
    if zoo == "DistilBERT":
        kwargs = {"depth": kwargs["depth"], "d_model": kwargs["d_model"], "n_heads": kwargs["n_heads"],
                  "d_ff": kwargs["d_ff"]}  # fmt: skip
    return {
        "zoo": zoo,
        "kwargs": kwargs,
        "dataset": row["dataset"],
        "num_classes": int(row["num_classes"]) if pd.notna(row.get("num_classes")) else None,
        "batch_size": int(row["batch_size"]),
        "precision": "amp" if int(row["precision"]) == 16 else "fp32",
        "optimizer": _OPTIMIZERS[row["optimizer"]],
    }


def chronos_ops(config_json: str) -> pd.DataFrame:
    """The traced training step of one CHRONOS configuration (cached on disk)."""
    config = json.loads(config_json)

    def build() -> pd.DataFrame:
        import torch

        from chronos_core.catalog.models import Models
        from chronos_core.features.opgraph import trace_step

        spec = Models.get(config["zoo"])
        extra = {"num_classes": config["num_classes"]} if config["num_classes"] else {}
        with torch.device("meta"):
            module = spec.build(config["dataset"], **config["kwargs"], **extra)
        example = spec.example_input(config["dataset"], config["batch_size"], **config["kwargs"])
        return trace_step(module, example, precision=config["precision"], optimizer=config["optimizer"])

    return _cached({"chronos": config, "v": 1}, build)


def tf32_convolutions(ops: pd.DataFrame, device: str) -> pd.DataFrame:
    """fp32 convolutions run on TF32 tensor cores on Ampere and later (cuDNN's default in PyTorch)."""
    spec = Devices.get(device)
    if spec.peak_tf32_tensor_tflops > 0:
        ops = ops.copy()
        ops.loc[(ops["family"] == "conv") & (ops["dtype"] == "fp32"), "dtype"] = "tf32"
    return ops


def price_configs(
    configs: list[str], device: str, model: KernelModel, progress: bool = False
) -> pd.DataFrame:
    """GPU time (ms, gaps and no host) and kernel count of each configuration's step on a device."""
    host = HostOverhead(gap_ms=0.0, dispatch_ms=0.0, fixed_ms=0.0)
    frames, keys = [], []
    for config in configs:
        ops = tf32_convolutions(chronos_ops(config), device)
        frames.append(ops)
        keys.append(np.full(len(ops), len(keys)))
    allops = pd.concat(frames, ignore_index=True)
    priced = predict_ops(allops, device, model, host)
    priced["config"] = np.concatenate(keys)
    launches = priced["count"].fillna(1)
    agg = (
        priced.assign(launches=launches)
        .groupby("config")
        .agg(gpu_ms=("pred_ms", "sum"), kernels=("launches", "sum"))
    )
    agg.index = [configs[i] for i in agg.index]
    return agg


def fit_host(gpu_ms: np.ndarray, kernels: np.ndarray, measured: np.ndarray) -> HostOverhead:
    """The host's per-kernel gap, per-op dispatch and per-step cost that best explain its rows (grid
    search on the median absolute log ratio); host and GPU work overlap (the step takes the longer)."""
    best = (np.inf, HostOverhead())
    for gap in (0.0, 0.002, 0.004, 0.008):
        gpu = gpu_ms + gap * kernels
        for dispatch in (0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032, 0.048):
            host = kernels * dispatch
            base = np.maximum(gpu, host)
            for fixed in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
                err = np.median(np.abs(np.log((base + fixed) / measured)))
                if err < best[0]:
                    best = (err, HostOverhead(gap, dispatch, fixed, "fitted"))
    return best[1]


def median_host(hosts: list[HostOverhead]) -> HostOverhead:
    """The default host for a GPU whose host nobody measured: the median of the known ones."""
    return HostOverhead(
        float(np.median([h.gap_ms for h in hosts])),
        float(np.median([h.dispatch_ms for h in hosts])),
        float(np.median([h.fixed_ms for h in hosts])),
        "median of measured hosts",
    )


def kernel_fold(exclude: str | tuple[str, ...] | None, n_estimators: int = 400) -> KernelModel:
    """The default kernel model less some GPUs' kernels (`kernel_default.fit_default`), cached on disk."""
    from chronos_core.predict.kernel_default import fit_default

    key = {"kernel_fold": exclude, "n": n_estimators, "v": 3, "code": _code_digest()}
    return _cached(key, lambda: fit_default(exclude, n_estimators))


def same_chip(a: str, b: str) -> bool:
    """Two boards of one chip (V100 PCIe and SXM2, A100 40 and 80 GB): same architecture and SM count."""
    sa, sb = Devices.get(a), Devices.get(b)
    return sa.architecture == sb.architecture and sa.sm_count == sb.sm_count


def _code_digest() -> str:
    here = Path(__file__).parent
    return hashlib.sha256(
        b"".join((here / n).read_bytes() for n in ("kernels.py", "kernel_eval.py", "kernel_default.py"))
    ).hexdigest()[:12]


REGIMES = ("datasheet", "calibrated", "in_fit")
CHRONOS_CALIBRATION_BUDGETS = (16, 64)
# (fold, gpu, configs) -> price_configs, kept for the process: fold models are deterministic
_PRICED: dict[tuple, pd.DataFrame] = {}


def _fold_pricing(fold: tuple[str, ...] | None, gpu: str, configs: list[str]) -> pd.DataFrame:
    key = (fold, gpu, tuple(configs))
    if key not in _PRICED:
        _PRICED[key] = price_configs(configs, gpu, kernel_fold(fold))
    return _PRICED[key]


def chronos_logo(
    rows: pd.DataFrame, progress: bool = False, regime: str = "datasheet", budget: int = 16, seed: int = 0
) -> pd.DataFrame:
    """Leave-one-GPU-out on the CHRONOS compute rows: the kernels of the held-out GPU's chip (any
    board of it NeuSight measured, `same_chip`) leave the kernel fit too, and its host is the median
    of the other hosts' fitted ones in the same cloud (the tables' `Provisioning`: RunPod or GCP),
    fitted apart for fp32 and AMP steps (autocast and the gradient scaler add host work per op and a
    sync per step).

    Also the unseen-config regime: each GPU's host fitted on 4/5 of its configurations (grouped
    folds), predicting the rest. Returns the rows with pred_logo_ms (pred_logo_gpu_ms: its kernels'
    GPU time alone) and pred_config_ms.

    `regime` says what the kernel model knows of the held-out GPU: "datasheet" (only its specs),
    "calibrated" (`chronos calibrate` simulated with `budget` of its chip's kernels per op group and
    dtype: `held_out_calibration`), "in_fit" (its chip's kernels stay in the fit: the most any
    calibration could give). The last two predict only GPUs whose chip NeuSight measured (the others'
    rows keep NaN), skip the unseen-config regime, and keep the hosts leave-one-GPU-out.
    """
    from chronos_core.data.kernels import kernel_table

    if regime not in REGIMES:
        raise ChronosError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}")
    kernels = kernel_table(include_xla=False)
    kernel_gpus = set(kernels["device"])
    gpus = sorted(rows["gpu"].unique())
    configs = {g: sorted(rows.loc[rows["gpu"] == g, "config"].unique()) for g in gpus}

    def pricing(fold: tuple[str, ...] | None, gpu: str) -> pd.DataFrame:
        return _fold_pricing(fold, gpu, configs[gpu])

    out = rows.copy()
    out["pred_logo_ms"] = np.nan
    out["pred_logo_gpu_ms"] = np.nan
    out["pred_config_ms"] = np.nan
    held_gpus = gpus
    if regime != "datasheet":
        held_gpus = [g for g in gpus if any(same_chip(k, g) for k in kernel_gpus)]
    iterator = held_gpus
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(held_gpus, desc=f"CHRONOS leave-one-GPU-out ({regime})")
    provider = out.groupby("gpu")["host_provider"].first().to_dict() if "host_provider" in out else {}
    for held in iterator:
        chip = tuple(sorted(g for g in kernel_gpus if same_chip(g, held)))
        fold = None if regime == "in_fit" else chip or None
        mask = (out["gpu"] == held).to_numpy()
        if regime == "calibrated":
            model = held_out_calibration(kernel_fold(fold), kernels, held, chip, budget, seed)
            p = price_configs(configs[held], held, model).loc[out.loc[mask, "config"]]
        else:
            p = pricing(fold, held).loc[out.loc[mask, "config"]]
        others = [g for g in gpus if g != held and provider.get(g) == provider.get(held)]
        out.loc[mask, "pred_logo_ms"] = _cloud_steps(p, out.loc[mask], out, others, fold, configs)
        out.loc[mask, "pred_logo_gpu_ms"] = p["gpu_ms"].to_numpy()
        if regime != "datasheet":
            continue
        # unseen configs on a seen GPU: the GPU's own host, fitted on other configurations
        own = pricing(None, held)
        cfgs = np.array(configs[held])
        folds = np.arange(len(cfgs)) % 5
        np.random.default_rng(0).shuffle(folds)
        fold_of = dict(zip(cfgs, folds, strict=True))
        part = out[mask]
        k = part["config"].map(fold_of).to_numpy()
        amp = (part["precision"].astype(int) == 16).to_numpy()
        for f in range(5):
            for a in (False, True):
                tr, te = part[(k != f) & (amp == a)], part[(k == f) & (amp == a)]
                if te.empty or tr.empty:
                    continue
                ptr, pte = own.loc[tr["config"]], own.loc[te["config"]]
                measured = tr["compute_ms"].to_numpy(float)
                h = fit_host(ptr["gpu_ms"].to_numpy(), ptr["kernels"].to_numpy(), measured)
                pred = host_step_ms(pte["gpu_ms"].to_numpy(), pte["kernels"].to_numpy(), h)
                out.loc[te.index, "pred_config_ms"] = pred
    return out


def held_out_calibration(
    model: KernelModel, kernels: pd.DataFrame, gpu: str, boards: tuple[str, ...], budget: int, seed: int = 0
) -> KernelModel:
    """A kernel model fitted without `gpu`'s chip, calibrated as `chronos calibrate` would on it: `budget`
    kernels per op group and dtype of its chip's NeuSight training session (`kernel_eval.calibration_sample`),
    counted as `gpu`'s. Where NeuSight measured a sibling board (V100 PCIe for the SXM2, A100 PCIe 40GB
    for the 80GB), the sibling's kernels stand for the board's own."""
    from chronos_core.predict.kernel_eval import calibration_sample

    session = kernels[kernels["device"].isin(boards) & (kernels["split"] == "train")]
    if session.empty:
        raise ChronosError(f"no kernels of {gpu}'s chip to calibrate on; boards given: {list(boards)}")
    sample = calibration_sample(session, per_family=budget, seed=seed).assign(device=gpu)
    return model.without_calibration().calibrate(sample)


def _mape_by_gpu(rows: pd.DataFrame, column: str = "pred_logo_ms") -> pd.Series:
    scored = rows[rows[column].notna()]
    ape = (scored[column] - scored["compute_ms"]).abs() / scored["compute_ms"] * 100
    return ape.groupby(scored["gpu"]).mean()


def _blend(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with pred_blend_ms: the geometric mean of the kernel model's and the whole-model
    regressor's (`pred_whole_ms`) held-out predictions, the blend of chronos_logo.csv."""
    return rows.assign(pred_blend_ms=np.sqrt(rows["pred_logo_ms"] * rows["pred_whole_ms"]))


def chronos_calibration(
    datasheet: pd.DataFrame,
    budgets: tuple[int, ...] = CHRONOS_CALIBRATION_BUDGETS,
    seeds: tuple[int, ...] = (0, 1, 2),
    progress: bool = False,
) -> pd.DataFrame:
    """How much a calibration of the held-out GPU lowers the CHRONOS leave-one-GPU-out error.

    `datasheet`: the rows `chronos_logo` returned (its predictions are made again in each regime).
    Per GPU whose chip NeuSight measured: rows, the MAPE with the datasheet alone, calibrated with each
    budget (kernels per op group and dtype; mean over `seeds`, which kernels are drawn), and with the
    chip's kernels in the fit (the ceiling of any kernel calibration: what is left is how steps compose
    and what the host costs). Where the rows carry the whole-model regressor's held-out
    `pred_whole_ms`, also the blend (`_blend`) with the datasheet and with the first budget. Last row:
    the mean over those GPUs.
    """
    blend = "pred_whole_ms" in datasheet
    table = pd.DataFrame({"datasheet": _mape_by_gpu(datasheet)})
    for budget in budgets:
        runs = [chronos_logo(datasheet, progress, "calibrated", budget, seed) for seed in seeds]
        table[f"calibrated_{budget}"] = pd.concat([_mape_by_gpu(r) for r in runs], axis=1).mean(axis=1)
        if blend and budget == budgets[0]:
            both = pd.concat([_mape_by_gpu(_blend(r), "pred_blend_ms") for r in runs], axis=1)
            table[f"calibrated_{budget}_blend"] = both.mean(axis=1)
    table["in_fit"] = _mape_by_gpu(chronos_logo(datasheet, progress, "in_fit"))
    if blend:
        table.insert(1, "datasheet_blend", _mape_by_gpu(_blend(datasheet), "pred_blend_ms"))
    table = table.loc[sorted(g for g in table.index if pd.notna(table.loc[g, "in_fit"]))]
    table.insert(0, "rows", datasheet.groupby("gpu").size().reindex(table.index))
    table = table.rename_axis("gpu").reset_index()
    mean = {"gpu": "mean over GPUs", "rows": int(table["rows"].sum())}
    mean.update({c: float(table[c].mean()) for c in table.columns[2:]})
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


LARGE_INPUTS = ("TinyImageNet", "STL10")  # 64x64 and 96x96 images; the tables' other rows are 32x32 or text


def beyond_tables(rows: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """Rows whose training FLOPs per sample exceed every row of the same model in `table` (zoo names,
    `time_models.flops_ceilings_of`): the steps the whole-model regressor would extrapolate to."""
    from chronos_core.predict.time_models import flops_ceilings_of, zoo_names

    ceiling = zoo_names(rows["model"]).map(flops_ceilings_of(table)).fillna(0.0)
    return (pd.to_numeric(rows["flops_train_per_sample"], errors="coerce") > ceiling).to_numpy()


def _cloud_host(
    rows: pd.DataFrame,
    gpus: list[str],
    amp: bool,
    fold: tuple[str, ...] | None,
    configs: dict[str, list[str]],
) -> HostOverhead:
    """The median of the hosts of `gpus` fitted on their `rows` (fp32 or AMP steps) under a kernel fold."""
    hosts = []
    for gpu in gpus:
        part = rows[(rows["gpu"] == gpu) & ((rows["precision"].astype(int) == 16) == amp)]
        if part.empty:
            continue
        q = _fold_pricing(fold, gpu, configs[gpu]).loc[part["config"]]
        hosts.append(
            fit_host(q["gpu_ms"].to_numpy(), q["kernels"].to_numpy(), part["compute_ms"].to_numpy(float))
        )
    return median_host(hosts)


def _cloud_steps(
    priced: pd.DataFrame,
    part: pd.DataFrame,
    rows: pd.DataFrame,
    gpus: list[str],
    fold: tuple[str, ...] | None,
    configs: dict[str, list[str]],
) -> np.ndarray:
    """Step times (ms) of `part` from its `priced` kernels (aligned rows) and the `_cloud_host` of
    `gpus` fitted on `rows`, fp32 and AMP steps each with their own host."""
    amp = (part["precision"].astype(int) == 16).to_numpy()
    out = np.full(len(part), np.nan)
    for a in (False, True):
        host = _cloud_host(rows, gpus, a, fold, configs)
        out[amp == a] = host_step_ms(
            priced["gpu_ms"].to_numpy()[amp == a], priced["kernels"].to_numpy()[amp == a], host
        )
    return out


def _device_of(names: pd.Series) -> pd.Series:
    def one(name: object) -> str:
        try:
            return Devices.get(str(name)).name
        except ChronosError:
            return ""

    return names.map({n: one(n) for n in names.dropna().unique()}).fillna("")


def chronos_unseen_size(rows: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """Evidence for `TrainingTimePredictor`'s rule that a zoo model's step larger than any of that model's
    in the time tables goes to the kernel model, not the whole-model regressor.

    The regressor and the hosts are fitted without the tables' 64x64 (TinyImageNet) and 96x96 (STL10) rows;
    scored are the CHRONOS rows of those datasets beyond the rest of the tables (`beyond_tables`). Seen
    GPU: the regressor fitted on every GPU's remaining rows; the kernel model with the GPU's chip in the
    fit and its cloud's median host (as `host_for` gives a prediction). Unseen GPU: the GPU out of the
    regressor's fit, its chip out of the kernel fit, its host the median of its cloud's other hosts (as
    `chronos_logo`), and the two blended (geometric mean). Returns per GPU: rows, whole_seen,
    kernel_seen, whole_logo, kernel_logo, blend_logo (MAPE %), then the mean over GPUs.
    """
    from chronos_core.data.kernels import kernel_table
    from chronos_core.predict.time_models import make_time_model, training_table

    table = training_table()
    small = ~table["dataset"].isin(LARGE_INPUTS)
    test = rows[rows["dataset"].isin(LARGE_INPUTS)]
    test = test[beyond_tables(test, table[small])]
    fitted_on = rows[~rows["dataset"].isin(LARGE_INPUTS)]
    kernel_gpus = set(kernel_table(include_xla=False)["device"])
    gpus = sorted(rows["gpu"].unique())
    configs = {g: sorted(rows.loc[rows["gpu"] == g, "config"].unique()) for g in gpus}
    provider = rows.groupby("gpu")["host_provider"].first().to_dict()
    table_gpu = _device_of(table["gpu_name"])

    def whole(train: pd.Series, part: pd.DataFrame) -> np.ndarray:
        model = make_time_model("hardware_aware").fit(table[train])
        return model.predict(table.loc[part["row"]])["pred_compute_ms"].to_numpy(float)

    def kernel(part: pd.DataFrame, gpu: str, fold: tuple[str, ...] | None, cloud: list[str]) -> np.ndarray:
        priced = _fold_pricing(fold, gpu, configs[gpu]).loc[part["config"]]
        return _cloud_steps(priced, part, fitted_on, cloud, fold, configs)

    seen_whole = make_time_model("hardware_aware").fit(table[small])
    scored = test.assign(
        whole_seen=seen_whole.predict(table.loc[test["row"]])["pred_compute_ms"].to_numpy(float)
    )
    for column in ("kernel_seen", "whole_logo", "kernel_logo"):
        scored[column] = np.nan
    iterator = gpus
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(gpus, desc="unseen input size")
    for gpu in iterator:
        part = scored[scored["gpu"] == gpu]
        if part.empty:
            continue
        same_cloud = [g for g in gpus if provider.get(g) == provider.get(gpu)]
        scored.loc[part.index, "kernel_seen"] = kernel(part, gpu, None, same_cloud)
        fold = tuple(sorted(g for g in kernel_gpus if same_chip(g, gpu))) or None
        others = [g for g in same_cloud if g != gpu]
        scored.loc[part.index, "kernel_logo"] = kernel(part, gpu, fold, others)
        scored.loc[part.index, "whole_logo"] = whole(small & (table_gpu != gpu), part)
    scored["blend_logo"] = np.sqrt(scored["whole_logo"] * scored["kernel_logo"])
    columns = ["whole_seen", "kernel_seen", "whole_logo", "kernel_logo", "blend_logo"]
    ape = scored[columns].sub(scored["compute_ms"], axis=0).abs().div(scored["compute_ms"], axis=0) * 100
    per_gpu = ape.groupby(scored["gpu"]).mean()
    per_gpu.insert(0, "rows", scored.groupby("gpu").size())
    per_gpu = per_gpu.rename_axis("gpu").reset_index()
    mean = {"gpu": "mean over GPUs", "rows": int(per_gpu["rows"].sum())}
    mean.update({c: float(per_gpu[c].mean()) for c in columns})
    return pd.concat([per_gpu, pd.DataFrame([mean])], ignore_index=True)


def chronos_misses(rows: pd.DataFrame) -> pd.DataFrame:
    """Where the kernel model's leave-one-GPU-out miss on the CHRONOS rows sits (`chronos_logo` rows).

    Per GPU and model: rows, the share the model calls GPU-bound (its kernels' GPU time over half the
    predicted step), the median of measured / predicted and the MAPE. Then, over all GPUs (the mean of
    per-GPU MAPEs): GPU-bound rows, host-bound rows, all rows, and all rows once each GPU's own median
    miss is divided out (an oracle: what a perfect per-GPU factor, such as a host's speed, would leave).
    """
    frame = rows.assign(
        ratio=rows["compute_ms"] / rows["pred_logo_ms"],
        gpu_bound=rows["pred_logo_gpu_ms"] > 0.5 * rows["pred_logo_ms"],
    )
    frame["ape"] = (1 / frame["ratio"] - 1).abs() * 100
    per = (
        frame.groupby(["gpu", "model"])
        .agg(
            rows=("ape", "size"),
            gpu_bound_share=("gpu_bound", "mean"),
            median_ratio=("ratio", "median"),
            mape=("ape", "mean"),
        )
        .reset_index()
    )
    own = frame["ratio"] / frame.groupby("gpu")["ratio"].transform("median")
    oracle = (own - 1).abs() / own * 100  # |predicted x factor - measured| / measured
    summary = []
    everything = frame["gpu_bound"] | True
    for name, sel, ratio, ape in (
        ("GPU-bound rows", frame["gpu_bound"], frame["ratio"], frame["ape"]),
        ("host-bound rows", ~frame["gpu_bound"], frame["ratio"], frame["ape"]),
        ("all rows", everything, frame["ratio"], frame["ape"]),
        ("all rows, each GPU's median miss divided out", everything, own, oracle),
    ):
        summary.append(
            {
                "gpu": "all GPUs",
                "model": name,
                "rows": int(sel.sum()),
                "gpu_bound_share": float(frame.loc[sel, "gpu_bound"].mean()),
                "median_ratio": float(ratio[sel].median()),
                "mape": float(ape[sel].groupby(frame.loc[sel, "gpu"]).mean().mean()),
            }
        )
    return pd.concat([per, pd.DataFrame(summary)], ignore_index=True)


CEILING_PREDICTORS = {
    "kernel model": "pred_logo_ms",
    "whole-model regressor": "pred_whole_ms",
    "blend": "pred_blend_ms",
}
# what each factor is shared by: learned from the other GPUs' rows, or (oracles) from the held-out GPU's
CEILING_LEARNED = {"per model and precision, from the other GPUs": ["model", "precision"]}
CEILING_ORACLES = {
    "oracle per GPU": ["gpu"],
    "oracle per GPU, model and precision": ["gpu", "model", "precision"],
    "oracle per GPU, model, precision and batch size": ["gpu", "model", "precision", "batch_size"],
}


def chronos_ceilings(rows: pd.DataFrame) -> pd.DataFrame:
    """How far the CHRONOS leave-one-GPU-out error could fall, and what no model can remove.

    For each held-out prediction (`chronos_logo` rows; the whole-model one and the blend where
    `pred_whole_ms` is there): its MAPE as is, once each (model, precision)'s median miss on the
    other GPUs is divided out (a correction a model could learn), and once the median miss of every
    cell of the held-out GPU's own rows is divided out (oracles: a perfect factor per GPU, per GPU,
    model and precision, and per GPU, model, precision and batch size). Last, the measurement floor:
    each step is measured in three runs that differ only in learning rate (the same computation), and
    the mean of the other two misses it by this much. MAPE is the mean over GPUs of per-GPU MAPEs.
    """
    frame = _blend(rows) if "pred_whole_ms" in rows else rows.copy()

    def mape(pred: np.ndarray) -> float:
        return float(_mape_by_gpu(frame.assign(pred_ceiling_ms=pred), "pred_ceiling_ms").mean())

    records = []
    for name, col in CEILING_PREDICTORS.items():
        if col not in frame:
            continue
        pred = frame[col].to_numpy(float)
        log_miss = np.log(frame["compute_ms"] / frame[col])
        records.append({"predictor": name, "factor": "none (held out as is)", "mape": mape(pred)})
        for factor, keys in CEILING_LEARNED.items():
            shift = np.zeros(len(frame))
            for gpu in frame["gpu"].unique():
                held = (frame["gpu"] == gpu).to_numpy()
                learned = log_miss[~held].groupby([frame.loc[~held, k] for k in keys]).median()
                cells = pd.MultiIndex.from_frame(frame.loc[held, keys])
                shift[held] = learned.reindex(cells).fillna(0.0).to_numpy()
            records.append({"predictor": name, "factor": factor, "mape": mape(pred * np.exp(shift))})
        for factor, keys in CEILING_ORACLES.items():
            shift = log_miss.groupby([frame[k] for k in keys]).transform("median").to_numpy()
            records.append({"predictor": name, "factor": factor, "mape": mape(pred * np.exp(shift))})
    same = frame.groupby(["gpu", "config"])["compute_ms"]
    n = same.transform("size")
    others = ((same.transform("sum") - frame["compute_ms"]) / (n - 1)).where(n > 1)  # NaN: not scored
    floor = {"predictor": "the same step's other runs", "factor": "measurement floor"}
    records.append({**floor, "mape": mape(others.to_numpy())})
    return pd.DataFrame(records)


def fit_hosts(rows: pd.DataFrame, model: KernelModel) -> pd.DataFrame:
    """Every CHRONOS host's fitted overhead (per GPU, fp32 and AMP steps apart) under a kernel model."""
    records = []
    for gpu, part in rows.groupby("gpu"):
        priced = price_configs(sorted(part["config"].unique()), str(gpu), model)
        for amp in (False, True):
            sel = part[(part["precision"].astype(int) == 16) == amp]
            if sel.empty:
                continue
            q = priced.loc[sel["config"]]
            host = fit_host(
                q["gpu_ms"].to_numpy(), q["kernels"].to_numpy(), sel["compute_ms"].to_numpy(float)
            )
            records.append(
                {
                    "gpu": gpu,
                    "host_provider": sel["host_provider"].iloc[0] if "host_provider" in sel else "",
                    "amp": amp,
                    "gap_ms": host.gap_ms,
                    "dispatch_ms": host.dispatch_ms,
                    "fixed_ms": host.fixed_ms,
                }
            )
    return pd.DataFrame(records)
