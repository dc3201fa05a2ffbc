"""PyTorch Geometric interop: ``InteractionGraph.to_pyg`` / ``from_pyg`` round trips and errors,
and ``graphforget.metrics.ranking_metrics`` cross-checked against ``torch_geometric.metrics``."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data, HeteroData
from torch_geometric.metrics import (LinkPredHitRatio, LinkPredNDCG, LinkPredPrecision,
                                     LinkPredRecall)

import graphforget
from graphforget.data import InteractionGraph
from graphforget.metrics import ranking_metrics, topk_items

FWD = ("user", "rates", "item")
REV = ("item", "rated_by", "user")


def assert_same_graph(a: InteractionGraph, b: InteractionGraph, name: bool = True) -> None:
    """Everything an InteractionGraph holds is equal (edge order included)."""
    assert (a.num_users, a.num_items) == (b.num_users, b.num_items)
    for split in ("train", "valid", "test"):
        ea, eb = getattr(a, f"{split}_edges"), getattr(b, f"{split}_edges")
        assert ea.dtype == eb.dtype == torch.long
        assert torch.equal(ea, eb), split
        la, lb = getattr(a, f"{split}_labels"), getattr(b, f"{split}_labels")
        assert (la is None) == (lb is None), split
        if la is not None:
            assert torch.equal(la, lb), split
    assert (a.train_timestamps is None) == (b.train_timestamps is None)
    if a.train_timestamps is not None:
        assert torch.equal(torch.as_tensor(a.train_timestamps), torch.as_tensor(b.train_timestamps))
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
    if name:
        assert a.name == b.name
    assert a.fingerprint() == b.fingerprint()


def hand_graph() -> InteractionGraph:
    """5 users, 6 items (user 4 and item 5 isolated), labels on every split, timestamps, raw ids."""
    train = torch.tensor([[0, 0, 1, 2, 2, 3, 1], [0, 3, 1, 2, 4, 0, 4]])
    valid = torch.tensor([[0, 3], [1, 2]])
    test = torch.tensor([[1, 2, 3], [0, 3, 4]])
    return InteractionGraph(5, 6, train, valid, test,
                            train_labels=torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]),
                            valid_labels=torch.tensor([1.0, 0.0]), test_labels=torch.tensor([0.0, 1.0, 1.0]),
                            train_timestamps=torch.tensor([50, 10, 30, 20, 60, 40, 70]),
                            user_ids=["u10", "u11", "u12", "u13", "u14"],
                            item_ids=["i0", "i1", "i2", "i3", "i4", "i5"], name="hand")


def without_ids(g: InteractionGraph) -> InteractionGraph:
    """``g`` without raw ids and name (what a homogeneous Data cannot carry)."""
    return InteractionGraph(g.num_users, g.num_items, g.train_edges, g.valid_edges, g.test_edges,
                            train_labels=g.train_labels, valid_labels=g.valid_labels,
                            test_labels=g.test_labels, train_timestamps=g.train_timestamps)


@pytest.fixture(scope="module")
def demo() -> InteractionGraph:
    return graphforget.load_dataset("demo")


def homogeneous(graph: InteractionGraph, labels: bool = True) -> Data:
    """A homogeneous Data in the ``graph.edge_index`` convention, splits and attributes in both
    directions (so every pair appears twice)."""
    nu = graph.num_users
    both = lambda e: torch.cat([torch.stack([e[0], e[1] + nu]), torch.stack([e[1] + nu, e[0]])], 1)  # noqa: E731
    twice = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
    data = Data(edge_index=graph.edge_index, num_nodes=graph.num_nodes, num_users=nu,
                valid_edge_index=both(graph.valid_edges), test_edge_index=both(graph.test_edges))
    assert torch.equal(data.edge_index, both(graph.train_edges))  # the convention this relies on
    if labels:
        for key, value in (("edge_label", graph.train_labels), ("valid_edge_label", graph.valid_labels),
                           ("test_edge_label", graph.test_labels), ("time", graph.train_timestamps)):
            if value is not None:
                data[key] = twice(value)
    return data


# ---------------------------------------------------------------------------- to_pyg
def test_to_pyg_layout_labelled():
    graph = hand_graph()
    data = graph.to_pyg()
    assert isinstance(data, HeteroData)
    data.validate()
    assert data.name == "hand"
    assert set(data.node_types) == {"user", "item"} and set(data.edge_types) == {FWD, REV}
    assert data["user"].num_nodes == 5 and data["item"].num_nodes == 6
    assert data["user"].raw_id == graph.user_ids and data["item"].raw_id == graph.item_ids
    fwd = data[FWD]
    assert torch.equal(fwd.edge_index, graph.train_edges)
    assert torch.equal(fwd.edge_label, graph.train_labels)
    assert torch.equal(fwd.time, graph.train_timestamps)
    assert torch.equal(fwd.valid_edge_index, graph.valid_edges)
    assert torch.equal(fwd.test_edge_index, graph.test_edges)
    assert torch.equal(fwd.valid_edge_label, graph.valid_labels)
    assert torch.equal(fwd.test_edge_label, graph.test_labels)
    assert set(data[REV].keys()) == {"edge_index"}
    assert torch.equal(data[REV].edge_index, graph.train_edges.flip(0))


def test_to_pyg_layout_unlabelled(demo):
    data = demo.to_pyg()
    data.validate()
    fwd = data[FWD]
    assert set(fwd.keys()) == {"edge_index", "valid_edge_index", "test_edge_index"}
    assert data["user"].num_nodes == demo.num_users and data["item"].num_nodes == demo.num_items
    assert len(data["user"].raw_id) == demo.num_users and data.name == "demo"
    no_ids = InteractionGraph(3, 2, torch.tensor([[0, 2], [1, 0]])).to_pyg()
    assert "raw_id" not in no_ids["user"] and "raw_id" not in no_ids["item"]
    assert no_ids[FWD].valid_edge_index.shape == (2, 0) and no_ids[FWD].test_edge_index.shape == (2, 0)


def test_to_pyg_batching_offsets_held_out_splits():
    """The ``*_edge_index`` names make PyG's collation offset held-out edges like edge_index."""
    a, b = hand_graph().to_pyg(), hand_graph().to_pyg()
    batch = Batch.from_data_list([a, b])
    offset = torch.tensor([[5], [6]])
    for key in ("edge_index", "valid_edge_index", "test_edge_index"):
        want = torch.cat([a[FWD][key], b[FWD][key] + offset], 1)
        assert torch.equal(batch[FWD][key], want), key


