"""Closed-form gradients and Hessian-vector products of linear-propagation models equal
autograd (single and double backward)."""
import pytest
import torch

from conftest import random_graph, samples_of
from graphforget.models import MF, NGCF, LightGCN
from graphforget.unlearning.curvature import LinearModelHessian
from graphforget.unlearning.influence import LocalObjective, Term
from graphforget.unlearning.linalg import HessianOperator


def _objective(model, graph, rows, terms, wd=0.05, fallback=1.0, propagate=True, new_graph=None):
    adj = {"old": graph.adjacency, "new": (new_graph or graph).adjacency}
    return LocalObjective(model, model.embedding.detach(), rows, terms, adj, wd,
                          fallback_fraction=fallback, propagate=propagate)


def _compare(f, theta, damping=0.0, seed=0):
    fast, ref = f.hessian_operator(theta, damping), HessianOperator(f, theta, damping)
    assert isinstance(fast, LinearModelHessian)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(3):
        v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
        torch.testing.assert_close(fast(v), ref(v), rtol=1e-9, atol=1e-11)
    assert fast.count == 3
    x = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x, allow_unused=True)
    grad = torch.zeros_like(theta) if grad is None else grad
    assert grad.abs().max() > 0 or not f.terms
    torch.testing.assert_close(fast.grad, grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(f.gradient(theta), grad, rtol=1e-9, atol=1e-11)


def _model(kind, g, layers=2, seed=0):
    m = (MF(g.num_users, g.num_items, 5, seed=seed) if kind == "mf" else
         LightGCN(g.num_users, g.num_items, 5, num_layers=layers, seed=seed)).double()
    with torch.no_grad():
        m.embedding.mul_(5.0)  # scores of order 1: φ' and φ'' both far from 0
    return m


@pytest.mark.parametrize("kind,layers", [("mf", 0), ("lightgcn", 1), ("lightgcn", 3)])
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("fallback", [1.0, 0.0])
def test_closed_form_hvp_equals_double_backward(kind, layers, labels, fallback):
    g = random_graph(30, 40, 120, seed=1, labels=labels)
    model = _model(kind, g, layers)
    samples = samples_of(g, seed=3)
    rows = torch.tensor([0, 3, 7, g.num_users + 2, g.num_users + 11])
    f = _objective(model, g, rows, [Term(samples, "old", 1.0)], fallback=fallback)
    _compare(f, model.embedding.detach()[rows], damping=0.3)


def test_weighted_terms_on_two_graphs_and_paper_mode():
    """IFRU's gradient objective: −deleted(old) + spill(new) − spill(old), weights ±1."""
    g = random_graph(30, 40, 120, seed=2)
    model = _model("lightgcn", g, 2)
    edges = g.train_edges[:, [5, 9, 60]]
    new = g.remove_edges(edges)
    samples = samples_of(g, "bpr", 0)
    terms = [Term(samples.select(torch.tensor([5, 9, 60])), "old", -1.0),
             Term(samples.select(torch.arange(20, 70)), "new", 1.0),
             Term(samples.select(torch.arange(20, 70)), "old", -0.5)]
    rows = torch.unique(torch.cat([edges[0], edges[1] + g.num_users]))
    theta = model.embedding.detach()[rows]
    _compare(_objective(model, g, rows, terms, new_graph=new), theta, seed=1)
    _compare(_objective(model, g, rows, terms, new_graph=new, propagate=False), theta, seed=2)


def test_rows_outside_every_sample_region_get_only_damping():
    g = random_graph(80, 100, 90, seed=4)
    model = _model("lightgcn", g, 1)
    user = int(g.train_edges[0, 0])
    new = g.remove_edges(g.train_edges[:, g.train_edges[0] == user])
    samples = samples_of(new, "bpr", 0)
    rows = torch.tensor([user, g.num_users + int(new.train_edges[1, 0])])
    f = _objective(model, g, rows, [Term(samples, "new", 1.0)], fallback=0.9, new_graph=new)
    assert not f.all_inside  # the isolated user lies outside the samples' region
    _compare(f, model.embedding.detach()[rows], damping=0.7)
    v = torch.zeros(2, 5, dtype=torch.float64)
    v[0] = 1.0
    torch.testing.assert_close(f.hessian_operator(model.embedding.detach()[rows], 0.7)(v), 0.7 * v)


def test_models_that_redefine_propagation_fall_back_to_double_backward():
    class Scaled(MF):
        def propagate(self, adj, embedding=None):
            return 2.0 * torch.tanh(super().propagate(adj, embedding))

    g = random_graph(10, 12, 30, seed=0)
    assert MF.linear_propagation and LightGCN.linear_propagation
    assert not Scaled.linear_propagation and not NGCF.linear_propagation
    for model in (Scaled(g.num_users, g.num_items, 3, seed=0).double(),
                  NGCF(g.num_users, g.num_items, 3, num_layers=1, seed=0).double()):
        rows = torch.tensor([0, g.num_users])
        f = _objective(model, g, rows, [Term(samples_of(g, "bpr"), "old")])
        assert isinstance(f.hessian_operator(model.embedding.detach()[rows]), HessianOperator)
    # a model in paper mode (no propagation in the Hessian) always has the closed form
    f = _objective(model, g, rows, [Term(samples_of(g, "bpr"), "old")], propagate=False)
    assert isinstance(f.hessian_operator(model.embedding.detach()[rows]), LinearModelHessian)
