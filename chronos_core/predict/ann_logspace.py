"""The A100 project's time regressor: a small Keras ANN trained on log(time per epoch).

Features as they used: depth, base_filters, log2(batch_size), log10(params), log10(steps_per_epoch);
the target is log(seconds per epoch), exponentiated at prediction time. Their script is not in
the public mirror, only its report (MAE 0.1014 s, RMSE 0.1614 s, R2 0.9938 on 143 rows, split
not stated), so the network here is the usual small one: standardized inputs, two Dense(64, relu)
layers, Adam, MSE. `features="chronos"` swaps in config + GPU-spec features for the CHRONOS
tables (target: compute_ms per iteration) so the same method can be compared across GPUs.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from chronos_core.errors import ChronosError, unknown_choice

A100_REPORTED = {"mae_s": 0.1014, "rmse_s": 0.1614, "r2": 0.9938}
A100_TRAIN_N = 50_000


def a100_features(table: pd.DataFrame) -> pd.DataFrame:
    """depth, base_filters, log2 batch, log10 params, log10 steps per epoch (their five features)."""
    batch = table["batch_size"].astype(float)
    steps = (
        table["steps_per_epoch"].astype(float)
        if "steps_per_epoch" in table
        else np.ceil(A100_TRAIN_N / batch)
    )
    return pd.DataFrame(
        {
            "depth": table["depth"].astype(float),
            "base_filters": table["base_filters"].astype(float),
            "log2_batch": np.log2(batch),
            "log10_params": np.log10(table["param_count"].astype(float)),
            "log10_steps": np.log10(steps),
        },
        index=table.index,
    )


def chronos_features(table: pd.DataFrame) -> pd.DataFrame:
    """Their recipe transplanted to the CHRONOS tables: log sizes, AMP, family and GPU spec columns."""

    def num(c: str) -> pd.Series:
        return (
            pd.to_numeric(table[c], errors="coerce").astype(float)
            if c in table
            else pd.Series(np.nan, index=table.index)
        )

    fam = table["family"].astype(str) if "family" in table else pd.Series("", index=table.index)
    out = pd.DataFrame(
        {
            "log2_batch": np.log2(num("batch_size")),
            "log10_params": np.log10(num("param_count")),
            "log10_flops": np.log10(num("flops_train_per_sample")),
            "log10_act": np.log10(num("act_bytes_per_sample") + 1),
            "amp": table["amp"].astype(float) if "amp" in table else 0.0,
            "depth": np.log2(num("depth")),
            "log_fp32": np.log10(num("gpu_fp32_tflops")),
            "log_fp16": np.log10(num("gpu_fp16_tflops")),
            "log_bw": np.log10(num("gpu_mem_bandwidth_gbs")),
            "log_sm": np.log10(num("gpu_sm_count")),
            "log_tc": np.log10(num("gpu_tensor_cores").fillna(0) + 1),
            **{f"fam_{f}": (fam == f).astype(float) for f in ("CNN", "MLP", "Transformer", "RNN")},
        },
        index=table.index,
    )
    return out.fillna(0.0)


FEATURE_SETS = {"a100": (a100_features, "epoch_time_s"), "chronos": (chronos_features, "compute_ms")}


class LogSpaceANN:
    """Keras MLP on log time (sklearn-style). `features`: 'a100' (their five) or 'chronos'."""

    def __init__(
        self,
        features: str = "a100",
        hidden: tuple[int, ...] = (64, 64),
        epochs: int = 400,
        batch_size: int = 16,
        learning_rate: float = 1e-3,
        random_state: int = 0,
    ):
        self.features = features
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _target(self, table: pd.DataFrame) -> np.ndarray:
        name = FEATURE_SETS[self.features][1]
        if name == "epoch_time_s" and "epoch_time_s" not in table:
            steps = table["steps_per_epoch"].astype(float)
            return (table["batch_time_ms"].astype(float) * steps / 1000.0).to_numpy()
        if name not in table:
            raise ChronosError(f"LogSpaceANN({self.features!r}) needs a {name} column")
        return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)

    def fit(self, table: pd.DataFrame) -> LogSpaceANN:
        """Standardize features, fit the network on log(target)."""
        if self.features not in FEATURE_SETS:
            raise unknown_choice("ANN feature set", self.features, FEATURE_SETS)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from chronos_core._env import tensorflow

        tf = tensorflow()

        X = FEATURE_SETS[self.features][0](table).to_numpy(dtype=np.float32)
        y = self._target(table)
        ok = np.isfinite(y) & (y > 0) & np.isfinite(X).all(axis=1)
        if ok.sum() < 5:
            raise ChronosError(f"LogSpaceANN needs >= 5 usable rows, got {int(ok.sum())}")
        X, y = X[ok], np.log(y[ok]).astype(np.float32)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-8
        tf.keras.utils.set_random_seed(self.random_state)
        layers = [tf.keras.Input(shape=(X.shape[1],))]
        layers += [tf.keras.layers.Dense(h, activation="relu") for h in self.hidden]
        layers += [tf.keras.layers.Dense(1)]
        model = tf.keras.Sequential(layers)
        model.compile(optimizer=tf.keras.optimizers.Adam(self.learning_rate), loss="mse")
        model.fit(
            (X - self.mean_) / self.scale_, y, epochs=self.epochs, batch_size=self.batch_size, verbose=0
        )
        self.model_ = model
        return self

    def predict_target(self, table: pd.DataFrame) -> np.ndarray:
        """Predictions of the raw target (seconds per epoch for 'a100', compute ms for 'chronos')."""
        if not hasattr(self, "model_"):
            raise ChronosError("LogSpaceANN is not fitted; call fit(table) first")
        X = FEATURE_SETS[self.features][0](table).to_numpy(dtype=np.float32)
        out = self.model_((X - self.mean_) / self.scale_, training=False).numpy()[:, 0]
        return np.exp(out.astype(float))

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Canonical prediction columns: batch time for 'a100' (no split), compute time for 'chronos'."""
        pred = self.predict_target(table)
        nan = np.full(len(table), np.nan)
        if self.features == "a100":
            steps = (
                table["steps_per_epoch"].astype(float)
                if "steps_per_epoch" in table
                else np.ceil(A100_TRAIN_N / table["batch_size"].astype(float))
            )
            batch, compute = 1000.0 * pred / np.asarray(steps, dtype=float), nan
        else:
            batch, compute = nan, pred
        return pd.DataFrame(
            {
                "pred_batch_time_ms": batch,
                "pred_compute_ms": compute,
                "pred_loader_ms": nan,
                "pred_batch_time_ms_lo": nan,
                "pred_batch_time_ms_hi": nan,
            },
            index=table.index,
        )


