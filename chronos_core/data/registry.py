"""Public measurement tables by name: pinned URL, local mirror, user cache, schema check.

Lookup order for `path(name)`: the mirror directory (offline copy of the public repositories,
`CHRONOS_DATA_MIRROR`, default `../shared/seeddata` beside the repo when present), then the user
cache (`$CHRONOS_CACHE_DIR/data`, default `~/.cache/chronos/data`), then nothing: `fetch(name)`
downloads into the cache. Mirrors may withhold rows, so files are checked by schema, not hash.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from chronos_core.errors import ChronosError, unknown_choice

REPO_ROOT = Path(__file__).resolve().parents[2]

CHRONOS_REPO = ("anonymousgithacc/chronos", "77da4a3c380d05b63f3bfae37ef1719516aefc17")
CAPE_REPO = ("genericgitrepos/CAPE", "2f48daaabf50a45381f25ee377086ad7a4151429")
CAPE_OLD_REPO = ("genericgitrepos/CAPE", "0d848e712968a4f98f9832da9452f642a51ac808")
A100_REPO = (
    "amacharla15/Hardware-Aware-Training-Time-Throughput-Prediction",
    "88f77b8ea707eb4211d8dac29a54164a48e28fbf",
)
PRENET_REPO = ("pacslab/PreNeT", "229c871000dde16e00a850d5f3283ae21c065108")
NEUSIGHT_REPO = ("sitar-lab/NeuSight", "6945927d9afcca2b9daf021f8395e53edc5b4eef")
XLA_REPO = ("tensorflow/tensorflow", "3ddd17937de4fa38c75e7352e890bcbd59b521a7")

_TIME_CONFIG = ("dataset", "batch_size", "precision", "model", "param_count", "gpu_name")
_CONV_CONFIG = ("dataset", "model", "optimizer", "learning_rate", "batch_size", "param_count", "T_conv")
_PROBE_BATCH = (
    "dataset",
    "learning_rate",
    "batch_size",
    "epsilon",
    "logP",
    "logB",
    "logG2",
    "logTau",
    "logLR",
    "logN",
    "T_star",
    "converged",
)


@dataclass(frozen=True)
class Source:
    """One public table: where it lives upstream (pinned), where in the mirror, what it holds."""

    name: str
    repo: str
    commit: str
    repo_path: str  # path inside the upstream repository
    mirror_path: str  # path inside the mirror directory
    # epoch_time, convergence, probe_batch, eval_records, a100_runs, a100_agg, gpu_specs, report,
    # kernels (per-kernel timings), model_label (per-model latency JSON), model_config, gemm_table
    kind: str
    required_columns: tuple[str, ...]
    description: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{urllib.parse.quote(self.repo_path)}"

    @property
    def cache_relpath(self) -> Path:
        return Path(self.repo.replace("/", "__")) / self.commit / self.repo_path


def _chronos(table: str, family: str, kind: str, cols: tuple[str, ...], what: str) -> Source:
    folder = "epoch_time_prediction" if kind == "epoch_time" else "epoch_convergence_prediction"
    rel = f"{folder}/data/{family}.csv"
    return Source(table, *CHRONOS_REPO, rel, f"chronos/{rel}", kind, cols, what)


def _cape_meta(family: str) -> Source:
    rel = f"Probe Batch Convergence/Meta Datasets/meta_dataset_{family}.csv"
    return Source(
        f"cape-probe-{family}",
        *CAPE_REPO,
        rel,
        f"cape/{rel}",
        "probe_batch",
        _PROBE_BATCH,
        f"CAPE probe-batch runs ({family}): steps T_star of full-batch AdamW on one batch until "
        "loss <= epsilon * initial loss (cap 5000), with log-features",
    )


def _cape_eval(family: str) -> Source:
    rel = f"evaluation/{family}_eval_records.csv"
    return Source(
        f"cape-eval-{family.lower()}",
        *CAPE_OLD_REPO,
        rel,
        f"cape/_store_older_commits/{rel}",
        "eval_records",
        ("dataset", "learning_rate", "batch_size", "T_star", "T_pred"),
        f"CAPE's own held-out predictions for {family} (T_star measured, T_pred predicted)",
    )


def _a100(rel: str, kind: str, cols: tuple[str, ...], what: str) -> Source:
    stem = rel.removeprefix("results_v3/").removesuffix(".csv").removesuffix(".txt")
    name = "a100-" + stem.replace("_", "-")
    return Source(name, *A100_REPO, rel, f"a100_cifar10_cnn/{rel}", kind, cols, what)


_TIME_WHAT = (
    "per-batch training time (loader wait + compute, ms) of {} models on several GPUs, with "
    "config, analytic features and GPU spec columns"
)
_CONV_WHAT = "epochs to convergence (early stopping on validation loss) of {} models with init-time probes"

# NeuSight (ASPLOS 2025): per-kernel fp32 timings (TF32 off), PyTorch 2.1 / CUDA 12.1, five GPUs.
NEUSIGHT_OPS = (
    "bmm", "linear", "conv", "add", "addu", "div", "divu", "mul", "mulu", "pow", "powu", "gelu", "relu",
    "tanh", "ln", "softmax",
)  # fmt: skip
NEUSIGHT_GPUS = (
    "NVIDIA A100-PCIE-40GB",
    "Tesla P100-PCIE-16GB",
    "Tesla P4",
    "Tesla T4",
    "Tesla V100-PCIE-32GB",
)
# test_shapes/vec.csv and habitat.csv repeat elem + ln + softmax row for row: not registered.
NEUSIGHT_TEST_SETS = ("bmm", "linear", "elem", "ln", "softmax")
NEUSIGHT_LABELS = {
    "NVIDIA A100-PCIE-40GB": (
        "bert_large-inf-512-8", "bert_large-inf-512-16", "gpt2_large-inf-1024-4", "gpt2_large-inf-1024-8",
        "gpt3_xl-inf-2048-2", "gpt3_xl-inf-2048-8", "gpt3_27-inf-2048-2", "gpt3_27-inf-2048-8",
        "opt_13-inf-2048-2", "opt_13-inf-2048-8",
    ),
    "Tesla P100-PCIE-16GB": (
        "bert_large-inf-512-8", "bert_large-inf-512-16", "gpt2_large-inf-1024-4", "gpt2_large-inf-1024-8",
        "opt_13-inf-2048-2",
    ),
    "Tesla P4": ("bert_large-inf-512-8", "bert_large-inf-512-16", "gpt2_large-inf-1024-4"),
    "Tesla T4": (
        "bert_large-inf-512-8", "bert_large-inf-512-16", "gpt2_large-inf-1024-4", "gpt2_large-inf-1024-8",
        "opt_13-inf-2048-2",
    ),
    # 4-GPU training steps (global batch 4): data, tensor and pipeline parallel
    "NVIDIA A100-SXM4-40GB": (
        "gpt2_large-train-1024-4-dp4", "gpt2_large-train-1024-4-tp4", "gpt2_large-train-1024-4-pp4_1",
    ),
}  # fmt: skip
NEUSIGHT_MODEL_CONFIGS = (
    "bert", "bert_large", "gpt2_large", "gpt2_med", "gpt2_xl", "gpt3_13", "gpt3_27", "gpt3_67", "gpt3_xl",
    "opt", "opt_13", "switchxl4",
)  # fmt: skip
_KERNEL_COLS = ("OPName", "Latency", "Device")


def gpu_slug(name: str) -> str:
    """'Tesla P100-PCIE-16GB' -> 'tesla-p100-pcie-16gb' (registry names)."""
    return "-".join(name.lower().replace("_", " ").split())


def _neusight(name: str, rel: str, mirror: str, kind: str, cols: tuple[str, ...], what: str) -> Source:
    return Source(name, *NEUSIGHT_REPO, f"scripts/asplos/{rel}", f"neusight/{mirror}", kind, cols, what)


def _neusight_sources() -> list[Source]:
    out = []
    for op in NEUSIGHT_OPS:
        for gpu in NEUSIGHT_GPUS:
            # the conv table was measured on an A100 80GB PCIe instead of the A100-40GB
            dev = "NVIDIA A100 80GB PCIe" if op == "conv" and gpu.startswith("NVIDIA A100") else gpu
            out.append(
                _neusight(
                    f"neusight-train-{op}-{gpu_slug(dev)}",
                    f"data/dataset/train/collect/{op}/p2.1.0/{dev}.csv",
                    f"kernels/train/{op}/{dev}.csv.gz",
                    "kernels",
                    _KERNEL_COLS,
                    f"NeuSight kernel timings: {op} on {dev} (fp32, TF32 off; training shapes)",
                )
            )
    for test in NEUSIGHT_TEST_SETS:
        out.append(
            _neusight(
                f"neusight-test-{test}",
                f"data/dataset/test/{test}.csv",
                f"kernels/test_shapes/{test}.csv.gz",
                "kernels",
                _KERNEL_COLS,
                f"NeuSight out-of-distribution shapes ({test}) on the five training GPUs",
            )
        )
    for gpu, labels in NEUSIGHT_LABELS.items():
        folder = gpu.replace(" ", "_")
        for label in labels:
            out.append(
                _neusight(
                    f"neusight-label-{gpu_slug(gpu)}-{label.replace('_', '-')}",
                    f"label/{folder}/{label}.json",
                    f"labels/{folder}/{label}.json",
                    "model_label",
                    (),
                    f"NeuSight measured latency (ms) of {label} on {gpu}",
                )
            )
    for cfg in NEUSIGHT_MODEL_CONFIGS:
        out.append(
            _neusight(
                f"neusight-config-{cfg.replace('_', '-')}",
                f"data/DLmodel_configs/{cfg}.json",
                f"model_configs/{cfg}.json",
                "model_config",
                (),
                f"Hugging Face config.json of NeuSight's {cfg}",
            )
        )
    for table in ("perop", "nvidia_train", "nvidia_inf"):
        out.append(
            _neusight(
                f"neusight-published-{table.replace('_', '-')}",
                f"summary/{table}.csv",
                f"published_errors/{table}.csv",
                "report",
                (),
                f"NeuSight's published % errors ({table}): roofline, Habitat, Li et al., NeuSight",
            )
        )
    return out


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        _chronos(
            "chronos-time-cnn", "CNN", "epoch_time", _TIME_CONFIG + ("compute_ms",), _TIME_WHAT.format("CNN")
        ),
        _chronos(
            "chronos-time-mlp",
            "MLP",
            "epoch_time",
            _TIME_CONFIG + ("avg_compute_ms",),
            _TIME_WHAT.format("MLP"),
        ),
        _chronos(
            "chronos-time-transformer",
            "Transformer",
            "epoch_time",
            _TIME_CONFIG + ("compute_ms",),
            _TIME_WHAT.format("Transformer"),
        ),
        _chronos("chronos-conv-cnn", "CNN", "convergence", _CONV_CONFIG, _CONV_WHAT.format("CNN")),
        _chronos("chronos-conv-mlp", "MLP", "convergence", _CONV_CONFIG, _CONV_WHAT.format("MLP")),
        _chronos(
            "chronos-conv-transformer",
            "Transformer",
            "convergence",
            _CONV_CONFIG,
            _CONV_WHAT.format("Transformer"),
        ),
        Source(
            "cape-dataset",
            *CAPE_REPO,
            "Evaluation/CAPE_Dataset.csv",
            "cape/Evaluation/CAPE_Dataset.csv",
            "convergence",
            _CONV_CONFIG + ("val_loss_prefix",),
            "CAPE convergence runs (CHRONOS runs plus RNNs) with val_loss_prefix: first 20 epochs' "
            "validation loss",
        ),
        *(_cape_meta(f) for f in ("mlp", "cnn", "rnn", "transformer")),
        *(_cape_eval(f) for f in ("MLP", "CNN", "RNN", "Transformer")),
        _a100(
            "runs.csv",
            "a100_runs",
            (
                "depth",
                "base_filters",
                "batch_size",
                "epochs",
                "params",
                "epoch_times_json",
                "avg_time_sec",
                "images_per_sec",
                "test_acc",
            ),
            "Keras CNN on CIFAR-10, A100 80GB PCIe: one row per run (159 runs)",
        ),
        _a100(
            "runs_agg.csv",
            "a100_agg",
            (
                "depth",
                "base_filters",
                "batch_size",
                "params",
                "n",
                "steps_per_epoch",
                "avg_time_mean",
                "avg_time_std",
                "thr_mean",
                "thr_std",
                "acc_mean",
                "acc_std",
            ),
            "the same runs aggregated over repeats (143 configs)",
        ),
        _a100(
            "results_v3/dp_plan_measured_3600s_epochs50_acc.txt",
            "report",
            (),
            "their DP plan: 3600 s budget, 50 epochs, min_acc 0.6, measured time",
        ),
        _a100(
            "results_v3/dp_plan_pred_3600s_epochs50_acc.txt",
            "report",
            (),
            "their DP plan: 3600 s budget, 50 epochs, min_acc 0.6, predicted time",
        ),
        _a100(
            "results_v3/time_ann_deploy_report.txt", "report", (), "their ANN (log-space) time model report"
        ),
        _a100("results_v3/unseen_eval.txt", "report", (), "their unseen-config evaluation report"),
        Source(
            "prenet-gpus",
            *PRENET_REPO,
            "gpus/GPUs.csv",
            "prenet/gpus/GPUs.csv",
            "gpu_specs",
            ("GPU", "SM", "Boost Clock (MHz)", "GPU Memory Bandwidth (GB/s)", "FP32"),
            "PreNeT's spec table of 7 GPUs (TechPowerUp columns)",
        ),
        *_neusight_sources(),
        Source(
            "xla-gemm-b200",
            *XLA_REPO,
            "third_party/xla/xla/service/gpu/model/default_matmul_perf_table.txtpb",
            "xla/gemm_B200.csv",
            "gemm_table",
            ("gpu", "b", "m", "n", "k", "dtype", "flops_per_s"),
            "XLA's measured GEMM throughput on an NVIDIA B200 (bf16, f32 on TF32 tensor cores, fp8); "
            "upstream is protobuf text (entry sm_100_B200), the mirror holds it as CSV",
        ),
    ]
}


# Kinds read as text (reports, JSON labels and configs), not as a table.
TEXT_KINDS = ("report", "model_label", "model_config")


def get_source(name: str) -> Source:
    """The registered source called `name` (ChronosError listing the known ones otherwise)."""
    if name not in SOURCES:
        raise unknown_choice("data source", name, SOURCES)
    return SOURCES[name]


def mirror_dir() -> Path | None:
    """The offline mirror: $CHRONOS_DATA_MIRROR, else ../shared/seeddata beside the repo if present."""
    env = os.environ.get("CHRONOS_DATA_MIRROR")
    if env:
        return Path(env).expanduser()
    default = REPO_ROOT.parent / "shared" / "seeddata"
    return default if default.is_dir() else None


def cache_dir() -> Path:
    """Where `fetch` stores downloads: <cache root>/data ($CHRONOS_CACHE_DIR, default ~/.cache/chronos,
    is the root of every chronos cache: data, features, opgraph, predictions)."""
    from chronos_core.prediction_cache import cache_root

    return cache_root() / "data"


def locate(name: str) -> Path | None:
    """The local file for a source (mirror first, then cache), or None if neither has it."""
    src = get_source(name)
    mirror = mirror_dir()
    for candidate in ([mirror / src.mirror_path] if mirror else []) + [cache_dir() / src.cache_relpath]:
        if candidate.is_file():
            return candidate
    return None


def path(name: str) -> Path:
    """The local file for a source, or a one-line ChronosError saying what to set or run."""
    found = locate(name)
    if found is None:
        mirror = mirror_dir()
        where = f"mirror {mirror}" if mirror else "no mirror (CHRONOS_DATA_MIRROR unset)"
        raise ChronosError(
            f"Data source {name!r} is not available offline ({where}; cache {cache_dir()}). "
            f"Set CHRONOS_DATA_MIRROR to a copy of the public tables or run `chronos data fetch {name}`."
        )
    return found


def check_schema(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Raise ChronosError if required columns are missing (a mirror may hold fewer rows, not columns)."""
    missing = [c for c in get_source(name).required_columns if c not in frame.columns]
    if missing:
        raise ChronosError(
            f"Data source {name!r} lacks columns {missing}; is the mirror or cache file corrupt?"
        )
    return frame


