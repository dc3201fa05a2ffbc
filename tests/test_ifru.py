"""IFRU: exact subgraph computation, spillover gradient against brute force, real-data accuracy."""
import copy

import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from conftest import random_graph
from graphforget.models import MF, NGCF, LightGCN
from graphforget.train import stationary_finish, train
from graphforget.train.objective import Objective, split_samples, total_loss
from graphforget.unlearning import get_unlearner
from graphforget.unlearning.ifru import deletion_importance
from graphforget.unlearning.influence import untouched_rows
from graphforget.unlearning.linalg import dense_hessian
from graphforget.unlearning.subgraph import induced_adjacency, khop, region, subgraph_propagate


def _sparse_graph(seed=0):
    return random_graph(120, 150, 260, seed=seed)


def test_khop_equals_pyg_and_induced_adjacency_equals_dense_block():
    g = _sparse_graph()
    edges = g.train_edges[:, [0, 5]]
    seeds = torch.unique(torch.cat([edges[0], edges[1] + g.num_users]))
    for k in range(4):
        ref = k_hop_subgraph(seeds, k, g.edge_index, num_nodes=g.num_nodes)[0]
        assert torch.equal(khop(g.adjacency, seeds, k), torch.sort(ref).values)
    nodes = khop(g.adjacency, seeds, 2)
    dense = g.adj().to_dense()
    torch.testing.assert_close(induced_adjacency(g.adjacency, nodes).to_dense(), dense[nodes][:, nodes])


@pytest.mark.parametrize("model", [LightGCN(120, 150, 8, num_layers=3, seed=0), NGCF(120, 150, 8, num_layers=2, seed=0)])
def test_subgraph_propagation_equals_full_on_inner_nodes(model):
    g = _sparse_graph()
    targets = torch.tensor([3, 50, 130, 200])
    reg = region(g.adjacency, targets, model.num_layers, fallback_fraction=1.0)
    assert not reg.full and reg.size < g.num_nodes  # a genuine subgraph
    with torch.no_grad():
        full = model.propagate(g.adj())[targets]
        local = subgraph_propagate(model, g.adjacency, model.embedding, targets)
    torch.testing.assert_close(local, full)


def test_importance_equals_dense_power_sum():
    g = _sparse_graph()
    edges = g.train_edges[:, [1, 2, 9]]
    a = g.adj().to_dense()
    ends = torch.cat([edges[0], edges[1] + g.num_users])
    m = torch.bincount(ends, minlength=g.num_nodes).float() / g.degree.clamp(min=1)
    ref, x = m.clone(), m.clone()
    for _ in range(2):
        x = a @ x
        ref = ref + x
    torch.testing.assert_close(deletion_importance(g.adjacency, edges, g.num_users, 2), ref)


def _setup(layers=2, seed=0):
    g = _sparse_graph(seed)
    model = LightGCN(g.num_users, g.num_items, dim=4, num_layers=layers, seed=seed).double()
    with torch.no_grad():
        model.embedding.mul_(4.0)
    return g, model, g.train_edges[:, [4, 11, 30]]


def _brute_force(model, graph, edges, rows, wd):
    """``f(θ_S) = L(θ; D', A_new) − L(θ; D, A)`` and ``L(θ; D', A_new)`` on the full graph."""
    objective = Objective(weight_decay=wd)
    samples = objective.samples(graph)
    new_graph = graph.remove_edges(edges)
    rem = split_samples(objective, graph, new_graph, edges).remaining
    a_old = graph.adj().to(torch.float64)
    a_new = new_graph.adj().to(torch.float64)
    e = model.embedding.detach()

    def new(theta):
        return total_loss(model, a_new, e.index_put((rows,), theta), rem, wd)

    def diff(theta):
        return new(theta) - total_loss(model, a_old, e.index_put((rows,), theta), samples, wd)

    return diff, new


def test_gradient_equals_brute_force_change_of_objective_and_step_equals_dense_solve():
    g, model, edges = _setup()
    wd = 1e-2
    un = get_unlearner("ifru", weight_decay=wd, fallback_fraction=1.0, coupling=0)
    prob = un.problem(model, g, edges)
    rows = prob.rows
    assert len(prob.gradient_terms) == len(prob.direct_terms()) + 2 and rows.numel() < g.num_nodes
    diff, new = _brute_force(model, g, edges, rows, wd)
    theta = model.embedding.detach()[rows].clone().requires_grad_(True)
    ref = torch.autograd.grad(diff(theta), theta)[0]
    got = un.gradient(prob)
    assert "subgraph" in prob.notes[-1]  # computed locally, not on the full graph
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)
    direct_only = get_unlearner("if", weight_decay=wd, coupling=0).problem(model, g, edges)
    assert not torch.equal(direct_only.rows, rows)  # IFRU reaches beyond the endpoints
    h = dense_hessian(new, model.embedding.detach()[rows])
    torch.testing.assert_close(dense_hessian(un.hessian_objective(prob), model.embedding.detach()[rows]), h)
    res = get_unlearner("ifru", weight_decay=wd, damping=50.0, tol=1e-12, max_iter=1000,
                        fallback_fraction=1.0, coupling=0).unlearn(model, g, edges)
    assert res.report.damping == 50.0 and res.report.converged
    # rows no remaining sample touches get fresh initial draws and stay out of the system
    untouched = untouched_rows(prob.remaining, g.num_users, rows)
    iso = torch.isin(rows, untouched)
    assert bool(iso.any())  # a user of this sparse graph loses its only edge
    free = (~iso).repeat_interleave(4)
    hf = h[free][:, free]
    step = torch.linalg.solve(hf + 50.0 * torch.eye(hf.shape[0], dtype=h.dtype), ref[~iso].reshape(-1))
    expected = model.embedding.detach()[rows].clone()
    expected[~iso] -= step.view(-1, 4)
    expected[iso] = model.fresh_rows(untouched, seed=0)
    torch.testing.assert_close(res.model.embedding.detach()[rows], expected)


