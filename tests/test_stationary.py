"""The objective unlearning differentiates: fixed negatives stable under deletion, closed-form
gradients, the stationary finish, recipes recorded and reused, carved validation splits, and
Newton iterations that reach the new minimiser from a stationary model."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import random_graph
from graphforget.audit import parameter_distance
from graphforget.data import InteractionGraph
from graphforget.models import build_model
from graphforget.train import (TrainConfig, fixed_negatives, load_checkpoint, save_checkpoint,
                               stationarity, stationary_finish, train)
from graphforget.train.objective import FullObjective, Objective, split_samples, total_loss
from graphforget.unlearning import get_unlearner


def _sample_tuples(s):
    cols = [s.users, s.items] + ([s.replicas, s.negatives] if s.negatives is not None else [])
    return sorted(map(tuple, torch.stack(cols, 1).tolist()))


# ---------------------------------------------------------------------------- fixed negatives
def test_fixed_negatives_never_positive_and_depend_only_on_the_sample():
    g = random_graph(15, 12, 100, seed=0)  # dense: many draws rejected
    obj = Objective(negatives=5, negative_seed=3)
    s = obj.samples(g)
    positives = set(map(tuple, g.train_edges.t().tolist()))
    assert len(s) == 5 * g.num_train
    assert not any((u, j) in positives for u, j in zip(s.users.tolist(), s.negatives.tolist()))
    # the same edges in another order draw the same negatives per (u, i, r)
    perm = torch.randperm(g.num_train, generator=torch.Generator().manual_seed(1))
    shuffled = InteractionGraph(g.num_users, g.num_items, g.train_edges[:, perm])
    assert _sample_tuples(obj.samples(shuffled)) == _sample_tuples(s)
    assert _sample_tuples(Objective(negatives=5, negative_seed=4).samples(g)) != _sample_tuples(s)


def test_fixed_negatives_are_roughly_uniform():
    users = torch.zeros(20000, dtype=torch.long)
    neg = fixed_negatives(users, torch.arange(20000), torch.zeros(20000, dtype=torch.long),
                          torch.tensor([[0], [3]]), 10, seed=0)
    counts = torch.bincount(neg, minlength=10)
    assert counts[3] == 0 and bool((counts[torch.arange(10) != 3] > 2000).all())


@pytest.mark.parametrize("labels", [False, True])
def test_split_samples_are_exactly_the_retrain_samples(labels):
    g = random_graph(20, 14, 120, seed=2, labels=labels)  # dense: deletions change negatives
    obj = Objective.for_graph(g, negatives=4, negative_seed=1)
    user = int(g.train_edges[0, 0])
    edges = torch.cat([g.train_edges[:, g.train_edges[0] == user][:, :2], g.train_edges[:, -3:]], 1)
    edges = torch.unique(edges, dim=1)
    new = g.remove_edges(edges)
    split = split_samples(obj, g, new, edges)
    assert _sample_tuples(split.remaining) == _sample_tuples(obj.samples(new))
    assert sorted(_sample_tuples(split.kept) + _sample_tuples(split.removed)) == _sample_tuples(obj.samples(g))
    if not labels:
        assert len(split.added) > 0  # a deleting user redrew some negatives
        assert set(split.added.users.tolist()) <= set(edges[0].tolist())


# ---------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("name,layers,labels", [("mf", 0, False), ("lightgcn", 2, False),
                                                 ("lightgcn", 1, True), ("ngcf", 1, False)])
def test_full_objective_value_and_gradient_equal_autograd(name, layers, labels):
    g = random_graph(20, 25, 100, seed=3, labels=labels)
    model = build_model(name, g.num_users, g.num_items, dim=5, layers=layers, seed=0, init_std=0.5).double()
    obj = Objective.for_graph(g, weight_decay=0.3, negatives=3)
    samples = obj.samples(g)
    f = FullObjective(model, g, samples, obj.weight_decay)
    ego = model.embedding.detach().clone()
    value, grad = f(ego)
    x = ego.clone().requires_grad_(True)
    ref = total_loss(model, g.adj().double() if layers else None, x, samples, 0.3)
    (ref_grad,) = torch.autograd.grad(ref, x)
    assert abs(value - float(ref)) <= 1e-9 * abs(float(ref))
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-11)
    value2, grad2 = f(1.3 * ego)  # reused buffers give the fresh answer at another point
    x2 = (1.3 * ego).requires_grad_(True)
    (ref2,) = torch.autograd.grad(total_loss(model, g.adj().double() if layers else None, x2, samples, 0.3), x2)
    torch.testing.assert_close(grad2, ref2, rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------- the finish
@pytest.mark.parametrize("name,layers", [("mf", 0), ("lightgcn", 2)])
def test_stationary_finish_reaches_gtol_and_stationarity_measures_it(name, layers):
    g = random_graph(30, 40, 200, seed=4)
    model = build_model(name, g.num_users, g.num_items, dim=6, layers=layers, seed=0)
    obj = Objective(weight_decay=0.05, negatives=3)
    before = stationarity(model, g, obj)["grad_norm_rel"]
    res = stationary_finish(model, g, obj, gtol=1e-5)
    after = stationarity(model, g, obj)
    assert before > 1e-2 and res.converged and after["grad_norm_rel"] <= 1e-5, (before, res)
    assert res.grad_norm_rel == after["grad_norm_rel"] and res.iterations > 0
    x = model.embedding.detach().double().clone().requires_grad_(True)
    work = copy.deepcopy(model).double()
    (grad,) = torch.autograd.grad(total_loss(work, g.adj().double() if layers else None, x,
                                             obj.samples(g), obj.weight_decay), x)
    assert float(grad.norm()) <= 1.01e-5 * float(x.norm())  # against autograd, not itself


def test_stationary_recipe_on_ml100k_reaches_gtol_and_is_recorded(ml100k, tmp_path):
    model = build_model("mf", ml100k.num_users, ml100k.num_items, dim=16, seed=0)
    cfg = TrainConfig(epochs=30, lr=5e-3, weight_decay=0.05, negatives=2, until="stationary",
                      gtol=1e-5, progress=False)
    res = train(model, ml100k, cfg, checkpoint=str(tmp_path / "m.pt"))
    assert res.finish["converged"] and res.stationarity["grad_norm_rel"] <= 1e-5
    assert model.recipe["grad_norm_rel"] == res.stationarity["grad_norm_rel"]
    loaded, payload = load_checkpoint(tmp_path / "m.pt", ml100k)
    assert loaded.recipe["until"] == "stationary" and loaded.recipe["negatives"] == 2
    assert payload["extra"]["stationarity"]["grad_norm_rel"] <= 1e-5
    obj = cfg.objective(ml100k)
    assert stationarity(loaded, ml100k, obj)["grad_norm_rel"] <= 1e-5
    early = build_model("mf", ml100k.num_users, ml100k.num_items, dim=16, seed=0)
    r2 = train(early, ml100k, TrainConfig.from_dict(cfg.to_dict(), until="early_stop"))
    assert r2.stationarity["grad_norm_rel"] > 1e-2 and not r2.finish  # early stopping is not


def test_unlearn_reports_say_when_the_model_is_not_stationary():
    g = random_graph(30, 40, 200, seed=5)
    model = build_model("lightgcn", g.num_users, g.num_items, dim=6, layers=1, seed=0)
    train(model, g, epochs=3, batch_size=64, lr=0.05, patience=None, progress=False, negatives=2)
    rep = get_unlearner("ifru").unlearn(model, g, g.train_edges[:, :3]).report
    assert rep.grad_norm_rel == model.recipe["grad_norm_rel"] > 1e-3
    assert any(n.startswith("model is not stationary") for n in rep.notes)
    stationary_finish(model, g, Objective(weight_decay=model.recipe["weight_decay"], negatives=2))
    model.recipe["grad_norm_rel"] = stationarity(model, g, Objective(weight_decay=1e-4, negatives=2))["grad_norm_rel"]
    rep = get_unlearner("ifru").unlearn(model, g, g.train_edges[:, :3]).report
    assert not any(n.startswith("model is not stationary") for n in rep.notes)
    bare = build_model("mf", g.num_users, g.num_items, dim=4, seed=0)
    rep = get_unlearner("if").unlearn(bare, g, g.train_edges[:, :3]).report
    assert any(n.startswith("stationarity unknown") for n in rep.notes)


def test_retrain_uses_the_recipe_with_an_independent_seed():
    g = random_graph(30, 40, 200, seed=6)
    model = build_model("mf", g.num_users, g.num_items, dim=4, seed=0, init_std=0.3)
    train(model, g, epochs=4, batch_size=64, lr=0.05, weight_decay=0.1, patience=None, progress=False,
          negatives=2, until="stationary", seed=5)
    res = get_unlearner("retrain").unlearn(model, g, g.train_edges[:, :4])
    assert res.report.options["seed"] == 6  # the recipe's seed + 1, never the original's
    assert res.model.recipe["until"] == "stationary" and res.model.recipe["weight_decay"] == 0.1
    assert res.model.recipe["grad_norm_rel"] <= 1e-5 and res.model.init_std == 0.3
    same = get_unlearner("retrain", seed=5).unlearn(model, g, g.train_edges[:, :4])
    assert same.report.options["seed"] == 5


def test_stationary_finish_on_ngcf_lowers_the_gradient_and_stops_at_its_cap():
    """NGCF's LeakyReLU makes the objective piecewise smooth: L-BFGS lowers the gradient by
    orders of magnitude but need not reach a tight gtol; it stops at max_iter and says so."""
    g = random_graph(30, 40, 200, seed=4)
    model = build_model("ngcf", g.num_users, g.num_items, dim=6, layers=1, seed=0)
    obj = Objective(weight_decay=0.05, negatives=3)
    res = stationary_finish(model, g, obj, gtol=1e-12, max_iter=300)
    assert not res.converged and "max_iter=300" in res.note
    assert res.grad_norm_rel < 1e-2 * res.grad_norm_rel_start


# ---------------------------------------------------------------------------- validation
def test_carve_validation_takes_a_seeded_share_of_each_user():
    g = InteractionGraph(40, 60, random_graph(40, 60, 600, seed=7).train_edges)
    a, b, c = g.carve_validation(0.2, 0), g.carve_validation(0.2, 0), g.carve_validation(0.2, 1)
    assert torch.equal(a.valid_edges, b.valid_edges) and not torch.equal(a.valid_edges, c.valid_edges)
    deg = torch.bincount(g.train_edges[0], minlength=40)
    got = torch.bincount(a.valid_edges[0], minlength=40)
    expected = torch.floor(deg.double() * 0.2 + 0.5).long().clamp(max=(deg - 1).clamp(min=0))
    assert torch.equal(got, expected)
    assert int(torch.bincount(a.train_edges[0], minlength=40)[deg > 0].min()) >= 1
    both = torch.cat([a.train_edges, a.valid_edges], 1)
    assert sorted(map(tuple, both.t().tolist())) == sorted(map(tuple, g.train_edges.t().tolist()))
    with pytest.raises(ValueError, match="already has"):
        a.carve_validation(0.1)
    with pytest.raises(ValueError, match="fraction"):
        g.carve_validation(1.5)


def test_training_without_validation_says_early_stopping_was_impossible():
    g = InteractionGraph(30, 40, random_graph(30, 40, 200, seed=8).train_edges)
    model = build_model("mf", 30, 40, dim=4, seed=0)
    res = train(model, g, epochs=2, progress=False, negatives=1)
    assert res.epochs_run == 2 and "no validation edges" in res.notes[0]


# ---------------------------------------------------------------------------- Newton steps
def test_newton_steps_reach_the_new_minimiser_from_a_stationary_model():
    """LightGCN-1 at a stationary point (λ = 0.1): one influence step moves towards the
    minimiser of the new objective, three Newton steps land on it — modulo a rotation of the
    embedding space, which leaves the objective unchanged (unaligned, the two solvers end at
    rotated copies: scores equal, parameters 0.16 apart); the reported gradients fall."""
    g = random_graph(40, 50, 300, seed=9)
    model = build_model("lightgcn", g.num_users, g.num_items, dim=6, layers=1, seed=0, init_std=0.3).double()
    train(model, g, epochs=5, batch_size=64, lr=0.05, weight_decay=0.1, patience=None, progress=False,
          negatives=2, until="stationary", gtol=1e-7)
    edges = g.train_edges[:, torch.randperm(g.num_train, generator=torch.Generator().manual_seed(0))[:6]]
    ref = copy.deepcopy(model)
    new = g.remove_edges(edges)
    stationary_finish(ref, new, Objective(weight_decay=0.1, negatives=2), gtol=1e-7)
    one = get_unlearner("ifru", tol=1e-10).unlearn(model, g, edges)
    three = get_unlearner("ifru", tol=1e-10, steps=3).unlearn(model, g, edges)
    d1 = parameter_distance(one.model, ref, original=model, align=True)["relative"]
    d3 = parameter_distance(three.model, ref, original=model, align=True)["relative"]
    assert d1 < 0.5 and d3 < 1e-2 and d3 < d1, (d1, d3)
    with torch.no_grad():  # in score space no alignment is needed
        s0, s3, sref = (z[:40] @ z[40:].t() for z in (m.propagate(new.adj(dtype=torch.float64))
                                                         for m in (model, three.model, ref)))
    assert float((s3 - sref).norm()) < 1e-2 * float((s0 - sref).norm())
    grads = three.report.step_gradients
    assert three.report.newton_steps == 3 and grads == sorted(grads, reverse=True) and grads[-1] < 1e-3


def test_reports_carry_their_cost_in_full_gradient_equivalents():
    from graphforget.unlearning.base import full_gradient_seconds, objective_for

    g = random_graph(30, 40, 200, seed=10)
    model = build_model("lightgcn", g.num_users, g.num_items, dim=6, layers=2, seed=0)
    rep = get_unlearner("ifru", negatives=2).unlearn(model, g, g.train_edges[:, :3]).report
    fg = full_gradient_seconds(model, g, objective_for(model, g))
    assert fg > 0 and rep.full_gradient_seconds == fg  # measured once per process, cached
    assert rep.fge == pytest.approx(rep.seconds_total / fg) and "FGE" in rep.summary()