# ---------------------------------------------------------------------------- round trips
def test_round_trip_demo(demo):
    assert_same_graph(InteractionGraph.from_pyg(demo.to_pyg()), demo)


def test_round_trip_labelled_hand_graph():
    graph = hand_graph()
    back = InteractionGraph.from_pyg(graph.to_pyg())
    assert_same_graph(back, graph)
    assert back.name == "hand"
    assert InteractionGraph.from_pyg(graph.to_pyg(), name="other").name == "other"
    # a graph without held-out splits or ids survives too
    bare = InteractionGraph(3, 2, torch.tensor([[0, 2], [1, 0]]))
    assert_same_graph(InteractionGraph.from_pyg(bare.to_pyg()), bare)


def test_from_pyg_any_relation_name_ignores_other_edge_types():
    graph = hand_graph()
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = graph.num_users, graph.num_items
    data["user", "clicked", "item"].edge_index = graph.train_edges
    data["user", "clicked", "item"].edge_label = graph.train_labels
    data["item", "clicked_by", "user"].edge_index = graph.train_edges.flip(0)[:, :2]  # ignored
    data["item", "similar", "item"].edge_index = torch.tensor([[0], [1]])  # ignored
    back = InteractionGraph.from_pyg(data)
    assert back.num_users == 5 and back.num_items == 6  # isolated user 4 / item 5 kept
    assert torch.equal(back.train_edges, graph.train_edges)
    assert torch.equal(back.train_labels, graph.train_labels)
    assert back.valid_edges.shape == (2, 0) and back.train_timestamps is None and back.user_ids is None


def test_from_pyg_infers_node_counts_without_mutating_input():
    data = HeteroData()
    data[FWD].edge_index = torch.tensor([[0, 3], [2, 1]])
    data[FWD].test_edge_index = torch.tensor([[1], [4]])
    back = InteractionGraph.from_pyg(data)
    assert (back.num_users, back.num_items) == (4, 5)  # largest id + 1 over train and test
    assert data.node_types == []  # no node stores were created on the caller's object
    assert InteractionGraph.from_pyg(data, num_users=7).num_users == 7


@pytest.mark.parametrize("which", ["demo", "hand"])
def test_homogeneous_data_gives_same_graph(which, demo):
    graph = demo if which == "demo" else hand_graph()
    data = homogeneous(graph)
    back = InteractionGraph.from_pyg(data)
    assert back.user_ids is None and back.item_ids is None and back.name == ""  # Data carries none
    assert_same_graph(back, without_ids(graph), name=False)


