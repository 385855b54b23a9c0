"""A prior-fitted network (PFN) for epochs to convergence from the first k validation losses.

Trained on curves of the prior in `prior.py` (whose labels come from running the early-stopping rule
on the whole simulated curve), it returns the posterior predictive distribution of the stopping
epoch given (a) the observed prefix (k = 0..K_TRAIN epochs; the last WINDOW are read), (b) the rule
(patience, min_delta) and (c) a zero-shot prediction with its log-space uncertainty, which acts as
the prior: in training, the zero-shot prediction is the true T_unc times log-normal noise of the
stated sd, so the network learns how much to trust it against the curve. k = 0 and k > 0 are one
model. Censoring is exact: with max_epochs M the run lasts min(T_unc, M), so quantiles are clipped.

The distribution is over r = T_unc - k (epochs still to come), on BINS (integers 1..10, then
log-spaced). Inference is a plain numpy MLP (no torch), well under a millisecond per row.

    python -m chronos_core.convergence.pfn --out chronos_core/convergence/curve_prior.npz  # ~10 min
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from chronos_core.convergence import prior as cp

WINDOW = 20  # most recent epochs the network reads
K_TRAIN = 48  # prefix lengths seen in training: 0..K_TRAIN
EDGES = np.concatenate([np.arange(0.5, 10.6, 1.0), np.geomspace(11.0, 1000.0, 34)])  # r bins
N_BINS = len(EDGES) - 1
SCALARS = 14
N_INPUTS = 3 * WINDOW + SCALARS
WEIGHTS_PATH = Path(__file__).with_name("curve_prior.npz")
NO_PRIOR_SIGMA = 3.0  # a zero-shot sd that says "no information"


# ----------------------------------------------------------------------------- encoding
def encode(
    curves: np.ndarray,
    k: np.ndarray,
    patience: np.ndarray,
    min_delta: np.ndarray,
    zs_log: np.ndarray,
    zs_sigma: np.ndarray,
) -> np.ndarray:
    """Network inputs for rows of `curves` (n x >= max k, nan-padded) observed for k epochs each."""
    curves = np.asarray(curves, dtype=np.float64)
    n = len(curves)
    k = np.asarray(k, dtype=np.int64)
    x = np.zeros((n, N_INPUTS), dtype=np.float32)
    has = k > 0
    idx = np.clip(k[:, None] - WINDOW + np.arange(WINDOW)[None, :], -1, None)  # right-aligned window
    valid = (idx >= 0) & has[:, None]
    safe = np.clip(idx, 0, max(curves.shape[1] - 1, 0))
    log_c = np.log(np.maximum(curves, 1e-8)) if curves.shape[1] else np.zeros((n, 1))
    window = np.where(valid, np.take_along_axis(log_c, safe, 1), 0.0)
    last_idx = np.maximum(k - 1, 0)
    last = np.where(has, log_c[np.arange(n), last_idx] if curves.shape[1] else 0.0, 0.0)
    rel = np.where(valid, window - last[:, None], 0.0)
    x[:, :WINDOW] = 5.0 * rel
    x[:, WINDOW : 2 * WINDOW] = np.arcsinh(200.0 * rel) / 4.0
    x[:, 2 * WINDOW : 3 * WINDOW] = valid
    # exact state of the stopping rule on the whole prefix
    best = np.full(n, np.inf)
    best_epoch = np.zeros(n)
    wait = np.zeros(n)
    for t in range(int(k.max(initial=0))):
        inside = t < k
        v = curves[:, t]
        better = inside & (v < best - min_delta)
        best = np.where(better, v, best)
        best_epoch = np.where(better, t + 1, best_epoch)
        wait = np.where(inside & ~better, wait + 1, np.where(better, 0, wait))
    first = np.where(has, log_c[:, 0], 0.0)
    last_val = np.exp(last)
    s = 3 * WINDOW
    x[:, s + 0] = has
    x[:, s + 1] = np.log1p(k) / 2.0
    x[:, s + 2] = np.where(has, first - last, 0.0) * 2.0
    x[:, s + 3] = np.where(has, np.log(np.where(has, best, 1.0)) - last, 0.0) * 5.0
    x[:, s + 4] = np.where(has, np.log10(np.maximum(min_delta, 1e-7) / last_val) / 3.0, 0.0)
    x[:, s + 5] = patience / 10.0
    x[:, s + 6] = wait / patience
    x[:, s + 7] = np.where(has, (k - best_epoch) / patience, 0.0)
    x[:, s + 8] = np.log1p(np.maximum(patience - wait, 0)) / 2.0
    x[:, s + 9] = (zs_log - np.log1p(k)) / 2.0
    x[:, s + 10] = zs_log / 3.0
    x[:, s + 11] = zs_sigma
    x[:, s + 12] = np.where(has, first, np.log(2.0)) / 2.0
    x[:, s + 13] = np.log10(np.maximum(min_delta, 1e-7)) / 3.0
    return x


# ----------------------------------------------------------------------------- numpy inference
@dataclass
class CurvePFN:
    """The trained network's weights (numpy) and how it was trained."""

    weights: list[np.ndarray]
    meta: dict = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        layers = len(self.weights) // 2
        for i in range(layers):
            h = h @ self.weights[2 * i].T + self.weights[2 * i + 1]
            if i < layers - 1:
                h = h / (1.0 + np.exp(np.clip(-1.702 * h, -60, 60)))  # GELU (sigmoid approximation)
        return h

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def save(self, path: Path | str) -> None:
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        np.savez_compressed(path, meta=np.array(json.dumps(self.meta)), **arrays)

    @classmethod
    def load(cls, path: Path | str = WEIGHTS_PATH) -> CurvePFN:
        with np.load(path) as z:
            n = sum(1 for key in z.files if key.startswith("w"))
            weights = [z[f"w{i}"].astype(np.float32) for i in range(n)]
            meta = json.loads(str(z["meta"]))
        return cls(weights, meta)