def read(name: str) -> pd.DataFrame:
    """Read a registered table as published (no adaptation), schema-checked."""
    return check_schema(name, pd.read_csv(path(name)))


def read_text(name: str) -> str:
    """Read a registered text report (e.g. the A100 project's DP plans) as published."""
    return path(name).read_text(encoding="utf-8", errors="replace")


def fetch(name: str, timeout_s: float = 30.0, force: bool = False) -> Path:
    """Download a source into the cache (atomically); returns the cached path."""
    src = get_source(name)
    target = cache_dir() / src.cache_relpath
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(src.url, timeout=timeout_s) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChronosError(
            f"Could not download {name!r} from {src.url} ({reason}). Without network, set "
            "CHRONOS_DATA_MIRROR to a folder holding the public tables."
        ) from None
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        tmp.write(payload)
    try:
        if src.required_columns:
            check_schema(name, pd.read_csv(tmp.name))
    except Exception:
        os.unlink(tmp.name)
        raise
    shutil.move(tmp.name, target)
    return target


def sources_table() -> pd.DataFrame:
    """One row per registered source with its availability here (for `chronos data list`)."""
    rows = []
    for src in SOURCES.values():
        found = locate(src.name)
        where = (
            "-"
            if found is None
            else ("mirror" if mirror_dir() and str(found).startswith(str(mirror_dir())) else "cache")
        )
        rows.append(
            {
                "name": src.name,
                "kind": src.kind,
                "available": where,
                "url": src.url,
                "description": src.description,
            }
        )
    return pd.DataFrame(rows)
