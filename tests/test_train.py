"""Negative sampling and the training loop: exclusion, determinism, convergence, early stopping."""
from __future__ import annotations

import json

import pytest
import torch

from graphforget.train import trainer as trainer_mod  # (graphforget.train is also the function)
from conftest import random_graph
from graphforget.data import InteractionGraph
from graphforget.metrics import ranking_metrics
from graphforget.models import MF, LightGCN, build_model
from graphforget.train import TrainConfig, Trainer, evaluate, sample_negatives, train


# ---------------------------------------------------------------------------- sampling
def _assert_no_positives(users, neg, graph):
    positives = set(map(tuple, graph.train_edges.t().tolist()))
    assert not any((u, j) in positives for u, j in zip(users.tolist(), neg.tolist()))
    assert int(neg.min()) >= 0 and int(neg.max()) < graph.num_items


def test_negatives_exclude_positives_ml100k(ml100k):
    gen = torch.Generator().manual_seed(0)
    users = ml100k.train_edges[0].repeat(2)
    neg = sample_negatives(users, ml100k.train_edges, ml100k.num_items, gen)
    assert neg.shape == users.shape
    _assert_no_positives(users, neg, ml100k)


def test_negatives_exclude_positives_dense_graph():
    # 90% dense (each user lacks 2 of 20 items): almost every uniform draw must be redrawn
    gen = torch.Generator().manual_seed(1)
    keep = torch.rand(10, 20, generator=gen).argsort(1)[:, :18]
    graph = InteractionGraph(10, 20, torch.stack([torch.arange(10).repeat_interleave(18), keep.reshape(-1)]))
    users = torch.arange(10).repeat_interleave(50)
    neg = sample_negatives(users, graph.train_edges, graph.num_items, gen)
    _assert_no_positives(users, neg, graph)
    # both non-positives of a user are drawn (uniform over the complement)
    draws = sample_negatives(torch.full((200,), 3), graph.train_edges, 20, gen)
    complement = set(range(20)) - set(keep[3].tolist())
    assert set(draws.tolist()) == complement


def test_negatives_deterministic_per_seed(ml100k):
    users = ml100k.train_edges[0][:3000]
    a = sample_negatives(users, ml100k.train_edges, ml100k.num_items, torch.Generator().manual_seed(5))
    b = sample_negatives(users, ml100k.train_edges, ml100k.num_items, torch.Generator().manual_seed(5))
    c = sample_negatives(users, ml100k.train_edges, ml100k.num_items, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_negatives_raise_for_user_with_every_item():
    edges = torch.stack([torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 0])])
    with pytest.raises(ValueError, match=r"every item.*\[0\]"):
        sample_negatives(torch.tensor([1, 0]), edges, 3, torch.Generator().manual_seed(0), max_rounds=20)


# ---------------------------------------------------------------------------- trainer
def _quiet(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=1024, lr=5e-3, patience=None, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_same_seed_same_parameters():
    graph = random_graph(40, 50, 400, seed=2)
    states = []
    for _ in range(2):
        model = build_model("ngcf", graph.num_users, graph.num_items, dim=8, layers=2, seed=0)
        train(model, graph, _quiet(batch_size=64))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    other = build_model("ngcf", graph.num_users, graph.num_items, dim=8, layers=2, seed=0)
    train(other, graph, _quiet(batch_size=64, seed=1))
    assert not torch.equal(other.embedding, states[0]["embedding"])


def test_loss_decreases_and_recall_improves_on_ml100k(ml100k, tmp_path):
    model = LightGCN(ml100k.num_users, ml100k.num_items, dim=32, num_layers=2, seed=0)
    before = evaluate(model, ml100k, "valid")["recall@20"]
    log = tmp_path / "logs" / "log.jsonl"  # parent created by the trainer
    res = train(model, ml100k, _quiet(epochs=5, batch_size=2048, lr=1e-2, log_path=str(log)))
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 5 and res.epochs_run == 5
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:])), losses
    assert res.best_metric > before
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    assert lines[-1]["loss"] == pytest.approx(losses[-1])
    assert "valid_recall@20" in lines[0]


