"""InteractionGraph: k-hop sets, deletion, validation, fingerprint, HeteroData, adjacency, sym_spmm."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from conftest import random_graph
from graphforget.data import InteractionGraph, sym_spmm


def _dense_adj(graph: InteractionGraph) -> torch.Tensor:
    """Reference D^-1/2 A D^-1/2 built densely from the training edges (zero rows at degree 0)."""
    n, nu = graph.num_nodes, graph.num_users
    a = torch.zeros(n, n, dtype=torch.float64)
    u, i = graph.train_edges
    a[u, i + nu] = 1.0
    a[i + nu, u] = 1.0
    deg = a.sum(1)
    dinv = torch.where(deg > 0, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
    return dinv[:, None] * a * dinv[None, :]


def _nx_graph(graph: InteractionGraph) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(graph.num_nodes))
    u, i = graph.train_edges.tolist()
    g.add_edges_from(zip(u, [x + graph.num_users for x in i]))
    return g


# ---------------------------------------------------------------------------- k-hop
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_khop_nodes_matches_networkx(seed, k):
    graph = random_graph(25, 30, 60, seed=seed)  # sparse: k-hop sets differ between k
    g = _nx_graph(graph)
    gen = torch.Generator().manual_seed(100 + seed)
    pick = torch.randperm(graph.num_train, generator=gen)[:3]
    edges = graph.train_edges[:, pick]
    expected = set()
    for u, i in edges.t().tolist():
        for node in (u, i + graph.num_users):
            expected |= set(nx.single_source_shortest_path_length(g, node, cutoff=k))
    got = graph.khop_nodes(edges, k)
    assert got.numel() == len(set(got.tolist())), "duplicates in k-hop set"
    assert set(got.tolist()) == expected


# ---------------------------------------------------------------------------- deletion
@pytest.mark.parametrize("warm_cache", [False, True])
def test_remove_edges_equals_rebuild(warm_cache):
    graph = random_graph(30, 40, 200, seed=3)
    before_edges = graph.train_edges.clone()
    if warm_cache:  # exercise the incremental NormalizedAdjacency.remove path
        before_adj = graph.adj().to_dense().clone()
    gen = torch.Generator().manual_seed(7)
    pick = torch.randperm(graph.num_train, generator=gen)[:25]
    removed = graph.train_edges[:, pick]
    new = graph.remove_edges(removed)

    keep = torch.ones(graph.num_train, dtype=torch.bool)
    keep[pick] = False
    rebuilt = InteractionGraph(graph.num_users, graph.num_items, graph.train_edges[:, keep],
                               graph.valid_edges, graph.test_edges)
    torch.testing.assert_close(new.adj().to_dense().double(), rebuilt.adj().to_dense().double())
    torch.testing.assert_close(new.adj().to_dense().double(), _dense_adj(rebuilt), atol=1e-6, rtol=1e-6)
    assert new.fingerprint() == rebuilt.fingerprint()
    assert new.num_train == graph.num_train - 25
    torch.testing.assert_close(new.degree, rebuilt.degree)
    # the original graph is untouched
    assert torch.equal(graph.train_edges, before_edges)
    if warm_cache:
        assert torch.equal(graph.adj().to_dense(), before_adj)
    torch.testing.assert_close(graph.adj().to_dense().double(), _dense_adj(graph), atol=1e-6, rtol=1e-6)
    assert torch.equal(new.valid_edges, graph.valid_edges) and torch.equal(new.test_edges, graph.test_edges)


def test_remove_all_edges_of_a_user_isolates_it():
    graph = random_graph(20, 30, 120, seed=4)
    graph.adj()  # warm the cache so the incremental path is used
    user = int(graph.train_edges[0, 0])
    new = graph.remove_edges(graph.user_edges([user]))
    dense = new.adj().to_dense()
    assert torch.isfinite(dense).all()
    assert float(new.degree[user]) == 0.0
    assert torch.count_nonzero(dense[user]) == 0 and torch.count_nonzero(dense[:, user]) == 0
    torch.testing.assert_close(dense.double(), _dense_adj(new), atol=1e-6, rtol=1e-6)
    # propagation through the isolated node stays finite
    x = torch.randn(new.num_nodes, 4)
    assert torch.isfinite(sym_spmm(new.adj(), x)).all()


def test_remove_edges_labels_follow_edges():
    graph = random_graph(20, 25, 100, seed=5, labels=True)
    removed = graph.train_edges[:, [3, 10, 50]]
    new = graph.remove_edges(removed)
    want = {(u, i): y for (u, i), y in zip(graph.train_edges.t().tolist(), graph.train_labels.tolist())}
    for (u, i), y in zip(new.train_edges.t().tolist(), new.train_labels.tolist()):
        assert want[(u, i)] == y
    assert not set(map(tuple, removed.t().tolist())) & set(map(tuple, new.train_edges.t().tolist()))


@pytest.mark.parametrize("request_edges, fragment", [
    ([[0, 999]], "999"),                        # unknown item id
    ([[-1, 0]], "-1"),                          # unknown user id
    ("absent", "not training edges"),           # valid ids, not an edge
    ("duplicate", "duplicate"),
    ([], "empty"),
])
def test_bad_deletion_requests_raise(request_edges, fragment):
    graph = random_graph(20, 30, 80, seed=6)
    snapshot = (graph.train_edges.clone(), graph.fingerprint())
    if request_edges == "absent":
        present = set(map(tuple, graph.train_edges.t().tolist()))
        pair = next((u, i) for u in range(20) for i in range(30) if (u, i) not in present)
        request_edges, fragment = [list(pair)], str(list(pair))
    elif request_edges == "duplicate":
        e = graph.train_edges[:, 0].tolist()
        request_edges, fragment = [e, e], str(e)
    with pytest.raises(ValueError) as exc:
        # given as [2, m] (a 2x2 tensor is read as [2, m], never as two pairs)
        graph.remove_edges(torch.tensor(request_edges, dtype=torch.long).view(-1, 2).t())
    assert fragment in str(exc.value)
    assert torch.equal(graph.train_edges, snapshot[0]) and graph.fingerprint() == snapshot[1]


def test_user_and_item_edge_lookups_raise():
    graph = random_graph(20, 30, 80, seed=6)
    with pytest.raises(ValueError, match="77"):
        graph.user_edges([77])
    with pytest.raises(ValueError, match="55"):
        graph.item_edges([55])
    users = set(graph.train_edges[0].tolist())
    lonely = next(u for u in range(20) if u not in users) if len(users) < 20 else None
    if lonely is not None:
        with pytest.raises(ValueError, match="no training interactions"):
            graph.user_edges([lonely])
    got = graph.user_edges([1, 2])
    ref = graph.train_edges[:, (graph.train_edges[0] == 1) | (graph.train_edges[0] == 2)]
    assert set(map(tuple, got.t().tolist())) == set(map(tuple, ref.t().tolist()))


def test_constructor_validation():
    with pytest.raises(ValueError, match="duplicate"):
        InteractionGraph(3, 3, torch.tensor([[0, 0], [1, 1]]))
    with pytest.raises(ValueError, match="item id out of range"):
        InteractionGraph(3, 3, torch.tensor([[0], [3]]))
    with pytest.raises(ValueError, match="user id out of range"):
        InteractionGraph(3, 3, torch.tensor([[0, 1], [0, 0]]), test_edges=torch.tensor([[5], [0]]))


# ---------------------------------------------------------------------------- identity
def test_fingerprint_order_independent_and_sensitive():
    graph = random_graph(30, 40, 150, seed=8, labels=True)
    perm = torch.randperm(graph.num_train, generator=torch.Generator().manual_seed(1))
    shuffled = InteractionGraph(graph.num_users, graph.num_items, graph.train_edges[:, perm],
                                train_labels=graph.train_labels[perm])
    assert shuffled.fingerprint() == graph.fingerprint()
    # [m, 2] layout gives the same graph
    assert InteractionGraph(graph.num_users, graph.num_items, graph.train_edges.t(),
                            train_labels=graph.train_labels).fingerprint() == graph.fingerprint()
    assert graph.remove_edges(graph.train_edges[:, :1]).fingerprint() != graph.fingerprint()
    flipped = graph.train_labels.clone()
    flipped[0] = 1 - flipped[0]
    assert InteractionGraph(graph.num_users, graph.num_items, graph.train_edges,
                            train_labels=flipped).fingerprint() != graph.fingerprint()
    bigger = InteractionGraph(graph.num_users + 1, graph.num_items, graph.train_edges,
                              train_labels=graph.train_labels)
    assert bigger.fingerprint() != graph.fingerprint()


def test_to_pyg_hetero_data():
    graph = random_graph(12, 15, 40, seed=9, labels=True)
    data = graph.to_pyg()
    assert data["user"].num_nodes == 12 and data["item"].num_nodes == 15
    fwd = data["user", "rates", "item"].edge_index
    rev = data["item", "rated_by", "user"].edge_index
    assert torch.equal(fwd, graph.train_edges)
    assert torch.equal(rev, graph.train_edges.flip(0))
    assert torch.equal(data["user", "rates", "item"].edge_label, graph.train_labels)
    assert set(data.edge_types) == {("user", "rates", "item"), ("item", "rated_by", "user")}
    homo = graph.edge_index
    assert homo.shape == (2, 2 * graph.num_train)
    assert int(homo.max()) < graph.num_nodes


# ---------------------------------------------------------------------------- adjacency
@pytest.mark.parametrize("seed", [0, 11])
def test_normalised_adjacency_equals_dense(seed):
    graph = random_graph(25, 35, 120, seed=seed)
    adj = graph.adj()
    assert adj.layout == torch.sparse_csr
    torch.testing.assert_close(adj.to_dense().double(), _dense_adj(graph), atol=1e-6, rtol=1e-6)
    deg = torch.bincount(torch.cat([graph.train_edges[0], graph.train_edges[1] + graph.num_users]),
                         minlength=graph.num_nodes).float()
    torch.testing.assert_close(graph.degree, deg)


def test_normalised_adjacency_ml100k(ml100k):
    adj = ml100k.adj()
    rows = torch.arange(0, ml100k.num_nodes, 97)
    dense_rows = adj.to_dense()[rows].double()
    ref = _dense_adj(ml100k)[rows]
    torch.testing.assert_close(dense_rows, ref, atol=1e-6, rtol=1e-6)


def _tiny_adj64():
    graph = random_graph(5, 6, 12, seed=2)
    adj = graph.adj()
    return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values().double(),
                                   size=adj.shape, check_invariants=True), graph


def test_sym_spmm_forward_and_gradcheck():
    adj, graph = _tiny_adj64()
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(sym_spmm(adj, x), adj.to_dense() @ x)
    assert torch.autograd.gradcheck(lambda t: sym_spmm(adj, t), (x,))
    assert torch.autograd.gradgradcheck(lambda t: sym_spmm(adj, t), (x,))
    # non-linear use through two products, as propagation followed by a loss
    assert torch.autograd.gradgradcheck(lambda t: (sym_spmm(adj, sym_spmm(adj, t)) * t).sin(), (x,))


def test_sym_spmm_hessian_vector_product_matches_dense():
    adj, graph = _tiny_adj64()
    dense = adj.to_dense()  # the same float32-rounded weights, densely
    x = torch.randn(graph.num_nodes, 2, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)

    def loss(t, spmm):
        return (spmm(spmm(t)) * t).pow(2).sum()

    g = torch.autograd.grad(loss(x, lambda t: sym_spmm(adj, t)), x, create_graph=True)[0]
    hv = torch.autograd.grad((g * v).sum(), x)[0]
    g_ref = torch.autograd.grad(loss(x, lambda t: dense @ t), x, create_graph=True)[0]
    hv_ref = torch.autograd.grad((g_ref * v).sum(), x)[0]
    torch.testing.assert_close(hv, hv_ref)


def test_as_edge_tensor_reads_lists_as_pairs_and_tensors_as_rows():
    from graphforget.data.graph import as_edge_tensor

    pairs = [[0, 5], [1, 6]]  # two edges (0, 5) and (1, 6)
    assert as_edge_tensor(pairs).tolist() == [[0, 1], [5, 6]]
    assert as_edge_tensor(torch.tensor([[0, 1], [5, 6]])).tolist() == [[0, 1], [5, 6]]
    assert as_edge_tensor(torch.tensor([[0, 5], [1, 6], [2, 7]])).tolist() == [[0, 1, 2], [5, 6, 7]]
    with pytest.raises(ValueError, match="pairs"):
        as_edge_tensor([[0, 1, 2], [5, 6, 7]])
