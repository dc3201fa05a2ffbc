"""Data-parallel training and the sharded objective on torch.distributed (gloo, 2 processes).

One module fixture spawns two gloo ranks on 127.0.0.1 once; each trains tiny models
data-parallel on the demo data and evaluates the sharded objective (value, gradient, HVP, a CG
solve, a wrapped unlearning operator), and writes what it got. The parent computes the same
things in one process with the plain code paths (``Trainer``, ``FullObjective``, unlearning's
``LocalObjective`` / ``LinearModelHessian``) and compares.

Every comparison can fail: with ``GRAPHFORGET_TEST_BREAK_ALLREDUCE=1`` in the environment the
ranks replace ``torch.distributed.all_reduce`` and ``broadcast`` by no-ops (each rank then keeps its own shard's
sums) and every test here except the world-size-1 ones fails; ``test_shards_alone_differ``
checks the same thing on every run, on the per-rank values.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import graphforget
from graphforget.models import build_model
from graphforget.train import TrainConfig, Trainer, sample_negatives
from graphforget.train import distributed as gfd
from graphforget.train.objective import FullObjective, Objective, SampleSet
from graphforget.unlearning.influence import LocalObjective, Term
from graphforget.unlearning.linalg import conjugate_gradient

WORLD = 2
TRAIN_MODELS = {"mf": dict(layers=0), "lightgcn": dict(layers=2), "ngcf": dict(layers=1)}
OBJ_MODELS = {"mf": dict(layers=0), "lightgcn": dict(layers=2)}
DAMPING = 1.0


def _config() -> TrainConfig:
    # an odd batch size: uneven slices and a short last batch; validation after epoch 2
    return TrainConfig(epochs=2, batch_size=3001, lr=1e-2, weight_decay=1e-3, patience=None,
                       eval_every=2, progress=False, seed=3, negatives=2)


def _model(name: str, graph, seed: int = 0):
    return build_model(name, graph.num_users, graph.num_items, dim=8, seed=seed, **TRAIN_MODELS[name])


def _samples(graph) -> SampleSet:
    return Objective(loss="bpr", weight_decay=1e-3, negatives=2, negative_seed=0).samples(graph)


def _vector(graph, seed: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(graph.num_users + graph.num_items, 8, generator=gen, dtype=torch.float64)


def _rows(graph) -> torch.Tensor:
    """Free rows of the unlearning-style local objective: 40 users and 40 items."""
    return torch.cat([torch.arange(0, 80, 2), graph.num_users + torch.arange(0, 120, 3)])


def _step_gradient(trainer: Trainer, name: str, graph) -> dict:
    """The gradient of one uneven global batch (3001 rows, ranks take 1500 and 1501), summed
    over the ranks by :func:`all_reduce_gradients` as the optimiser pre-hook does."""
    model = _model(name, graph, seed=2)
    gen = torch.Generator().manual_seed(5)
    rows = torch.randperm(graph.num_train, generator=gen)[:3001]
    neg = sample_negatives(graph.train_edges[0][rows], graph.train_edges, graph.num_items, gen)
    loss = trainer.batch_loss(model, graph, graph.adj("cpu", torch.float32), rows, neg, "bpr")
    loss.backward()
    gfd.all_reduce_gradients(model.parameters())
    return {k: p.grad.clone() for k, p in model.named_parameters()}


UNLEARNERS = ("if", "ifru", "alteraser")


def _unlearned(graph, name: str, method: str) -> dict:
    """IF / IFRU / AltEraser on 40 deleted edges of a fixed model: under a process group the
    objective's samples are sharded over the ranks and every sum all-reduced (in float32 the
    changed summation order alone moves LightGCN's step by ~2e-5 relative)."""
    from graphforget.unlearning import get_unlearner

    model = _model(name, graph, seed=1).double()  # float64: the sums' order is below 1e-6
    model.recipe = {"loss": "bpr", "weight_decay": 1e-3, "negatives": 2, "negative_seed": 0}
    edges = graph.train_edges[:, ::400][:, :40]
    res = get_unlearner(method, seed=0).unlearn(model, graph, edges)
    return {"embedding": res.model.embedding.detach().clone(), "iterations": res.report.solver_iterations,
            "hvps": res.report.hvps, "notes": list(res.report.notes)}


