"""Retrain and FineTune baselines: end-to-end behaviour, references, and input validation."""
from __future__ import annotations

import copy

import pytest
import torch

from graphforget.data.graph import edge_keys
from graphforget.models import MF, LightGCN
from graphforget.train import TrainConfig, Trainer, train
from graphforget.unlearning import get_unlearner, unlearn
from graphforget.unlearning.alteraser import AltEraser
from graphforget.unlearning.finetune import FineTune
from graphforget.unlearning.retrain import Retrain
from tests.conftest import random_graph

CFG = TrainConfig(epochs=4, batch_size=64, lr=1e-2, patience=2, progress=False)


def _trained(graph, cls=LightGCN, **kw):
    model = cls(graph.num_users, graph.num_items, dim=8, seed=0, **kw)
    train(model, graph, CFG)
    return model


def test_retrain_matches_training_from_scratch():
    g = random_graph(seed=1)
    model = _trained(g, num_layers=2, alpha=[0.5, 0.3, 0.2])
    before = copy.deepcopy(model.state_dict())
    edges = g.train_edges[:, [0, 5, 9]]
    res = unlearn(model, g, edges, method="retrain", config=CFG, seed=7)
    assert res.graph.num_train == g.num_train - 3
    gone = torch.isin(edge_keys(edges, g.num_items), edge_keys(res.graph.train_edges, g.num_items))
    assert not bool(gone.any())
    # reference: a fresh model with the same seed and alpha trained on the new graph directly
    ref = LightGCN(g.num_users, g.num_items, dim=8, num_layers=2, alpha=[0.5, 0.3, 0.2], seed=7)
    ref_res = train(ref, g.remove_edges(edges), TrainConfig(**{**CFG.to_dict(), "seed": 7}))
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v)
    assert res.report.solver_iterations == ref_res.epochs_run
    assert res.report.seconds["solve"] > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_finetune_changes_params_and_keeps_input():
    g = random_graph(seed=2)
    model = _trained(g, MF)
    before = copy.deepcopy(model.state_dict())
    edges = g.train_edges[:, :6]
    res = FineTune(config=CFG, max_epochs=3, patience=None, lr=5e-3).unlearn(model, g, edges)
    assert not torch.allclose(res.model.embedding, model.embedding)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert res.report.solver_iterations == 3
    # reference: AdamW warm start with the same seed on the new graph via the Trainer
    ref = copy.deepcopy(model)
    cfg = TrainConfig(**{**CFG.to_dict(), "optimizer": "adamw", "lr": 5e-3, "epochs": 3,
                         "patience": None, "seed": 0})
    Trainer(cfg).fit(ref, g.remove_edges(edges))
    torch.testing.assert_close(res.model.embedding, ref.embedding)


def test_finetune_early_stops_on_validation():
    g = random_graph(seed=3)
    model = _trained(g, MF)
    res = FineTune(config=CFG, max_epochs=50, patience=1, lr=0.5).unlearn(model, g, g.train_edges[:, :3])
    assert res.report.solver_iterations < 50


@pytest.mark.parametrize("method,opts", [("retrain", {"config": CFG}),
                                         ("finetune", {"config": CFG, "max_epochs": 1}),
                                         ("alteraser", {"rounds": 1})])
@pytest.mark.parametrize("bad", ["absent", "duplicate", "unknown_user", "empty"])
def test_bad_input_leaves_inputs_unchanged(method, opts, bad):
    g = random_graph(seed=4)
    model = _trained(g, MF)
    before, fp, n = copy.deepcopy(model.state_dict()), g.fingerprint(), g.num_train
    keys = set(edge_keys(g.train_edges, g.num_items).tolist())
    absent = next((u, i) for u in range(g.num_users) for i in range(g.num_items)
                  if u * g.num_items + i not in keys)
    first = tuple(g.train_edges[:, 0].tolist())
    request = {"absent": [first, absent], "duplicate": [first, first],
               "unknown_user": [(g.num_users, 0)], "empty": torch.zeros(2, 0, dtype=torch.long)}[bad]
    with pytest.raises(ValueError):
        unlearn(model, g, request, method=method, **opts)
    assert g.fingerprint() == fp and g.num_train == n
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_model_graph_mismatch_and_bad_options():
    g = random_graph(seed=5)
    other = MF(g.num_users + 1, g.num_items, dim=4, seed=0)
    for cls in (Retrain, FineTune, AltEraser):
        with pytest.raises(ValueError, match="users"):
            cls().unlearn(other, g, g.train_edges[:, :1])
    with pytest.raises(ValueError):
        FineTune(max_epochs=0)
    with pytest.raises(ValueError):
        AltEraser(blocks="diagonal")
    with pytest.raises(ValueError):
        Retrain(config={"epochs": 3})
    assert isinstance(get_unlearner("retrain"), Retrain)
    assert isinstance(get_unlearner("finetune"), FineTune)
    assert isinstance(get_unlearner("alteraser"), AltEraser)
