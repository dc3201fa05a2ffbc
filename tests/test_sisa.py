"""SISA / RecEraser: partitions, the sharded model and shard-retraining unlearning, checked
against brute-force references (greedy InBP assignment, per-shard models trained directly)."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import random_graph
from graphforget.data import InteractionGraph
from graphforget.data.graph import edge_keys
from graphforget.metrics import ranking_metrics
from graphforget.models import MF, build_model
from graphforget.models.ensemble import AttentionAggregator, ShardedRecommender
from graphforget.train import TrainConfig, evaluate, train
from graphforget.unlearning import get_unlearner, unlearn
from graphforget.train.sharding import (balanced_kmeans, capacitated_assign, fit_sharded,
                                        partition_edges, random_partition, shard_capacity,
                                        train_aggregator)

CFG = TrainConfig(epochs=3, batch_size=128, lr=0.01, patience=None, progress=False, eval_every=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def graph() -> InteractionGraph:
    return random_graph(40, 60, 500, seed=3)


@pytest.fixture(scope="module")
def sisa_model(graph) -> ShardedRecommender:
    return fit_sharded(graph, "lightgcn", 3, "random", CFG, seed=0, dim=8, layers=2)


def _params(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- partitions
def test_random_partition_balanced_deterministic():
    a = random_partition(103, 5, seed=7)
    assert a.shape == (103,) and int(a.min()) >= 0 and int(a.max()) <= 4
    sizes = torch.bincount(a, minlength=5)
    assert int(sizes.sum()) == 103 and int(sizes.max() - sizes.min()) <= 1
    assert torch.equal(a, random_partition(103, 5, seed=7))
    assert not torch.equal(a, random_partition(103, 5, seed=8))
    with pytest.raises(ValueError, match="non-empty"):
        random_partition(3, 5)


def _greedy_reference(dist: torch.Tensor, capacity: int) -> torch.Tensor:
    """RecEraser InBP assignment: take (point, centre) pairs by increasing distance."""
    n, s = dist.shape
    assign = [-1] * n
    load = [0] * s
    for flat in torch.argsort(dist.reshape(-1)).tolist():
        p, c = divmod(flat, s)
        if assign[p] < 0 and load[c] < capacity:
            assign[p] = c
            load[c] += 1
    return torch.tensor(assign)


@pytest.mark.parametrize("n,s,slack,seed", [(30, 3, 0.0, 0), (57, 4, 0.0, 1), (80, 5, 0.3, 2),
                                             (41, 7, 0.0, 3), (64, 2, 0.1, 4)])
def test_capacitated_assign_equals_greedy(n, s, slack, seed):
    gen = torch.Generator().manual_seed(seed)
    dist = torch.rand(n, s, generator=gen) + torch.rand(n, 1, generator=gen) * torch.rand(1, s, generator=gen)
    cap = shard_capacity(n, s, slack)
    got = capacitated_assign(dist, cap)
    assert torch.equal(got, _greedy_reference(dist, cap))
    assert int(torch.bincount(got, minlength=s).max()) <= cap


def test_capacitated_assign_unbounded_is_nearest_and_infeasible_raises():
    dist = torch.rand(50, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(capacitated_assign(dist, 50), dist.argmin(1))
    with pytest.raises(ValueError, match="capacity"):
        capacitated_assign(dist, 12)


def test_balanced_kmeans_recovers_clusters_and_balances():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = torch.cat([c + 0.3 * torch.randn(40, 2, generator=gen) for c in centres])
    a = balanced_kmeans(feats, 3, seed=5)
    for k in range(3):  # each true cluster is one shard, all three distinct
        assert torch.unique(a[40 * k: 40 * (k + 1)]).numel() == 1
    assert torch.unique(a).numel() == 3
    assert torch.equal(a, balanced_kmeans(feats, 3, seed=5))
    # unbalanced clusters (70 / 30 / 20): capacity forces balance, every row in one shard
    feats2 = torch.cat([centres[0] + 0.3 * torch.randn(70, 2, generator=gen),
                        centres[1] + 0.3 * torch.randn(30, 2, generator=gen),
                        centres[2] + 0.3 * torch.randn(20, 2, generator=gen)])
    for slack in (0.0, 0.2):
        b = balanced_kmeans(feats2, 3, seed=1, slack=slack)
        assert b.shape == (120,) and int(b.min()) >= 0 and int(b.max()) <= 2
        assert int(torch.bincount(b, minlength=3).max()) <= shard_capacity(120, 3, slack)


def test_partition_edges_kmeans_from_given_embeddings(graph):
    gen = torch.Generator().manual_seed(0)
    emb = (torch.randn(graph.num_users, 4, generator=gen), torch.randn(graph.num_items, 4, generator=gen))
    a = partition_edges(graph, 4, "kmeans", seed=2, embeddings=emb, slack=0.1)
    assert a.shape == (graph.num_train,)
    assert int(torch.bincount(a, minlength=4).max()) <= shard_capacity(graph.num_train, 4, 0.1)
    assert torch.equal(a, partition_edges(graph, 4, "kmeans", seed=2, embeddings=emb, slack=0.1))
    with pytest.raises(ValueError, match="strategy"):
        partition_edges(graph, 4, "metis")


# ---------------------------------------------------------------------- sharded model
def _direct_shard_models(graph, model, assignment, deleted=None):
    """Per-shard models trained directly with graphforget.train on the shard's edges."""
    keep = torch.ones(graph.num_train, dtype=torch.bool)
    if deleted is not None:
        gone = edge_keys(deleted, graph.num_items)
        keep &= ~torch.isin(edge_keys(graph.train_edges, graph.num_items), gone)
    out = []
    for s, seed in enumerate(model.shard_seeds):
        g = InteractionGraph(graph.num_users, graph.num_items, graph.train_edges[:, (assignment == s) & keep],
                             graph.valid_edges, graph.test_edges)
        m = build_model("lightgcn", graph.num_users, graph.num_items, dim=8, layers=2, seed=seed)
        train(m, g, TrainConfig(**{**CFG.to_dict(), "seed": seed}))
        out.append((m, g))
    return out


