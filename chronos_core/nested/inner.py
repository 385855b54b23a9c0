"""Inner problems of bilevel optimisation: g(w, theta) is minimised over w, f(w, theta) scores w.

Inner parameters w and outer parameters theta are flat 1-D tensors, so torch.func differentiates
through them directly; each problem unflattens its own w. Two tasks on scikit-learn digits (offline,
bundled with scikit-learn):
- `hyper_cleaning`: 30% of training labels flipped; theta = per-example weight logits
  (weight = sigmoid(theta)), inner = L2-regularised softmax regression (strongly convex, so implicit
  differentiation applies), outer = cross-entropy on a clean validation set.
- `mlp_tuning`: theta = (log learning rate, log weight decay) of a 64-32-10 tanh MLP trained by
  `steps` full-batch gradient steps from a fixed initialisation; outer = validation cross-entropy
  after those steps (lr enters only through the trajectory, so unrolled differentiation is needed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chronos_core.errors import ChronosError, unknown_choice

TASKS = ("hyper_cleaning", "mlp_tuning")


class InnerProblem:
    """g(w, theta) trained over w by gradient descent; f(w, theta) evaluated on validation data."""

    num_inner: int
    num_outer: int
    num_val: int
    dtype: torch.dtype

    def train_loss(self, w: Tensor, theta: Tensor) -> Tensor:
        """Inner objective g(w, theta), a scalar."""
        raise NotImplementedError

    def val_loss(self, w: Tensor, theta: Tensor, batch: Tensor | None = None) -> Tensor:
        """Outer objective f(w, theta) on validation rows `batch` (all rows when None)."""
        raise NotImplementedError

    def inner_lr(self, theta: Tensor) -> Tensor:
        """Step size of the inner gradient descent (may depend on theta)."""
        raise NotImplementedError

    def init_inner(self) -> Tensor:
        """Starting point of the inner loop."""
        return torch.zeros(self.num_inner, dtype=self.dtype)

    def init_outer(self) -> Tensor:
        """Starting outer parameters."""
        return torch.zeros(self.num_outer, dtype=self.dtype)

    def run_inner(self, theta: Tensor, w0: Tensor, steps: int) -> Tensor:
        """`steps` plain gradient-descent steps on g from w0 (no graph kept)."""
        theta = theta.detach()
        w = w0.detach().clone()
        lr = self.inner_lr(theta).detach()
        for _ in range(steps):
            w.requires_grad_(True)
            (g,) = torch.autograd.grad(self.train_loss(w, theta), w)
            w = (w - lr * g).detach()
        return w

    def solve(self, theta: Tensor) -> Tensor:
        """The inner solution used to score theta (a converged minimiser or the fixed-length run)."""
        raise NotImplementedError

    def test_accuracy(self, w: Tensor) -> float:
        """Accuracy of inner parameters w on the held-out test set."""
        raise NotImplementedError

    def evaluate(self, theta: Tensor) -> dict[str, float]:
        """Score theta the same way for every run: validation loss and test accuracy of solve(theta)."""
        with torch.no_grad():
            theta = theta.to(self.dtype)
        w = self.solve(theta)
        with torch.no_grad():
            return {"val_loss": float(self.val_loss(w, theta)), "test_acc": self.test_accuracy(w)}


def _lbfgs_minimise(loss, w0: Tensor, max_iter: int = 300, tol: float = 1e-7) -> Tensor:
    """Minimise a smooth scalar function of a flat tensor with L-BFGS (strong Wolfe line search)."""
    w = w0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-2,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = loss(w)
        value.backward()
        return value

    opt.step(closure)
    return w.detach()


def _newton_minimise(loss, w0: Tensor, max_iter: int = 50, tol: float = 1e-12) -> Tensor:
    """Damped Newton with backtracking for small strongly convex problems (exact Hessian)."""
    w = w0.detach().clone()
    for _ in range(max_iter):
        g = torch.func.grad(loss)(w)
        if float(torch.linalg.vector_norm(g)) <= tol:
            break
        step = torch.linalg.solve(
            torch.func.jacrev(torch.func.grad(loss))(w), g
        )  # no forward AD: slow first use
        value, t = float(loss(w)), 1.0
        while float(loss(w - t * step)) > value - 0.25 * t * float(g @ step) and t > 1e-8:
            t *= 0.5
        w = w - t * step
    return w


class WeightedRidge(InnerProblem):
    """Ridge regression with per-example weights sigmoid(theta[:n]) and l2 = exp(theta[n]); closed-form w*.

    Small and exact: the reference problem for finite-difference checks of both hypergradients.
    """

    def __init__(self, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor) -> None:
        self.dtype = x_train.dtype
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.num_inner = x_train.shape[1]
        self.num_outer = x_train.shape[0] + 1
        self.num_val = x_val.shape[0]
        self._lr = 1.0 / (float(torch.linalg.matrix_norm(x_train, ord=2)) ** 2 / len(x_train) + 1.0)

    def train_loss(self, w: Tensor, theta: Tensor) -> Tensor:
        residual = self.x_train @ w - self.y_train
        return (
            0.5 * (torch.sigmoid(theta[:-1]) * residual**2).mean()
            + 0.5 * torch.exp(theta[-1]) * (w * w).sum()
        )

    def val_loss(self, w: Tensor, theta: Tensor, batch: Tensor | None = None) -> Tensor:
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch], self.y_val[batch])
        return 0.5 * ((x @ w - y) ** 2).mean()

    def inner_lr(self, theta: Tensor) -> Tensor:
        return torch.as_tensor(self._lr, dtype=self.dtype)

    def solve(self, theta: Tensor) -> Tensor:
        """w* = (X^T D X / n + l2 I)^-1 X^T D y / n."""
        n = len(self.x_train)
        weights = torch.sigmoid(theta[:-1])
        a = self.x_train.T @ (weights[:, None] * self.x_train) / n + torch.exp(theta[-1]) * torch.eye(
            self.num_inner, dtype=self.dtype
        )
        return torch.linalg.solve(a, self.x_train.T @ (weights * self.y_train) / n)

    def test_accuracy(self, w: Tensor) -> float:
        return math.nan


class HyperCleaning(InnerProblem):
    """Per-example weights sigmoid(theta_i) on a noisy training set; softmax regression inside."""

    flipped: Tensor | None = None  # which training labels were corrupted (digits task), for diagnostics

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        y_val: Tensor,
        x_test: Tensor | None = None,
        y_test: Tensor | None = None,
        l2: float = 1e-3,
        inner_lr: float | None = None,
    ) -> None:
        if not (l2 > 0 and math.isfinite(l2)):
            raise ChronosError(f"l2 must be a positive number (strong convexity), got {l2!r}")
        self.dtype = x_train.dtype
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.x_test, self.y_test = x_test, y_test
        self.num_classes = int(max(y_train.max(), y_val.max())) + 1
        self.num_features = x_train.shape[1]
        self.num_inner = (self.num_features + 1) * self.num_classes
        self.num_outer = x_train.shape[0]
        self.num_val = x_val.shape[0]
        self.l2 = l2
        if inner_lr is None:  # 1 / L with L bounding the Hessian: softmax curvature <= 1/2 per row
            xb = torch.cat([x_train, torch.ones(len(x_train), 1, dtype=self.dtype)], 1)
            top = torch.linalg.matrix_norm(xb, ord=2) ** 2 / len(x_train)
            inner_lr = 1.0 / (0.5 * float(top) + l2)
        self._lr = inner_lr

    def logits(self, w: Tensor, x: Tensor) -> Tensor:
        k, d = self.num_classes, self.num_features
        return x @ w[: d * k].reshape(d, k) + w[d * k :]

    def train_loss(self, w: Tensor, theta: Tensor) -> Tensor:
        per_example = F.cross_entropy(self.logits(w, self.x_train), self.y_train, reduction="none")
        return (torch.sigmoid(theta) * per_example).mean() + 0.5 * self.l2 * (w * w).sum()

    def val_loss(self, w: Tensor, theta: Tensor, batch: Tensor | None = None) -> Tensor:
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch], self.y_val[batch])
        return F.cross_entropy(self.logits(w, x), y)

    def inner_lr(self, theta: Tensor) -> Tensor:
        return torch.as_tensor(self._lr, dtype=self.dtype)

    def solve(self, theta: Tensor, w0: Tensor | None = None) -> Tensor:
        theta = theta.detach()
        start = self.init_inner() if w0 is None else w0
        if self.num_inner <= 256:  # small: exact Newton (used by the finite-difference tests)
            return _newton_minimise(lambda w: self.train_loss(w, theta), start)
        tol, iters = (1e-12, 2000) if self.dtype == torch.float64 else (1e-6, 300)
        return _lbfgs_minimise(lambda w: self.train_loss(w, theta), start, max_iter=iters, tol=tol)

    def test_accuracy(self, w: Tensor) -> float:
        if self.x_test is None:
            return math.nan
        with torch.no_grad():
            return float((self.logits(w, self.x_test).argmax(1) == self.y_test).double().mean())


class MLPTuning(InnerProblem):
    """theta = (log lr, log weight decay) of a tanh MLP trained `steps` full-batch steps from fixed init."""

    def __init__(
        self,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        y_val: Tensor,
        x_test: Tensor | None = None,
        y_test: Tensor | None = None,
        hidden: int = 32,
        steps: int = 40,
        init_lr: float = 0.1,
        init_weight_decay: float = 1e-3,
        init_seed: int = 0,
    ) -> None:
        if steps < 1:
            raise ChronosError(f"steps must be >= 1, got {steps!r}")
        if not (init_lr > 0 and init_weight_decay > 0):
            raise ChronosError(
                f"init_lr and init_weight_decay must be positive, got {init_lr!r}, {init_weight_decay!r}"
            )
        self.dtype = x_train.dtype
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.x_test, self.y_test = x_test, y_test
        self.num_classes = int(max(y_train.max(), y_val.max())) + 1
        d, h, k = x_train.shape[1], hidden, self.num_classes
        self.shapes = [(d, h), (h,), (h, k), (k,)]
        self.num_inner = sum(math.prod(s) for s in self.shapes)
        self.num_outer = 2
        self.num_val = x_val.shape[0]
        self.steps = steps
        self.init_theta = torch.tensor([math.log(init_lr), math.log(init_weight_decay)], dtype=self.dtype)
        gen = torch.Generator().manual_seed(init_seed)
        parts = [torch.randn(s, generator=gen, dtype=self.dtype) / math.sqrt(s[0]) for s in self.shapes[::2]]
        self.w0 = torch.cat(
            [
                parts[0].flatten(),
                torch.zeros(h, dtype=self.dtype),
                parts[1].flatten(),
                torch.zeros(k, dtype=self.dtype),
            ]
        )

    def logits(self, w: Tensor, x: Tensor) -> Tensor:
        tensors, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            tensors.append(w[start : start + size].reshape(shape))
            start += size
        w1, b1, w2, b2 = tensors
        return torch.tanh(x @ w1 + b1) @ w2 + b2

    def train_loss(self, w: Tensor, theta: Tensor) -> Tensor:
        data = F.cross_entropy(self.logits(w, self.x_train), self.y_train)
        return data + 0.5 * torch.exp(theta[1]) * (w * w).sum()

    def val_loss(self, w: Tensor, theta: Tensor, batch: Tensor | None = None) -> Tensor:
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch], self.y_val[batch])
        return F.cross_entropy(self.logits(w, x), y)

    def inner_lr(self, theta: Tensor) -> Tensor:
        return torch.exp(theta[0])

    def init_inner(self) -> Tensor:
        return self.w0.clone()

    def init_outer(self) -> Tensor:
        return self.init_theta.clone()

    def solve(self, theta: Tensor) -> Tensor:
        return self.run_inner(theta, self.w0, self.steps)

    def test_accuracy(self, w: Tensor) -> float:
        if self.x_test is None:
            return math.nan
        with torch.no_grad():
            return float((self.logits(w, self.x_test).argmax(1) == self.y_test).double().mean())


def digits_splits(seed: int, n_train: int, n_val: int, dtype: torch.dtype = torch.float32):
    """scikit-learn digits in [0, 1] centred on the training mean, shuffled by `seed`, split in three."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    if n_train < 10 or n_val < 10 or n_train + n_val >= len(x):
        raise ChronosError(
            f"n_train={n_train!r}, n_val={n_val!r} must each be >= 10 and leave test rows out of {len(x)}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order] / 16.0
    x = torch.as_tensor(x - x[:n_train].mean(0), dtype=dtype)  # centring: far better-conditioned inner loss
    y = torch.as_tensor(y[order], dtype=torch.long)
    tr, va = slice(0, n_train), slice(n_train, n_train + n_val)
    te = slice(n_train + n_val, None)
    return x[tr], y[tr], x[va], y[va], x[te], y[te]


def digits_hyper_cleaning(
    seed: int = 0,
    n_train: int = 600,
    n_val: int = 400,
    flip_fraction: float = 0.3,
    l2: float = 1e-3,
    dtype: torch.dtype = torch.float32,
) -> HyperCleaning:
    """Hyper-cleaning on digits: `flip_fraction` of training labels replaced by a different random class."""
    if not 0 <= flip_fraction < 1:
        raise ChronosError(f"flip_fraction must be in [0, 1), got {flip_fraction!r}")
    x_tr, y_tr, x_va, y_va, x_te, y_te = digits_splits(seed, n_train, n_val, dtype)
    rng = np.random.default_rng(seed + 1)
    flipped = rng.random(n_train) < flip_fraction
    shift = torch.as_tensor(rng.integers(1, 10, size=n_train), dtype=torch.long)
    y_noisy = torch.where(torch.as_tensor(flipped), (y_tr + shift) % 10, y_tr)
    problem = HyperCleaning(x_tr, y_noisy, x_va, y_va, x_te, y_te, l2=l2)
    problem.flipped = torch.as_tensor(flipped)
    return problem


def digits_mlp_tuning(
    seed: int = 0,
    n_train: int = 300,
    n_val: int = 300,
    steps: int = 40,
    hidden: int = 32,
    dtype: torch.dtype = torch.float32,
) -> MLPTuning:
    """Learning-rate / weight-decay tuning of a small MLP on digits (fixed init per seed)."""
    x_tr, y_tr, x_va, y_va, x_te, y_te = digits_splits(seed, n_train, n_val, dtype)
    return MLPTuning(x_tr, y_tr, x_va, y_va, x_te, y_te, hidden=hidden, steps=steps, init_seed=seed)


def make_problem(task: str, seed: int = 0, dtype: torch.dtype = torch.float32, **options) -> InnerProblem:
    """Build a named task; `options` go to its factory (e.g. n_train, steps)."""
    if task == "hyper_cleaning":
        return digits_hyper_cleaning(seed=seed, dtype=dtype, **options)
    if task == "mlp_tuning":
        return digits_mlp_tuning(seed=seed, dtype=dtype, **options)
    raise unknown_choice("task", task, TASKS)
