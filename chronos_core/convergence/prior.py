"""A prior over validation-loss curves, and the early-stopping epochs they imply (training data for the PFN).

Each synthetic curve is a mixture of two decaying families (pow3, exponential, log-power, Janoschek,
MMF, Weibull), scaled between an initial loss and an asymptote, with an optional overfitting upturn,
multiplicative AR(1) noise and occasional upward spikes. The early-stopping rule (patience, min_delta)
is run on each curve over a long horizon, so every curve carries its uncensored stopping epoch
`T_unc`; a run with `max_epochs` then lasts min(T_unc, max_epochs) (censoring is exact, not learned).

All of it is numpy and vectorized: a million curves take about half a minute on one core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FAMILIES = ("pow3", "exp", "log_power", "janoschek", "mmf", "weibull")


@dataclass(frozen=True)
class PriorConfig:
    """Ranges of the curve prior (log-uniform where the name says `log`)."""

    horizon: int = 600  # epochs simulated for T_unc; curves that never stop get horizon + 1
    keep: int = 64  # epochs of each curve stored for prefixes
    initial_loss: tuple[float, float] = (0.15, 7.0)  # log-uniform
    time_scale: tuple[float, float] = (0.3, 300.0)  # log-uniform, epochs
    shape: tuple[float, float] = (0.3, 3.0)  # log-uniform exponent of each family
    flat_share: float = 0.08  # curves that barely move (asymptote ratio near 1)
    overfit_share: float = 0.55
    overfit_onset: tuple[float, float] = (1.0, 200.0)  # log-uniform, epochs
    overfit_strength: tuple[float, float] = (0.003, 0.5)  # log-uniform, x (initial - asymptote) per scale
    noise: tuple[float, float] = (2e-4, 0.12)  # log-uniform sd of log-loss noise
    noise_ar: tuple[float, float] = (0.0, 0.7)
    spike_share: float = 0.2  # curves with spikes
    spike_rate: tuple[float, float] = (0.01, 0.15)
    patience: tuple[int, int] = (3, 10)
    min_delta: tuple[float, float] = (1e-5, 3e-3)  # log-uniform, absolute (like the real rule)


def _logu(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _family(name: str, t: np.ndarray, s: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Decay from 1 (t=1) towards 0; s: time scale (epochs), a: shape exponent."""
    u = (t - 1.0) / s  # >= 0
    if name == "pow3":
        return (1.0 + u) ** (-a)
    if name == "exp":
        return np.exp(-u)
    if name == "log_power":
        return 1.0 / (1.0 + np.log1p(u) ** (a + 0.5))
    if name == "janoschek":
        return np.exp(-(u ** (0.5 * a + 0.5)))
    if name == "mmf":
        return 1.0 / (1.0 + u**a)
    if name == "weibull":
        return np.exp(-(u**a))
    raise ValueError(f"Unknown curve family {name!r}. Known: {', '.join(FAMILIES)}")


