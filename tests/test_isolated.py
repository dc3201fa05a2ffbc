"""Rows that no remaining sample touches (a user who lost every edge): the Newton methods give
them what a retrain leaves — a fresh draw from the initialisation distribution — instead of an
unbounded step on a Hessian block that is only damping, a zero row (visible to an attacker) or
the original row (which still encodes the forgotten edges)."""
import pytest
import torch

from graphforget.models import build_model
from graphforget.train import train
from graphforget.train.objective import Objective, split_samples
from graphforget.unlearning import get_unlearner
from graphforget.unlearning.influence import untouched_rows

from conftest import random_graph


@pytest.fixture(scope="module")
def trained():
    graph = random_graph(num_users=30, num_items=40, num_edges=200, seed=3)
    model = build_model("lightgcn", graph.num_users, graph.num_items, dim=8, layers=2, seed=0)
    train(model, graph, epochs=3, batch_size=64, lr=0.05, patience=None, progress=False, seed=0,
          negatives=2)
    return model, graph


def test_untouched_rows_are_exactly_the_nodes_in_no_remaining_sample(trained):
    _, graph = trained
    user = int(graph.train_edges[0, 0])
    edges = graph.user_edges([user])
    new = graph.remove_edges(edges)
    remaining = split_samples(Objective(negatives=2), graph, new, edges).remaining
    nodes = torch.arange(graph.num_nodes)
    in_sample = set(remaining.nodes(graph.num_users).reshape(-1).tolist())
    expected = [v for v in range(graph.num_nodes) if v not in in_sample]
    assert untouched_rows(remaining, graph.num_users, nodes).tolist() == expected
    assert user in expected


@pytest.mark.parametrize("method", ["if", "ifru", "alteraser"])
def test_a_forgotten_user_gets_a_fresh_initial_row(trained, method):
    model, graph = trained
    before = model.embedding.detach().clone()
    user = int(graph.train_edges[0, 0])
    res = get_unlearner(method, seed=7).unlearn(model, graph, graph.user_edges([user]))
    emb = res.model.embedding.detach()
    assert torch.equal(model.embedding.detach(), before)  # input untouched
    torch.testing.assert_close(emb[user], model.fresh_rows(torch.tensor([user]), 7)[0])
    assert 0.5 * model.init_std < float(emb[user].std()) < 2 * model.init_std
    assert torch.isfinite(emb).all()
    if method == "alteraser":  # keeps training an under-trained model: see its module doc
        return
    moved = (emb - before).norm(dim=1)
    others = torch.ones(graph.num_nodes, dtype=torch.bool)
    others[user] = False
    assert float(moved[others].max()) < 10 * float(before.norm(dim=1).max())


def test_fresh_rows_depend_only_on_seed_and_row():
    """A node's fresh draw is the same whether it is forgotten alone or with others (a
    coalesced stream equals one-by-one), and differs between rows and between seeds."""
    from graphforget.models import build_model

    model = build_model("mf", 3000, 10, dim=4, seed=0)
    rows = torch.tensor([5, 2999, 1024, 7])
    together = model.fresh_rows(rows, seed=3)
    alone = torch.cat([model.fresh_rows(rows[k:k + 1], seed=3) for k in range(4)])
    assert torch.equal(together, alone)
    assert not torch.allclose(together[0], together[3])
    assert not torch.allclose(together, model.fresh_rows(rows, seed=4))
    assert abs(float(model.fresh_rows(torch.arange(3000), 0).std()) - model.init_std) < 0.01
