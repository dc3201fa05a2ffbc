"""Nodes that lose every training edge: the Newton methods set their rows to 0 instead of
taking an unbounded step on a Hessian block that is only damping."""
import pytest
import torch

from graphforget.models import build_model
from graphforget.train import train
from graphforget.unlearn import get_unlearner
from graphforget.unlearn.influence import newly_isolated

from conftest import random_graph


@pytest.fixture(scope="module")
def trained():
    graph = random_graph(num_users=30, num_items=40, num_edges=200, seed=3)
    model = build_model("lightgcn", graph.num_users, graph.num_items, dim=8, layers=2, seed=0)
    train(model, graph, epochs=3, batch_size=64, lr=0.05, patience=None, progress=False, seed=0)
    return model, graph


def test_newly_isolated_matches_degrees(trained):
    _, graph = trained
    user = int(graph.train_edges[0, 0])
    edges = graph.user_edges([user])
    new = graph.remove_edges(edges)
    nu = graph.num_users
    endpoints = torch.unique(torch.cat([edges[0], edges[1] + nu]))
    expected = [int(v) for v in endpoints
                if not bool(((new.train_edges[0] == v) if v < nu else (new.train_edges[1] == v - nu)).any())]
    assert sorted(newly_isolated(new, endpoints).tolist()) == sorted(expected)
    assert user in expected


@pytest.mark.parametrize("method", ["if", "ifru", "alteraser"])
def test_isolated_rows_zero_and_others_bounded(trained, method):
    model, graph = trained
    before = model.embedding.detach().clone()
    user = int(graph.train_edges[0, 0])
    # forget a user and every edge of one of their items: both become isolated
    item = int(graph.user_edges([user])[1, 0])
    edges = torch.unique(torch.cat([graph.user_edges([user]), graph.item_edges([item])], 1), dim=1)
    res = get_unlearner(method, weight_decay=1e-4).unlearn(model, graph, edges)
    emb = res.model.embedding.detach()
    assert torch.equal(model.embedding.detach(), before)  # input untouched
    assert torch.all(emb[user] == 0) and torch.all(emb[graph.num_users + item] == 0)
    assert torch.isfinite(emb).all()
    if method == "alteraser":  # keeps training an under-trained model: see its module doc
        return
    moved = (emb - before).norm(dim=1)
    others = torch.ones(graph.num_nodes, dtype=torch.bool)
    others[[user, graph.num_users + item]] = False
    assert float(moved[others].max()) < 10 * float(before.norm(dim=1).max())