def test_homogeneous_variants():
    graph = without_ids(hand_graph())
    nu = graph.num_users
    # num_users as argument, one direction only, reversed direction only
    fwd = torch.stack([graph.train_edges[0], graph.train_edges[1] + nu])
    for ei in (fwd, fwd.flip(0), graph.edge_index):
        back = InteractionGraph.from_pyg(Data(edge_index=ei, num_nodes=graph.num_nodes), num_users=nu)
        assert torch.equal(back.train_edges, graph.train_edges)
        assert back.fingerprint() == InteractionGraph(nu, graph.num_items, graph.train_edges).fingerprint()
    # shuffled columns: same edge set, so the same fingerprint
    perm = torch.randperm(2 * graph.num_train, generator=torch.Generator().manual_seed(3))
    data = homogeneous(graph)
    data.edge_index, data.edge_label, data.time = data.edge_index[:, perm], data.edge_label[perm], data.time[perm]
    back = InteractionGraph.from_pyg(data)
    assert back.fingerprint() == graph.fingerprint()
    order = torch.argsort(back.train_edges[0] * graph.num_items + back.train_edges[1])
    ref = torch.argsort(graph.train_edges[0] * graph.num_items + graph.train_edges[1])
    assert torch.equal(back.train_edges[:, order], graph.train_edges[:, ref])
    assert torch.equal(back.train_timestamps[order], graph.train_timestamps[ref])
    # the name comes from data.name when set
    data.name = "homo"
    assert InteractionGraph.from_pyg(data).name == "homo"


# ---------------------------------------------------------------------------- errors
def _hetero(**edges) -> HeteroData:
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = 3, 4
    for rel, ei in edges.items():
        src, dst = ("item", "user") if rel.endswith("_by") else ("user", "item")
        data[src, rel, dst].edge_index = torch.as_tensor(ei)
    return data


def _homo(ei, **kw) -> Data:
    return Data(edge_index=torch.as_tensor(ei), num_nodes=7, **kw)  # users 0..2, items 3..6


