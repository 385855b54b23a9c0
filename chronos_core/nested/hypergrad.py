"""Hypergradients d f(w(theta), theta) / d theta, two ways.

- unrolled: differentiate through k inner gradient steps w_{t+1} = w_t - lr(theta) grad_w g(w_t, theta)
  with torch.func (nested `grad`); exact for the k-step objective, memory grows with k.
- implicit: at an inner minimiser w*, dw*/dtheta = -H^{-1} d2g/dw dtheta, so
  hypergrad = df/dtheta - (d2g/dtheta dw) v with (H + damping I) v = df/dw solved by conjugate gradient
  on Hessian-vector products. Exact at w* with damping 0; needs g strongly convex near w*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, vjp

from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.nested.inner import InnerProblem

METHODS = ("implicit", "unrolled")


@dataclass
class Hypergradient:
    """One hypergradient and what produced it."""

    grad: Tensor  # d val_loss / d theta
    val_loss: float  # f at the inner iterate used
    inner: Tensor  # that inner iterate (final unrolled w, or the w* given to implicit)
    cg_iterations: int = 0
    cg_solution: Tensor | None = None  # v = (H + damping I)^{-1} df/dw (implicit only)


def unrolled_hypergradient(
    problem: InnerProblem, theta: Tensor, w0: Tensor, steps: int, batch: Tensor | None = None
) -> Hypergradient:
    """Exact gradient of f(w_steps(theta), theta) through `steps` gradient-descent steps from w0."""
    if steps < 1:
        raise ChronosError(f"unrolled steps must be >= 1, got {steps!r}")
    grad_g = grad(problem.train_loss, argnums=0)
    w_start = w0.detach()

    def outer_objective(th: Tensor) -> tuple[Tensor, Tensor]:
        w = w_start
        lr = problem.inner_lr(th)
        for _ in range(steps):
            w = w - lr * grad_g(w, th)
        return problem.val_loss(w, th, batch), w

    g, (value, w_final) = grad_and_value(outer_objective, has_aux=True)(theta.detach())
    return Hypergradient(grad=g.detach(), val_loss=float(value), inner=w_final.detach())


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    max_iters: int = 100,
    tol: float = 1e-10,
) -> tuple[Tensor, int]:
    """Solve A x = b for symmetric positive-definite A given as `matvec`; stops at ||r|| <= tol ||b||."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    stop = (tol * torch.linalg.vector_norm(b)) ** 2
    iterations = 0
    while iterations < max_iters and rs > stop:
        ap = matvec(p)
        curvature = torch.dot(p, ap)
        if curvature <= 0:  # not positive definite along p: return the best iterate so far
            break
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = torch.dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
        iterations += 1
    return x, iterations


def implicit_hypergradient(
    problem: InnerProblem,
    theta: Tensor,
    w_star: Tensor,
    batch: Tensor | None = None,
    damping: float = 0.0,
    max_cg_iters: int = 100,
    cg_tol: float = 1e-10,
    v0: Tensor | None = None,
) -> Hypergradient:
    """Implicit-function hypergradient at an (approximate) inner minimiser w_star; v0 warm-starts CG."""
    if not (damping >= 0 and math.isfinite(damping)):
        raise ChronosError(f"damping must be a finite number >= 0, got {damping!r}")
    if max_cg_iters < 1 or not (cg_tol > 0):
        raise ChronosError(f"max_cg_iters must be >= 1 and cg_tol > 0, got {max_cg_iters!r}, {cg_tol!r}")
    w, th = w_star.detach(), theta.detach()
    (df_dw, df_dtheta), value = grad_and_value(lambda a, b: problem.val_loss(a, b, batch), argnums=(0, 1))(
        w, th
    )
    _, second_order = vjp(grad(problem.train_loss, argnums=0), w, th)  # v -> (H v, d2g/dtheta dw v)

    def damped_hvp(v: Tensor) -> Tensor:
        return second_order(v)[0] + damping * v

    v, iterations = conjugate_gradient(damped_hvp, df_dw, x0=v0, max_iters=max_cg_iters, tol=cg_tol)
    mixed = second_order(v)[1]
    return Hypergradient(
        grad=(df_dtheta - mixed).detach(),
        val_loss=float(value),
        inner=w,
        cg_iterations=iterations,
        cg_solution=v.detach(),
    )


def check_method(method: str) -> str:
    """Validate a hypergradient method name."""
    if method not in METHODS:
        raise unknown_choice("hypergradient method", method, METHODS)
    return method