def test_sharded_model_is_average_of_directly_trained_shards(graph, sisa_model):
    assignment = random_partition(graph.num_train, 3, seed=0)
    direct = _direct_shard_models(graph, sisa_model, assignment)
    u = torch.arange(graph.num_users).repeat_interleave(graph.num_items)
    i = torch.arange(graph.num_items).repeat(graph.num_users)
    with torch.no_grad():
        ref = torch.stack([m.score(u, i, m.propagate(g.adj())) for m, g in direct]).mean(0)
        got = sisa_model.score(u, i, sisa_model.propagate(graph.adj()))
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    for s, (m, g) in enumerate(direct):
        assert torch.equal(sisa_model.shard_edges(s), g.train_edges)

    # evaluate() on the sharded model == full ranking of the averaged score matrix
    scores = ref.view(graph.num_users, graph.num_items)
    mask = torch.cat([graph.train_edges, graph.valid_edges], 1)
    want = ranking_metrics(scores, torch.eye(graph.num_items), mask, graph.test_edges, (5, 20))
    have = evaluate(sisa_model, graph, "test", ks=(5, 20))
    for k, v in want.items():
        assert have[k] == pytest.approx(v, abs=1e-6), k


def test_fit_sharded_deterministic_and_seeded(graph, sisa_model):
    again = fit_sharded(graph, "lightgcn", 3, "random", CFG, seed=0, dim=8, layers=2)
    assert _same(_params(again), _params(sisa_model))
    other = fit_sharded(graph, "lightgcn", 3, "random", CFG, seed=1, dim=8, layers=2)
    assert not torch.equal(other.assignment, sisa_model.assignment)


