"""Checkpoints of sharded models (SISA / RecEraser): exact round trip through
``torch.load(weights_only=True)``, after unlearning too, and refusal of a wrong or tampered graph."""
from __future__ import annotations

import pytest
import torch

from graphforget.data.registry import load_dataset
from graphforget.models.ensemble import ShardedRecommender
from graphforget.train import TrainConfig, evaluate, load_checkpoint, save_checkpoint
from graphforget.unlearning import unlearn
from graphforget.train.sharding import fit_sharded

CFG = TrainConfig(epochs=1, batch_size=4096, lr=0.01, patience=None, progress=False, eval_every=100)


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo", seed=0, verbose=False)


@pytest.fixture(scope="module", params=["mean", "attention"])
def sharded(request, demo) -> ShardedRecommender:
    """3 MF shards on a random partition of the demo data; RecEraser's attention aggregator
    trained one epoch in the ``attention`` case."""
    return fit_sharded(demo, "mf", 3, "random", CFG, seed=5, dim=8, aggregator=request.param,
                       aggregator_epochs=1, attention_dim=6)


def _assert_identical(a: ShardedRecommender, b: ShardedRecommender, graph) -> None:
    assert type(b) is ShardedRecommender and b.config() == a.config()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    with torch.no_grad():
        assert torch.equal(a.propagate(), b.propagate())  # every score u·i identical
    assert evaluate(a, graph, "test") == evaluate(b, graph, "test")


def test_round_trip_is_exact(tmp_path, demo, sharded):
    path = tmp_path / "sharded.pt"
    save_checkpoint(path, sharded, demo, CFG.to_dict())
    torch.load(path, map_location="cpu", weights_only=True)  # nothing pickled beyond tensors/dicts
    loaded, payload = load_checkpoint(path, demo)
    _assert_identical(sharded, loaded, demo)
    assert payload["model"]["aggregator"] == sharded.aggregator_name
    assert (loaded.aggregator is None) == (sharded.aggregator_name == "mean")
    for s in range(sharded.num_shards):
        assert torch.equal(loaded.shard_edges(s), sharded.shard_edges(s))
    assert loaded.shard_seeds == sharded.shard_seeds
    assert loaded.train_config == sharded.train_config
    assert loaded.aggregator_config == sharded.aggregator_config


def test_round_trip_after_sisa_unlearning(tmp_path, demo, sharded):
    """After forgetting, the stored assignment shrinks; the checkpoint binds to the new graph."""
    edges = demo.train_edges[:, torch.randperm(demo.num_train, generator=torch.Generator().manual_seed(1))[:4]]
    method = "sisa" if sharded.aggregator is None else "receraser"
    result = unlearn(sharded, demo, edges, method=method)
    path = tmp_path / "after.pt"
    save_checkpoint(path, result.model, result.graph)
    loaded, _ = load_checkpoint(path, result.graph)
    _assert_identical(result.model, loaded, result.graph)
    assert loaded.edges.shape[1] == demo.num_train - 4
    with pytest.raises(ValueError, match="another training graph"):
        load_checkpoint(path, demo)


def test_mismatched_or_tampered_graph_refused(tmp_path, demo, sharded):
    path = tmp_path / "sharded.pt"
    save_checkpoint(path, sharded, demo)
    smaller = demo.remove_edges(demo.train_edges[:, :1])
    with pytest.raises(ValueError, match="another training graph"):
        load_checkpoint(path, smaller)

    payload = torch.load(path, map_location="cpu", weights_only=True)
    # fingerprint kept, but one stored edge swapped for a non-edge: the assignment no longer
    # covers the graph's training edges
    edges = payload["state_dict"]["edges"].clone()
    taken = set((edges[0] * demo.num_items + edges[1]).tolist())
    u = int(edges[0, 0])
    free = next(i for i in range(demo.num_items) if u * demo.num_items + i not in taken)
    edges[1, 0] = free
    payload["state_dict"]["edges"] = edges
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="different training edge set"):
        load_checkpoint(tmp_path / "tampered.pt", demo)

    # a shard model's tensor removed: config and tensors disagree
    payload = torch.load(path, map_location="cpu", weights_only=True)
    key = next(k for k in payload["state_dict"] if k.startswith("shards.2."))
    del payload["state_dict"][key]
    torch.save(payload, tmp_path / "truncated.pt")
    with pytest.raises(ValueError, match="does not match its config"):
        load_checkpoint(tmp_path / "truncated.pt", demo)
