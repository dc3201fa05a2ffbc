"""AltEraser: exactness on a convex problem, closed-form block Hessians against autograd, and
behaviour on real data (ml100k)."""
from __future__ import annotations

import copy

import pytest
import torch

from graphforget.models import MF, NGCF, LightGCN
from graphforget.train import TrainConfig, stationary_finish, train
from graphforget.train.objective import Objective, sample_losses, split_samples
from graphforget.unlearning import unlearn
from graphforget.unlearning.influence import untouched_rows
from graphforget.unlearning.alteraser import AltEraser
from graphforget.unlearning.blocks import (block_hessians, margin_terms,
                                           self_loop_coefficients)
from conftest import random_graph, samples_of



def _objective(model, adj, emb, samples, wd):
    return sample_losses(model, model.propagate(adj, emb), emb, samples, wd).sum()


def _newton_users(model, items_emb, samples, wd, iters=30):
    """Reference optimum of the users (items fixed) by full dense Newton with the autograd
    Hessian of the whole user matrix (no block structure assumed)."""
    nu, d = model.num_users, model.dim
    x = torch.zeros(nu * d, dtype=torch.float64)

    def f(flat):
        return _objective(model, None, torch.cat([flat.view(nu, d), items_emb]), samples, wd)

    for _ in range(iters):
        g = torch.autograd.functional.jacobian(f, x)
        h = torch.autograd.functional.hessian(f, x)
        x = x - torch.linalg.solve(h, g)
    return x.view(nu, d), float(torch.autograd.functional.jacobian(f, x).norm())


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_converges_to_retrained_optimum_mf_items_frozen(loss):
    """MF with items frozen is strictly convex in the users (BCE/BPR + L2): starting at the old
    optimum, AltEraser reaches the optimum of the new objective, computed from scratch by dense
    Newton, on *every* user row (unaffected users' sub-problems do not change)."""
    wd = 0.1
    g = random_graph(30, 40, 150, seed=3, labels=(loss == "bce"))
    model = MF(g.num_users, g.num_items, dim=4, init_std=0.5, seed=1).double()
    items = model.embedding.detach()[g.num_users:].clone()
    objective = Objective.for_graph(g, loss, weight_decay=wd, negatives=3)
    users_old, _ = _newton_users(model, items, objective.samples(g), wd)
    with torch.no_grad():
        model.embedding[: g.num_users] = users_old
    edges = g.train_edges[:, torch.randperm(g.num_train, generator=torch.Generator().manual_seed(0))[:12]]
    remaining = split_samples(objective, g, g.remove_edges(edges), edges).remaining
    users_new, gnorm = _newton_users(model, items, remaining, wd)
    assert gnorm < 1e-9
    res = AltEraser(blocks="users", rounds=20, tol=1e-8, damping=0.0, weight_decay=wd,
                    loss=loss, negatives=3).unlearn(model, g, edges)
    got = res.model.embedding.detach()
    rel = (got[: g.num_users] - users_new).norm() / users_new.norm()
    assert rel < 1e-4, float(rel)
    assert (users_new - users_old).norm() / users_new.norm() > 1e-2  # deletion moved the optimum
    assert torch.equal(got[g.num_users:], items)
    assert res.report.converged and res.report.solver_iterations <= 10