def test_spillover_zero_for_k0_and_mf_nonzero_for_lightgcn():
    g, model, edges = _setup()
    wd = 1e-2
    for opts in ({"k": 0}, {}):
        prob = get_unlearner("ifru", weight_decay=wd, **opts).problem(model, g, edges)
        g_all = get_unlearner("ifru", weight_decay=wd, **opts).gradient(prob)
        prob.gradient_terms = prob.direct_terms()
        g_direct = get_unlearner("ifru", weight_decay=wd).gradient(prob)
        spill = (g_all - g_direct).norm()
        if opts:
            assert float(spill) == 0.0 and len(prob.notes) and "k=0, 0 samples" in prob.notes[0]
        else:
            assert float(spill) > 1e-3
    mf = MF(g.num_users, g.num_items, dim=4, seed=0).double()
    prob = get_unlearner("ifru", k=3, coupling=0).problem(mf, g, edges)
    assert len(prob.gradient_terms) == len(prob.direct_terms())  # no spillover term at all
    nodes = torch.unique(torch.cat([edges[0], edges[1] + g.num_users, prob.deleted.nodes(g.num_users).reshape(-1),
                                    prob.added.nodes(g.num_users).reshape(-1)]))
    assert torch.equal(prob.rows, nodes)
    coupled = get_unlearner("ifru", k=3).problem(mf, g, edges).rows  # + rows sharing a sample
    assert bool(torch.isin(nodes, coupled).all()) and coupled.numel() > nodes.numel()


def test_paper_mode_hessian_has_no_propagation():
    g, model, edges = _setup()
    wd = 1e-2
    un = get_unlearner("ifru", weight_decay=wd, paper_mode=True, k=3)
    assert un.hops(model.num_layers) == 1
    prob = un.problem(model, g, edges)
    rows = prob.rows
    rem = prob.remaining
    e = model.embedding.detach()
    mf = MF(g.num_users, g.num_items, dim=4).double()

    def mf_objective(theta):  # representations = ego embeddings
        return total_loss(mf, None, e.index_put((rows,), theta), rem, wd)

    torch.testing.assert_close(dense_hessian(un.hessian_objective(prob), e[rows]),
                               dense_hessian(mf_objective, e[rows]))


def test_pruning_keeps_endpoints_and_the_requested_fraction():
    g, model, edges = _setup(layers=3)
    full = get_unlearner("ifru").problem(model, g, edges).rows
    pruned = get_unlearner("ifru", prune_ratio=0.3).problem(model, g, edges).rows
    ends = torch.unique(torch.cat([edges[0], edges[1] + g.num_users]))
    assert bool(torch.isin(ends, pruned).all()) and bool(torch.isin(pruned, full).all())
    assert pruned.numel() <= -(-3 * full.numel() // 10) + ends.numel()
    score = deletion_importance(g.adjacency, edges, g.num_users, 3)
    dropped = full[~torch.isin(full, pruned)]
    kept = pruned[~torch.isin(pruned, ends)]
    assert float(score[dropped].max()) <= float(score[kept].min())


def test_ngcf_runs_and_stays_finite():
    g = _sparse_graph()
    model = NGCF(g.num_users, g.num_items, dim=8, num_layers=2, seed=0)
    res = get_unlearner("ifru").unlearn(model, g, g.train_edges[:, :3])
    assert torch.isfinite(res.model.embedding).all() and res.report.hvps > 0
    for (n, p), (_, q) in zip(model.named_parameters(), res.model.named_parameters()):
        if n != "embedding":
            assert torch.equal(p, q)  # NGCF weights stay fixed


@pytest.mark.slow
def test_ifru_closer_to_the_new_minimiser_than_if_on_ml100k(ml100k):
    """LightGCN-2, BPR, the stationary recipe: train briefly, finish at a stationary point of
    L(θ; D, A), delete 2% of edges, compare with the minimiser of L(θ; D', A') warm-started
    from θ (the same fixed negatives)."""
    g, wd = ml100k, 1e-2
    model = LightGCN(g.num_users, g.num_items, dim=32, num_layers=2, seed=0)
    train(model, g, epochs=10, lr=5e-3, weight_decay=wd, patience=None, progress=False, seed=0,
          negatives=2, until="stationary", gtol=1e-6)
    gen = torch.Generator().manual_seed(1)
    pos = torch.randperm(g.num_train, generator=gen)[: int(0.02 * g.num_train)]
    edges = g.train_edges[:, pos]
    ref = copy.deepcopy(model)
    stationary_finish(ref, g.remove_edges(edges), Objective(weight_decay=wd, negatives=2), gtol=1e-6)
    target = ref.embedding.detach()
    dist = {"nothing": float((model.embedding.detach() - target).norm())}
    for name in ("if", "ifru"):
        res = get_unlearner(name).unlearn(model, g, edges)  # the objective from model.recipe
        dist[name] = float((res.model.embedding.detach() - target).norm())
    assert dist["ifru"] < dist["if"] < dist["nothing"], dist
    assert dist["ifru"] < 0.7 * dist["nothing"], dist  # one step; see test_newton_steps_*