def test_attention_aggregator_matches_formula():
    agg = AttentionAggregator(3, 5, attention_dim=4, seed=0)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 7, 5, generator=gen)
    # at initialisation: identity transforms and equal attention, i.e. the plain mean
    torch.testing.assert_close(agg(z, "user"), z.mean(0))
    with torch.no_grad():
        for p in agg.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    for kind in ("user", "item"):
        zt = [z[s] @ agg.shard_weight[s] + agg.shard_bias[s] for s in range(3)]
        logits = torch.stack([torch.relu(x @ agg.att_weight[kind] + agg.att_bias[kind])
                              @ agg.att_vector[kind] for x in zt], 1)
        a = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
        ref = sum(a[:, s:s + 1] * zt[s] for s in range(3))
        torch.testing.assert_close(agg(z, kind), ref, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        agg(z, "node")


# ---------------------------------------------------------------------- unlearning
def _edges_in(model, shard_counts: dict) -> torch.Tensor:
    parts = [model.shard_edges(s)[:, :n] for s, n in shard_counts.items()]
    return torch.cat(parts, 1)


def test_sisa_retrains_exactly_affected_shards(graph, sisa_model):
    before = [_params(m) for m in sisa_model.shards]
    deleted = _edges_in(sisa_model, {0: 3, 2: 2})
    res = unlearn(sisa_model, graph, deleted, method="sisa")
    model = res.model
    assert res.report.options["retrained_shards"] == [0, 2]
    assert _same(_params(model.shards[1]), before[1])
    assert not _same(_params(model.shards[0]), before[0])
    assert not _same(_params(model.shards[2]), before[2])
    # the input model still holds every edge and its old parameters
    assert sisa_model.edges.shape[1] == graph.num_train
    assert all(_same(_params(m), b) for m, b in zip(sisa_model.shards, before))
    # deleted edges gone from every shard; shards partition exactly the new training edges
    gone = edge_keys(deleted, graph.num_items)
    all_keys = []
    for s in range(3):
        k = edge_keys(model.shard_edges(s), graph.num_items)
        assert not bool(torch.isin(k, gone).any())
        all_keys.append(k)
    all_keys = torch.sort(torch.cat(all_keys)).values
    assert torch.equal(all_keys, torch.sort(edge_keys(res.graph.train_edges, graph.num_items)).values)
    assert res.graph.num_train == graph.num_train - deleted.shape[1]
    # retrained shards == models trained directly on the shard minus the deleted edges
    direct = _direct_shard_models(graph, sisa_model, random_partition(graph.num_train, 3, 0), deleted)
    for s in (0, 2):
        assert _same(_params(model.shards[s]), _params(direct[s][0]))
    # deterministic
    res2 = unlearn(sisa_model, graph, deleted, method="sisa")
    assert _same(_params(res2.model), _params(model))
    m = evaluate(model, res.graph)
    assert 0.0 <= m["recall@20"] <= 1.0 and m["users"] > 0


def test_sisa_parallel_processes_match_serial(graph):
    small = random_graph(20, 30, 150, seed=5)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.01, patience=None, progress=False)
    model = fit_sharded(small, "mf", 2, "random", cfg, seed=0, dim=4)
    deleted = torch.cat([model.shard_edges(0)[:, :1], model.shard_edges(1)[:, :1]], 1)
    serial = get_unlearner("sisa", processes=1).unlearn(model, small, deleted)
    parallel = get_unlearner("sisa", processes=2).unlearn(model, small, deleted)
    assert parallel.report.options["retrained_shards"] == [0, 1]
    assert _same(_params(parallel.model), _params(serial.model))


def test_bad_inputs_raise_clear_errors(graph, sisa_model):
    plain = MF(graph.num_users, graph.num_items, dim=4, seed=0)
    with pytest.raises(ValueError, match="fit_sharded"):
        unlearn(plain, graph, graph.train_edges[:, :2], method="sisa")
    with pytest.raises(ValueError, match="fit_sharded"):
        unlearn(plain, graph, graph.train_edges[:, :2], method="receraser")
    other = graph.remove_edges(graph.train_edges[:, :1])
    with pytest.raises(ValueError, match="different training edge set"):
        unlearn(sisa_model, other, other.train_edges[:, :2], method="sisa")
    with pytest.raises(ValueError, match="processes"):
        get_unlearner("sisa", processes=0)
    with pytest.raises(ValueError, match="embedding"):
        sisa_model.propagate(None, torch.zeros(1))
    att = copy.deepcopy(sisa_model)
    att.aggregator_name = "attention"
    with pytest.raises(ValueError, match="receraser"):
        unlearn(att, graph, graph.train_edges[:, :2], method="sisa")


def test_receraser_on_ml100k(ml100k):
    cfg = TrainConfig(epochs=3, batch_size=2048, lr=0.01, patience=None, progress=False)
    model = fit_sharded(ml100k, "mf", 4, "kmeans", cfg, seed=0, dim=16, slack=0.05,
                        pretrain_epochs=3, aggregator_epochs=4)
    sizes = model.shard_sizes()
    assert int(sizes.sum()) == ml100k.num_train
    assert int(sizes.max()) <= shard_capacity(ml100k.num_train, 4, 0.05)
    m = evaluate(model, ml100k)
    assert m["recall@20"] > 3 * 20 / ml100k.num_items  # far above a random ranking
    # aggregator training lowers its BPR loss (from the equal-attention start)
    history = train_aggregator(model, ml100k, epochs=4)
    assert history[-1] < history[0]

    user = int(ml100k.train_edges[0, 0])
    deleted = ml100k.user_edges([user])
    expected = torch.unique(model.shards_of(deleted)).tolist()
    before = [_params(s) for s in model.shards]
    agg_before = _params(model.aggregator)
    res = unlearn(model, ml100k, deleted, method="receraser", aggregator_epochs=2)
    assert res.report.options["retrained_shards"] == expected
    for s in range(4):
        assert _same(_params(res.model.shards[s]), before[s]) == (s not in expected)
    assert not _same(_params(res.model.aggregator), agg_before)
    assert not bool(torch.isin(edge_keys(res.model.edges, ml100k.num_items),
                               edge_keys(deleted, ml100k.num_items)).any())
    assert evaluate(res.model, res.graph)["recall@20"] > 3 * 20 / ml100k.num_items


