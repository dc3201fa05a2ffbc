"""Hessian-vector products and solvers against finite differences and dense linear algebra."""
import pytest
import torch

from conftest import random_graph, samples_of
from graphforget.models import LightGCN
from graphforget.unlearning.linalg import (HessianOperator, batched_block_solve, conjugate_gradient,
                                        lanczos_damped_solve,
                                        dense_hessian, hvp, lissa, power_iteration)
from graphforget.train.objective import total_loss


def _lightgcn_loss(layers=2, seed=0):
    g = random_graph(12, 15, 50, seed=seed)
    model = LightGCN(g.num_users, g.num_items, dim=4, num_layers=layers, seed=seed).double()
    with torch.no_grad():
        model.embedding.mul_(5.0)  # away from the near-linear regime of tiny scores
    adj = g.adj().to(torch.float64)
    samples = samples_of(g, "bpr", seed)
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
    h0 = dense_hessian(f, theta)
    damping = 1.0 - float(torch.linalg.eigvalsh(h0).min())  # the smallest damping plus one
    h = h0 + damping * torch.eye(theta.numel(), dtype=torch.float64)
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
    # symmetric but indefinite blocks (no Cholesky factor) are solved too, beside definite ones
    mixed = blocks.clone()
    mixed[[1, 4]] = -mixed[[1, 4]] + torch.diag(torch.tensor([9.0, 0, 0, 0, 0], dtype=torch.float64))
    x = batched_block_solve(mixed, g)
    for k in range(7):
        torch.testing.assert_close(x[k], torch.linalg.solve(mixed[k], g[k]))


def _restart_ladder(a, b, ladder, tol, max_iter):
    """Reference: CG, raising the damping and restarting on failure (the pre-Lanczos rule)."""
    products = 0
    for d in ladder:
        x, info = conjugate_gradient(lambda v: a @ v + d * v, b, tol, max_iter)
        products += info["matvecs"]
        if info["converged"] and not info["negative_curvature"]:
            return x, d, products
    return None, float("nan"), products


@pytest.mark.parametrize("shift", [0.0, -3.0, -40.0])
def test_lanczos_damped_solve_picks_the_restart_ladders_damping_with_fewer_products(shift):
    a = _spd(40, seed=3, cond=100.0) + shift * torch.eye(40, dtype=torch.float64)  # indefinite if shift < -1
    b = torch.randn(40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ladder = [0.0, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    x, info = lanczos_damped_solve(lambda v: a @ v, b, ladder, tol=1e-10, max_iter=200)
    ref_x, ref_d, ref_products = _restart_ladder(a, b, ladder, 1e-10, 200)
    assert info["damping"] == ref_d
    assert info["converged"] and (info["raised"] != []) == (shift < -1.0)
    exact = torch.linalg.solve(a + ref_d * torch.eye(40, dtype=torch.float64), b)
    torch.testing.assert_close(x, exact, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(x, ref_x, rtol=1e-7, atol=1e-9)
    assert info["matvecs"] <= ref_products + 1  # same Krylov iterates; rounding may cost one
    if shift < -1.0:
        assert info["matvecs"] < ref_products  # the restarts' products are saved


def test_lanczos_damped_solve_raises_on_max_iter_and_reports_failure():
    a = _spd(30, seed=5, cond=1e6)
    b = torch.randn(30, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x, info = lanczos_damped_solve(lambda v: a @ v, b, [0.0, 1e3], tol=1e-12, max_iter=3)
    assert info["raised"] == [(0.0, 1e3, "max_iter")] and info["damping"] == 1e3
    assert float((a @ x + 1e3 * x - b).norm() / b.norm()) == pytest.approx(info["residual"], rel=1e-3, abs=1e-14)
    # a ladder that never becomes positive definite: no solution, nan damping
    x, info = lanczos_damped_solve(lambda v: -a @ v, b, [0.0, 1.0], tol=1e-8, max_iter=50)
    assert not info["converged"] and info["damping"] != info["damping"] and float(x.abs().sum()) == 0.0
    with pytest.raises(ValueError):
        lanczos_damped_solve(lambda v: a @ v, b, [1.0, 0.1])
