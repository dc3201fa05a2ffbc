"""Models against references: PyG LightGCN, a dense NGCF re-implementation, MF."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn.models import LightGCN as PygLightGCN

from conftest import random_graph
from graphforget.models import MF, NGCF, LightGCN, build_model


def _pyg_twin(model: LightGCN) -> PygLightGCN:
    ref = PygLightGCN(model.num_nodes, model.dim, model.num_layers)  # default alpha = 1/(K+1)
    with torch.no_grad():
        ref.embedding.weight.copy_(model.embedding)
    return ref


def _check_against_pyg(graph, layers: int, seed: int) -> None:
    model = LightGCN(graph.num_users, graph.num_items, dim=16, num_layers=layers, seed=seed)
    ref = _pyg_twin(model)
    with torch.no_grad():
        ours = model.propagate(graph.adj())
        theirs = ref.get_embedding(graph.edge_index)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # scores of train and test pairs: inner products, as PyG's forward (the logits of predict_link)
    pairs = torch.cat([graph.train_edges[:, :50], graph.test_edges[:, :50]], 1)
    label_index = torch.stack([pairs[0], pairs[1] + graph.num_users])
    with torch.no_grad():
        ours_s = model.score(pairs[0], pairs[1], ours)
        theirs_s = ref(graph.edge_index, label_index)
        theirs_p = ref.predict_link(graph.edge_index, label_index, prob=True)
    torch.testing.assert_close(ours_s, theirs_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.sigmoid(ours_s), theirs_p, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_lightgcn_equals_pyg_on_random_graphs(layers, seed):
    _check_against_pyg(random_graph(40, 50, 300, seed=seed), layers, seed)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_lightgcn_equals_pyg_on_ml100k(ml100k, layers):
    _check_against_pyg(ml100k, layers, seed=layers)


def test_lightgcn_custom_alpha_and_bad_alpha():
    graph = random_graph(10, 12, 40, seed=3)
    model = LightGCN(10, 12, dim=4, num_layers=2, alpha=[0.0, 0.0, 1.0], seed=0)
    a = graph.adj().to_dense()
    with torch.no_grad():
        torch.testing.assert_close(model.propagate(graph.adj()), a @ (a @ model.embedding),
                                   atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="alpha needs 3"):
        LightGCN(10, 12, num_layers=2, alpha=[0.5, 0.5])


def test_lightgcn_gradient_matches_pyg():
    graph = random_graph(20, 25, 90, seed=4)
    model = LightGCN(20, 25, dim=8, num_layers=3, seed=4)
    ref = _pyg_twin(model)
    u, i = graph.train_edges[:, :30]
    j = torch.arange(30) % 25
    model.bpr_terms(model.propagate(graph.adj()), u, i, j).sum().backward()
    out = ref.get_embedding(graph.edge_index)
    nu = graph.num_users
    pos = (out[u] * out[i + nu]).sum(-1)
    neg = (out[u] * out[j + nu]).sum(-1)
    (-F.logsigmoid(pos - neg)).sum().backward()
    torch.testing.assert_close(model.embedding.grad, ref.embedding.weight.grad, atol=1e-5, rtol=1e-4)


def test_mf_ignores_adjacency():
    g1 = random_graph(15, 20, 60, seed=1)
    g2 = random_graph(15, 20, 60, seed=2)
    model = MF(15, 20, dim=8, seed=0)
    o1, o2, o0 = model.propagate(g1.adj()), model.propagate(g2.adj()), model.propagate(None)
    assert torch.equal(o1, o2) and torch.equal(o1, o0) and torch.equal(o0, model.embedding)
    u, i = torch.tensor([0, 3]), torch.tensor([5, 7])
    torch.testing.assert_close(model.score(u, i, o0),
                               (model.embedding[u] * model.embedding[i + 15]).sum(-1))


def _dense_ngcf(model: NGCF, a: torch.Tensor) -> torch.Tensor:
    """The NGCF formula with a dense adjacency, written out independently."""
    eye = torch.eye(a.shape[0])
    e = model.embedding
    layers = [e]
    for k in range(model.num_layers):
        sum_part = (a + eye) @ e @ model.w1[k] + model.b1[k]
        bi_part = ((a @ e) * e) @ model.w2[k] + model.b2[k]
        pre = sum_part + bi_part
        e = torch.where(pre > 0, pre, 0.2 * pre)
        layers.append(e / e.norm(dim=1, keepdim=True).clamp(min=1e-12))
    return torch.cat(layers, 1)


def test_ngcf_equals_dense_formula():
    graph = random_graph(8, 10, 30, seed=5)
    model = NGCF(8, 10, dim=6, num_layers=3, seed=1)
    with torch.no_grad():  # non-zero biases so they are exercised
        for b in list(model.b1) + list(model.b2):
            b.normal_()
        out = model.propagate(graph.adj())
        ref = _dense_ngcf(model, graph.adj().to_dense())
    assert out.shape == (18, 6 * 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_ngcf_forward_finite_and_gradient_reaches_every_parameter(ml100k):
    model = NGCF(ml100k.num_users, ml100k.num_items, dim=16, num_layers=2, seed=0)
    out = model.propagate(ml100k.adj())
    assert torch.isfinite(out).all()
    u, i = ml100k.train_edges[:, :256]
    j = torch.randint(ml100k.num_items, (256,), generator=torch.Generator().manual_seed(0))
    loss = model.bpr_terms(out, u, i, j).mean() + 1e-4 * model.extra_l2()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # extra_l2 covers exactly the non-embedding weights
    expect = 0.5 * sum(p.detach().pow(2).sum() for n, p in model.named_parameters() if n != "embedding")
    torch.testing.assert_close(model.extra_l2().detach(), expect)


def test_losses_against_closed_forms():
    model = MF(4, 5, dim=3, seed=0)
    out = model.propagate(None)
    u, i, j = torch.tensor([0, 1, 3]), torch.tensor([0, 2, 4]), torch.tensor([1, 3, 0])
    e = model.embedding.detach()
    s_pos = (e[u] * e[i + 4]).sum(-1)
    s_neg = (e[u] * e[j + 4]).sum(-1)
    torch.testing.assert_close(model.bpr_terms(out, u, i, j).detach(),
                               torch.log1p(torch.exp(-(s_pos - s_neg))))
    y = torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(s_pos)
    torch.testing.assert_close(model.bce_terms(out, u, i, y).detach(),
                               -(y * p.log() + (1 - y) * (1 - p).log()))
    reg = 0.5 * (e[u].pow(2).sum() + e[i + 4].pow(2).sum() + e[j + 4].pow(2).sum())
    torch.testing.assert_close(model.batch_l2(u, i, j).detach(), reg)


def test_build_model_and_seed():
    a = build_model("LightGCN", 5, 6, dim=4, layers=2, seed=3)
    b = build_model("lightgcn", 5, 6, dim=4, layers=2, seed=3)
    assert isinstance(a, LightGCN) and a.num_layers == 2 and torch.equal(a.embedding, b.embedding)
    assert isinstance(build_model("mf", 5, 6, seed=0), MF)
    n1, n2 = build_model("ngcf", 5, 6, dim=4, layers=2, seed=3), build_model("ngcf", 5, 6, dim=4, layers=2, seed=3)
    for (_, p), (_, q) in zip(n1.named_parameters(), n2.named_parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="unknown model 'gcn'"):
        build_model("gcn", 5, 6)
