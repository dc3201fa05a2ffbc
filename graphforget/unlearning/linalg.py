r"""Linear algebra for influence-based unlearning: Hessian-vector products and solvers.

Influence methods need :math:`p = (H + \delta I)^{-1} b` for the Hessian :math:`H` of a scalar
objective with respect to a parameter tensor :math:`\theta` (any shape), without ever forming
:math:`H`. Everything here works on tensors of the parameter's shape (inner products are
``(a * b).sum()``), so callers never flatten.

* :func:`hvp` / :class:`HessianOperator` — exact :math:`Hv` by double backward: with
  :math:`g(\theta) = \nabla_\theta f` built with ``create_graph=True``,
  :math:`\nabla_\theta \langle g(\theta), v\rangle = H v` (:math:`H` symmetric). The operator
  builds :math:`g`'s graph once and reuses it for every product (one backward per HVP).
* :func:`conjugate_gradient` — CG for symmetric positive-definite systems;
  :func:`preconditioned_cg` with a preconditioner.
* :func:`lanczos_damped_solve` — CG's iterates for a whole ladder of dampings from one Lanczos
  run (raising the damping costs no restart).
* :func:`lissa` — the stochastic-free LiSSA / Neumann recursion of Agarwal et al. (2017), as used
  by Koh & Liang (2017).
* :func:`batched_block_solve` — independent small dense systems on a stack (block-diagonal
  Newton steps, e.g. one :math:`d \times d` block per node).
* :func:`dense_hessian` — the full matrix, for tests and tiny problems.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

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
    return preconditioned_cg(matvec, b, lambda r: r, tol, max_iter, x0)  # M = I


def preconditioned_cg(matvec: Callable[[Tensor], Tensor], b: Tensor,
                      precond: Callable[[Tensor], Tensor], tol: float = 1e-5, max_iter: int = 100,
                      x0: Optional[Tensor] = None) -> tuple[Tensor, dict]:
    r"""Preconditioned CG for :math:`A x = b` with a symmetric positive-definite preconditioner
    given as ``precond`` :math:`= M^{-1}` (e.g. block-Jacobi: the inverses of the per-node
    :math:`d \times d` diagonal blocks of :math:`A`). Stops like :func:`conjugate_gradient` —
    relative residual :math:`\lVert b - Ax\rVert / \lVert b\rVert \le` ``tol``, ``max_iter``,
    or a direction of non-positive curvature (``negative_curvature``; the iterate so far is
    returned). Same ``(x, info)`` as :func:`conjugate_gradient`."""
    bnorm = float(b.norm())
    info = {"iterations": 0, "residual": 0.0, "converged": True, "matvecs": 0,
            "negative_curvature": False}
    if bnorm == 0.0:
        return torch.zeros_like(b), info
    if x0 is None:
        x, r = torch.zeros_like(b), b.clone()
    else:
        x = x0.clone()
        r = b - matvec(x)
        info["matvecs"] += 1
    z = precond(r)
    p = z.clone()
    rz = _dot(r, z)
    res = float(r.norm()) / bnorm
    it = 0
    while res > tol and it < max_iter:
        ap = matvec(p)
        info["matvecs"] += 1
        curv = _dot(p, ap)
        if float(curv) <= 0.0:
            info["negative_curvature"] = True
            break
        alpha = rz / curv
        x = x + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = _dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
        it += 1
        res = float(r.norm()) / bnorm
    info.update(iterations=it, residual=res, converged=res <= tol)
    return x, info


def lanczos_damped_solve(matvec: Callable[[Tensor], Tensor], b: Tensor, dampings: Sequence[float],
                         tol: float = 1e-5, max_iter: int = 100) -> tuple[Tensor, dict]:
    r"""Solve :math:`(A + \delta I) x = b` for the first damping of a ladder
    :math:`\delta_0 < \delta_1 < \dots` at which CG would succeed, from **one** Krylov space.

    Krylov spaces are shift-invariant, :math:`\mathcal{K}_m(A + \delta I, b) =
    \mathcal{K}_m(A, b)`, so the Lanczos relation :math:`A V_m = V_m T_m + \beta_{m+1}
    v_{m+1} e_m^\top` built with ``matvec`` :math:`= A` serves every damping: the CG iterate of
    the damped system is :math:`x_m = V_m (T_m + \delta I)^{-1} \lVert b\rVert e_1` and its
    residual norm is :math:`\beta_{m+1} |e_m^\top (T_m + \delta I)^{-1} \lVert b\rVert e_1|`.
    CG on :math:`A + \delta I` meets a direction of non-positive curvature exactly when
    :math:`T_m + \delta I` stops being positive definite (its pivots are CG's curvatures), so

    * the current damping moves up the ladder as soon as :math:`\lambda_{\min}(T_m) + \delta
      \le 0` — the decision :func:`conjugate_gradient` + "raise the damping and restart"
      would take, without the restart's wasted products;
    * after ``max_iter`` products at one damping without convergence, it moves up too (to
      the smallest larger damping already solved to ``tol``, else the next), and iterating
      goes on — at most ``max_iter`` products per damping, as with restarts.

    Costs one product per iteration and keeps the Lanczos basis (``iterations + 1`` vectors of
    ``b``'s size); no reorthogonalisation, like CG.

    Returns:
        ``(x, info)`` as :func:`conjugate_gradient`, plus ``"damping"`` (the damping solved
        for, ``nan`` when none of the ladder worked) and ``"raised"`` (a list of
        ``(old, new, reason)`` with reason ``"indefinite"`` or ``"max_iter"``).
    """
    shifts = [float(d) for d in dampings]
    if not shifts or any(b_ <= a_ for a_, b_ in zip(shifts, shifts[1:])):
        raise ValueError(f"dampings must be a non-empty increasing ladder, got {dampings}")
    bnorm = float(b.norm())
    info = {"iterations": 0, "residual": 0.0, "converged": True, "matvecs": 0,
            "negative_curvature": False, "damping": shifts[0], "raised": []}
    if bnorm == 0.0:
        return torch.zeros_like(b), info
    basis = [b / bnorm]
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples basis[j] and basis[j + 1]
    k = 0
    y = None

    def solve_tridiagonal(shift: float) -> Tensor:
        return evecs @ (evecs[0] * bnorm / (evals + shift))

    for it in range(1, max_iter * len(shifts) + 1):
        w = matvec(basis[-1])
        info["matvecs"] += 1
        alpha = float(_dot(w, basis[-1]))
        w = w - alpha * basis[-1]
        if len(basis) > 1:
            w = w - betas[-1] * basis[-2]
        beta = float(w.norm())
        alphas.append(alpha)
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        while k < len(shifts) and float(evals[0]) + shifts[k] <= 0.0:
            if k + 1 < len(shifts):
                info["raised"].append((shifts[k], shifts[k + 1], "indefinite"))
            info["negative_curvature"] = True
            k += 1
        info["iterations"] = it
        if k == len(shifts):
            info.update(converged=False, damping=float("nan"), residual=float("nan"))
            return torch.zeros_like(b), info
        y = solve_tridiagonal(shifts[k])
        res = beta * abs(float(y[-1])) / bnorm
        if res <= tol or beta <= 1e-14 * bnorm:  # converged, or the Krylov space is invariant
            break
        if it % max_iter == 0:  # this damping had its max_iter products: raise it
            if k + 1 == len(shifts):
                break
            k2 = k + 1  # the smallest larger damping already solved to tol, else the next one
            for cand in range(k + 1, len(shifts)):
                if beta * abs(float(solve_tridiagonal(shifts[cand])[-1])) / bnorm <= tol:
                    k2 = cand
                    break
            info["raised"].append((shifts[k], shifts[k2], "max_iter"))
            k = k2
            y = solve_tridiagonal(shifts[k])
            res = beta * abs(float(y[-1])) / bnorm
            if res <= tol:
                break
        betas.append(beta)
        basis.append(w / beta)
    x = torch.zeros_like(b)
    for coef, v in zip(y.tolist(), basis):
        x.add_(v, alpha=coef)
    info.update(residual=res, converged=res <= tol, damping=shifts[k])
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

    Blocks are factorised by batched Cholesky (half of LU's work for the symmetric
    positive-definite blocks of damped Gauss–Newton Hessians); any block that is not positive
    definite is solved by LU instead.

    Args:
        blocks: ``[n, d, d]`` symmetric blocks (e.g. one per node).
        g: ``[n, d]`` right-hand sides.
        damping: :math:`\delta` added to every diagonal.

    Returns:
        ``[n, d]`` solutions (raises on a singular block).
    """
    if blocks.dim() != 3 or blocks.shape[-1] != blocks.shape[-2]:
        raise ValueError(f"blocks must be [n, d, d], got {tuple(blocks.shape)}")
    if g.shape != blocks.shape[:2]:
        raise ValueError(f"g must be [n, d] = {tuple(blocks.shape[:2])}, got {tuple(g.shape)}")
    a = blocks
    if damping:
        a = blocks + damping * torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    rhs = g.unsqueeze(-1)
    factor, info = torch.linalg.cholesky_ex(a)  # a = L Lᵀ; two triangular solves (faster
    x = torch.linalg.solve_triangular(  # than cholesky_solve on stacks of small blocks)
        factor.mT, torch.linalg.solve_triangular(factor, rhs, upper=False), upper=True)
    bad = info != 0
    if bool(bad.any()):
        x[bad] = torch.linalg.solve(a[bad], rhs[bad])
    return x.squeeze(-1)


__all__ = ["HessianOperator", "hvp", "dense_hessian", "conjugate_gradient", "preconditioned_cg",
           "lanczos_damped_solve", "lissa",
           "power_iteration", "batched_block_solve"]
