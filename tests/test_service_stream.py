"""Coalesced request streams (issue 15): ``Forgetter.forget_many`` unlearns queued requests as
one step, with one ledger row and one set of tombstones per request, committed together.

Equality with one-by-one application: exact for a method that depends only on the final graph
(a seeded retrain: the requests' held-out pairs are purged before unlearning, and a forgotten
node's fresh row depends only on its id); for IFRU one coalesced step costs one solve but does
not equal the sequence of steps (the gap is measured and stated below)."""
from __future__ import annotations

import pytest
import torch
from conftest import random_graph
from test_service import assert_same, make_service, raw_pairs, snapshot

from graphforget.models import build_model
from graphforget.service import Forgetter, InteractionStore
from graphforget.train import TrainConfig, save_checkpoint, train
from graphforget.unlearning import get_unlearner


def _requests(g):
    e = g.train_edges
    u = int(e[0, 0])
    user = g.user_ids[u] if g.user_ids else str(u)
    others = e[:, e[0] != u]
    mine = set(e[1, e[0] == u].tolist())
    item = next(i for i in others[1].tolist() if i not in mine)  # requests share no pair
    rest = others[:, others[1] != item]
    return [{"user": user, "request_id": "r-user"},
            {"edges": raw_pairs(g, rest[:, :3]), "request_id": "r-edges"},
            {"item": g.item_ids[item] if g.item_ids else str(item), "request_id": "r-item"}]


def _one_by_one(f, requests):
    out = []
    for r in requests:
        if "user" in r:
            out.append(f.forget_user(r["user"], request_id=r["request_id"]))
        elif "item" in r:
            out.append(f.forget_item(r["item"], request_id=r["request_id"]))
        else:
            out.append(f.forget(r["edges"], request_id=r["request_id"]))
    return out


def test_coalesced_stream_equals_one_by_one_for_a_retrain(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    retrain = get_unlearner("retrain", seed=0)
    fa, g = make_service(tmp_path / "a", unlearner=retrain)
    fb, _ = make_service(tmp_path / "b", unlearner=get_unlearner("retrain", seed=0))
    requests = _requests(g)
    batch = fa.forget_many(requests)
    single = _one_by_one(fb, requests)
    assert [r.request_id for r in batch] == ["r-user", "r-edges", "r-item"]
    assert [r.num_edges for r in batch] == [r.num_edges for r in single]
    assert len({r.checkpoint for r in batch}) == 1 and len({r.checkpoint for r in single}) == 3
    assert torch.equal(fa.model.embedding, fb.model.embedding)  # the same final graph, same seed
    assert fa.graph.fingerprint() == fb.graph.fingerprint()
    for f in (fa, fb):
        assert f.store.counts()["deleted"] == sum(r.num_edges + r.num_heldout for r in batch)
        assert all(f.audit(r["request_id"])["forgotten"] for r in requests)
    rows = [e for e in fa.history() if e.kind in ("edges", "user", "item")]
    assert [e.request_id for e in rows] == ["r-user", "r-edges", "r-item"]
    assert "coalesced: 3 requests" in " ".join(rows[0].report["service_notes"])
    # a replay of the whole batch changes nothing
    before = snapshot(fa)
    again = fa.forget_many(requests)
    assert all(r.replayed for r in again)
    assert_same(before, snapshot(fa))
    fa.close()
    fb.close()


@pytest.mark.parametrize("bad", ["unknown user", "overlap", "reused id", "malformed"])
def test_a_bad_request_refuses_the_whole_batch(tmp_path, bad):
    f, g = make_service(tmp_path)
    requests = _requests(g)
    if bad == "unknown user":
        requests.append({"user": "nobody"})
    elif bad == "overlap":
        requests.append({"edges": requests[1]["edges"][:1], "request_id": "r-dup"})
    elif bad == "reused id":
        f.forget(requests[1]["edges"][:1], request_id="r-item")  # r-item now names another request
    else:
        requests.append({"user": "x", "item": "y"})
    before = snapshot(f)
    with pytest.raises(ValueError, match={"unknown user": "unknown user ids", "overlap": "share",
                                          "reused id": "already used", "malformed": "exactly one"}[bad]):
        f.forget_many(requests)
    assert_same(before, snapshot(f))
    f.close()


def _stationary_service(folder, graph):
    model = build_model("mf", graph.num_users, graph.num_items, dim=8, seed=0)
    cfg = TrainConfig(epochs=30, lr=0.05, batch_size=256, weight_decay=0.05, patience=None,
                      until="stationary", gtol=1e-6, progress=False, negatives=2)
    train(model, graph, cfg)
    folder.mkdir()
    with InteractionStore(folder / "s.sqlite") as store:
        store.import_graph(graph)
    save_checkpoint(folder / "m.pt", model, graph)
    return Forgetter(folder / "s.sqlite", folder / "m.pt", method="ifru", fallback=None, audit=None)


def test_coalesced_ifru_takes_one_solve_for_the_batch(tmp_path):
    """On a stationary MF model, one IFRU step for three requests costs one solve (fewer
    Hessian-vector products than the three one-by-one solves together) and forgets every pair
    of every request. It does not land on the one-by-one result: on this 30 × 40 graph the two
    differ by 0.2–0.5 of the one-by-one score change (measured; at damping 0.16, where the new
    objective's Hessian is indefinite), so the docs state the gap instead of a tolerance."""
    g = random_graph(30, 40, 360, seed=4)
    fa = _stationary_service(tmp_path / "a", g)
    fb = _stationary_service(tmp_path / "b", g)
    requests = _requests(g)
    batch = fa.forget_many(requests)
    single = _one_by_one(fb, requests)
    assert len({r.report["hvps"] for r in batch}) == 1  # one solve, recorded on every row
    assert batch[0].report["hvps"] < sum(r.report["hvps"] for r in single)
    assert all(fa.audit(r["request_id"])["forgotten"] for r in requests)
    assert fa.graph.fingerprint() == fb.graph.fingerprint()
    fa.close()
    fb.close()


def test_cli_forget_batch(tmp_path, capsys):
    """``graphforget forget --batch FILE.jsonl``: one step, one ledger row per line; a bad line
    refuses the whole file in one line (nothing changed)."""
    import json

    import graphforget.cli as cli

    f, g = make_service(tmp_path)
    f.close()
    requests = _requests(g)
    batch = tmp_path / "queue.jsonl"
    batch.write_text("\n".join(json.dumps(r) for r in requests) + "\n\n")
    base = ["forget", "--db", str(tmp_path / "store.sqlite"), "--checkpoint", str(tmp_path / "model.pt"),
            "--method", "retrain", "--fallback", "none", "--no-audit", "--quiet"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(requests[0]) + "\n" + '{"user": "nobody"}\n')
    before = (tmp_path / "store.sqlite").read_bytes()
    assert cli.main(base + ["--batch", str(bad)]) == 2
    assert "unknown user ids" in capsys.readouterr().err
    assert (tmp_path / "store.sqlite").read_bytes() == before
    assert cli.main(base + ["--batch", str(batch), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["request_id"] for r in rows] == ["r-user", "r-edges", "r-item"]
    assert len({r["checkpoint"] for r in rows}) == 1
    assert cli.main(["verify", "--db", str(tmp_path / "store.sqlite"), "--checkpoint",
                     str(tmp_path / "model.pt")]) == 0