def _sisa(graph) -> dict:
    """A 3-shard SISA model fitted and one request unlearned (touching 2 shards): under a
    process group the shards are trained on their ranks and broadcast."""
    from graphforget.train.sharding import fit_sharded
    from graphforget.unlearning import get_unlearner

    cfg = TrainConfig(epochs=2, batch_size=1024, lr=1e-2, patience=None, progress=False)
    model = fit_sharded(graph, "mf", shards=3, strategy="random", config=cfg, seed=0, dim=8)
    fitted = {k: v.clone() for k, v in model.state_dict().items()}
    res = get_unlearner("sisa").unlearn(model, graph, graph.train_edges[:, [0, 1]])
    return {"fitted": fitted, "unlearned": {k: v.clone() for k, v in res.model.state_dict().items()},
            "retrained": res.report.to_dict().get("retrained_shards") or res.report.notes}


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    if os.environ.get("GRAPHFORGET_TEST_BREAK_ALLREDUCE"):
        dist.all_reduce = lambda tensor, *a, **k: None  # the check that the tests can fail
        dist.broadcast = lambda tensor, *a, **k: None
    try:
        graph = graphforget.load_dataset("demo")
        res: dict = {"train": {}, "obj": {}}
        for name in TRAIN_MODELS:
            r = gfd.DistributedTrainer(_config()).fit(_model(name, graph), graph)
            res["train"][name] = {"state": {k: v.detach().clone() for k, v in r.model.state_dict().items()},
                                  "loss": [h["loss"] for h in r.history],
                                  "valid": [h.get("valid_recall@20") for h in r.history]}
        res["step"] = {name: _step_gradient(gfd.DistributedTrainer(_config()), name, graph)
                       for name in TRAIN_MODELS}
        samples, v = _samples(graph), _vector(graph)
        for name in OBJ_MODELS:
            model = _model(name, graph, seed=1)
            ego = model.embedding.detach().double()
            f = gfd.ShardedObjective(model, graph, samples, 1e-3)
            value, grad = f(ego)
            op = f.hessian_operator(ego, damping=DAMPING)
            hv = op(v)
            x, info = conjugate_gradient(op, grad, tol=1e-10, max_iter=25)
            local = f.local(ego)[1].clone()  # this rank's shard alone (must differ)
            # an unlearning operator built on this rank's shard, wrapped into the global one
            shard = gfd.shard_samples(samples)
            lo = LocalObjective(model, ego, _rows(graph), [Term(shard, "new", 1.0)],
                                {"new": graph.adjacency}, 1e-3, fallback_fraction=0.5)
            theta = ego[_rows(graph)]
            wop = gfd.DistributedOperator(lo.hessian_operator(theta), damping=DAMPING)
            res["obj"][name] = {"value": value, "grad": grad.clone(), "hv": hv.clone(), "cg": x,
                                "cg_iterations": info["iterations"], "local_grad": local,
                                "u_grad": wop.grad.clone(), "u_hv": wop(v[_rows(graph)]).clone()}
        res["unlearn"] = {(name, method): _unlearned(graph, name, method)
                          for name in OBJ_MODELS for method in UNLEARNERS}
        res["sisa"] = _sisa(graph)
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def graph():
    return graphforget.load_dataset("demo")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", list(TRAIN_MODELS))
def test_data_parallel_training_equals_one_process(ranks, graph, name):
    one = Trainer(_config()).fit(_model(name, graph), graph)
    got = ranks[0]["train"][name]
    for key, value in one.model.state_dict().items():
        assert _rel(got["state"][key], value) < 1e-5, key
    # the epoch loss is summed over the ranks: the single-process figure
    assert got["loss"] == pytest.approx([h["loss"] for h in one.history], rel=1e-5)
    assert got["valid"][-1] == pytest.approx(one.history[-1]["valid_recall@20"], abs=2e-3)
    # and the model moved: equality is not that of two untrained copies
    assert _rel(one.model.embedding, _model(name, graph).embedding) > 0.1


