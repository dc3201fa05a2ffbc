"""Checkpoints: round trip, graph mismatch, and refusal of files that are not checkpoints."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from conftest import random_graph
from graphforget.models import LightGCN, build_model
from graphforget.train import TrainConfig, file_sha256, load_checkpoint, save_checkpoint, train


@pytest.mark.parametrize("name", ["mf", "lightgcn", "ngcf"])
def test_round_trip_equal_parameters_and_outputs(tmp_path, name):
    graph = random_graph(20, 30, 120, seed=1)
    model = build_model(name, 20, 30, dim=8, layers=2, seed=4)
    path = tmp_path / "sub" / f"{name}.pt"
    digest = save_checkpoint(path, model, graph, config={"lr": 0.01}, extra={"note": "x"})
    assert digest == file_sha256(path) and len(digest) == 16
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]  # atomic write cleaned up
    loaded, payload = load_checkpoint(path, graph)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    with torch.no_grad():
        assert torch.equal(model.propagate(graph.adj()), loaded.propagate(graph.adj()))
    assert payload["graph_fingerprint"] == graph.fingerprint()
    assert payload["train_config"] == {"lr": 0.01} and payload["extra"] == {"note": "x"}


def test_round_trip_keeps_custom_layer_weights(tmp_path):
    graph = random_graph(10, 12, 40, seed=2)
    model = LightGCN(10, 12, dim=4, num_layers=2, alpha=[0.2, 0.3, 0.5], seed=0)
    save_checkpoint(tmp_path / "a.pt", model, graph)
    loaded, _ = load_checkpoint(tmp_path / "a.pt", graph)
    assert torch.equal(loaded.alpha, model.alpha)


def test_train_writes_loadable_checkpoint(tmp_path):
    graph = random_graph(20, 30, 120, seed=3)
    model = build_model("lightgcn", 20, 30, dim=8, layers=1, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=64, patience=None, progress=False)
    res = train(model, graph, cfg, checkpoint=str(tmp_path / "ck" / "m.pt"))
    loaded, payload = load_checkpoint(tmp_path / "ck" / "m.pt", graph)
    assert torch.equal(loaded.embedding, res.model.embedding)
    assert payload["train_config"]["epochs"] == 2 and payload["extra"]["epochs_run"] == 2


def test_loading_with_a_different_graph_raises(tmp_path):
    graph = random_graph(20, 30, 120, seed=1)
    model = build_model("lightgcn", 20, 30, dim=8, layers=2, seed=4)
    save_checkpoint(tmp_path / "m.pt", model, graph)
    smaller = graph.remove_edges(graph.train_edges[:, :1])
    with pytest.raises(ValueError, match=graph.fingerprint()):
        load_checkpoint(tmp_path / "m.pt", smaller)
    with pytest.raises(ValueError, match="another training graph"):
        load_checkpoint(tmp_path / "m.pt", random_graph(20, 30, 120, seed=2))
    load_checkpoint(tmp_path / "m.pt")  # no graph given: no check


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": "graphforget-checkpoint-v1", "x": _Exploit(str(marker))}, f, protocol=2)
    # sanity: an unrestricted unpickler would run the payload
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(str(probe))))
    assert probe.exists()
    with pytest.raises(ValueError, match="not a readable graphforget checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    # also through torch.save's zip format
    evil_zip = tmp_path / "evil_zip.pt"
    torch.save({"format": "graphforget-checkpoint-v1", "x": _Exploit(str(marker))}, evil_zip)
    with pytest.raises(ValueError, match="not a readable graphforget checkpoint"):
        load_checkpoint(evil_zip)
    assert not marker.exists()


def test_other_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(ValueError, match="not a graphforget checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(tmp_path / "missing.pt")