def test_early_stopping_restores_best_epoch(monkeypatch):
    graph = random_graph(30, 40, 200, seed=3)
    script = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    snapshots = []

    def fake_evaluate(model, graph, split, *args, **kwargs):
        assert split == "valid"  # early stopping never looks at the test split
        snapshots.append(model.embedding.detach().clone())
        return {"recall@20": next(script), "users": 1}

    monkeypatch.setattr(trainer_mod, "evaluate", fake_evaluate)
    model = MF(30, 40, dim=8, seed=0)
    res = Trainer(_quiet(epochs=20, patience=2, batch_size=32)).fit(model, graph)
    assert res.epochs_run == 4  # best at 2, two evaluations without improvement
    assert res.best_epoch == 2 and res.best_metric == pytest.approx(0.3)
    assert torch.equal(model.embedding, snapshots[1])
    assert not torch.equal(model.embedding, snapshots[3])


def test_no_validation_split_trains_all_epochs():
    g = random_graph(20, 25, 100, seed=4)
    graph = InteractionGraph(g.num_users, g.num_items, g.train_edges, test_edges=g.test_edges)
    res = train(MF(20, 25, dim=4, seed=0), graph, _quiet(epochs=3, patience=1))
    assert res.epochs_run == 3 and res.best_epoch == 3


def test_bce_on_labelled_graph_gives_auc():
    graph = random_graph(40, 50, 600, seed=5, labels=True)
    model = LightGCN(40, 50, dim=8, num_layers=2, seed=0)
    res = train(model, graph, _quiet(epochs=3, batch_size=128))
    assert all("valid_auc" in h for h in res.history)
    assert "valid_recall@20" not in res.history[0]
    m = evaluate(model, graph, "test")
    assert set(m) == {"auc"} and 0.0 <= m["auc"] <= 1.0
    # the BCE objective itself: one batch, by hand
    trainer = Trainer(_quiet())
    rows = torch.arange(10)
    out = model.propagate(graph.adj())
    u, i = graph.train_edges[:, rows]
    y = graph.train_labels[rows]
    s = (out[u] * out[i + 40]).sum(-1)
    expect = torch.nn.functional.binary_cross_entropy_with_logits(s, y) \
        + 1e-4 * 0.5 * (model.embedding[u].pow(2).sum() + model.embedding[i + 40].pow(2).sum()) / 10
    got = trainer.batch_loss(model, graph, graph.adj(), rows, None, "bce")
    torch.testing.assert_close(got, expect)


def test_evaluate_test_masks_train_and_valid_items():
    g = random_graph(30, 40, 300, seed=6)
    model = MF(30, 40, dim=6, seed=1)
    with torch.no_grad():  # make the validation items the top-scored ones
        u, i = g.valid_edges
        model.embedding[i + 30] += 5 * model.embedding[u] / model.embedding[u].norm(dim=1, keepdim=True)
    got = evaluate(model, g, "test", ks=(5, 10))
    uemb, iemb = model.embedding[:30].detach(), model.embedding[30:].detach()
    mask = torch.cat([g.train_edges, g.valid_edges], 1)
    assert got == ranking_metrics(uemb, iemb, mask, g.test_edges, ks=(5, 10))
    assert got != ranking_metrics(uemb, iemb, g.train_edges, g.test_edges, ks=(5, 10))
    # the validation split masks only training items
    assert evaluate(model, g, "valid") == ranking_metrics(uemb, iemb, g.train_edges, g.valid_edges)


def test_bad_optimizer_raises():
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(MF(5, 5, dim=2, seed=0), random_graph(5, 5, 10, seed=0), _quiet(optimizer="sgdx"))


def test_metric_cutoff_must_be_evaluated(small_graph):
    from graphforget.models import build_model
    from graphforget.train import TrainConfig, Trainer

    model = build_model("mf", small_graph.num_users, small_graph.num_items, dim=4, seed=0)
    before = model.embedding.detach().clone()
    with pytest.raises(ValueError, match="recall@10"):
        Trainer(TrainConfig(epochs=1, metric="recall@10", ks=(20,), progress=False)).fit(model, small_graph)
    assert torch.equal(model.embedding.detach(), before)