@pytest.mark.parametrize("name", list(TRAIN_MODELS))
def test_batch_gradient_is_the_single_process_one(ranks, graph, name):
    """Sum over the ranks' shares = the single-process gradient, scale included (Adam is
    almost blind to a wrong scale, so this is checked on the gradient itself)."""
    one = _step_gradient(Trainer(_config()), name, graph)
    for r in ranks:
        for key, g in one.items():
            assert _rel(r["step"][name][key], g) < 1e-5, key  # float32 sums in another order


@pytest.mark.parametrize("name", list(TRAIN_MODELS))
def test_replicas_stay_bitwise_equal(ranks, name):
    a, b = (r["train"][name]["state"] for r in ranks)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- objective
@pytest.mark.parametrize("name", list(OBJ_MODELS))
def test_sharded_value_and_gradient(ranks, graph, name):
    model = _model(name, graph, seed=1)
    ego = model.embedding.detach().double()
    value, grad = FullObjective(model, graph, _samples(graph), 1e-3)(ego)
    for r in ranks:
        assert r["obj"][name]["value"] == pytest.approx(value, rel=1e-6)
        assert _rel(r["obj"][name]["grad"], grad) < 1e-6


def _reference_operator(graph, name):
    """The single-process HVP on the whole graph from unlearning's own code path."""
    model = _model(name, graph, seed=1)
    ego = model.embedding.detach().double()
    n = graph.num_users + graph.num_items
    f = LocalObjective(model, ego, torch.arange(n), [Term(_samples(graph), "new", 1.0)],
                       {"new": graph.adjacency}, 1e-3, fallback_fraction=0.0)
    return f.hessian_operator(ego, DAMPING), ego


@pytest.mark.parametrize("name", list(OBJ_MODELS))
def test_sharded_hvp_and_cg(ranks, graph, name):
    op, ego = _reference_operator(graph, name)
    hv = op(_vector(graph))
    x, info = conjugate_gradient(op, op.grad, tol=1e-10, max_iter=25)
    for r in ranks:
        got = r["obj"][name]
        assert _rel(got["hv"], hv) < 1e-6
        assert got["cg_iterations"] == info["iterations"]
        assert _rel(got["cg"], x) < 1e-6
    # CG ran identically on every rank
    assert torch.equal(ranks[0]["obj"][name]["cg"], ranks[1]["obj"][name]["cg"])


@pytest.mark.parametrize("name", list(OBJ_MODELS))
def test_wrapped_unlearning_operator(ranks, graph, name):
    model = _model(name, graph, seed=1)
    ego = model.embedding.detach().double()
    rows = _rows(graph)
    f = LocalObjective(model, ego, rows, [Term(_samples(graph), "new", 1.0)],
                       {"new": graph.adjacency}, 1e-3, fallback_fraction=0.5)
    op = f.hessian_operator(ego[rows], DAMPING)
    hv = op(_vector(graph)[rows])
    for r in ranks:
        assert _rel(r["obj"][name]["u_grad"], op.grad) < 1e-6
        assert _rel(r["obj"][name]["u_hv"], hv) < 1e-6


@pytest.mark.parametrize("name", list(OBJ_MODELS))
@pytest.mark.parametrize("method", UNLEARNERS)
def test_distributed_unlearning_equals_one_process(ranks, graph, name, method):
    """IF / IFRU / AltEraser under 2 gloo ranks: the samples of every gradient and Hessian term are split
    between the ranks (the notes say so) and the result is the one-process result (1e-6
    relative, same solver iterations), identical on both ranks."""
    one = _unlearned(graph, name, method)
    start = _model(name, graph, seed=1).embedding.detach().double()
    for r in ranks:
        got = r["unlearn"][(name, method)]
        assert _rel(got["embedding"] - start, one["embedding"] - start) < 1e-6
        assert got["iterations"] == one["iterations"] and got["hvps"] == one["hvps"]
        assert any("share of 2" in n for n in got["notes"]) and not any("share" in n for n in one["notes"])
    assert _rel(one["embedding"], start) > 1e-4  # the step moved the model
    assert torch.equal(ranks[0]["unlearn"][(name, method)]["embedding"],
                       ranks[1]["unlearn"][(name, method)]["embedding"])


