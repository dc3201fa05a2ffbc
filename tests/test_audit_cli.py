"""``graphforget audit`` end to end on the shipped demo data: train, unlearn through the CLI,
audit through the CLI; its printed report and JSON must equal :func:`graphforget.audit.audit`
called directly on the same checkpoints. Bad input exits with status 2 naming the culprit."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from graphforget import cli
from graphforget.audit import audit
from graphforget.data.graph import edge_keys
from graphforget.data.registry import load_dataset
from graphforget.models import build_model
from graphforget.train import TrainConfig, load_checkpoint, train

CFG = TrainConfig(epochs=1, batch_size=2048, lr=0.01, patience=None, progress=False, eval_every=100)


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo", seed=0, verbose=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo):
    """Checkpoints of one deletion: original, unlearned (CLI, IF), two retrains, a reference."""
    d = tmp_path_factory.mktemp("audit_cli")
    train(build_model("mf", demo.num_users, demo.num_items, dim=8, seed=0), demo, CFG,
          checkpoint=str(d / "orig.pt"))
    pick = torch.randperm(demo.num_train, generator=torch.Generator().manual_seed(3))[:25]
    edges = demo.train_edges[:, pick]
    (d / "forget.txt").write_text("".join(f"{u} {i}\n" for u, i in edges.t().tolist()))
    assert cli.main(["unlearn", str(d / "orig.pt"), "--data", "demo", "--edges", str(d / "forget.txt"),
                     "--method", "if", "--out", str(d / "unlearned.pt")]) == 0
    after = demo.remove_edges(edges)
    for seed in (1, 2, 3, 4):
        train(build_model("mf", demo.num_users, demo.num_items, dim=8, seed=seed), after, CFG,
              checkpoint=str(d / f"retrain{seed}.pt"))
    original, _ = load_checkpoint(d / "orig.pt", demo)
    train(copy.deepcopy(original), after, CFG, checkpoint=str(d / "reference.pt"))
    return d, edges, after


def _same(got, want, path="report"):
    """JSON value ``got`` equals ``want`` exactly; ``null`` stands for a non-finite float."""
    if isinstance(want, float) and not math.isfinite(want):
        assert got is None, path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), path
        for j, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{j}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def test_audit_cli_matches_library(run, demo, capsys):
    d, edges, after = run
    capsys.readouterr()
    # `graphforget unlearn` wrote the edges it forgot beside its checkpoint
    written = torch.tensor([list(map(int, l.split())) for l in (d / "unlearned.edges.txt").read_text().splitlines()]).t()
    assert sorted(edge_keys(written, demo.num_items).tolist()) == sorted(edge_keys(edges, demo.num_items).tolist())
    retrains = [str(d / f"retrain{s}.pt") for s in (1, 2, 3, 4)]
    code = cli.main(["audit", str(d / "orig.pt"), str(d / "unlearned.pt"), "--data", "demo",
                     "--edges", str(d / "unlearned.edges.txt"), "--retrains", *retrains,
                     "--reference", str(d / "reference.pt"),
                     "--ks", "10", "20", "--seed", "0", "--json", str(d / "audit.json")])
    out = capsys.readouterr().out
    assert code == 0

    load = lambda name, g: load_checkpoint(d / name, g)[0]  # noqa: E731
    want = audit(load("orig.pt", demo), load("unlearned.pt", after), demo, after, written,
                 retrains=[load(f"retrain{s}.pt", after) for s in (1, 2, 3, 4)],
                 reference=load("reference.pt", after), ks=[10, 20], seed=0)
    # every section was filled, so the comparison covers them all
    assert want.parameters and all(k in want.models["unlearned"] for k in
                                   ("utility", "forgetting", "membership", "umia", "agreement"))
    got = json.loads((d / "audit.json").read_text())
    for key in ("umia_auc", "mia_auc", "forgotten", "original_umia_auc", "retrain_umia_auc",
                "control_umia_auc", "original_mia_auc", "original_forgotten"):
        assert key in got
    assert got["umia_auc"] == want.models["unlearned"]["umia"]["auc"]
    expected = want.to_dict()
    got = {k: got[k] for k in expected}
    got.pop("seconds"), expected.pop("seconds")
    _same(got, expected)
    # the printed table is the library's summary (its first line carries the wall time)
    body = "\n".join(want.summary().splitlines()[1:])
    assert body in out
    assert f"Audit: {len(edges.t())} deleted edges; {want.affected_users} affected users" in out


def test_absent_edge_is_refused(run, demo, capsys, tmp_path):
    d, edges, _ = run
    taken = set(edge_keys(demo.train_edges, demo.num_items).tolist())
    u = int(edges[0, 0])
    i = next(i for i in range(demo.num_items) if u * demo.num_items + i not in taken)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{edges[0, 1].item()} {edges[1, 1].item()}\n{u} {i}\n")
    capsys.readouterr()
    code = cli.main(["audit", str(d / "orig.pt"), str(d / "unlearned.pt"), "--data", "demo",
                     "--edges", str(bad), "--json", str(tmp_path / "a.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and f"[{u}, {i}]" in err and "not training edges" in err
    assert not (tmp_path / "a.json").exists()
    with pytest.raises(ValueError, match=rf"\[{u}, {i}\]"):
        demo.remove_edges(torch.tensor([[u], [i]]))  # the library names it the same way


@pytest.mark.parametrize("swap", ["original", "retrained"])
def test_checkpoint_of_the_wrong_graph_is_refused(run, capsys, tmp_path, swap):
    d, _, _ = run
    orig, retrained, role = str(d / "orig.pt"), str(d / "retrain1.pt"), "--retrains"
    if swap == "original":
        orig, role = str(d / "unlearned.pt"), "ORIGINAL_CKPT"  # trained after deletion
    else:
        retrained = str(d / "orig.pt")  # trained before deletion
    capsys.readouterr()
    code = cli.main(["audit", orig, str(d / "unlearned.pt"), "--data", "demo", "--edges",
                     str(d / "forget.txt"), "--retrains", retrained, "--json", str(tmp_path / "a.json")])
    err = capsys.readouterr().err
    assert code == 2 and role in err and "another training graph" in err
    assert ("before" if swap == "original" else "after") in err
    assert not (tmp_path / "a.json").exists()


def test_audit_trains_its_retrains_from_the_recipe_with_progress(run, capsys, tmp_path):
    d, _, _ = run
    capsys.readouterr()
    code = cli.main(["audit", str(d / "orig.pt"), str(d / "unlearned.pt"), "--data", "demo",
                     "--edges", str(d / "forget.txt"), "--shadows", "2", "--json", str(tmp_path / "a.json")])
    out, err = capsys.readouterr()
    assert code == 0 and "retrain 4/4 (seed 1003)" in err and "Verdicts" in out
    got = json.loads((tmp_path / "a.json").read_text())
    assert got["retrains"] == 4 and got["control_forgotten"] in (True, False)


def test_missing_checkpoint_is_refused(run, capsys, tmp_path):
    d, _, _ = run
    capsys.readouterr()
    code = cli.main(["audit", str(d / "orig.pt"), str(tmp_path / "nope.pt"), "--data", "demo",
                     "--edges", str(d / "forget.txt")])
    assert code == 2 and "UNLEARNED_CKPT" in capsys.readouterr().err

