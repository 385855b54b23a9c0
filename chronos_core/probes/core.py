"""Init-time probes on one batch: per-sample gradient statistics, NTK trace, noise scale, Hessian.

Two estimators of the same per-sample quantities, both unbiased:
- `exact`: per-sample gradients with `torch.func` (vmap over jacrev of the sample's loss and of
  projections of its logits). Memory and time grow with params x samples: for small models.
- `sketch`: one forward pass and a few backward passes of randomly weighted sums over the batch.
  For weights w with sum 0 (randomly permuted), E||sum_i w_i g_i||^2 = sum(w^2) tr(Sigma); for iid
  Rademacher logit weights v_ik, E||d(sum_ik v_ik f_ik)/dtheta||^2 = sum_i tr(J_i J_i^T). Cost is a
  handful of backward passes whatever the model size (ResNet-18, batch 64: well under a second).
Probes run with the model in eval mode (deterministic dropout; BatchNorm on its initial running
statistics, so samples do not interact) and restore the model's mode afterwards.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from chronos_core.errors import ChronosError, unknown_choice

METHODS = ("auto", "exact", "sketch")


@dataclass
class ProbeConfig:
    """Knobs of `probe_model`; the defaults keep a ResNet-18 at batch 64 (32x32) under 3 s on one core."""

    method: str = "auto"  # exact (torch.func per-sample), sketch (random-weight backward passes), auto
    exact_max_params: int = 200_000  # auto -> exact up to this many parameters
    ntk_exact_max_classes: int = 16  # exact method: all logits up to this many classes, else projections
    ntk_projections: int = 4  # Rademacher logit projections per sample (exact method, many classes)
    sketch_repeats: int = 2  # backward passes per sketched quantity
    hessian_iters: int = 4  # Hessian-vector products for the top eigenvalue (Lanczos); 0 disables
    hessian_batch: int = 16  # samples of the batch the Hessian is taken on
    chunk_bytes: int = 256 * 2**20  # exact method: memory for per-sample gradients held at once
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise unknown_choice("probe method", self.method, METHODS)
        if self.sketch_repeats < 1 or self.ntk_projections < 1:
            raise ChronosError(
                f"sketch_repeats and ntk_projections must be >= 1 (got {self.sketch_repeats}, "
                f"{self.ntk_projections})"
            )


@dataclass
class ProbeResult:
    """Init-time signals of one (model, batch). Squared norms are per sample unless named batch_."""

    initial_loss: float
    grad_sq_norm: float  # mean_i ||g_i||^2 over per-sample loss gradients
    batch_grad_sq_norm: float  # ||mean_i g_i||^2, the mini-batch gradient
    trace_sigma: float  # tr of the per-sample gradient covariance (unbiased)
    grad_noise_scale: float  # B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018); nan if |G|^2 <= 0
    ntk_trace: float  # mean_i tr(J_i J_i^T), J_i = d logits(x_i) / d theta
    hessian_top_eig: float  # largest-magnitude eigenvalue, Lanczos on HVPs (nan if disabled)
    n_params: int
    n_samples: int
    num_classes: int
    method: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def grad_coherence(self) -> float:
        """||G_B||^2 / mean ||g_i||^2 in (0, 1]: how much per-sample gradients agree."""
        return self.batch_grad_sq_norm / self.grad_sq_norm if self.grad_sq_norm > 0 else math.nan

    def as_dict(self) -> dict[str, float | int | str]:
        """Flat dict (timings as seconds_<probe>)."""
        out: dict[str, float | int | str] = {k: v for k, v in asdict(self).items() if k != "seconds"}
        out["grad_coherence"] = self.grad_coherence
        out.update({f"seconds_{k}": v for k, v in self.seconds.items()})
        return out

    def log10_features(self) -> dict[str, float]:
        """Probe features in log10 (CHRONOS's names where the quantity is the same)."""
        return {
            "initial_loss_log10": _log10(self.initial_loss),
            "gradient_norm_log10": 0.5 * _log10(self.batch_grad_sq_norm),  # log10 ||batch gradient||
            "grad_sq_norm_log10": _log10(self.grad_sq_norm),
            "ntk_trace_log10": _log10(self.ntk_trace),
            "grad_noise_scale_log10": _log10(self.grad_noise_scale),
            "grad_coherence_log10": _log10(self.grad_coherence),
            "hessian_top_eig_log10": _log10(abs(self.hessian_top_eig)),
        }


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 and math.isfinite(x) else math.nan


def check_logits(output: object, batch_size: int) -> torch.Tensor:
    """Return `output` if it is a (batch, classes) tensor of raw logits; ChronosError otherwise."""
    if not isinstance(output, torch.Tensor):
        raise ChronosError(
            f"Probes need a model whose forward returns a logits tensor (batch, classes); it returned "
            f"{type(output).__name__}. Wrap the model so that it returns the logits tensor."
        )
    if output.ndim != 2 or output.shape[0] != batch_size:
        raise ChronosError(
            f"Probes need logits of shape (batch={batch_size}, classes); the model returned shape "
            f"{tuple(output.shape)}"
        )
    if output.shape[1] < 2:
        raise ChronosError(
            f"Probes need class logits (>= 2 classes); the model returned {output.shape[1]} output per "
            "sample (a regression or single-logit head)"
        )
    if not output.is_floating_point():
        raise ChronosError(f"Probes need floating-point logits; the model returned {output.dtype}")
    out = output.detach()
    if not torch.isfinite(out).all():
        raise ChronosError("The model's outputs at initialization are not finite (nan/inf)")
    sums = out.sum(dim=1)
    if (out >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ChronosError(
            "The model's outputs look like probabilities (non-negative, rows sum to 1): probes need raw "
            "logits, remove the final softmax"
        )
    lse = torch.logsumexp(out, dim=1)
    if (out <= 0).all() and torch.allclose(lse, torch.zeros_like(lse), atol=1e-4):
        raise ChronosError(
            "The model's outputs look like log-probabilities (log_softmax applied): probes need raw "
            "logits, remove the final log_softmax"
        )
    return output


def _check_targets(targets: torch.Tensor, batch_size: int, num_classes: int) -> None:
    if targets.shape != (batch_size,) or targets.dtype not in (torch.int64, torch.int32):
        raise ChronosError(
            f"Probe targets must be integer class labels of shape ({batch_size},); got "
            f"{tuple(targets.shape)} {targets.dtype}"
        )
    if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
        raise ChronosError(
            f"Probe targets must lie in [0, {num_classes}); got [{int(targets.min())}, {int(targets.max())}]"
        )


class _EvalMode:
    """Put a model in eval mode for the probes and restore its previous mode."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ChronosError("The model has no trainable parameters to probe")
    return params


def _sq(tensors: object) -> float:
    return float(sum(t.pow(2).sum() for t in tensors))


def _finish(mean_sq: float, batch_sq: float, ntk_sum: float, n: int) -> dict[str, float]:
    trace_sigma = max(0.0, (mean_sq - batch_sq) * n / (n - 1)) if n > 1 else math.nan
    return {"grad_sq_norm": mean_sq, "batch_grad_sq_norm": batch_sq, "trace_sigma": trace_sigma,
            "ntk_trace": ntk_sum / n}  # fmt: skip


def per_sample_stats_exact(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    ntk_exact_max_classes: int = 16,
    ntk_projections: int = 4,
    chunk_bytes: int = 256 * 2**20,
    seed: int = 0,
) -> dict[str, float]:
    """Exact per-sample statistics with torch.func: mean ||g_i||^2, ||G_B||^2, tr(Sigma), NTK trace.

    The NTK trace is exact when the model has at most `ntk_exact_max_classes` outputs, otherwise a
    Hutchinson estimate with `ntk_projections` Rademacher projections per sample.
    """
    params = _params(model)
    buffers = dict(model.named_buffers())
    n_params = sum(p.numel() for p in params.values())
    n = inputs.shape[0]
    exact_ntk = num_classes <= ntk_exact_max_classes
    if exact_ntk:
        proj = torch.eye(num_classes).expand(n, num_classes, num_classes)
    else:
        gen = torch.Generator().manual_seed(seed)
        proj = torch.randint(0, 2, (n, ntk_projections, num_classes), generator=gen).float() * 2 - 1
    n_out = 1 + proj.shape[1]

    def outputs(
        p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))[0]
        loss = F.cross_entropy(logits.unsqueeze(0), y.unsqueeze(0))
        return torch.cat([loss.unsqueeze(0), v @ logits])

    per_sample_jac = vmap(jacrev(outputs), in_dims=(None, 0, 0, 0))
    chunk = max(1, int(chunk_bytes // (4 * n_params * n_out)))
    sq_sum = ntk_sum = 0.0
    grad_sum = {k: torch.zeros_like(v) for k, v in params.items()}
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        jac = per_sample_jac(params, inputs[sl], targets[sl], proj[sl])
        sq = sum(j.pow(2).flatten(2).sum(2) for j in jac.values())  # (chunk, n_out)
        sq_sum += float(sq[:, 0].sum())
        ntk_sum += float(sq[:, 1:].sum()) / (1 if exact_ntk else proj.shape[1])
        for k, j in jac.items():
            grad_sum[k] += j[:, 0].sum(0)
    batch_sq = _sq(g / n for g in grad_sum.values())
    return _finish(sq_sum / n, batch_sq, ntk_sum, n)


def per_sample_stats_sketch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    repeats: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """The same statistics from one forward and 1 + 2 * repeats backward passes of weighted sums."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ChronosError("The model has no trainable parameters to probe")
    n = inputs.shape[0]
    if n < 2:
        raise ChronosError(f"Gradient statistics need a batch of at least 2 samples (got {n})")
    gen = torch.Generator().manual_seed(seed)
    logits = model(inputs)
    losses = F.cross_entropy(logits, targets, reduction="none")

    def grad_sq(scalar: torch.Tensor) -> float:
        return _sq(torch.autograd.grad(scalar, params, retain_graph=True))

    batch_sq = grad_sq(losses.mean())
    # zero-sum +-1 weights (one 0 when n is odd), randomly permuted: E||sum w_i g_i||^2 = sum(w^2) tr(Sigma)
    base = torch.tensor([1.0, -1.0]).repeat(n // 2)
    base = torch.cat([base, torch.zeros(n % 2)])
    trace_sigma = 0.0
    ntk_sum = 0.0
    for _ in range(repeats):
        w = base[torch.randperm(n, generator=gen)]
        trace_sigma += grad_sq((w * losses).sum()) / float(base.pow(2).sum()) / repeats
        v = torch.randint(0, 2, logits.shape, generator=gen).float() * 2 - 1
        ntk_sum += grad_sq((v * logits).sum()) / repeats
    mean_sq = trace_sigma * (n - 1) / n + batch_sq
    return {"grad_sq_norm": mean_sq, "batch_grad_sq_norm": batch_sq, "trace_sigma": trace_sigma,
            "ntk_trace": ntk_sum / n}  # fmt: skip


def gradient_noise_scale(trace_sigma: float, batch_grad_sq_norm: float, batch_size: int) -> float:
    """B_simple = tr(Sigma)/|G|^2 with |G|^2 = ||G_B||^2 - tr(Sigma)/B (unbiased); nan when that is <= 0."""
    true_sq = batch_grad_sq_norm - trace_sigma / batch_size
    return trace_sigma / true_sq if true_sq > 0 else math.nan


def hessian_top_eigenvalue(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    iters: int = 4,
    seed: int = 0,
) -> float:
    """Largest-magnitude Hessian eigenvalue of the batch loss from `iters` Hessian-vector products.

    Power iteration refined by Lanczos: the HVPs (double backward through one retained graph) span a
    Krylov space whose extreme Ritz value converges faster than the last power iterate.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ChronosError("The model has no trainable parameters to probe")
    loss = F.cross_entropy(model(inputs), targets)
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(v, [p.numel() for p in params])
        cot = [c.view_as(p) for c, p in zip(pieces, params, strict=True)]
        hv = torch.autograd.grad(grads, params, grad_outputs=cot, retain_graph=True, allow_unused=True)
        return torch.cat(
            [(h if h is not None else torch.zeros_like(p)).flatten() for h, p in zip(hv, params, strict=True)]
        )

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(p.numel() for p in params), generator=gen)
    q /= q.norm()
    q_prev = torch.zeros_like(q)
    alphas: list[float] = []
    betas: list[float] = []
    for step in range(iters):  # three-term Lanczos recurrence, in place (vectors are model-sized)
        w = hvp(q)
        alpha = float(w @ q)
        if not math.isfinite(alpha):
            return math.nan
        alphas.append(alpha)
        w.sub_(q, alpha=alpha)
        if betas:
            w.sub_(q_prev, alpha=betas[-1])
        beta = float(w.norm())
        if step == iters - 1 or beta <= 1e-10 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        q_prev, q = q, w.div_(beta)
    tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(tri)
    return float(ritz[ritz.abs().argmax()])


def probe_model(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: ProbeConfig | None = None,
) -> ProbeResult:
    """All init-time probes of a classifier on one batch (raw logits out, integer labels in)."""
    cfg = config or ProbeConfig()
    seconds: dict[str, float] = {}
    n = inputs.shape[0]
    if n < 2:
        raise ChronosError(f"Probes need a batch of at least 2 samples (got {n})")
    # math attention: the fused CPU kernels have no double backward (Hessian) or vmap rule
    with _EvalMode(model), torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = check_logits(model(inputs), n)
            num_classes = int(logits.shape[1])
            _check_targets(targets, n, num_classes)
            initial_loss = float(F.cross_entropy(logits, targets))
        seconds["initial_loss"] = time.perf_counter() - t0

        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        method = cfg.method
        if method == "auto":
            method = "exact" if n_params <= cfg.exact_max_params else "sketch"
        t0 = time.perf_counter()
        stats = None
        if method == "exact":
            try:
                stats = per_sample_stats_exact(
                    model, inputs, targets, num_classes, cfg.ntk_exact_max_classes, cfg.ntk_projections,
                    cfg.chunk_bytes, cfg.seed,
                )  # fmt: skip
            except RuntimeError:
                if cfg.method == "exact":
                    raise
                method = "sketch"  # torch.func cannot vmap some fused modules (nn.GRU, nn.LSTM)
        if stats is None:
            stats = per_sample_stats_sketch(model, inputs, targets, cfg.sketch_repeats, cfg.seed)
        seconds["gradients_ntk"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        eig = math.nan
        if cfg.hessian_iters > 0:
            hb = min(cfg.hessian_batch, n)
            eig = hessian_top_eigenvalue(model, inputs[:hb], targets[:hb], cfg.hessian_iters, cfg.seed)
        seconds["hessian"] = time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())
    return ProbeResult(
        initial_loss=initial_loss,
        grad_sq_norm=stats["grad_sq_norm"],
        batch_grad_sq_norm=stats["batch_grad_sq_norm"],
        trace_sigma=stats["trace_sigma"],
        grad_noise_scale=gradient_noise_scale(stats["trace_sigma"], stats["batch_grad_sq_norm"], n),
        ntk_trace=stats["ntk_trace"],
        hessian_top_eig=eig,
        n_params=n_params,
        n_samples=n,
        num_classes=num_classes,
        method=method,
        seconds=seconds,
    )