def test_receraser_labelled_graph_ngcf():
    g = random_graph(20, 30, 160, seed=9, labels=True)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.01, patience=None, progress=False)
    gen = torch.Generator().manual_seed(0)
    emb = (torch.randn(g.num_users, 3, generator=gen), torch.randn(g.num_items, 3, generator=gen))
    model = fit_sharded(g, "ngcf", 2, "kmeans", cfg, seed=0, dim=4, layers=1, embeddings=emb,
                        aggregator_epochs=2)
    assert model.aggregator is not None and model.shards[0].name == "ngcf"
    deleted = model.shard_edges(1)[:, :3]
    before = _params(model.shards[0])
    res = unlearn(model, g, deleted, method="receraser")
    assert res.report.options["retrained_shards"] == [1]
    assert _same(_params(res.model.shards[0]), before)
    # labels follow their edges into the shard graphs
    sg = res.model.shard_graph(1, res.graph)
    assert torch.equal(sg.train_labels, res.graph.train_labels[res.graph.find_edges(sg.train_edges)])
    assert 0.0 <= evaluate(res.model, res.graph)["auc"] <= 1.0


def _reference_aggregator_fit(model, graph, epochs, lr, batch_size, weight_decay) -> list[float]:
    """RecEraser's aggregator fit written out by hand (BPR, one seeded negative per edge and
    epoch, Adam, shards frozen): what the one Trainer must reproduce through AggregatorHead."""
    import torch.nn.functional as F

    from graphforget.train.sampling import sample_negatives

    agg, nu = model.aggregator, model.num_users
    agg.reset_parameters(model.aggregator_seed)
    with torch.no_grad():
        z = model.shard_outputs()
    gen = torch.Generator().manual_seed(model.aggregator_seed)
    opt = torch.optim.Adam(agg.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        perm = torch.randperm(graph.num_train, generator=gen)
        users, items = graph.train_edges[:, perm]
        neg = sample_negatives(users, graph.train_edges, graph.num_items, gen)
        total = 0.0
        for s in range(0, perm.numel(), batch_size):
            u, i, j = users[s:s + batch_size], items[s:s + batch_size], neg[s:s + batch_size]
            eu, ei, ej = agg(z[:, u], "user"), agg(z[:, nu + i], "item"), agg(z[:, nu + j], "item")
            loss = -F.logsigmoid((eu * (ei - ej)).sum(-1)).mean() + weight_decay * agg.l2()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * u.numel()
        history.append(total / graph.num_train)
    return history


def test_aggregator_is_trained_by_the_one_trainer(graph):
    """train_aggregator runs Trainer.fit on AggregatorHead and lands where the hand-written
    loop does (same losses per epoch, same parameters); the shards are not touched."""
    from graphforget.train.sharding import AggregatorHead

    m = fit_sharded(graph, "mf", shards=3, strategy="random", seed=0, dim=8, aggregator="attention",
                    config=TrainConfig(epochs=2, patience=None, progress=False))
    shards = copy.deepcopy([s.state_dict() for s in m.shards])
    got = train_aggregator(m, graph, epochs=3, lr=5e-3, batch_size=64, weight_decay=1e-3)
    mine = copy.deepcopy(m.aggregator.state_dict())
    want = _reference_aggregator_fit(m, graph, 3, 5e-3, 64, 1e-3)
    assert got == pytest.approx(want, rel=1e-5)
    for k, v in m.aggregator.state_dict().items():
        assert torch.allclose(mine[k], v, atol=1e-6), k
    assert all(torch.equal(a[k], b.state_dict()[k]) for a, b in zip(shards, m.shards) for k in a)
    head = AggregatorHead(m)
    assert not head.has_ego and [p for p in head.parameters()] == list(m.aggregator.parameters())
