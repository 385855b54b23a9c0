"""Init-time probes: exact values against brute force, sketch unbiasedness, Hessian, bad outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chronos_core.errors import ChronosError
from chronos_core.probes import (
    ProbeConfig,
    check_logits,
    gradient_noise_scale,
    hessian_top_eigenvalue,
    per_sample_stats_exact,
    per_sample_stats_sketch,
    probe_model,
)


def _mlp(seed: int = 0, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, classes)).eval()


def _batch(n: int = 12, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _brute_force(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    params = list(model.parameters())
    grads, ntk = [], 0.0
    for i in range(len(x)):
        logits = model(x[i : i + 1])[0]
        g = torch.autograd.grad(F.cross_entropy(logits[None], y[i : i + 1]), params)
        grads.append(torch.cat([t.flatten() for t in g]))
        for c in range(len(logits)):
            jc = torch.autograd.grad(model(x[i : i + 1])[0, c], params)
            ntk += float(sum(t.pow(2).sum() for t in jc))
    g = torch.stack(grads)
    return {
        "grad_sq_norm": float(g.pow(2).sum(1).mean()),
        "batch_grad_sq_norm": float(g.mean(0).pow(2).sum()),
        "ntk_trace": ntk / len(x),
    }


def test_exact_stats_match_brute_force():
    model = _mlp()
    x, y = _batch()
    exact = per_sample_stats_exact(model, x, y, num_classes=4)
    truth = _brute_force(model, x, y)
    for key, value in truth.items():
        assert exact[key] == pytest.approx(value, rel=1e-4), key
    n = len(x)
    assert exact["trace_sigma"] == pytest.approx(
        (truth["grad_sq_norm"] - truth["batch_grad_sq_norm"]) * n / (n - 1), rel=1e-4
    )


def test_exact_ntk_with_projections_is_close_for_many_classes():
    model = _mlp(classes=20)
    x, y = _batch(n=32, classes=20)
    full = per_sample_stats_exact(model, x, y, 20, ntk_exact_max_classes=64)
    proj = per_sample_stats_exact(model, x, y, 20, ntk_exact_max_classes=4, ntk_projections=16)
    assert proj["grad_sq_norm"] == pytest.approx(full["grad_sq_norm"], rel=1e-5)
    assert proj["ntk_trace"] == pytest.approx(full["ntk_trace"], rel=0.15)


def test_sketch_is_unbiased():
    model = _mlp()
    x, y = _batch(n=32)
    exact = per_sample_stats_exact(model, x, y, 4)
    runs = [per_sample_stats_sketch(model, x, y, repeats=4, seed=s) for s in range(40)]
    assert runs[0]["batch_grad_sq_norm"] == pytest.approx(exact["batch_grad_sq_norm"], rel=1e-4)
    for key in ("grad_sq_norm", "trace_sigma", "ntk_trace"):
        mean = np.mean([r[key] for r in runs])
        assert mean == pytest.approx(exact[key], rel=0.08), key


def test_hessian_top_eigenvalue_matches_dense_hessian():
    model = _mlp()
    x, y = _batch()
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().flatten() for p in params])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        chunks, offset = [], 0
        for s in shapes:
            n = math.prod(s)
            chunks.append(theta[offset : offset + n].view(s))
            offset += n
        h = torch.tanh(x @ chunks[0].T + chunks[1])
        return F.cross_entropy(h @ chunks[2].T + chunks[3], y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat))
    top = float(eig[eig.abs().argmax()])
    estimate = hessian_top_eigenvalue(model, x, y, iters=len(flat))
    assert estimate == pytest.approx(top, rel=1e-3)
    cheap = hessian_top_eigenvalue(model, x, y, iters=4)
    assert 0.3 * abs(top) <= abs(cheap) <= abs(top) * 1.001


def test_probe_model_restores_mode_and_leaves_parameters():
    model = _mlp().train()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _batch()
    result = probe_model(model, x, y)
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert result.method == "exact"
    with torch.no_grad():
        expected = float(F.cross_entropy(model.eval()(x), y))
    assert result.initial_loss == pytest.approx(expected, rel=1e-6)
    feats = result.log10_features()
    assert feats["gradient_norm_log10"] == pytest.approx(0.5 * math.log10(result.batch_grad_sq_norm))
    assert 0 < result.grad_coherence <= 1


def test_gru_falls_back_to_sketch():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 5, batch_first=True)
            self.head = nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    x, y = torch.randn(8, 4, 3), torch.randint(0, 3, (8,))
    result = probe_model(Tiny(), x, y, ProbeConfig(hessian_iters=2))
    assert result.method == "sketch"
    assert math.isfinite(result.ntk_trace) and result.ntk_trace > 0


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        (lambda z: torch.softmax(z, 1), "probabilities"),
        (lambda z: torch.log_softmax(z, 1), "log-probabilities"),
        (lambda z: (z,), "returned tuple"),
        (lambda z: z[:, :1], "regression or single-logit"),
        (lambda z: z.unsqueeze(1), "shape"),
    ],
)
def test_outputs_that_are_not_logits_are_rejected(forward, message):
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _mlp()

        def forward(self, x: torch.Tensor) -> object:
            return forward(self.inner(x))

    x, y = _batch()
    with pytest.raises(ChronosError, match=message):
        probe_model(Wrapped(), x, y)


def test_bad_targets_and_config():
    x, y = _batch()
    with pytest.raises(ChronosError, match=r"\[0, 4\)"):
        probe_model(_mlp(), x, y + 10)
    with pytest.raises(ChronosError, match="Unknown probe method"):
        ProbeConfig(method="magic")
    with pytest.raises(ChronosError, match="at least 2"):
        probe_model(_mlp(), x[:1], y[:1])
    assert check_logits(torch.randn(3, 2), 3).shape == (3, 2)


def test_gradient_noise_scale():
    assert gradient_noise_scale(trace_sigma=10.0, batch_grad_sq_norm=2.0, batch_size=10) == pytest.approx(
        10.0
    )
    assert math.isnan(gradient_noise_scale(trace_sigma=100.0, batch_grad_sq_norm=1.0, batch_size=10))
