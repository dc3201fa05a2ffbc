"""The audit can fail: on real data (ml100k, MF, the early-stopped recipe) "do nothing" is judged
not forgotten, an independent retrain is judged forgotten, and a zeroed row is caught."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from graphforget.audit import UMIA, audit, train_retrains
from graphforget.audit.umia import ShadowScores, null_auc_se, retrain_seeds
from graphforget.models import build_model
from graphforget.train import TrainConfig, train

CFG = TrainConfig(epochs=200, lr=5e-3, weight_decay=1e-3, patience=5, negatives=1, progress=False,
                  seed=0)


@pytest.fixture(scope="module")
def original(ml100k):
    model = build_model("mf", ml100k.num_users, ml100k.num_items, dim=32, seed=0)
    train(model, ml100k, CFG)
    return model


def _audit(ml100k, original, edges, shadows=8):
    after = ml100k.remove_edges(edges)
    retrains = train_retrains(original, ml100k, edges, shadows + 2)
    return after, retrains, audit(original, retrains[1], ml100k, after, edges, retrains=retrains,
                                  max_members=5000)


def test_do_nothing_fails_and_an_independent_retrain_passes_on_1_percent(ml100k, original):
    gen = torch.Generator().manual_seed(0)
    edges = ml100k.train_edges[:, torch.randperm(ml100k.num_train, generator=gen)[:ml100k.num_train // 100]]
    _, _, rep = _audit(ml100k, original, edges)
    print(rep.summary())
    v = rep.verdicts
    assert not v["original"]["forgotten"] and v["original"]["umia"]["verdict"] == "above"
    assert rep.models["original"]["umia"]["auc"] >= 0.7
    assert v["unlearned"]["forgotten"] and v["control"]["forgotten"]  # the unlearned slot is a retrain
    assert v["control"]["umia"]["verdict"] == "within" and v["control"]["mia"]["verdict"] == "within"
    assert rep.models["original"]["umia"]["score_error"] == pytest.approx(1.0)
    assert rep.models["control"]["umia"]["score_error"] < 1.0


def test_a_zeroed_row_is_caught_where_a_fresh_draw_passes(ml100k, original):
    users = torch.tensor([3, 50, 120, 300, 480, 700, 850, 900])
    edges = ml100k.user_edges(users)
    after, retrains, rep = _audit(ml100k, original, edges)
    assert not rep.verdicts["original"]["forgotten"]
    zeroed, fresh = copy.deepcopy(retrains[1]), copy.deepcopy(retrains[1])
    with torch.no_grad():
        zeroed.embedding[users] = 0.0
        fresh.embedding[users] = fresh.fresh_rows(users, seed=123)
    umia = UMIA.fit(retrains[2:], retrains[0], original, ml100k, after, edges)
    z, f = umia.assess(zeroed, after), umia.assess(fresh, after)
    assert z.verdict == "below" and z.auc < 0.5 - z.band, z  # too close to the retrain mean
    assert f.verdict == "within", f


def test_shadow_statistics_and_seeds():
    s = ShadowScores.fit(torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], dtype=torch.float64))
    torch.testing.assert_close(s.mean, torch.tensor([2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(s.statistic(torch.tensor([4.0, 3.0], dtype=torch.float64)),
                               torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        ShadowScores.fit(torch.zeros(1, 3))
    assert math.isclose(null_auc_se(100), math.sqrt(201 / 120000))
    m = build_model("mf", 3, 3, dim=2)
    m.recipe = {"seed": 7}
    assert retrain_seeds(m, 3) == [1007, 1008, 1009]
    with pytest.raises(ValueError, match="original's seed"):
        train_retrains(m, None, None, 1, seeds=[7])