def _errors_s(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from chronos_core.predict.metrics import regression_metrics

    m = regression_metrics(measured, predicted)
    return {k: m[k] for k in ("n", "mae", "rmse", "r2", "mape", "median_ape", "p90_ape")}


def reproduce_a100(
    agg: pd.DataFrame, seed: int = 0, epochs: int = 400, n_folds: int = 5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Their ANN on their table under several protocols; errors in seconds per epoch.

    Returns (errors per protocol with their reported row first, per-config predictions of their
    five unseen configs: leaky and held out).

    Protocols: in-sample (fit and score on all rows: what a 'deploy' report measures), a random
    80/20 split, K-fold CV, their unseen-configs test as they ran it (the five configs are also
    training rows: leaky) and the same five held out of training (no leak).
    """
    from chronos_core.predict.splits import a100_unseen_split

    y = agg["epoch_time_s"].astype(float).to_numpy()

    def fit(idx: np.ndarray) -> LogSpaceANN:
        return LogSpaceANN("a100", epochs=epochs, random_state=seed).fit(agg.iloc[idx])

    rows = []
    everything = np.arange(len(agg))
    full = fit(everything)
    pred_all = full.predict_target(agg)
    rows.append({"protocol": "in-sample (all rows, as deployed)", **_errors_s(y, pred_all)})
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(agg))
    n_test = int(round(0.2 * len(agg)))
    test, train = perm[:n_test], perm[n_test:]
    rows.append({"protocol": "random 80/20", **_errors_s(y[test], fit(train).predict_target(agg.iloc[test]))})
    oof = np.full(len(agg), np.nan)
    for k in range(n_folds):
        test = perm[k::n_folds]
        oof[test] = fit(np.setdiff1d(everything, test)).predict_target(agg.iloc[test])
    rows.append({"protocol": f"{n_folds}-fold CV", **_errors_s(y, oof)})
    fold = next(a100_unseen_split(agg))
    rows.append(
        {
            "protocol": "unseen 5, in training (their test: leaky)",
            **_errors_s(y[fold.test_idx], pred_all[fold.test_idx]),
        }
    )
    held = fit(fold.train_idx).predict_target(agg.iloc[fold.test_idx])
    rows.append({"protocol": "unseen 5, held out (no leak)", **_errors_s(y[fold.test_idx], held)})
    out = pd.DataFrame(rows)
    reported = pd.DataFrame([{"protocol": "their report (split not stated)", "n": 143.0, "mae": 0.1014,
                              "rmse": 0.1614, "r2": 0.9938}])  # fmt: skip
    per_config = agg.iloc[fold.test_idx][["model", "batch_size"]].assign(
        measured_s=y[fold.test_idx], pred_leaky_s=pred_all[fold.test_idx], pred_heldout_s=held
    )
    return pd.concat([reported, out], ignore_index=True), per_config.reset_index(drop=True)


def _a100_oof(agg: pd.DataFrame, n_folds: int, epochs: int, seed: int) -> np.ndarray:
    """Out-of-fold ANN predictions for every row of runs_agg, cached on disk (JSON) by data and settings."""
    import json

    from chronos_core.data import registry
    from chronos_core.predict.splits import table_hash

    key = f"a100-ann-oof-{table_hash(agg)}-{n_folds}-{epochs}-{seed}"
    path = registry.cache_dir().parent / "models" / f"{key}.json"
    if path.is_file():
        try:
            values = json.loads(path.read_text())
            if len(values) == len(agg):
                return np.asarray(values, dtype=float)
        except (OSError, ValueError):
            pass
    perm = np.random.default_rng(seed).permutation(len(agg))
    oof = np.full(len(agg), np.nan)
    for k in range(n_folds):
        test = perm[k::n_folds]
        model = LogSpaceANN("a100", epochs=epochs, random_state=seed).fit(agg.iloc[np.setdiff1d(perm, test)])
        oof[test] = model.predict_target(agg.iloc[test])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(oof.tolist()))
        tmp.replace(path)
    except OSError:
        pass
    return oof


def predict_a100_epoch_time(
    candidates: pd.DataFrame, n_folds: int = 5, epochs: int = 200, seed: int = 0, upper_q: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Their ANN's seconds per epoch for candidate configs, and an upper time at the `upper_q` quantile.

    Trained on the A100 project's runs_agg.csv. A candidate that is one of its configs (same depth,
    base_filters, batch_size) gets the out-of-fold prediction of a model that never saw it, so a plan
    on predicted times is not a plan on memorised ones; other candidates get the model fitted on all
    rows. The upper time is the prediction times the `upper_q` quantile of held-out measured/predicted.
    """
    from chronos_core.data import registry
    from chronos_core.data.adapters import adapt_a100_agg

    agg = adapt_a100_agg(registry.read("a100-runs-agg")).reset_index(drop=True)
    keys = ["depth", "base_filters", "batch_size"]
    if "param_count" not in candidates and "params" in candidates:
        candidates = candidates.rename(columns={"params": "param_count"})
    missing = [c for c in (*keys, "param_count") if c not in candidates]
    if missing:
        raise ChronosError(f"Candidates need columns {missing} for predicted A100 epoch times")
    oof = _a100_oof(agg, n_folds, epochs, seed)
    ratio_q = float(np.quantile(agg["epoch_time_s"].astype(float).to_numpy() / oof, upper_q))
    index = {tuple(int(v) for v in row): i for i, row in enumerate(agg[keys].to_numpy())}
    rows = [index.get(tuple(int(v) for v in row)) for row in candidates[keys].to_numpy()]
    pred = np.array([oof[i] if i is not None else np.nan for i in rows], dtype=float)
    unseen = np.isnan(pred)
    if unseen.any():
        full = LogSpaceANN("a100", epochs=epochs, random_state=seed).fit(agg)
        pred[unseen] = full.predict_target(candidates[unseen])
    return pred, pred * max(ratio_q, 1.0)
