r"""Linear algebra for influence-based unlearning: Hessian-vector products and solvers.

Influence methods need :math:`p = (H + \delta I)^{-1} b` for the Hessian :math:`H` of a scalar
objective with respect to a parameter tensor :math:`\theta` (any shape), without ever forming
:math:`H`. Everything here works on tensors of the parameter's shape (inner products are
``(a * b).sum()``), so callers never flatten.

* :func:`hvp` / :class:`HessianOperator` — exact :math:`Hv` by double backward: with
  :math:`g(\theta) = \nabla_\theta f` built with ``create_graph=True``,
  :math:`\nabla_\theta \langle g(\theta), v\rangle = H v` (:math:`H` symmetric). The operator
  builds :math:`g`'s graph once and reuses it for every product (one backward per HVP).
* :func:`conjugate_gradient` — CG for symmetric positive-definite systems.
* :func:`lissa` — the stochastic-free LiSSA / Neumann recursion of Agarwal et al. (2017), as used
  by Koh & Liang (2017).
* :func:`batched_block_solve` — independent small dense systems on a stack (block-diagonal
  Newton steps, e.g. one :math:`d \times d` block per node).
* :func:`dense_hessian` — the full matrix, for tests and tiny problems.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


class HessianOperator:
    r"""Matrix-free :math:`v \mapsto (H + \delta I) v` for :math:`H = \nabla^2 f(\theta)`.

    Args:
        loss_fn: maps a tensor shaped like ``params`` to a scalar :math:`f`; must be twice
            differentiable (``graphforget.data.sparse.sym_spmm`` is).
        params: the point :math:`\theta` (not modified; a detached leaf copy is differentiated).
        damping: :math:`\delta \ge 0` added to every product.

    Attributes:
        grad: :math:`\nabla f(\theta)` (detached).
        count: number of Hessian-vector products taken so far.
    """

    def __init__(self, loss_fn: Callable[[Tensor], Tensor], params: Tensor, damping: float = 0.0) -> None:
        self.theta = params.detach().clone().requires_grad_(True)
        self.damping = float(damping)
        with torch.enable_grad():
            loss = loss_fn(self.theta)
            (g,) = torch.autograd.grad(loss, self.theta, create_graph=True)
        self._g = g
        self.grad = g.detach()
        self.count = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        if not self._g.requires_grad:  # f is linear in θ: H = 0
            hv = torch.zeros_like(v)
        else:
            (hv,) = torch.autograd.grad(self._g, self.theta, grad_outputs=v, retain_graph=True,
                                        allow_unused=True)
            hv = torch.zeros_like(v) if hv is None else hv.detach()
        return hv + self.damping * v if self.damping else hv


def hvp(loss_fn: Callable[[Tensor], Tensor], params: Tensor, v: Tensor) -> Tensor:
    r"""One Hessian-vector product :math:`\nabla^2 f(\theta)\, v` by double backward."""
    return HessianOperator(loss_fn, params)(v)


def dense_hessian(loss_fn: Callable[[Tensor], Tensor], params: Tensor) -> Tensor:
    r"""The full Hessian ``[n, n]`` (``n = params.numel()``, row-major flattening) from ``n``
    Hessian-vector products with the unit vectors. Only for tests and tiny problems."""
    op = HessianOperator(loss_fn, params)
    n = params.numel()
    eye = torch.eye(n, dtype=params.dtype, device=params.device)
    return torch.stack([op(eye[k].view_as(params)).reshape(-1) for k in range(n)])


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, tol: float = 1e-5,
                       max_iter: int = 100, x0: Optional[Tensor] = None) -> tuple[Tensor, dict]:
    r"""Solve :math:`A x = b` for symmetric positive-definite :math:`A` given as ``matvec``.

    Standard CG (Hestenes–Stiefel); stops when the relative residual
    :math:`\lVert b - A x\rVert / \lVert b\rVert \le` ``tol``, after ``max_iter`` iterations, or
    when a search direction has non-positive curvature :math:`p^\top A p \le 0` (``A`` not
    positive definite: more damping is needed; the iterate so far is returned).

    Returns:
        ``(x, info)`` with ``info = {"iterations", "residual", "converged", "matvecs",
        "negative_curvature"}``; ``residual`` is the relative residual of the returned ``x``
        as tracked by the recurrence.
    """
    bnorm = float(b.norm())
    info = {"iterations": 0, "residual": 0.0, "converged": True, "matvecs": 0,
            "negative_curvature": False}
    if bnorm == 0.0:
        return torch.zeros_like(b), info
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.clone()
        r = b - matvec(x)
        info["matvecs"] += 1
    p = r.clone()
    rs = _dot(r, r)
    res = float(rs.sqrt()) / bnorm
    it = 0
    while res > tol and it < max_iter:
        ap = matvec(p)
        info["matvecs"] += 1
        curv = _dot(p, ap)
        if float(curv) <= 0.0:
            info["negative_curvature"] = True
            break
        alpha = rs / curv
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
        it += 1
        res = float(rs.sqrt()) / bnorm
    info.update(iterations=it, residual=res, converged=res <= tol)
    return x, info


def lissa(matvec: Callable[[Tensor], Tensor], b: Tensor, scale: float, tol: float = 1e-5,
          max_iter: int = 1000, x0: Optional[Tensor] = None) -> tuple[Tensor, dict]:
    r"""Solve :math:`A x = b` by the Neumann-series recursion (LiSSA without sampling).

    .. math::
        y_0 = b,\qquad y_{t+1} = b + (I - A / s)\, y_t,\qquad x_t = y_t / s
        \;\longrightarrow\; A^{-1} b,

    which converges iff the spectrum of :math:`A` lies in :math:`(0, 2s)`; take ``scale``
    :math:`s \ge \lambda_{\max}(A)` (see :func:`power_iteration`). The error contracts by
    :math:`1 - \lambda_{\min}/s` per step. Stops when :math:`\lVert b - A x_t\rVert/\lVert
    b\rVert \le` ``tol`` (the residual :math:`b - A x_t = (y_{t+1} - y_t)` comes for free).

    Returns ``(x, info)`` like :func:`conjugate_gradient`.
    """
    if scale <= 0:
        raise ValueError(f"lissa: scale must be positive, got {scale}")
    bnorm = float(b.norm())
    info = {"iterations": 0, "residual": 0.0, "converged": True, "matvecs": 0,
            "negative_curvature": False}
    if bnorm == 0.0:
        return torch.zeros_like(b), info
    y = b.clone() if x0 is None else x0 * scale
    res = float("inf")
    it = 0
    while it < max_iter:
        ay = matvec(y)
        info["matvecs"] += 1
        step = b - ay / scale  # = (y_{t+1} - y_t); residual of x_t is s * step
        res = float(step.norm()) / bnorm
        if res <= tol or not torch.isfinite(step).all():
            break
        y = y + step
        it += 1
    info.update(iterations=it, residual=res, converged=res <= tol)
    return y / scale, info


def power_iteration(matvec: Callable[[Tensor], Tensor], like: Tensor, iters: int = 20,
                    seed: int = 0) -> float:
    r"""Estimate of the largest eigenvalue magnitude of a symmetric operator (Rayleigh quotient
    after ``iters`` power steps from a seeded random start)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype).to(like.device)
    v = v / v.norm()
    lam = 0.0
    for _ in range(iters):
        w = matvec(v)
        lam = float(_dot(v, w))
        n = w.norm()
        if float(n) == 0.0:
            return 0.0
        v = w / n
    return abs(lam)


def batched_block_solve(blocks: Tensor, g: Tensor, damping: float = 0.0) -> Tensor:
    r"""Solve :math:`(H_b + \delta I)\, x_b = g_b` for every block ``b`` at once.

    Args:
        blocks: ``[n, d, d]`` symmetric blocks (e.g. one per node).
        g: ``[n, d]`` right-hand sides.
        damping: :math:`\delta` added to every diagonal.

    Returns:
        ``[n, d]`` solutions (``torch.linalg.solve`` on the stack; raises on a singular block).
    """
    if blocks.dim() != 3 or blocks.shape[-1] != blocks.shape[-2]:
        raise ValueError(f"blocks must be [n, d, d], got {tuple(blocks.shape)}")
    if g.shape != blocks.shape[:2]:
        raise ValueError(f"g must be [n, d] = {tuple(blocks.shape[:2])}, got {tuple(g.shape)}")
    a = blocks
    if damping:
        a = blocks + damping * torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    return torch.linalg.solve(a, g.unsqueeze(-1)).squeeze(-1)


__all__ = ["HessianOperator", "hvp", "dense_hessian", "conjugate_gradient", "lissa",
           "power_iteration", "batched_block_solve"]
