"""Regression metrics for time predictions: errors in ms and in percent, and interval coverage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _arrays(*values: Sequence[float] | None) -> list[np.ndarray | None]:
    return [None if v is None else np.asarray(v, dtype=float) for v in values]


def ape(y_true: Sequence[float], y_pred: Sequence[float]) -> np.ndarray:
    """Absolute percentage error per row (in %); NaN where the truth is not positive."""
    t, p = _arrays(y_true, y_pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, 100.0 * np.abs(p - t) / t, np.nan)


def regression_metrics(
    y_true: Sequence[float],
    y_pred: Sequence[float],
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
) -> dict[str, float]:
    """MAE, RMSE, R2, MAPE, median and p90 APE and, given bounds, interval coverage and mean width (%).

    Rows with a missing truth or prediction are ignored (counted in `n`).
    """
    t, p, low, high = _arrays(y_true, y_pred, lo, hi)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    out: dict[str, float] = {"n": float(ok.sum())}
    if not len(t):
        return out | {k: np.nan for k in ("mae", "rmse", "r2", "mape", "median_ape", "p90_ape")}
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    a = ape(t, p)
    out.update(
        mae=float(np.abs(err).mean()),
        rmse=float(np.sqrt((err**2).mean())),
        r2=float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else np.nan,
        mape=float(np.nanmean(a)),
        median_ape=float(np.nanmedian(a)),
        p90_ape=float(np.nanpercentile(a, 90)),
    )
    if low is not None and high is not None:
        low, high = low[ok], high[ok]
        has = np.isfinite(low) & np.isfinite(high)
        out["coverage"] = float(((t >= low) & (t <= high))[has].mean()) if has.any() else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            out["interval_width_pct"] = (
                float(np.mean(100.0 * (high - low)[has] / p[has])) if has.any() else np.nan
            )
    return out


def metrics_table(
    frame: pd.DataFrame,
    target: str,
    pred: str,
    by: str | Sequence[str] | None = None,
    lo: str | None = None,
    hi: str | None = None,
) -> pd.DataFrame:
    """`regression_metrics` of column `pred` against `target`, overall or per group of `by`."""

    def one(part: pd.DataFrame) -> dict[str, float]:
        bounds = (part[lo], part[hi]) if lo and hi and lo in part and hi in part else (None, None)
        return regression_metrics(part[target], part[pred], *bounds)

    if by is None:
        return pd.DataFrame([one(frame)])
    keys = [by] if isinstance(by, str) else list(by)
    rows = [
        dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)) | one(g)
        for k, g in frame.groupby(keys)
    ]
    return pd.DataFrame(rows)


def throughput_error(
    batch_size: Sequence[float], batch_time_ms: Sequence[float], pred_batch_time_ms: Sequence[float]
) -> dict[str, float]:
    """Errors of throughput (samples/s) derived from predicted batch time, as the A100 project did."""
    b, t, p = _arrays(batch_size, batch_time_ms, pred_batch_time_ms)
    return regression_metrics(1000.0 * b / t, 1000.0 * b / p)
