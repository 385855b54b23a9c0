"""Our time model: physics first, learned efficiency and overhead, intervals calibrated on unseen GPUs.

compute_ms = roofline time x exp(learned log-inefficiency). The roofline time is FLOPs / peak of
the precision in use and bytes / memory bandwidth (`physics.py`); what is learned (gradient
boosting in log space) reads only unit-free or physical features that mean the same on any GPU:
log roofline times, arithmetic intensity over the GPU's ridge point, work per layer per SM,
kernel-count proxy, batch size, AMP, layer mix, architecture generation, and the L2 cache
against the step's working set (activations, parameters), which decides how much traffic reaches
DRAM on GPUs with 40-96 MB of L2. A second booster on the
same features, monotone in the roofline times, predicts log compute time directly; the two are
averaged in log space (the first extrapolates better to unseen GPUs, the second to unseen models).
Loader wait depends on the host, not the GPU: it has its own model, which reads the host's
provider (`host_provider`, the public tables' `Provisioning`) and no GPU spec; a host measured in
training keeps a loader model that reads GPU specs. 80% intervals for the batch time come from
split-conformal quantiles of log-residuals predicted out of fold, one pair per regime (GPU and
model seen or not), each from folds of its own kind.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import xgboost as xgb

from chronos_core.errors import ChronosError
from chronos_core.predict.columns import HOST_PROVIDERS
from chronos_core.predict.physics import PHYSICS_FEATURES, physics_arrays
from chronos_core.predict.splits import config_groups

log = logging.getLogger(__name__)

# What the step asks of the host (batch, sample size, dataset, model size, AMP) and its kind.
_LOADER_WORKLOAD = (
    "log_batch",
    "log_input_elems",
    "log_dataset_size",
    "log_params",
    "log_flops_per_sample",
    "amp",
)
_LOADER_KIND = ("is_cpu", "family_CNN", "family_MLP", "family_Transformer", "family_RNN")
LOADER_FEATURES = (*_LOADER_WORKLOAD, *_LOADER_KIND, *(f"host_{h.lower()}" for h in HOST_PROVIDERS))
# The loader features that read GPU specs as a stand-in for the host: right for a GPU whose host
# was measured (the specs then name that host), wrong for a new one.
GPU_PROXY_LOADER_FEATURES = (
    *_LOADER_WORKLOAD,
    "log_bandwidth_gbs",
    "log_peak_tflops",
    "compute_capability",
    *_LOADER_KIND,
)
# For hosts measured in training the GPU specs name the host: its own loader model reads them.
SEEN_LOADER_FEATURES = GPU_PROXY_LOADER_FEATURES
# Interval regimes: how a row relates to the training rows (its GPU and its model seen or not).
REGIMES = ("seen", "unseen_gpu", "unseen_model", "unseen_gpu_model")
LOADER_FLOOR_MS = 0.05  # added before taking logs: loader waits of ~0 ms are common


def _shape_elems(text: object) -> float:
    if not isinstance(text, str):
        return np.nan
    parts = [p for p in text.strip("()[] ").replace(" ", "").split(",") if p]
    try:
        return float(np.prod([float(p) for p in parts])) if parts else np.nan
    except ValueError:
        return np.nan


def input_elems(table: pd.DataFrame) -> np.ndarray:
    """Elements per input sample from `input_shape` ('(3, 32, 32)') or `seq_len`."""
    if "input_shape" in table:
        shapes = table["input_shape"].to_numpy(dtype=object)
        lookup = {v: _shape_elems(v) for v in set(shapes) if isinstance(v, str)}
        out = np.array([lookup.get(v, np.nan) if isinstance(v, str) else np.nan for v in shapes], dtype=float)
    else:
        out = np.full(len(table), np.nan)
    if "seq_len" in table:
        seq = pd.to_numeric(table["seq_len"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out = np.where(np.isnan(out), seq, out)
    return out


def model_arrays(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Physics features plus the host-side loader features of every row, as arrays."""
    out = physics_arrays(table)
    batch = 2.0 ** out["log_batch"]
    size = table["dataset_size"] if "dataset_size" in table else pd.Series(np.nan, index=table.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = {
            "log_input_elems": np.log10(input_elems(table)),
            "log_dataset_size": np.log10(
                pd.to_numeric(size, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            ),
            "log_flops_per_sample": np.log10(out["flops_per_batch"] / batch),
        }
    out.update({k: np.where(np.isfinite(v), v, np.nan) for k, v in extra.items()})
    provider = _providers(table)
    for host in HOST_PROVIDERS:
        out[f"host_{host.lower()}"] = (provider == host.lower()).astype(float)
    return out


def model_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Physics features plus the host-side loader features of every row."""
    return pd.DataFrame(model_arrays(table), index=table.index)


def _matrix(arrays: dict[str, np.ndarray] | pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    return np.column_stack([np.asarray(arrays[n], dtype=np.float32) for n in names])


def _providers(table: pd.DataFrame) -> np.ndarray:
    """Each row's host provider, lower-case ('' when not given)."""
    if "host_provider" not in table:
        return np.full(len(table), "", dtype=object)
    values = table["host_provider"].to_numpy(dtype=object)
    return np.array(["" if pd.isna(v) else str(v).strip().lower() for v in values], dtype=object)


def _device_names(table: pd.DataFrame) -> np.ndarray:
    """Each row's device name (`device`, else `gpu_name`; '' when neither is given)."""
    key = "device" if "device" in table else "gpu_name" if "gpu_name" in table else None
    names = table[key].to_numpy(dtype=object) if key else np.full(len(table), "", dtype=object)
    return np.array(["" if pd.isna(n) else str(n) for n in names], dtype=object)


def _model_names(table: pd.DataFrame) -> np.ndarray:
    """Each row's model as its catalog name ('resnet50' and 'ResNet50' are one); '' when not given."""
    from chronos_core.catalog.models import canonical_model

    if "model" not in table:
        return np.full(len(table), "", dtype=object)
    names = table["model"].to_numpy(dtype=object)
    lookup = {n: canonical_model(n) for n in set(names) if not pd.isna(n)}
    return np.array([lookup.get(n, "") if not pd.isna(n) else "" for n in names], dtype=object)


def _host_keys(table: pd.DataFrame) -> np.ndarray:
    """'device|provider' per row: which measured host a row's loader wait belongs to."""
    names, providers = _device_names(table), _providers(table)
    return np.array([f"{n}|{p}" for n, p in zip(names, providers, strict=True)], dtype=object)


def _booster(params: dict, monotone: tuple[int, ...] | None = None) -> xgb.XGBRegressor:
    return xgb.XGBRegressor(tree_method="hist", monotone_constraints=monotone, **params)


def _conformal_quantiles(residuals: np.ndarray, coverage: float) -> tuple[float, float]:
    """Lower/upper residual quantiles with the split-conformal finite-sample correction."""
    res = residuals[np.isfinite(residuals)]
    if len(res) < 10:
        return (np.log(0.5), np.log(2.0))
    alpha = 1.0 - coverage
    n = len(res)
    lo = np.quantile(res, max(0.0, np.floor((n + 1) * alpha / 2) / n))
    hi = np.quantile(res, min(1.0, np.ceil((n + 1) * (1 - alpha / 2)) / n))
    return float(lo), float(hi)


class HardwareAwareTimeModel:
    """Roofline-normalized, hardware-aware iteration-time model (compute + loader, 80% intervals).

    Hyperparameters: boosting size/depth/rate, `blend` (weight of the roofline-offset booster in
    the log-space average; the rest goes to the monotone direct booster), `coverage` of the
    intervals, `calibration_folds` (inner folds per regime for the conformal residuals; 0 skips),
    `features` (names from `physics_arrays`; default PHYSICS_FEATURES, roofline plus L2 terms),
    `loader_features` (default LOADER_FEATURES: host-side features and the host's provider, used
    for hosts not in the training rows) and `seen_loader_features` (default SEEN_LOADER_FEATURES,
    which add GPU specs, used for measured hosts: same device and provider, or same device with
    the provider not given; None: one loader model for all).
    """

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        blend: float = 0.5,
        coverage: float = 0.8,
        calibration_folds: int = 4,
        random_state: int = 0,
        n_jobs: int = 1,
        features: tuple[str, ...] = PHYSICS_FEATURES,
        loader_features: tuple[str, ...] = LOADER_FEATURES,
        seen_loader_features: tuple[str, ...] | None = SEEN_LOADER_FEATURES,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.blend = blend
        self.coverage = coverage
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.features = tuple(features)
        self.loader_features = tuple(loader_features)
        self.seen_loader_features = None if seen_loader_features is None else tuple(seen_loader_features)

    # ------------------------------------------------------------------ fitting
    def _params(self) -> dict:
        return dict(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=0.8,
            colsample_bytree=0.8,
            min_child_weight=5,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _fit_parts(
        self, frame: pd.DataFrame, compute: np.ndarray, loader: np.ndarray, hosts: np.ndarray
    ) -> dict:
        feats = list(self.features)
        unknown = sorted(
            set(feats).union(self.loader_features, self.seen_loader_features or ()) - set(frame.columns)
        )
        if unknown:
            raise ChronosError(
                f"Unknown feature(s) {', '.join(unknown)}. Known: {', '.join(sorted(frame.columns))}"
            )
        X = frame[feats].to_numpy(dtype=np.float32)
        parts: dict = {}
        ok = np.isfinite(compute) & (compute > 0) & np.isfinite(frame["log_t_roof_ms"].to_numpy())
        if ok.sum() < 5:
            raise ChronosError(
                f"HardwareAwareTimeModel needs >= 5 rows with compute_ms > 0, got {int(ok.sum())}"
            )
        y = np.log(compute[ok])
        offset = frame["log_t_roof_ms"].to_numpy()[ok]
        parts["eff"] = _booster(self._params()).fit(X[ok], y - offset)
        mono = tuple(1 if f in ("log_t_flop_ms", "log_t_mem_ms", "log_t_roof_ms") else 0 for f in feats)
        parts["direct"] = _booster(self._params(), mono).fit(X[ok], y)
        okl = np.isfinite(loader) & (loader >= 0)
        if okl.sum() >= 5:
            y_loader = np.log(loader[okl] + LOADER_FLOOR_MS)
            XL = frame[list(self.loader_features)].to_numpy(dtype=np.float32)
            parts["loader"] = _booster(self._params()).fit(XL[okl], y_loader)
            if self.seen_loader_features is not None:
                XS = frame[list(self.seen_loader_features)].to_numpy(dtype=np.float32)
                parts["loader_seen"] = _booster(self._params()).fit(XS[okl], y_loader)
                # a measured host, and its device with the provider left blank (the best guess then)
                parts["seen_hosts"] = frozenset(hosts[okl]) | {k.split("|")[0] + "|" for k in hosts[okl]}
        return parts

    def _predict_parts(
        self, parts: dict, frame: dict | pd.DataFrame, hosts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        X = _matrix(frame, self.features)
        offset = np.asarray(frame["log_t_roof_ms"], dtype=float)
        log_eff = parts["eff"].get_booster().inplace_predict(X) + offset
        log_direct = parts["direct"].get_booster().inplace_predict(X)
        log_c = self.blend * log_eff + (1 - self.blend) * log_direct
        compute = np.exp(log_c)
        compute[~np.isfinite(offset)] = np.nan
        if "loader" in parts:
            log_loader = parts["loader"].get_booster().inplace_predict(_matrix(frame, self.loader_features))
            if "loader_seen" in parts:
                seen = np.isin(hosts, list(parts["seen_hosts"]))
                if seen.any():
                    XS = _matrix(frame, self.seen_loader_features)
                    log_loader = np.where(
                        seen, parts["loader_seen"].get_booster().inplace_predict(XS), log_loader
                    )
            loader = np.maximum(np.exp(log_loader) - LOADER_FLOOR_MS, 0.0)
        else:
            loader = np.zeros(len(offset))
        return compute, loader

    def fit(self, table: pd.DataFrame) -> HardwareAwareTimeModel:
        """Fit on canonical time rows with `compute_ms` (and `loader_wait_ms` where measured)."""
        if "compute_ms" not in table:
            raise ChronosError("HardwareAwareTimeModel.fit needs a compute_ms column (canonical time table)")
        frame = model_frame(table)
        compute = pd.to_numeric(table["compute_ms"], errors="coerce").to_numpy(dtype=float)
        loader_col = (
            table["loader_wait_ms"] if "loader_wait_ms" in table else pd.Series(np.nan, index=table.index)
        )
        loader = pd.to_numeric(loader_col, errors="coerce").to_numpy(dtype=float)
        self.parts_ = self._fit_parts(frame, compute, loader, _host_keys(table))
        self.n_train_ = int(np.isfinite(compute).sum())
        self.train_devices_ = frozenset(_device_names(table))
        self.train_models_ = frozenset(_model_names(table))
        self.log_residual_q_ = self._calibrate(table, frame, compute, loader)
        return self

    def _calibrate(
        self, table: pd.DataFrame, frame: pd.DataFrame, compute: np.ndarray, loader: np.ndarray
    ) -> tuple[float, float]:
        """Out-of-fold log-residuals of batch time per regime; returns the unseen-GPU quantiles.

        Regimes (REGIMES) and their folds: `seen` (configurations of GPUs and models in training:
        folds over configurations), `unseen_gpu` (folds leaving whole GPUs out), `unseen_model`
        (whole models out; one at a time when there are at most 2k), `unseen_gpu_model` (a GPU
        half and a model half out together, trained on the rows with neither: a quarter of the
        data, so on the wide side). A regime whose folds cannot be built (fewer than 3 GPUs or
        models) borrows the widest quantiles of those that could.
        """
        self.regime_q_ = {}
        if self.calibration_folds < 2:
            self.regime_q_ = dict.fromkeys(REGIMES, (np.log(0.5), np.log(2.0)))
            return self.regime_q_["unseen_gpu"]
        k = self.calibration_folds
        batch = compute + np.nan_to_num(loader, nan=0.0)
        hosts = _host_keys(table)
        gpu_fold = self._group_folds(_device_names(table), k)
        models = _model_names(table)
        n_models = len(set(models))
        # few models: leave one out, as an unseen model will be (k folds would drop a third of them)
        model_fold = self._group_folds(models, n_models if n_models <= 2 * k else k)
        config_fold = config_groups(table, with_device=False) % k
        schemes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
            "seen": [(config_fold != i, config_fold == i) for i in range(k)]
        }
        if gpu_fold is not None:
            schemes["unseen_gpu"] = [(gpu_fold != i, gpu_fold == i) for i in range(k)]
        if model_fold is not None:
            schemes["unseen_model"] = [(model_fold != i, model_fold == i) for i in np.unique(model_fold)]
        if gpu_fold is not None and model_fold is not None:
            g2, m2 = gpu_fold % 2, model_fold % 2
            schemes["unseen_gpu_model"] = [
                ((g2 != a) & (m2 != b), (g2 == a) & (m2 == b)) for a in range(2) for b in range(2)
            ]
        residuals = {}
        for regime, folds in schemes.items():
            res = np.full(len(table), np.nan)
            for train, test in folds:
                try:
                    parts = self._fit_parts(frame[train], compute[train], loader[train], hosts[train])
                except ChronosError:
                    continue
                c, ld = self._predict_parts(parts, frame[test], hosts[test])
                res[test] = np.log(batch[test]) - np.log(c + ld)
            residuals[regime] = res
            self.regime_q_[regime] = _conformal_quantiles(res, self.coverage)
        widest = (min(q[0] for q in self.regime_q_.values()), max(q[1] for q in self.regime_q_.values()))
        for regime in REGIMES:
            self.regime_q_.setdefault(regime, widest)
        self.calibration_residuals_ = residuals.get("unseen_gpu", residuals["seen"])
        return self.regime_q_["unseen_gpu"]

    def _group_folds(self, names: np.ndarray, k: int) -> np.ndarray | None:
        """Fold index per row, whole groups (GPUs, models) kept together; None under 3 groups."""
        uniq = np.array(sorted(set(names)))
        if len(uniq) < 3:
            return None
        rng = np.random.default_rng(self.random_state)
        fold_of = dict(zip(rng.permutation(uniq), np.arange(len(uniq)) % k, strict=True))
        return np.array([fold_of[n] for n in names])

    def regimes(self, table: pd.DataFrame) -> np.ndarray:
        """Each row's regime against the training rows: seen, unseen_gpu, unseen_model, unseen_gpu_model."""
        gpu_seen = np.isin(_device_names(table), list(self.train_devices_))
        model_seen = np.isin(_model_names(table), list(self.train_models_))
        index = (~gpu_seen).astype(int) + 2 * (~model_seen).astype(int)
        return np.array(REGIMES, dtype=object)[index]

    # ------------------------------------------------------------------ predicting
    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Predicted compute, loader and batch time (ms) with the interval, indexed like `table`."""
        if not hasattr(self, "parts_"):
            raise ChronosError("HardwareAwareTimeModel is not fitted; call fit(table) first")
        compute, loader = self._predict_parts(self.parts_, model_arrays(table), _host_keys(table))
        batch = compute + loader
        regime = self.regimes(table)
        lo = np.array([self.regime_q_[r][0] for r in regime])
        hi = np.array([self.regime_q_[r][1] for r in regime])
        return pd.DataFrame(
            {
                "pred_batch_time_ms": batch,
                "pred_compute_ms": compute,
                "pred_loader_ms": loader,
                "pred_batch_time_ms_lo": batch * np.exp(lo),
                "pred_batch_time_ms_hi": batch * np.exp(hi),
            },
            index=table.index,
        )
