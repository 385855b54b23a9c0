"""Per-kernel latency on any GPU: a roofline from datasheet specs times a learned efficiency.

    t_pred = t_roof / efficiency,   t_roof = max(FLOPs / peak(dtype), bytes / bandwidth)

`efficiency` is learned per op family (gemm, conv, elementwise, ln, softmax) by gradient boosting
on log(t_measured / t_roof) from features that mean the same on every GPU: the roofline time
itself (small kernels are launch-bound on any GPU), the balance of compute and memory time
(intensity over the ridge point), waves of output tiles over the SMs and tile quantization, the
working set over L2, elements per SM, and the shape. No feature names a GPU, and no profiler column
(kernel name, grid, warps) is read: none is known before running.

A device profile (`chronos calibrate`, or a handful of the GPU's kernels) corrects the efficiency
per family and dtype, and for a handful of GEMMs per op (bmm, linear): a table of many kernels with a
robust line in log t_roof, a handful with a level on the kernel's own time plus an additive per-call
floor (`fit_floor_correction`); what is still missed on each profiled kernel is carried to nearby shapes
(`LocalResidual`). Without a profile the datasheet is all there is.
Tensor-core precisions (tf32, fp16, bf16) use the tensor peak of that precision. A tensor-core GEMM
takes the efficiency the fp32 model gives the same work (shape, tiles, bytes), not the efficiency of an
fp32 kernel as short as its own roofline: a 6-GFLOP bf16 GEMM is a large kernel that finishes fast,
not a small one (`KernelModel._base_times`; checked on XLA's B200 table and the CHRONOS AMP rows in
notebook 08). Convolutions keep their own: no tensor-core convolution was measured to check a change on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices, DeviceSpec
from chronos_core.data.kernels import BINARY_OPS, ELEMENTWISE_OPS, op_family
from chronos_core.errors import ChronosError

FAMILIES = ("gemm", "conv", "elementwise", "ln", "softmax")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1}
TENSOR_DTYPES = ("tf32", "fp16", "bf16", "fp8")
# FLOPs per element of the vector kernels (reads, a reduction and a normalisation; roughly).
_VECTOR_FLOPS = {"ln": 8.0, "softmax": 5.0}
_OP_CODE = {op: i for i, op in enumerate(ELEMENTWISE_OPS)}
_TILES = (64, 128)
# what identifies a kernel call: identical rows get one prediction
_KEY_COLUMNS = ("op", "family", "B", "M", "N", "K", "H", "in_channels", "out_channels", "kernel_size",
                "input_size", "stride", "padding", "dtype", "device")  # fmt: skip
_TINY = 1e-12
# Launch floor of one kernel call through PyTorch on a device nobody measured (ms): the median of
# NeuSight's five GPUs (their smallest calls take 20-30 us with the framework's dispatch included).
DEFAULT_FLOOR_MS = 0.025
MIN_POINTS_FOR_SLOPE = 50
# A profile whose launch floor is under this share of the training floor timed kernels on the device
# alone (no framework call in them, e.g. XLA's B200 table).
DEVICE_SIDE_FLOOR_SHARE = 0.5
# The additive floor is fitted only when the calibration kernels span this ratio of latencies.
MIN_FLOOR_SPAN = 4.0
# A dtype or op of a calibration gets its own correction from this many kernels on.
MIN_GROUP_POINTS = 3
# Calibrations up to this many kernels per group also leave a LocalResidual (a table has a line).
LOCAL_MAX_POINTS = 1000
# Chosen on the training-shape sessions of held-out GPUs (h in 0.5-2.5, shrink in 0.25-3), never on the
# out-of-distribution shapes notebook 08 reports.
LOCAL_BANDWIDTH = 1.0
LOCAL_SHRINK = 0.25
LOCAL_FEATURES = {
    "gemm": ("log_B", "log_M", "log_N", "log_K", "log_t_roof_us"),
    "vector": ("log_elems", "log_H", "log_t_roof_us"),
}

GEMM_FEATURES = (
    "log_roof_over_floor",
    "log_flop_over_mem",
    "log_B",
    "log_M",
    "log_N",
    "log_K",
    "log_tiles64_per_sm",
    "log_tiles128_per_sm",
    "wave_eff64",
    "wave_eff128",
    "tile_eff64",
    "tile_eff128",
    "log_ws_over_l2",
)
CONV_FEATURES = GEMM_FEATURES + ("log_input_size", "log_in_channels", "log_out_channels")
VECTOR_FEATURES = (
    "log_roof_over_floor",
    "log_elems",
    "log_elems_per_sm",
    "log_H",
    "log_rows_per_sm",
    "log_ws_over_l2",
)
ELEMENTWISE_FEATURES = VECTOR_FEATURES + ("op_code", "binary")
FEATURES = {
    "gemm": GEMM_FEATURES,
    "conv": CONV_FEATURES,
    "elementwise": ELEMENTWISE_FEATURES,
    "ln": VECTOR_FEATURES,
    "softmax": VECTOR_FEATURES,
}


def device_spec(device: str | DeviceSpec) -> DeviceSpec:
    """A catalog spec from any spelling (or a spec passed through)."""
    return device if isinstance(device, DeviceSpec) else Devices.get(str(device))


def peak_flops(spec: DeviceSpec, dtype: str, family: str) -> float:
    """FLOP/s the family can reach at this dtype: tensor peak for matmul-class in tf32/fp16/bf16.

    Before Volta there are no tensor cores, and PyTorch runs half-precision GEMMs and convolutions
    with FP32 math (cuBLAS compute type 32F, cuDNN's pseudo-half configuration), so a P100's 2x
    FP16 vector rate is never reached by them: they get the FP32 peak.
    """
    if family in ("gemm", "conv") and dtype in TENSOR_DTYPES:
        if _before_tensor_cores(spec):
            return spec.peak_fp32_tflops * 1e12
        key = "fp16" if dtype == "fp8" else dtype
        return spec.peak_tflops(key) * 1e12
    return spec.peak_fp32_tflops * 1e12


def _before_tensor_cores(spec: DeviceSpec) -> bool:
    """A GPU older than Volta (compute capability below 7.0) with no tensor peak in its spec."""
    capability = pd.to_numeric(spec.compute_capability, errors="coerce")  # "" or unknown: NaN
    return spec.kind != "cpu" and capability < 7.0 and not spec.peak_fp16_tensor_tflops > 0


def _conv_out(size: pd.Series, kernel: pd.Series, stride: pd.Series, padding: pd.Series) -> pd.Series:
    return np.floor((size + 2 * padding - kernel) / stride) + 1


def work(rows: pd.DataFrame) -> pd.DataFrame:
    """FLOPs, bytes, elements and (for matmul-class) the implicit GEMM dims of each kernel row."""
    fam = rows["family"].to_numpy()
    elt = rows["dtype"].map(DTYPE_BYTES).fillna(4).to_numpy(float)
    B, M, N, K, H = (rows[c].to_numpy(float) for c in ("B", "M", "N", "K", "H"))
    flops = np.full(len(rows), np.nan)
    nbytes = np.full(len(rows), np.nan)
    gm, gn, gk, gb = (np.full(len(rows), np.nan) for _ in range(4))
    gemm = fam == "gemm"
    is_linear = (rows["op"] == "linear").to_numpy()
    flops[gemm] = 2 * B[gemm] * M[gemm] * N[gemm] * K[gemm]
    weight = np.where(is_linear, K * N, B * K * N)  # linear shares one weight across the batch
    nbytes[gemm] = (elt * (B * M * K + weight + B * M * N))[gemm]
    gb[gemm], gm[gemm], gn[gemm], gk[gemm] = B[gemm], M[gemm], N[gemm], K[gemm]
    conv = fam == "conv"
    if conv.any():
        c = rows.loc[conv]
        cin, cout, k = (c[x].to_numpy(float) for x in ("in_channels", "out_channels", "kernel_size"))
        size = c["input_size"].to_numpy(float)
        out = _conv_out(
            c["input_size"], c["kernel_size"], c["stride"].fillna(1), c["padding"].fillna(0)
        ).to_numpy()
        b = c["B"].to_numpy(float)
        flops[conv] = 2 * b * cout * out**2 * cin * k**2
        nbytes[conv] = elt[conv] * (b * cin * size**2 + cout * cin * k**2 + b * cout * out**2)
        gb[conv], gm[conv], gn[conv], gk[conv] = 1, b * out**2, cout, cin * k**2
    vec = ~(gemm | conv)
    elems = B * H
    binary = rows["op"].isin(BINARY_OPS).to_numpy()
    per_elem = np.where(binary, 3.0, 2.0)  # two inputs and an output, or one of each
    nbytes[vec] = (elt * elems * per_elem)[vec]
    vec_flops = np.where(
        fam == "ln", _VECTOR_FLOPS["ln"], np.where(fam == "softmax", _VECTOR_FLOPS["softmax"], 1.0)
    )
    flops[vec] = (elems * vec_flops)[vec]
    return pd.DataFrame(
        {
            "flops": flops,
            "bytes": nbytes,
            "elems": np.where(vec, elems, np.nan),
            "gB": gb,
            "gM": gm,
            "gN": gn,
            "gK": gk,
        },
        index=rows.index,
    )


def _log(x: np.ndarray | pd.Series) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, float), _TINY))


def _tiles(
    gb: np.ndarray, gm: np.ndarray, gn: np.ndarray, tile: int, sms: np.ndarray
) -> tuple[np.ndarray, ...]:
    tm, tn = np.ceil(gm / tile), np.ceil(gn / tile)
    tiles = gb * tm * tn
    waves = np.ceil(tiles / sms)
    wave_eff = tiles / np.maximum(waves * sms, 1)
    tile_eff = gm * gn / np.maximum(tm * tn * tile * tile, 1)
    return tiles / sms, wave_eff, tile_eff


def kernel_features(
    rows: pd.DataFrame,
    specs: Mapping[str, DeviceSpec] | None = None,
    floors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Roofline times (ms) and the transferable efficiency features of each row.

    `rows` needs the canonical kernel columns `op`, `family`, shape columns, `dtype`, `device`.
    `specs` maps a row's device to its spec (default: the catalog); `floors` its launch floor in ms
    (the time of the smallest kernel call; default DEFAULT_FLOOR_MS).
    """
    specs = dict(specs or {})
    devices = rows["device"].astype(str)
    for name in devices.unique():
        if name not in specs:
            specs[name] = device_spec(name)
    w = work(rows)
    dtype = rows["dtype"].fillna("fp32").astype(str)
    # per distinct (device, dtype, family), not per row: a step has thousands of rows and few distinct ones
    triple = devices + "|" + dtype + "|" + rows["family"].astype(str)
    codes, triples = pd.factorize(triple)
    peak = np.array([peak_flops(specs[d], t, f) for d, t, f in (k.split("|") for k in triples)])[codes]
    dev_codes, names = pd.factorize(devices)
    per_device = np.array(
        [
            (
                specs[d].memory_bandwidth_gbs * 1e9,
                max(specs[d].sm_count, 1) if specs[d].kind == "gpu" else max(specs[d].physical_cores, 1),
                specs[d].l2_cache_mb * 2**20,
            )
            for d in names
        ],
        dtype=float,
    ).reshape(-1, 3)[dev_codes]
    bw, sms, l2 = per_device[:, 0], per_device[:, 1], per_device[:, 2]
    t_flop = w["flops"].to_numpy() / peak * 1e3
    t_mem = w["bytes"].to_numpy() / bw * 1e3
    t_roof = np.fmax(t_flop, t_mem)
    out = pd.DataFrame(index=rows.index)
    out["t_flop_ms"], out["t_mem_ms"], out["t_roof_ms"] = t_flop, t_mem, t_roof
    out["flops"], out["bytes"] = w["flops"], w["bytes"]
    floor = np.array([(floors or {}).get(d, DEFAULT_FLOOR_MS) for d in names], dtype=float)[dev_codes]
    out["floor_ms"] = floor
    out["log_t_roof_us"] = _log(t_roof * 1e3)
    out["log_roof_over_floor"] = _log(t_roof) - _log(floor)
    out["log_flop_over_mem"] = _log(t_flop) - _log(t_mem)
    out["log_ws_over_l2"] = _log(w["bytes"]) - _log(np.nan_to_num(l2, nan=4 * 2**20))
    for dim in ("B", "M", "N", "K"):
        out[f"log_{dim}"] = _log(w[f"g{dim}"])
    for tile in _TILES:
        per_sm, wave_eff, tile_eff = _tiles(*(w[c].to_numpy() for c in ("gB", "gM", "gN")), tile, sms)
        out[f"log_tiles{tile}_per_sm"], out[f"wave_eff{tile}"], out[f"tile_eff{tile}"] = (
            _log(per_sm),
            wave_eff,
            tile_eff,
        )
    for col in ("input_size", "in_channels", "out_channels"):
        out[f"log_{col}"] = _log(rows[col]) if col in rows else np.nan
    out["log_elems"] = _log(w["elems"])
    out["log_elems_per_sm"] = _log(w["elems"] / sms)
    out["log_H"] = _log(rows["H"])
    out["log_rows_per_sm"] = _log(rows["B"] / sms)
    out["op_code"] = rows["op"].map(_OP_CODE).astype(float)
    out["binary"] = rows["op"].isin(BINARY_OPS).astype(float)
    return out


@dataclass
class Correction:
    """log(t_measured / t_model) = a + b * (log_t_roof_us - center), fitted on a device's profile.

    With `body` set ("sub" or "share", see `kernel_body`) it is floor-aware instead:
    t = scale * kernel_body + floor_ms (`a` keeps the level-only fit of the same points).
    """

    a: float
    b: float = 0.0
    center: float = 0.0
    n: int = 0
    scale: float = 1.0
    floor_ms: float = 0.0
    body: str = ""

    def __call__(self, log_t_roof_us: np.ndarray) -> np.ndarray:
        return self.a + self.b * (np.asarray(log_t_roof_us, float) - self.center)

    def apply(
        self, t_model: np.ndarray, t_roof: np.ndarray, floor: np.ndarray, log_t_roof_us: np.ndarray
    ) -> np.ndarray:
        """Corrected times (ms) from the model's times, roofline times and launch floors (ms)."""
        if not self.body:
            return np.asarray(t_model, float) * np.exp(self(log_t_roof_us))
        return self.scale * kernel_body(t_model, t_roof, floor, self.body) + self.floor_ms


def kernel_body(t_model: np.ndarray, t_roof: np.ndarray, floor: np.ndarray, how: str) -> np.ndarray:
    """The kernel's own (above-floor) part of a model time (ms).

    "sub": the model time less the launch floor, at least the roofline (timings with a framework call,
    like the training tables). "share": the efficiency times the roofline, t_model * t_roof / (t_roof +
    floor) (device-side timings, where the model's whole floor term is a call that is not there).
    """
    t_model, t_roof, floor = (np.asarray(v, float) for v in (t_model, t_roof, floor))
    if how == "share":
        return t_model * t_roof / np.maximum(t_roof + floor, _TINY)
    return np.maximum(t_model - floor, t_roof)


def fit_correction(log_t_roof_us: np.ndarray, log_ratio: np.ndarray, shrink: float = 8.0) -> Correction:
    """A robust line through the profile's log residuals: a level (the median) from a calibration's
    few kernels, a level and a shrunk slope from a table of many (MIN_POINTS_FOR_SLOPE or more)."""
    x, y = np.asarray(log_t_roof_us, float), np.asarray(log_ratio, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) == 0:
        return Correction(0.0)
    center = float(np.median(x))
    a = float(np.median(y))
    if len(y) < MIN_POINTS_FOR_SLOPE or np.ptp(x) < 0.5:  # a handful of kernels sets a level, not a trend
        return Correction(a, 0.0, center, len(y))
    xc = x - center
    b = float(np.sum(xc * (y - a)) / (np.sum(xc**2) + shrink))
    a = float(np.median(y - b * xc))
    return Correction(a, b, center, len(y))


def _fit_scale_floor(t: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """(scale, floor) minimising the mean |log t - log(scale * body + floor)|, scale > 0, floor >= 0
    (grid search: the floor up to the fastest kernel, the log scale around the median ratio)."""
    log_t, body = np.log(t), np.maximum(body, _TINY)
    best = (np.inf, 0.0, 0.0)
    for floor in np.concatenate([[0.0], np.geomspace(1e-3, 0.995, 60) * t.min()]):
        center = float(np.median(np.log(np.maximum(t - floor, _TINY)) - np.log(body)))
        for width, num in ((3.0, 241), (0.03, 61)):
            grid = center + np.linspace(-width, width, num)
            loss = np.mean(np.abs(log_t[None, :] - np.log(np.exp(grid)[:, None] * body[None, :] + floor)), 1)
            center = float(grid[np.argmin(loss)])
        if loss.min() < best[0]:
            best = (float(loss.min()), center, float(floor))
    return float(np.exp(best[1])), best[2]


def fit_floor_correction(
    latency: np.ndarray,
    t_model: np.ndarray,
    t_roof: np.ndarray,
    floor: np.ndarray,
    log_t_roof_us: np.ndarray,
    device_side: bool = False,
) -> Correction:
    """A calibration's few kernels: t = scale * kernel_body + floor_ms, fitted robustly in log error.

    Falls back to the level-only `fit_correction` when the floor is not identifiable (fewer than 3
    kernels, or latencies spanning less than MIN_FLOOR_SPAN), and, for timings that carry a framework
    call like the training tables ("sub" body), when leaving each kernel out in turn predicts it worse
    than the level does. Device-side timings (`device_side`) drop the model's floor term ("share" body).
    """
    t, tm, tr, fl, x = (np.asarray(v, float) for v in (latency, t_model, t_roof, floor, log_t_roof_us))
    ok = np.isfinite(t) & np.isfinite(tm) & np.isfinite(tr) & np.isfinite(fl) & (t > 0) & (tm > 0)
    t, tm, tr, fl, x = t[ok], tm[ok], tr[ok], fl[ok], x[ok]
    level = fit_correction(x, np.log(t) - np.log(tm))
    if len(t) < 3 or len(t) >= MIN_POINTS_FOR_SLOPE or t.max() < MIN_FLOOR_SPAN * t.min():
        return level
    how = "share" if device_side else "sub"
    body = kernel_body(tm, tr, fl, how)
    scale, floor_ms = _fit_scale_floor(t, body)
    corr = Correction(level.a, 0.0, level.center, len(t), scale, floor_ms, how)
    if device_side:
        return corr
    err_level, err_floor = 0.0, 0.0
    for i in range(len(t)):
        rest = np.arange(len(t)) != i
        err_level += abs(np.log(t[i] / tm[i]) - np.median(np.log(t[rest] / tm[rest])))
        s, f = _fit_scale_floor(t[rest], body[rest])
        err_floor += abs(np.log(t[i]) - np.log(s * body[i] + f))
    return corr if err_floor < err_level else level


@dataclass
class KernelModel:
    """Per-family efficiency over the roofline, learned from public kernel tables.

    fit(table) on canonical kernel rows; predict(rows) -> ms per call. `calibrate(profile)` adds a
    per-device, per-family correction from measured kernels of that device.
    """

    n_estimators: int = 400
    max_depth: int = 7
    learning_rate: float = 0.05
    families: tuple[str, ...] = FAMILIES
    seed: int = 0
    models_: dict = field(default_factory=dict)
    corrections_: dict = field(default_factory=dict)  # (device, key of `_lookup_keys`) -> Correction
    floors_: dict = field(default_factory=dict)  # device -> launch floor (ms)
    local_: dict = field(default_factory=dict)  # (device, calibration group) -> LocalResidual
    default_floor_: float = DEFAULT_FLOOR_MS

    def floor_of(self, device: str) -> float:
        """The launch floor (ms) used for a device: measured or calibrated, else the default."""
        return self.floors_.get(device, self.default_floor_)

    def _floors(self, rows: pd.DataFrame) -> dict[str, float]:
        return {d: self.floor_of(d) for d in rows["device"].astype(str).unique()}

    def fit(self, table: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None = None) -> KernelModel:
        """Fit one booster per family on log(t / t_roof)."""
        import xgboost as xgb

        self.floors_ = {d: measured_floor(part) for d, part in table.groupby(table["device"].astype(str))}
        self.default_floor_ = float(np.median(list(self.floors_.values())))
        feats = kernel_features(table, specs, self.floors_)
        target = np.log(table["latency_ms"].to_numpy(float)) - _log_base(feats)
        self.models_ = {}
        for fam in self.families:
            mask = (table["family"] == fam).to_numpy() & np.isfinite(target)
            if mask.sum() < 20:
                continue
            model = xgb.XGBRegressor(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                subsample=0.8,
                colsample_bytree=0.9,
                min_child_weight=5,
                random_state=self.seed,
                n_jobs=2,
                tree_method="hist",
            )
            model.fit(feats.loc[mask, list(FEATURES[fam])].to_numpy(float), target[mask])
            self.models_[fam] = model
        return self

    def log_efficiency(self, rows: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
        """Predicted log(t / t_roof) per row (0 where no family model exists, i.e. the roofline)."""
        out = np.zeros(len(rows))
        fam = rows["family"].to_numpy()
        for name in np.unique(fam):
            mask = fam == name
            model = self.models_.get(name) or (self.models_.get("gemm") if name == "conv" else None)
            if model is None:
                continue
            cols = FEATURES[name] if name in self.models_ else FEATURES["gemm"]
            out[mask] = model.predict(feats.loc[mask, list(cols)].to_numpy(float))
        return out

    def predict(self, rows: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None = None) -> np.ndarray:
        """Predicted latency (ms per call) of each canonical kernel row (identical rows priced once)."""
        if not self.models_:
            raise ChronosError("KernelModel is not fitted: call fit(table) first")
        keys = [c for c in _KEY_COLUMNS if c in rows]
        codes = rows.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
        if codes.max(initial=-1) + 1 < 0.8 * len(rows):
            first = pd.Series(np.arange(len(rows))).groupby(codes).first().to_numpy()
            return self._predict_rows(rows.iloc[first], specs)[codes]
        return self._predict_rows(rows, specs)

    def _predict_rows(self, rows: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None) -> np.ndarray:
        feats = kernel_features(rows, specs, self._floors(rows))
        t = self._base_times(rows, feats, specs)
        return self._corrected(rows, feats, t) if self.corrections_ else t

    def _base_times(
        self, rows: pd.DataFrame, feats: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None
    ) -> np.ndarray:
        """Uncorrected times (ms): (t_roof + floor) x the learned efficiency. A tensor-core GEMM (tf32,
        fp16, bf16, fp8) is priced as the same work in fp32, its above-floor time scaled by the ratio
        of the two rooflines: t = floor + max(t32 - floor, t_roof32) * t_roof / t_roof32."""
        t = np.exp(_log_base(feats) + self.log_efficiency(rows, feats))
        tensor = ((rows["family"] == "gemm") & _dtype_of(rows).isin(TENSOR_DTYPES)).to_numpy()
        if tensor.any():
            fp32 = rows.loc[tensor].assign(dtype="fp32")
            f32 = kernel_features(fp32, specs, self._floors(fp32))
            t32 = np.exp(_log_base(f32) + self.log_efficiency(fp32, f32))
            floor, roof32 = f32["floor_ms"].to_numpy(), f32["t_roof_ms"].to_numpy()
            roof = feats["t_roof_ms"].to_numpy()[tensor]
            t[tensor] = floor + np.maximum(t32 - floor, roof32) * roof / np.maximum(roof32, _TINY)
        return t

    def _corrected(self, rows: pd.DataFrame, feats: pd.DataFrame, t: np.ndarray) -> np.ndarray:
        out = t.copy()
        dev = rows["device"].astype(str).to_numpy()
        groups = calibration_groups(rows)
        t_roof, floor, x = (feats[c].to_numpy() for c in ("t_roof_ms", "floor_ms", "log_t_roof_us"))
        for d, g in set(zip(dev, groups, strict=True)):
            m = (dev == d) & (groups == g)
            corr = next(
                (self.corrections_[(d, k)] for k in _lookup_keys(g) if (d, k) in self.corrections_), None
            )
            if corr is not None:
                out[m] = corr.apply(t[m], t_roof[m], floor[m], x[m])
            local = self.local_.get((d, g))
            if local is not None:
                out[m] = out[m] * np.exp(local.shift(_local_features(feats.loc[m], g)))
        return out

    def calibrate(self, profile: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None = None) -> KernelModel:
        """Fit corrections on measured kernels of some devices (in place).

        Per device: one per family over all dtypes (`(device, family)`), one per family and dtype, and,
        for a calibration's handful of GEMMs, one per op (bmm and linear) and dtype. Groups of up to
        LOCAL_MAX_POINTS kernels then leave a `LocalResidual`: what the corrected model still misses on
        each kernel, carried to nearby shapes.
        """
        if profile.empty:
            return self
        for dev, part in profile.groupby(profile["device"].astype(str)):
            # no launch probe in the profile: the floor cannot exceed its fastest kernel
            fallback = min(self.default_floor_, float(part["latency_ms"].min()))
            self.floors_[dev] = measured_floor(part, default=fallback)
        feats = kernel_features(profile, specs, self._floors(profile))
        t_model = self._base_times(profile, feats, specs)
        latency = profile["latency_ms"].to_numpy(float)
        cols = [feats[c].to_numpy() for c in ("t_roof_ms", "floor_ms", "log_t_roof_us")]
        dev = profile["device"].astype(str).to_numpy()
        groups = calibration_groups(profile)
        keys = {
            "family": profile["family"].to_numpy(),
            "dtype": (profile["family"].astype(str) + "/" + _dtype_of(profile)).to_numpy(),
            "group": groups,
        }
        for level, names in keys.items():
            for d, name in sorted(set(zip(dev, names, strict=True))):
                pos = np.flatnonzero((dev == d) & (names == name))
                if level != "family" and len(pos) < MIN_GROUP_POINTS:
                    continue
                if level == "group" and (name.count("/") < 2 or len(pos) >= MIN_POINTS_FOR_SLOPE):
                    continue  # only GEMMs split by op, and only a handful (a table keeps its line per dtype)
                if len(pos) >= MIN_POINTS_FOR_SLOPE:  # a table: a level and a trend in log t_roof
                    corr = fit_correction(cols[2][pos], np.log(latency[pos] / t_model[pos]))
                else:  # a calibration's handful: a level on the kernel's own time and the per-call floor
                    side = self.floors_[d] < DEVICE_SIDE_FLOOR_SHARE * self.default_floor_
                    corr = fit_floor_correction(latency[pos], t_model[pos], *(c[pos] for c in cols), side)
                self.corrections_[(d, name)] = corr
        corrected = self._corrected(profile, feats, t_model)
        for d, g in sorted(set(zip(dev, groups, strict=True))):
            pos = np.flatnonzero((dev == d) & (groups == g))
            if MIN_GROUP_POINTS <= len(pos) <= LOCAL_MAX_POINTS:
                self.local_[(d, g)] = LocalResidual(
                    _local_features(feats.iloc[pos], g), np.log(latency[pos] / corrected[pos])
                )
        return self

    def without_calibration(self) -> KernelModel:
        """A copy that shares the fitted boosters but has no device corrections."""
        return KernelModel(
            **{**self.__dict__, "corrections_": {}, "local_": {}, "floors_": dict(self.floors_)}
        )


@dataclass
class LocalResidual:
    """What a corrected model still misses on a calibration's kernels, carried to other shapes.

    A kernel's log correction is the kernel-weighted mean of the calibration kernels' log residuals,
    shrunk toward 0: sum_i w_i r_i / (sum_i w_i + LOCAL_SHRINK), w_i = exp(-|x - x_i|^2 / 2h^2) over
    log shape and log roofline time (PM2Lat's interpolation between profiled configurations). Far from
    every calibration kernel it is 0 and the family correction stands alone.
    """

    points: np.ndarray
    residuals: np.ndarray
    bandwidth: float = LOCAL_BANDWIDTH
    shrink: float = LOCAL_SHRINK

    def shift(self, x: np.ndarray) -> np.ndarray:
        """Log correction of each row of `x` (same columns as `points`)."""
        x, points = np.nan_to_num(np.asarray(x, float)), np.nan_to_num(self.points)
        out = np.empty(len(x))
        for start in range(0, len(x), 2048):  # bounded memory: rows x points x features per chunk
            part = x[start : start + 2048]
            w = np.exp(-((part[:, None, :] - points[None, :, :]) ** 2).sum(-1) / (2 * self.bandwidth**2))
            out[start : start + 2048] = (w * self.residuals[None, :]).sum(1) / (w.sum(1) + self.shrink)
        return out


def _dtype_of(rows: pd.DataFrame) -> pd.Series:
    if "dtype" not in rows:
        return pd.Series("fp32", index=rows.index)
    return rows["dtype"].fillna("fp32").astype(str)


def calibration_groups(rows: pd.DataFrame) -> np.ndarray:
    """The finest calibration key of each row: family/dtype, and for GEMMs family/op/dtype."""
    fam = rows["family"].astype(str)
    op = rows["op"].astype(str).where(fam == "gemm", "")
    return (fam + "/" + (op + "/").where(op != "", "") + _dtype_of(rows)).to_numpy()


def _lookup_keys(group: str) -> list[str]:
    """Correction keys from the finest to the coarsest: gemm/bmm/bf16, gemm/bf16, gemm, fallback."""
    parts = group.split("/")
    family, dtype = parts[0], parts[-1]
    keys = [group] if len(parts) == 3 else []
    return keys + [f"{family}/{dtype}", family, _fallback(family)]


def _local_features(feats: pd.DataFrame, group: str) -> np.ndarray:
    cols = (
        LOCAL_FEATURES["vector"]
        if group.split("/")[0] in ("elementwise", "ln", "softmax")
        else LOCAL_FEATURES["gemm"]
    )
    return feats[list(cols)].to_numpy(float)


def _log_base(feats: pd.DataFrame) -> np.ndarray:
    """log(t_roof + floor): the time an ideal kernel would take through the framework."""
    return np.log(feats["t_roof_ms"].to_numpy() + feats["floor_ms"].to_numpy())


def measured_floor(rows: pd.DataFrame, default: float = DEFAULT_FLOOR_MS) -> float:
    """A device's launch floor from its measured kernels: the 5th percentile of its smallest
    elementwise calls (up to 64k elements), or `default` when none was measured."""
    small = rows[(rows["family"] == "elementwise") & (rows["B"] * rows["H"] <= 65536)]
    return float(np.percentile(small["latency_ms"], 5)) if len(small) else default


def _fallback(family: str) -> str:
    """The family whose correction stands in where a profile lacks one (conv -> gemm, ...)."""
    return {"conv": "gemm", "ln": "softmax", "softmax": "ln"}.get(family, "elementwise")


def roofline_ms(rows: pd.DataFrame, specs: Mapping[str, DeviceSpec] | None = None) -> np.ndarray:
    """The plain roofline baseline (efficiency 1)."""
    return kernel_features(rows, specs)["t_roof_ms"].to_numpy()


def mape(pred: Iterable[float], true: Iterable[float]) -> float:
    """Mean absolute percentage error, in percent."""
    p, t = np.asarray(list(pred), float), np.asarray(list(true), float)
    return float(np.mean(np.abs(p - t) / t) * 100)


def ops_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """NeuSight-schema input rows (OPName, Device, shapes, optional dtype) -> canonical kernel rows.

    Rows that cannot be mapped keep NaN shapes; `predict-ops` reports them with an error text.
    """
    out = pd.DataFrame(index=rows.index)
    out["op"] = rows["OPName"].astype(str).str.strip().str.lower()
    out["family"] = [op_family(op) if _known_op(op) else "unknown" for op in out["op"]]
    for col in ("B", "M", "N", "K", "H"):
        out[col] = pd.to_numeric(rows[col], errors="coerce") if col in rows else np.nan
    conv_cols = {
        "Input_Channel": "in_channels",
        "Output_Channel": "out_channels",
        "Kernel_Szie": "kernel_size",
        "Kernel_Size": "kernel_size",
        "Input_Size": "input_size",
        "Stride": "stride",
        "Padding": "padding",
    }
    for src, dst in conv_cols.items():
        if src in rows:
            out[dst] = pd.to_numeric(rows[src], errors="coerce")
    for dst in set(conv_cols.values()):
        if dst not in out:
            out[dst] = np.nan
    dtype = rows["dtype"] if "dtype" in rows else pd.Series("fp32", index=rows.index)
    out["dtype"] = (
        dtype.fillna("fp32").astype(str).str.strip().str.lower().replace({"": "fp32", "nan": "fp32"})
    )
    out["device_name"] = rows["Device"].astype(str)
    out["device"] = [Devices.resolve(d) or "" for d in out["device_name"]]
    return out


def _known_op(op: str) -> bool:
    try:
        op_family(op)
    except ChronosError:
        return False
    return True


def row_errors(rows: pd.DataFrame) -> list[str]:
    """Why each canonical row cannot be predicted ('' when it can)."""
    need = {
        "gemm": ("B", "M", "N", "K"),
        "conv": ("B", "in_channels", "out_channels", "kernel_size", "input_size"),
        "elementwise": ("B", "H"),
        "ln": ("B", "H"),
        "softmax": ("B", "H"),
    }
    errors = []
    for _, row in rows.iterrows():
        if row["family"] == "unknown":
            errors.append(f"unknown OPName {row['op']!r}")
        elif not row["device"]:
            errors.append(f"unknown Device {row['device_name']!r} (see `chronos devices`)")
        elif row["dtype"] not in DTYPE_BYTES or row["dtype"] == "fp8":
            errors.append(f"unknown dtype {row['dtype']!r}; accepted: fp32, tf32, fp16, bf16")
        else:
            bad = [c for c in need[row["family"]] if not (math.isfinite(row[c]) and row[c] > 0)]
            errors.append(f"{row['op']} needs positive {', '.join(bad)}" if bad else "")
    return errors