def quantiles_r(probs: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of r (epochs still to come) from bin probabilities; linear in log r within a bin."""
    cdf = np.cumsum(probs, 1)
    cdf = np.concatenate([np.zeros((len(probs), 1)), cdf], 1)
    log_edges = np.log(EDGES)
    out = np.empty((len(probs), len(qs)))
    for j, q in enumerate(qs):
        b = np.clip((cdf < q).sum(1) - 1, 0, N_BINS - 1)
        lo_c, hi_c = cdf[np.arange(len(probs)), b], cdf[np.arange(len(probs)), b + 1]
        frac = np.clip((q - lo_c) / np.maximum(hi_c - lo_c, 1e-12), 0, 1)
        out[:, j] = np.exp(log_edges[b] + frac * (log_edges[b + 1] - log_edges[b]))
    return np.maximum(out, 1.0)


def bin_of(r: np.ndarray) -> np.ndarray:
    """Bin index of r >= 1 (values past the last edge go to the last bin)."""
    return np.clip(np.searchsorted(EDGES, r, side="right") - 1, 0, N_BINS - 1)


# ----------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """How the PFN is trained (printed at the start of training; stored with the weights)."""

    curves: int = 300_000
    steps: int = 12_000
    batch: int = 1024
    hidden: int = 256
    layers: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-5
    zs_sigma: tuple[float, float] = (0.1, 1.2)
    no_prior_share: float = 0.1
    k0_share: float = 0.12
    seed: int = 0
    prior: dict = field(default_factory=lambda: asdict(cp.PriorConfig(horizon=400)))


def _draw_examples(bank: dict[str, np.ndarray], n: int, rng: np.random.Generator, cfg: TrainConfig):
    """n training examples: a bank curve, a prefix length k it is still open at, and a noisy zero-shot."""
    rows = rng.integers(0, len(bank["T_unc"]), n)
    t_unc = bank["T_unc"][rows]
    k = np.where(
        rng.random(n) < cfg.k0_share,
        0,
        np.where(rng.random(n) < 0.75, rng.integers(1, 21, n), rng.integers(1, K_TRAIN + 1, n)),
    )
    k = np.minimum(k, t_unc - 1)  # open at k: stopping has not fired within the prefix
    sigma = rng.uniform(*cfg.zs_sigma, n)
    noise = rng.standard_t(5, n) * sigma * math.sqrt(3 / 5) + rng.normal(0, 0.1, n) * sigma
    zs_log = np.log(t_unc) + noise
    none = rng.random(n) < cfg.no_prior_share
    sigma = np.where(none, NO_PRIOR_SIGMA, sigma)
    zs_log = np.where(none, np.log(30.0), zs_log)
    curves = bank["curves"][rows][:, : max(int(k.max()), 1)].astype(np.float64)
    x = encode(curves, k, bank["patience"][rows], bank["min_delta"][rows], zs_log, sigma)
    return x, bin_of((t_unc - k).astype(float))


def _torch_net(cfg: TrainConfig, n_in: int = N_INPUTS):
    import torch

    layers: list = []
    width = n_in
    for _ in range(cfg.layers):
        layers += [torch.nn.Linear(width, cfg.hidden), torch.nn.GELU(approximate="tanh")]
        width = cfg.hidden
    layers.append(torch.nn.Linear(width, N_BINS))
    return torch.nn.Sequential(*layers)


def _to_numpy(net) -> list[np.ndarray]:
    import torch

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return [a.detach().numpy().copy() for m in linears for a in (m.weight, m.bias)]


def _from_numpy(pfn: CurvePFN, cfg: TrainConfig):
    import torch

    net = _torch_net(cfg, pfn.weights[0].shape[1])
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, m in enumerate(linears):
            m.weight.copy_(torch.from_numpy(pfn.weights[2 * i]))
            m.bias.copy_(torch.from_numpy(pfn.weights[2 * i + 1]))
    return net


def train(cfg: TrainConfig | None = None, log_every: int = 1000, verbose: bool = True) -> CurvePFN:
    """Sample the prior bank, then train the MLP on fresh (curve, k, zero-shot) draws from it."""
    import torch

    cfg = cfg or TrainConfig()
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    if verbose:
        print("TrainConfig:", asdict(cfg), flush=True)
    bank = cp.sample_bank(cfg.curves, cfg.seed, cp.PriorConfig(**cfg.prior))
    t_bank = time.perf_counter() - t0
    rng = np.random.default_rng(cfg.seed + 1)
    net = _torch_net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    running = 0.0
    for step in range(1, cfg.steps + 1):
        x, y = _draw_examples(bank, cfg.batch, rng, cfg)
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step > 1 else value
        if verbose and step % log_every == 0:
            print(f"step {step}: loss {running:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    meta = {
        "train_config": asdict(cfg),
        "seconds_bank": round(t_bank, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
        "final_loss": round(running, 4),
        "window": WINDOW,
        "edges": EDGES.tolist(),
        "torch": torch.__version__,
    }
    return CurvePFN(_to_numpy(net), meta)


def finetune(
    pfn: CurvePFN,
    x: np.ndarray,
    r_lower: np.ndarray,
    r_upper: np.ndarray,
    steps: int = 300,
    lr: float = 3e-4,
    batch: int = 256,
    seed: int = 0,
) -> CurvePFN:
    """Adapt the PFN to real runs with an interval-censored likelihood: P(r_lower <= r <= r_upper).

    Converged runs give r_lower = r_upper; runs stopped by max_epochs give r_upper = inf (censored).
    """
    import torch

    torch.manual_seed(seed)
    cfg = TrainConfig(**{k: v for k, v in pfn.meta.get("train_config", {}).items() if k != "prior"})
    net = _from_numpy(pfn, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    lo_bin = torch.from_numpy(bin_of(np.asarray(r_lower, float)))
    hi_r = np.where(np.isfinite(r_upper), r_upper, EDGES[-1])
    hi_bin = torch.from_numpy(bin_of(np.asarray(hi_r, float)))
    ar = torch.arange(N_BINS)[None, :]
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(xt), min(batch, len(xt))))
        logp = torch.log_softmax(net(xt[idx]), 1)
        mask = (ar >= lo_bin[idx, None]) & (ar <= hi_bin[idx, None])
        nll = -torch.logsumexp(logp.masked_fill(~mask, -1e9), 1).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()
    meta = dict(pfn.meta) | {"finetuned_rows": int(len(xt)), "finetune_steps": steps}
    return CurvePFN(_to_numpy(net), meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the curve-prior PFN on the synthetic prior")
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--curves", type=int, default=TrainConfig.curves)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pfn = train(TrainConfig(curves=args.curves, steps=args.steps, seed=args.seed))
    pfn.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {pfn.meta['seconds_total']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