def _bad_cases():
    ok = [[0, 1], [2, 3]]
    label_len = _hetero(rates=ok)
    label_len[FWD].edge_label = torch.ones(3)
    time_len = _hetero(rates=ok)
    time_len[FWD].time = torch.arange(5)
    disagree = _homo([[0, 3], [3, 0]], num_users=3, edge_label=torch.tensor([1.0, 0.0]))
    item_ids = _hetero(rates=ok)
    item_ids["item"].raw_id = ["a", "b"]
    return {
        "only reverse type": (_hetero(rated_by=[[0], [1]]), {}, r"no \('user', \*, 'item'\) edge type"),
        "no edge types": (HeteroData(), {}, r"no \('user', \*, 'item'\) edge type"),
        "two user->item types": (_hetero(rates=ok, clicked=ok), {}, r"several \('user', \*, 'item'\) edge types"),
        "hetero item id out of range": (_hetero(rates=[[0], [4]]), {}, r"train edges: item id 4 out of range 0\.\.3"),
        "hetero negative user id": (_hetero(rates=[[-1], [0]]), {}, r"train edges: user id -1 out of range 0\.\.2"),
        "hetero test id out of range": (_hetero(rates=ok), {"test": [[5], [0]]}, r"test edges: user id 5 out of range"),
        "num_users contradicts": (_hetero(rates=ok), {"num_users": 9}, r"num_users=9 contradicts"),
        "edge_index not [2, m]": (_hetero(rates=[[0, 1, 2]] * 3), {}, r"edge_index must have shape \[2, m\]"),
        "float edge_index": (_hetero(rates=torch.tensor([[0.0], [1.0]])), {}, r"integer node ids"),
        "duplicate train edges": (_hetero(rates=[[0, 0], [1, 1]]), {}, r"duplicate"),
        "edge_label length": (label_len, {}, r"edge_label has 3 values but its edge index has 2 edges"),
        "time length": (time_len, {}, r"time has 5 values"),
        "raw_id length": (item_ids, {}, r"data\['item'\]\.raw_id has 2 entries for 4 nodes"),
        "Data without num_users": (_homo([[0], [3]]), {}, r"needs num_users"),
        "Data id out of range": (_homo([[0], [7]], num_users=3), {}, r"node id 7 out of range 0\.\.6"),
        "Data user-user edge": (_homo([[0, 1, 3], [3, 2, 0]], num_users=3), {},
                                r"edges between two users, first \(1, 2\)"),
        "Data item-item edge": (_homo([[0, 4], [3, 5]], num_users=3), {}, r"edges between two items, first \(4, 5\)"),
        "Data user-user test edge": (_homo([[0], [3]], num_users=3, test_edge_index=torch.tensor([[0], [1]])), {},
                                     r"test_edge_index has 1 edges between two users"),
        "Data num_users > num_nodes": (_homo([[0], [3]], num_users=8), {}, r"num_users=8 must be in 0\.\.num_nodes=7"),
        "Data copies disagree": (disagree, {}, r"disagree on edge_label"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_from_pyg_rejects_bad_input(case):
    data, kw, pattern = BAD[case]
    if "test" in kw:
        data[FWD].test_edge_index = torch.as_tensor(kw.pop("test"))
    with pytest.raises(ValueError, match=pattern) as err:
        InteractionGraph.from_pyg(data, **kw)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("from_pyg: ")


def test_from_pyg_rejects_other_types():
    with pytest.raises(TypeError, match="HeteroData or Data"):
        InteractionGraph.from_pyg({"edge_index": torch.zeros(2, 0, dtype=torch.long)})


# ---------------------------------------------------------------------------- metrics vs PyG
def _metric_problem(seed: int, num_users: int = 50, num_items: int = 70, dim: int = 8):
    """Random embeddings and distinct train / test edges. Users 0..9 get 12 test items (more
    than K=5, so IDCG is capped at K), users 10..39 get 1-3, users 40..49 none (they must be
    skipped by both sides)."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for u in range(num_users):
        items = torch.randperm(num_items, generator=gen)
        n_test = 12 if u < 10 else (int(torch.randint(1, 4, (1,), generator=gen)) if u < 40 else 0)
        n_train = int(torch.randint(3, 25, (1,), generator=gen))
        test += [(u, int(i)) for i in items[:n_test]]
        train += [(u, int(i)) for i in items[n_test:n_test + n_train]]
    user_emb = torch.randn(num_users, dim, generator=gen)
    item_emb = torch.randn(num_items, dim, generator=gen)
    return user_emb, item_emb, torch.tensor(train).t(), torch.tensor(test).t()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_torch_geometric(seed):
    """Same top-K lists (graphforget's ``topk_items``, training items excluded) fed to PyG's
    LinkPred metrics with the test edges as ground truth.

    Definitions compared (torch_geometric 2.8 source):

    * averaging: PyG sums the per-row value over every row it is given and divides by the
      number of rows with >= 1 ground-truth item; ranking_metrics averages over users with
      >= 1 test item. Rows without test items contribute 0 to PyG's sum, so feeding *all*
      users (in several ``update`` calls) gives the same mean; checked here.
    * recall: both ``|R_u ∩ T_u| / |T_u|``.
    * precision: both ``|R_u ∩ T_u| / K`` (denominator K even when ``|T_u| < K``, and even when
      K exceeds the number of items; PyG's ``LinkPredF1`` uses the same precision).
    * NDCG: both binary gains, discount ``1 / log2(r + 1)``, IDCG over ``min(K, |T_u|)``
      positions.
    * hit rate: both ``[|R_u ∩ T_u| > 0]`` (``LinkPredHitRatio``).

    So the metrics agree exactly (up to float32 rounding); the one thing PyG does *not* do is
    exclude training items — that is the caller's job, done here by ``topk_items``.
    """
    user_emb, item_emb, train, test = _metric_problem(seed)
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    ks = (5, 20, 100)  # 100 > num_items: both sides rank all items and divide precision by K
    ours = ranking_metrics(user_emb, item_emb, train, test, ks=ks)
    assert ours["users"] == 40

    kmax = min(max(ks), num_items)
    top = topk_items(user_emb, item_emb, torch.arange(num_users), kmax, exclude=train)
    pyg = {k: {"recall": LinkPredRecall(k), "ndcg": LinkPredNDCG(k), "precision": LinkPredPrecision(k),
               "hit": LinkPredHitRatio(k)} for k in ks}
    for lo, hi in ((0, 17), (17, 31), (31, num_users)):  # uneven batches, some without test users
        sel = (test[0] >= lo) & (test[0] < hi)
        label_index = torch.stack([test[0, sel] - lo, test[1, sel]])  # rows are batch positions
        for metrics in pyg.values():
            for metric in metrics.values():
                metric.update(top[lo:hi], label_index)
    for k in ks:
        for name, metric in pyg[k].items():
            theirs = float(metric.compute())
            assert theirs == pytest.approx(ours[f"{name}@{k}"], abs=1e-6), f"{name}@{k}"
    # not trivially equal: the values differ across metrics and K
    assert len({round(ours[f"{m}@{k}"], 6) for m in ("recall", "ndcg", "precision") for k in ks}) == 9