def _exact_block(model, adj, emb, samples, wd, v):
    def f(row):
        e = emb.clone()
        e[v] = row
        return _objective(model, adj, e, samples, wd)
    return torch.autograd.functional.hessian(f, emb[v].clone())


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_mf_block_hessian_equals_autograd(loss):
    g = random_graph(20, 25, 120, seed=5, labels=(loss == "bce"))
    model = MF(g.num_users, g.num_items, dim=5, init_std=0.7, seed=2).double()
    samples = samples_of(g, loss, 1)
    emb = model.embedding.detach()
    nodes = torch.tensor([0, 3, 7, g.num_users + 1, g.num_users + 9, g.num_users + 20])
    h = block_hessians(model, emb, samples, nodes, 0.05)
    for k, v in enumerate(nodes.tolist()):
        torch.testing.assert_close(h[k], _exact_block(model, None, emb, samples, 0.05, v),
                                   rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layers", [2, 4])
def test_self_loop_coefficients_dense(layers):
    g = random_graph(15, 20, 70, seed=2)
    model = LightGCN(g.num_users, g.num_items, dim=3, num_layers=layers, seed=0,
                     alpha=[0.1 * (k + 1) for k in range(layers + 1)]).double()
    a = g.adj().to_dense().double()
    p = sum(float(model.alpha[k]) * torch.linalg.matrix_power(a, k) for k in range(layers + 1))
    nodes = torch.tensor([0, 4, 14, 15, 30, 34])
    torch.testing.assert_close(self_loop_coefficients(model, g.adjacency, nodes),
                               p.diagonal()[nodes], rtol=1e-10, atol=1e-12)


def test_lightgcn_block_hessian_approximation():
    """LightGCN-2: (i) the exact block Hessian minus its exact Gauss–Newton part is a multiple
    of I (the cross terms of the docstring); (ii) the closed form approximates the exact
    Gauss–Newton block (Jacobian of all margins w.r.t. the row, by autograd): measured relative
    Frobenius error ≤ 0.35 with one-hop paths, and one-hop paths are never worse than the self
    path alone on this graph."""
    g = random_graph(25, 30, 200, seed=4)
    model = LightGCN(g.num_users, g.num_items, dim=6, num_layers=2, init_std=0.6, seed=3).double()
    samples = samples_of(g, "bpr", 0)
    adj = g.adj().to(torch.float64)
    emb = model.embedding.detach()
    out = model.propagate(adj, emb)
    _, _, w = margin_terms(model, out, samples)
    nodes = torch.tensor([0, 5, 11, g.num_users + 2, g.num_users + 17])
    wd = 1e-2
    approx = {p: block_hessians(model, out, samples, nodes, wd, g.adjacency, p)
              for p in ("self", "neighbours")}
    errs = {"self": [], "neighbours": []}
    for k, v in enumerate(nodes.tolist()):
        def margins(row):
            e = emb.clone()
            e[v] = row
            z = model.propagate(adj, e)
            return model.score(samples.users, samples.items, z) - model.score(samples.users, samples.negatives, z)
        jac = torch.autograd.functional.jacobian(margins, emb[v].clone())  # [n, d]
        count = int((samples.nodes(g.num_users) == v).sum())
        gn = jac.t() @ (w.unsqueeze(1) * jac) + wd * count * torch.eye(6, dtype=torch.float64)
        cross = _exact_block(model, adj, emb, samples, wd, v) - gn
        torch.testing.assert_close(cross, cross.diagonal().mean() * torch.eye(6, dtype=torch.float64),
                                   rtol=0, atol=1e-9)
        for p in errs:
            errs[p].append(float((approx[p][k] - gn).norm() / gn.norm()))
    assert max(errs["neighbours"]) <= 0.35, errs
    assert all(n <= s + 1e-12 for n, s in zip(errs["neighbours"], errs["self"])), errs


def test_ngcf_monotone_and_inputs_untouched():
    g = random_graph(20, 25, 120, seed=6)
    model = NGCF(g.num_users, g.num_items, dim=8, num_layers=2, seed=0)
    before = copy.deepcopy(model.state_dict())
    edges = g.train_edges[:, :5]
    res = AltEraser(rounds=3, negatives=2).unlearn(model, g, edges)
    samples = split_samples(Objective(negatives=2), g, res.graph, edges).remaining
    adj = res.graph.adj()
    with torch.no_grad():
        l0 = _objective(model, adj, model.embedding, samples, 1e-4)
        l1 = _objective(res.model, adj, res.model.embedding, samples, 1e-4)
    assert l1 < l0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in res.model.state_dict().items():  # only the embedding moves
        assert k == "embedding" or torch.equal(v, before[k])


def _affected_grad(model, adj, emb, samples, wd, rows):
    e = emb.detach().clone().requires_grad_(True)
    return torch.autograd.grad(_objective(model, adj, e, samples, wd), e)[0][rows]


def test_ml100k_lightgcn_moves_towards_the_new_minimiser(ml100k):
    """LightGCN-2 BPR on ml100k, the stationary recipe (λ = 1e-2, 2 fixed negatives), 50 edges
    deleted. Reference: the stationary finish on the new graph from the trained model (the
    minimiser of L(θ; D', A') nearest to it). AltEraser must lower the affected gradient norm,
    cut the objective gap to the reference by a quarter and end closer to it than doing
    nothing (rows left without samples excluded: they are fresh draws, arbitrary for θ*)."""
    g, wd = ml100k, 1e-2
    model = LightGCN(g.num_users, g.num_items, dim=32, num_layers=2, seed=0)
    train(model, g, TrainConfig(epochs=10, lr=5e-3, weight_decay=wd, patience=None, progress=False,
                                eval_every=100, negatives=2, until="stationary", gtol=1e-6))
    edges = g.train_edges[:, torch.randperm(g.num_train, generator=torch.Generator().manual_seed(1))[:50]]
    rows = g.khop_nodes(edges, 2)
    res = unlearn(model, g, edges, method="alteraser", rounds=4)
    objective = Objective(weight_decay=wd, negatives=2)
    samples = split_samples(objective, g, res.graph, edges).remaining
    adj = res.graph.adj()
    free = rows[~torch.isin(rows, untouched_rows(samples, g.num_users, rows))]
    g0 = _affected_grad(model, adj, model.embedding, samples, wd, free).norm()
    g1 = _affected_grad(res.model, adj, res.model.embedding, samples, wd, free).norm()
    assert g1 < 0.5 * g0, (float(g0), float(g1))
    assert abs(res.report.solver_residual - float(g1)) <= 1e-3 * float(g0)
    ref = copy.deepcopy(model)
    stationary_finish(ref, res.graph, objective, gtol=1e-6)
    ref_emb = ref.embedding.detach()
    with torch.no_grad():
        f = lambda e: float(_objective(model, adj, e, samples, wd))  # noqa: E731
        gap_alt, gap_none = f(res.model.embedding) - f(ref_emb), f(model.embedding) - f(ref_emb)
    keep = torch.ones(g.num_nodes, dtype=torch.bool)
    keep[untouched_rows(samples, g.num_users, torch.arange(g.num_nodes))] = False
    d_alt = (res.model.embedding.detach()[keep] - ref_emb[keep]).norm()
    d_none = (model.embedding.detach()[keep] - ref_emb[keep]).norm()
    assert 0 <= gap_alt < 0.75 * gap_none, (gap_alt, gap_none)
    assert d_alt < d_none, (float(d_alt), float(d_none))


@pytest.mark.parametrize("model_cls", ["mf", "lightgcn"])
def test_block_curvature_reuses_its_buffers_without_stale_values(model_cls):
    """BlockCurvature keeps its [n, d, d] work buffers across calls (AltEraser rebuilds the
    blocks every round): a second call at other representations equals a fresh computation,
    and the blocks of rows in no sample are reset, not left from the first call."""
    from graphforget.unlearning.blocks import BlockCurvature

    g = random_graph(25, 30, 200, seed=4)
    model = (MF(g.num_users, g.num_items, dim=6, init_std=0.6, seed=3) if model_cls == "mf" else
             LightGCN(g.num_users, g.num_items, dim=6, num_layers=2, init_std=0.6, seed=3)).double()
    adj = g.adj().to(torch.float64)
    samples = samples_of(g, "bpr", 0)
    nodes = torch.arange(g.num_nodes)
    curv = BlockCurvature(model, nodes, 1e-2, g.adjacency)
    emb = model.embedding.detach()
    first = curv.hessians(model.propagate(adj, emb), samples).clone()
    fewer = samples.select(torch.arange(40))  # most rows now in no sample
    out2 = model.propagate(adj, 1.7 * emb)
    second = curv.hessians(out2, fewer)
    fresh = BlockCurvature(model, nodes, 1e-2, g.adjacency).hessians(out2, fewer)
    torch.testing.assert_close(second, fresh, rtol=0, atol=0)
    assert not torch.equal(second, first)
    unused = ~torch.isin(nodes, fewer.nodes(g.num_users).reshape(-1))
    if model_cls == "mf":  # exact blocks: a row in no sample has none
        assert bool(unused.any()) and float(second[unused].abs().max()) == 0.0


def test_coupling_moves_the_hessian_coupled_rows_towards_the_new_minimiser():
    """MF at a stationary point: with ``coupling=0`` only the deleted edges' endpoints move
    (the paper's affected rows); ``coupling=1`` also optimises the rows coupled to them through
    a sample and gets much closer to the new objective's minimiser θ* (full-row L-BFGS)."""
    wd = 0.1
    g = random_graph(30, 40, 300, seed=5)
    objective = Objective.for_graph(g, "bpr", weight_decay=wd, negatives=3)
    model = MF(g.num_users, g.num_items, dim=4, init_std=0.5, seed=1).double()
    stationary_finish(model, g, objective, gtol=1e-6, max_iter=2000)
    edges = g.train_edges[:, :6]
    after = g.remove_edges(edges)
    target = copy.deepcopy(model)
    stationary_finish(target, after, Objective.for_graph(after, "bpr", weight_decay=wd, negatives=3),
                      gtol=1e-6, max_iter=2000)
    theta0, star = model.embedding.detach(), target.embedding.detach()
    endpoints = torch.unique(torch.cat([edges[0], edges[1] + g.num_users]))
    others = torch.ones(g.num_nodes, dtype=torch.bool)
    others[endpoints] = False
    dist = {}
    for c in (0, 1):
        res = AltEraser(rounds=40, tol=1e-6, coupling=c, weight_decay=wd, loss="bpr",
                        negatives=3).unlearn(model, g, edges)
        got = res.model.embedding.detach()
        moved = (got[others] - theta0[others]).abs().max()
        assert (moved == 0) if c == 0 else (moved > 1e-4), (c, float(moved))
        dist[c] = float((got - star).norm() / (theta0 - star).norm())
    assert dist[1] < 0.1 < dist[0], dist


def test_report_carries_rounds_and_fge_per_round():
    """The cost per AltEraser round in full-gradient-equivalents (issue 15): rounds and
    ``fge / rounds`` in the report and its summary."""
    import math

    from conftest import random_graph

    g = random_graph(30, 40, 300, seed=2)
    m = MF(g.num_users, g.num_items, dim=8, seed=0)
    r = AltEraser(rounds=4, tol=0.0).unlearn(m, g, g.train_edges[:, :5]).report
    assert r.rounds == r.solver_iterations >= 1
    assert math.isfinite(r.fge) and r.fge_per_round == pytest.approx(r.fge / r.rounds)
    assert "per round" in r.summary()