def test_sisa_shards_on_ranks_equal_one_process(ranks, graph):
    """SISA under 2 ranks: each shard trained on one rank and broadcast; the fitted and the
    unlearned models are bitwise the one-process ones on every rank."""
    one = _sisa(graph)
    for r in ranks:
        for part in ("fitted", "unlearned"):
            assert one[part].keys() == r["sisa"][part].keys()
            for k, v in one[part].items():
                assert torch.equal(r["sisa"][part][k], v), (part, k)
    changed = [k for k in one["fitted"] if not torch.equal(one["fitted"][k], one["unlearned"][k])]
    assert changed and len(changed) < len(one["fitted"])  # some shards retrained, not all


def test_shards_alone_differ(ranks, graph):
    """Non-vacuity: one rank's shard is far from the whole (so a missing sum is caught)."""
    model = _model("lightgcn", graph, seed=1)
    _, grad = FullObjective(model, graph, _samples(graph), 1e-3)(model.embedding.detach().double())
    for r in ranks:
        assert _rel(r["obj"]["lightgcn"]["local_grad"], grad) > 0.1
    total = ranks[0]["obj"]["lightgcn"]["local_grad"] + ranks[1]["obj"]["lightgcn"]["local_grad"]
    assert _rel(total, grad) < 1e-6


# ---------------------------------------------------------------------------- world size 1
def test_shard_range_covers_rows_once():
    for n in (0, 1, 5, 3001):
        for w in (1, 2, 3, 8):
            parts = [gfd.shard_range(n, r, w) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - l for l, h in parts) - min(h - l for l, h in parts) <= 1
    with pytest.raises(ValueError):
        gfd.shard_range(5, 2, 2)


def test_world_size_one_is_the_plain_path():
    from conftest import random_graph

    g = random_graph()
    cfg = TrainConfig(epochs=2, batch_size=64, patience=None, progress=False, negatives=2)
    a = Trainer(cfg).fit(build_model("lightgcn", g.num_users, g.num_items, dim=8, layers=2, seed=0), g)
    b = gfd.DistributedTrainer(cfg).fit(build_model("lightgcn", g.num_users, g.num_items, dim=8,
                                                    layers=2, seed=0), g)
    assert not gfd.is_distributed() and gfd.world_size() == 1 and gfd.rank() == 0
    assert torch.equal(a.model.embedding, b.model.embedding)
    t = torch.randn(3)
    assert gfd.all_reduce_sum(t) is t
    samples = _samples(g)
    full = FullObjective(a.model, g, samples, 1e-3)(a.model.embedding.detach().double())
    sharded = gfd.ShardedObjective(a.model, g, samples, 1e-3)(a.model.embedding.detach().double())
    assert sharded[0] == full[0] and torch.equal(sharded[1], full[1])


def test_readme_torchrun_commands_on_the_demo_data(tmp_path):
    """The README's two ``torchrun`` commands (smaller settings): data-parallel training, then
    distributed IFRU; rank 0 alone prints and writes, and the unlearned checkpoint equals a
    one-process ``unlearn`` of the same checkpoint to float tolerance."""
    import subprocess
    import sys

    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "graphforget"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ckpt, out, one = tmp_path / "ddp.pt", tmp_path / "ddp-forgot.pt", tmp_path / "one-forgot.pt"
    train = subprocess.run(run + ["train", "--data", "demo", "--model", "lightgcn", "--layers", "2",
                                  "--dim", "8", "--epochs", "1", "--quiet", "--out", str(ckpt)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert train.returncode == 0, train.stderr
    assert train.stdout.count("checkpoint ") == 1  # rank 0 only
    forget = ["unlearn", str(ckpt), "--data", "demo", "--user", "7", "--method", "ifru", "--quiet"]
    ddp = subprocess.run(run + forget + ["--out", str(out)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("wrote ") == 1
    single = subprocess.run([sys.executable, "-m", "graphforget"] + forget + ["--out", str(one)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    start, a, b = (torch.load(p, weights_only=True)["state_dict"]["embedding"] for p in (ckpt, out, one))
    assert _rel(a - start, b - start) < 1e-4 and _rel(b, start) > 1e-5