def sample_curves(
    n: int, rng: np.random.Generator, config: PriorConfig = PriorConfig(), length: int | None = None
) -> dict[str, np.ndarray]:
    """n curves of `length` epochs (default: the horizon) plus the stopping rule and T_unc of each."""
    c = config
    length = length or c.horizon
    t = np.arange(1, length + 1, dtype=np.float64)[None, :]
    fams = rng.integers(0, len(FAMILIES), (n, 2))
    weight = rng.beta(0.7, 0.7, n)[:, None]
    decay = np.zeros((n, length))
    for j in range(2):
        s = _logu(rng, *c.time_scale, n)[:, None]
        a = _logu(rng, *c.shape, n)[:, None]
        w = weight if j == 0 else 1 - weight
        for f, name in enumerate(FAMILIES):
            rows = fams[:, j] == f
            if rows.any():
                decay[rows] += w[rows] * _family(name, t, s[rows], a[rows])
    l0 = _logu(rng, *c.initial_loss, n)
    ratio = np.where(rng.random(n) < c.flat_share, rng.uniform(0.9, 1.0, n), rng.beta(1.2, 1.5, n))
    l_inf = l0 * np.clip(ratio, 0.005, 1.0)
    gap = (l0 - l_inf)[:, None]
    clean = l_inf[:, None] + gap * decay
    # overfitting: the loss turns up after an onset, polynomially in epochs since the onset
    over = rng.random(n) < c.overfit_share
    onset = _logu(rng, *c.overfit_onset, n)[:, None]
    strength = _logu(rng, *c.overfit_strength, n)[:, None]
    power = rng.uniform(1.0, 2.0, n)[:, None]
    scale = _logu(rng, 5.0, 100.0, n)[:, None]
    upturn = strength * np.maximum(gap, 0.05 * l0[:, None]) * (np.maximum(t - onset, 0) / scale) ** power
    clean = clean + np.where(over[:, None], upturn, 0.0)
    # noise: AR(1) in log space, plus rare upward spikes
    sigma = _logu(rng, *c.noise, n)[:, None]
    phi = rng.uniform(*c.noise_ar, n)[:, None]
    eps = rng.standard_normal((n, length))
    ar = np.empty_like(eps)
    ar[:, 0] = eps[:, 0]
    scale_ar = np.sqrt(1 - phi[:, 0] ** 2)
    for i in range(1, length):
        ar[:, i] = phi[:, 0] * ar[:, i - 1] + scale_ar * eps[:, i]
    spiky = rng.random(n) < c.spike_share
    rate = rng.uniform(*c.spike_rate, n)[:, None]
    spikes = (rng.random((n, length)) < rate) & spiky[:, None]
    spike_size = np.abs(rng.normal(0.0, np.maximum(5 * sigma, 0.05), (n, length)))
    log_curve = np.log(np.maximum(clean, 1e-6)) + sigma * ar + np.where(spikes, spike_size, 0.0)
    curves = np.exp(log_curve)
    patience = rng.integers(c.patience[0], c.patience[1] + 1, n)
    patience = np.where(rng.random(n) < 0.5, rng.choice([5, 7], n), patience)
    min_delta = np.where(rng.random(n) < 0.1, 0.0, _logu(rng, *c.min_delta, n))
    t_unc = stop_epochs_exact(curves, patience, min_delta, horizon=length)
    return {"curves": curves.astype(np.float32), "patience": patience, "min_delta": min_delta, "T_unc": t_unc}


def stop_epochs_exact(
    curves: np.ndarray, patience: np.ndarray, min_delta: np.ndarray, horizon: int
) -> np.ndarray:
    """Early stopping per row with per-row patience/min_delta; horizon + 1 where it never fires."""
    n, length = curves.shape
    best = np.full(n, np.inf)
    wait = np.zeros(n, dtype=np.int64)
    result = np.full(n, horizon + 1, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for i in range(min(length, horizon)):
        v = curves[:, i]
        better = v < best - min_delta
        best = np.where(better, v, best)
        wait = np.where(better, 0, wait + 1)
        fired = open_ & (wait >= patience)
        result[fired] = i + 1
        open_ &= ~fired
        if not open_.any():
            break
    return result


def sample_bank(
    n: int, seed: int = 0, config: PriorConfig = PriorConfig(), chunk: int = 20_000
) -> dict[str, np.ndarray]:
    """A stored bank of n prior curves: the first `config.keep` epochs, the rule and T_unc of each."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"curves": [], "patience": [], "min_delta": [], "T_unc": []}
    for start in range(0, n, chunk):
        out = sample_curves(min(chunk, n - start), rng, config)
        out["curves"] = out["curves"][:, : config.keep]
        for key, value in out.items():
            parts[key].append(value)
    bank = {key: np.concatenate(values) for key, values in parts.items()}
    bank["config"] = np.array([str(asdict(config))])
    return bank
