"""Hessian-vector products and solvers against finite differences and dense linear algebra."""
import pytest
import torch

from conftest import random_graph
from graphforget.models import LightGCN
from graphforget.unlearn.linalg import (HessianOperator, batched_block_solve, conjugate_gradient,
                                        dense_hessian, hvp, lissa, power_iteration)
from graphforget.unlearn.objective import SampleSet, total_loss


def _lightgcn_loss(layers=2, seed=0):
    g = random_graph(12, 15, 50, seed=seed)
    model = LightGCN(g.num_users, g.num_items, dim=4, num_layers=layers, seed=seed).double()
    with torch.no_grad():
        model.embedding.mul_(5.0)  # away from the near-linear regime of tiny scores
    adj = g.adj().to(torch.float64)
    samples = SampleSet.bpr(g, seed=seed)
    return (lambda e: total_loss(model, adj, e, samples, 1e-2)), model.embedding.detach().clone()


def _spd(n, seed, cond=50.0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.t()


def test_hvp_matches_central_differences_lightgcn():
    f, theta = _lightgcn_loss()
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(theta.shape, generator=gen, dtype=torch.float64)

    def grad(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(f(x), x)[0]

    eps = 1e-5
    fd = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
    hv = hvp(f, theta, v)
    assert hv.norm() > 1e-3  # non-trivial curvature through propagation
    torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-8)


def test_dense_hessian_equals_autograd_functional_and_operator_damping():
    f, theta = _lightgcn_loss(layers=1, seed=2)
    n = theta.numel()
    h = dense_hessian(f, theta)
    ref = torch.autograd.functional.hessian(f, theta).reshape(n, n)
    torch.testing.assert_close(h, ref)
    torch.testing.assert_close(h, h.t())
    op = HessianOperator(f, theta, damping=0.3)
    v = torch.randn(theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op(v).reshape(-1), (h + 0.3 * torch.eye(n, dtype=h.dtype)) @ v.reshape(-1))
    assert op.count == 1


def test_cg_solves_random_spd_system():
    a = _spd(60, 0)
    b = torch.randn(60, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x, info = conjugate_gradient(lambda v: a @ v, b, tol=1e-10, max_iter=500)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    assert info["converged"] and info["residual"] <= 1e-10
    assert torch.linalg.norm(b - a @ x) / b.norm() <= 1e-9
    # warm start at the solution: no iterations needed
    _, info2 = conjugate_gradient(lambda v: a @ v, b, tol=1e-8, x0=x)
    assert info2["iterations"] == 0


def test_cg_on_dense_hessian_of_lightgcn_objective():
    f, theta = _lightgcn_loss(layers=2, seed=4)
    shape = theta.shape
    damping = 1.0
    h = dense_hessian(f, theta) + damping * torch.eye(theta.numel(), dtype=torch.float64)
    assert torch.linalg.eigvalsh(h).min() > 0
    b = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    op = HessianOperator(f, theta, damping)
    x, info = conjugate_gradient(op, b, tol=1e-10, max_iter=1000)
    torch.testing.assert_close(x.reshape(-1), torch.linalg.solve(h, b.reshape(-1)), rtol=1e-7, atol=1e-9)
    assert info["converged"] and op.count == info["matvecs"]


def test_cg_stops_on_negative_curvature():
    a = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    _, info = conjugate_gradient(lambda v: a @ v, b, tol=1e-12)
    assert info["negative_curvature"] and not info["converged"]


def test_lissa_converges_on_well_conditioned_problem():
    a = _spd(30, 7, cond=5.0)
    b = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    lam = power_iteration(lambda v: a @ v, b, iters=200)
    assert lam == pytest.approx(float(torch.linalg.eigvalsh(a).max()), rel=1e-3)
    x, info = lissa(lambda v: a @ v, b, scale=1.1 * lam, tol=1e-9, max_iter=2000)
    assert info["converged"]
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-7, atol=1e-8)
    with pytest.raises(ValueError):
        lissa(lambda v: a @ v, b, scale=0.0)


def test_batched_block_solve_equals_per_block_solves():
    gen = torch.Generator().manual_seed(9)
    m = torch.randn(7, 5, 5, generator=gen, dtype=torch.float64)
    blocks = m @ m.transpose(1, 2)
    g = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    x = batched_block_solve(blocks, g, damping=0.5)
    for k in range(7):
        ref = torch.linalg.solve(blocks[k] + 0.5 * torch.eye(5, dtype=torch.float64), g[k])
        torch.testing.assert_close(x[k], ref)
    with pytest.raises(ValueError):
        batched_block_solve(blocks, g[:3])
