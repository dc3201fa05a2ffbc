"""The deletion service: store round trips, ledger, atomic forget requests, bad input,
numerical failures, idempotency, isolated nodes, reconcile, retrain and the CLI."""
from __future__ import annotations

import copy
import json
import sqlite3

import pytest
import torch
from conftest import random_graph, samples_of

from graphforget.data import Interactions
from graphforget.data.graph import edge_keys
from graphforget.models import build_model
from graphforget.service import (Forgetter, InteractionStore, UnlearningFailed, audit_figures,
                                 )
from graphforget.data import read_pairs
from graphforget.train import evaluate, file_sha256, load_checkpoint, save_checkpoint
from graphforget.unlearning import UnlearnResult, Unlearner
from graphforget.train.objective import total_loss


# ---------------------------------------------------------------------- test-only unlearners
class GradientSteps(Unlearner):
    """A few full-batch gradient steps on ``L(θ; D∖ΔD, A_new)`` (fixed seeded negatives):
    cheap, deterministic, changes every parameter."""

    name = "test-gd"

    def __init__(self, steps: int = 3, lr: float = 0.05, **kw) -> None:
        super().__init__(steps=steps, lr=lr, **kw)
        self.steps, self.lr = steps, lr

    def _unlearn(self, model, graph, edges, report, timer):
        new = graph.remove_edges(edges)
        samples = samples_of(new, "bpr", self.seed)
        opt = torch.optim.SGD(model.parameters(), lr=self.lr)
        for _ in range(self.steps):
            opt.zero_grad()
            (total_loss(model, new.adj(), model.embedding, samples, 1e-4) / len(samples)).backward()
            opt.step()
        return new


class RaisesNaN(GradientSteps):
    """Writes NaN into the parameters; the Unlearner base refuses them (FloatingPointError)."""

    name = "test-nan-raise"

    def _unlearn(self, model, graph, edges, report, timer):
        new = super()._unlearn(model, graph, edges, report, timer)
        with torch.no_grad():
            model.embedding[0, 0] = float("nan")
        return new


class ReturnsNaN(Unlearner):
    """Bypasses the base class check and returns a model with NaN parameters."""

    name = "test-nan-return"

    def unlearn(self, model, graph, request):
        new_model = copy.deepcopy(model)
        with torch.no_grad():
            new_model.embedding.fill_(float("nan"))
        res = GradientSteps(steps=0).unlearn(model, graph, request)
        return UnlearnResult(new_model, res.graph, res.report, res.deleted_edges)


class NotConverged(GradientSteps):
    name = "test-not-converged"

    def _unlearn(self, model, graph, edges, report, timer):
        new = super()._unlearn(model, graph, edges, report, timer)
        report.converged, report.solver_iterations, report.solver_residual = False, 50, 3.0
        return new


# ---------------------------------------------------------------------- fixtures / helpers
def make_service(tmp_path, graph=None, model="mf", unlearner="gd", fallback=None, **kw):
    """Store + base checkpoint (untrained, seeded) + Forgetter; ``unlearner="gd"``: GradientSteps."""
    graph = graph if graph is not None else random_graph(20, 25, 90, seed=1)
    with InteractionStore(tmp_path / "store.sqlite") as store:
        store.import_graph(graph)
    m = build_model(model, graph.num_users, graph.num_items, dim=8, layers=2, seed=0)
    save_checkpoint(tmp_path / "model.pt", m, graph, {"epochs": 3, "lr": 0.05, "patience": None,
                                                       "progress": False})
    f = Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt",
                  unlearner=GradientSteps() if unlearner == "gd" else unlearner, fallback=fallback, audit=kw.pop("audit", None), **kw)
    return f, graph


def raw_pairs(graph, edges):
    return [(graph.user_ids[u] if graph.user_ids else str(u), graph.item_ids[i] if graph.item_ids else str(i))
            for u, i in edges.t().tolist()]


def snapshot(f: Forgetter) -> dict:
    """Everything a refused request must leave unchanged."""
    c = f.store.conn
    return {"interactions": c.execute("SELECT * FROM interactions ORDER BY user, item, split").fetchall(),
            "deleted": c.execute("SELECT * FROM deleted ORDER BY token").fetchall(),
            "meta": c.execute("SELECT * FROM meta ORDER BY key").fetchall(),
            "ledger": c.execute("SELECT * FROM ledger ORDER BY seq").fetchall(),
            "files": {p.name: p.read_bytes() for p in f.dir.iterdir() if p.suffix == ".pt"},
            "params": {k: v.clone() for k, v in f.model.state_dict().items()},
            "graph": f.graph.fingerprint()}


def assert_same(a: dict, b: dict) -> None:
    for key in ("interactions", "deleted", "meta", "ledger", "files", "graph"):
        assert a[key] == b[key], key
    assert a["params"].keys() == b["params"].keys()
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k


def train_keys(graph):
    return set(edge_keys(graph.train_edges, graph.num_items).tolist())


# ---------------------------------------------------------------------- store
@pytest.mark.parametrize("labels", [False, True])
def test_store_round_trip(tmp_path, labels):
    g = random_graph(15, 12, 60, seed=3, labels=labels)
    g.train_timestamps = torch.arange(g.num_train) * 10
    with InteractionStore(tmp_path / "s.sqlite") as s:
        stats = s.import_graph(g)
        assert stats["rows_added"] == g.num_train + g.valid_edges.shape[1] + g.test_edges.shape[1]
        h = s.to_graph()
    assert h.fingerprint() == g.fingerprint()
    assert (h.num_users, h.num_items) == (g.num_users, g.num_items)
    for split in ("train", "valid", "test"):
        ea, eb = getattr(g, f"{split}_edges"), getattr(h, f"{split}_edges")
        order = torch.argsort(edge_keys(ea, g.num_items))
        assert torch.equal(ea[:, order], eb)  # to_graph sorts by (user, item)
        if labels:
            assert torch.equal(getattr(g, f"{split}_labels")[order], getattr(h, f"{split}_labels"))
    order = torch.argsort(edge_keys(g.train_edges, g.num_items))
    assert torch.equal(h.train_timestamps, g.train_timestamps[order])
    assert h.user_ids == [str(k) for k in range(15)]


def test_store_import_interactions_and_raw_ids(tmp_path):
    t = Interactions(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 2]),
                     ratings=torch.tensor([5.0, 3.0, 4.0, 1.0]), timestamps=torch.tensor([4, 3, 2, 1]),
                     user_ids=["alice", "bob", "carol"], item_ids=["x", "y", "z"])
    te = Interactions(torch.tensor([1]), torch.tensor([2]), user_ids=t.user_ids, item_ids=t.item_ids)
    with InteractionStore(tmp_path / "s.sqlite") as s:
        s.import_interactions(t, test=te, name="tiny")
        assert s.lookup_users(["carol", "alice"]).tolist() == [2, 0]
        assert s.lookup_items(["z"]).tolist() == [2]
        with pytest.raises(ValueError, match=r"unknown user ids \(2\).*'dave'.*'eve'"):
            s.lookup_users(["alice", "dave", "eve"])
        with pytest.raises(ValueError, match="unknown item ids.*'w'"):
            s.lookup_items(["w"])
        rows = s.conn.execute("SELECT user, item, rating, timestamp FROM interactions "
                              "WHERE split='train' ORDER BY user, item").fetchall()
        assert rows == [(0, 1, 5.0, 4), (0, 2, 3.0, 3), (1, 0, 4.0, 2), (2, 2, 1.0, 1)]
        g = s.to_graph()
    assert g.name == "tiny" and g.user_ids == ["alice", "bob", "carol"]
    assert g.test_edges.tolist() == [[1], [2]]


def test_store_reimport_never_restores_forgotten_rows(tmp_path):
    f, g = make_service(tmp_path)
    e = g.train_edges[:, :4]
    f.forget(raw_pairs(g, e), request_id="r1")
    stats = f.store.import_graph(g)  # reload the original data
    assert stats["rows_forgotten"] == 4 and stats["rows_added"] == 0
    assert f.store.to_graph().fingerprint() == g.remove_edges(e).fingerprint()
    # new raw ids extend the id spaces after the existing ones (a store not yet bound) ...
    more = Interactions(torch.tensor([0, 1]), torch.tensor([0, 0]), user_ids=["0", "new-user"],
                        item_ids=["new-item"])
    with InteractionStore(tmp_path / "unbound.sqlite") as unbound:
        unbound.import_graph(g)
        stats = unbound.import_interactions(more)
        assert stats == {"users_added": 1, "items_added": 1, "rows_added": 2, "rows_existing": 0,
                         "rows_forgotten": 0}
        h = unbound.to_graph()
        assert (h.num_users, h.num_items) == (g.num_users + 1, g.num_items + 1)
        assert h.user_ids[-1] == "new-user" and h.item_ids[-1] == "new-item"
    # ... and a bound store refuses them: its checkpoint would no longer match
    with pytest.raises(ValueError, match="is bound to checkpoint"):
        f.store.import_interactions(more)


def test_ledger_is_append_only(tmp_path):
    f, g = make_service(tmp_path)
    f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="r1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        f.store.conn.execute("UPDATE ledger SET status='failed'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        f.store.conn.execute("DELETE FROM ledger")
    rows = json.loads(f.ledger.to_json())
    assert [r["kind"] for r in rows] == ["import", "bind", "edges"]
    assert rows[-1]["request"] == {"pairs": 1}  # no raw ids in the ledger


# ---------------------------------------------------------------------- applying requests
def test_forget_applies_to_store_model_and_ledger(tmp_path):
    f, g = make_service(tmp_path)
    e = g.train_edges[:, [0, 5, 9]]
    old, served = snapshot(f), f.graph
    res = f.forget(raw_pairs(g, e), request_id="ticket-1")
    expected = g.remove_edges(e)
    assert f.store.to_graph().fingerprint() == expected.fingerprint()
    assert res.graph_fingerprint == f.store.graph_digest(expected)  # keyed: no guess oracle
    assert res.graph_fingerprint != expected.fingerprint()
    assert res.num_edges == 3 and res.status == "applied" and not res.replayed
    # the checkpoint on disk is the in-memory model, recorded in ledger and pointer
    path = tmp_path / res.checkpoint
    assert res.checkpoint == f"model.r-ticket-1.{f.store.store_id}.pt" == f.version_name("ticket-1")
    assert file_sha256(path) == res.checkpoint_sha256 and f.store.owned_files() == [res.checkpoint]
    model, _ = load_checkpoint(path, expected)
    for k, v in model.state_dict().items():
        assert torch.equal(v, f.model.state_dict()[k])
    # same method run directly on the store's graph (edge order fixes the seeded negatives)
    ref = GradientSteps().unlearn(load_checkpoint(tmp_path / "model.pt")[0], served, e).model
    assert torch.allclose(ref.embedding, model.embedding)
    assert not torch.equal(model.embedding, old["params"]["embedding"])
    assert f.store.current_checkpoint() == {"name": res.checkpoint, "sha256": res.checkpoint_sha256,
                                            "fingerprint": f.store.graph_digest(expected)}
    entry = f.history()[-1]
    assert (entry.request_id, entry.status, entry.num_edges, entry.method) == ("ticket-1", "applied", 3, "test-gd")
    assert entry.parent_sha256 == file_sha256(tmp_path / "model.pt")
    assert sorted(f.store.request_tokens("ticket-1")) == sorted(f.store.tokens(e))
    aud = f.audit("ticket-1")
    assert aud["forgotten"] and aud["rows_in_store"] == 0 and aud["is_current"] and aud["checkpoint_sha256_ok"]
    # a second request supersedes (and deletes) the first versioned checkpoint
    res2 = f.forget(raw_pairs(g, g.train_edges[:, [1]]), request_id="ticket-2")
    assert not path.exists() and (tmp_path / res2.checkpoint).exists()
    assert (tmp_path / "model.pt").exists()  # the base checkpoint is the owner's to remove
    assert res2.report["num_deleted"] == 1


def _bad_requests(g):
    u0, i0 = g.train_edges[:, 0].tolist()
    absent = next((u, i) for u in range(g.num_users) for i in range(g.num_items)
                  if (u * g.num_items + i) not in train_keys(g))
    return {
        "unknown user": (lambda f: f.forget([("nobody", str(i0)), (str(u0), str(i0))]), "unknown user ids.*'nobody'"),
        "unknown item": (lambda f: f.forget([(str(u0), "nothing")]), "unknown item ids.*'nothing'"),
        "unknown both": (lambda f: f.forget([("ghost", "phantom")]), "'ghost'.*'phantom'"),
        "absent edge": (lambda f: f.forget([(str(u0), str(i0)), tuple(map(str, absent))]),
                        rf"not training interactions.*\('{absent[0]}', '{absent[1]}'\)"),
        "duplicate": (lambda f: f.forget([(str(u0), str(i0)), (u0, i0)]), rf"duplicate.*'{u0}', '{i0}'"),
        "empty": (lambda f: f.forget([]), "empty"),
        "malformed pair": (lambda f: f.forget([(str(u0), str(i0), "x")]), "malformed.*#0"),
        "malformed id": (lambda f: f.forget([(str(u0), 1.5)]), "malformed"),
        "not a list": (lambda f: f.forget("0 1"), "list of"),
        "unknown user node": (lambda f: f.forget_user("nobody"), "unknown user ids.*'nobody'"),
        "unknown item node": (lambda f: f.forget_item("nothing"), "unknown item ids.*'nothing'"),
        "bad request id": (lambda f: f.forget([(str(u0), str(i0))], request_id=""), "request id"),
    }


@pytest.mark.parametrize("case", list(_bad_requests(random_graph(20, 25, 90, seed=1))))
def test_bad_input_changes_nothing(tmp_path, case):
    f, g = make_service(tmp_path)
    fn, pattern = _bad_requests(g)[case]
    before = snapshot(f)
    with pytest.raises(ValueError, match=pattern):
        fn(f)
    assert_same(before, snapshot(f))


def test_already_forgotten_is_an_error_naming_the_request(tmp_path):
    f, g = make_service(tmp_path)
    e = g.train_edges[:, :2]
    f.forget(raw_pairs(g, e), request_id="first")
    before = snapshot(f)
    p = raw_pairs(g, e[:, :1])[0]
    with pytest.raises(ValueError, match=rf"already forgotten.*{p[0]}', '{p[1]}'\), 'first'"):
        f.forget([p] + raw_pairs(g, g.train_edges[:, 5:6]))
    assert_same(before, snapshot(f))
    u = g.train_edges[0, 0].item()
    # a user whose interactions are all gone: forget_user names the requests
    f.forget_user(str(u), request_id="user-gone")
    before = snapshot(f)
    with pytest.raises(ValueError, match="no training interactions left.*user-gone"):
        f.forget_user(str(u))
    assert_same(before, snapshot(f))


def test_malformed_edges_file(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# pairs\n1 2\n3,4\n\n5\t6  # trailing comment\n")
    assert read_pairs(good) == [("1", "2"), ("3", "4"), ("5", "6")]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n4 5 6\n")
    with pytest.raises(ValueError, match=r"bad.txt:2.*bad.txt:3"):
        read_pairs(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no .user, item. pairs"):
        read_pairs(empty)


# ---------------------------------------------------------------------- numerical failures
@pytest.mark.parametrize("bad", [RaisesNaN, ReturnsNaN, NotConverged])
def test_numerical_failure_keeps_old_model(tmp_path, bad):
    f, g = make_service(tmp_path, unlearner=bad())
    before = snapshot(f)
    with pytest.raises(UnlearningFailed, match="model is unchanged"):
        f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="r")
    after = snapshot(f)
    failed = f.history()[-1]
    assert failed.status == "failed" and failed.request_id == "r" and failed.checkpoint is None
    assert after["ledger"][:-1] == before["ledger"] and len(after["ledger"]) == len(before["ledger"]) + 1
    after["ledger"] = before["ledger"]
    assert_same(before, after)  # store, files, params and pointer untouched; no NaN checkpoint
    # the request id is still free: a retry with a working method applies it
    f.unlearner = GradientSteps()
    assert f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="r").status == "applied"


@pytest.mark.parametrize("bad", [RaisesNaN, NotConverged])
def test_numerical_failure_falls_back(tmp_path, bad):
    f, g = make_service(tmp_path, unlearner=bad(), fallback=GradientSteps(steps=2))
    res = f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="r")
    assert res.method == "test-gd" and res.status == "applied"
    assert any(bad.name in n for n in res.report["service_notes"])
    model, _ = load_checkpoint(tmp_path / res.checkpoint, f.store.to_graph())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_default_fallback_is_library_finetune(tmp_path):
    pytest.importorskip("graphforget.unlearning.finetune")
    f, g = make_service(tmp_path, unlearner=NotConverged(), fallback="finetune",
                        fallback_options={"max_epochs": 2})
    res = f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="r")
    assert res.method == "finetune" and "test-not-converged" in res.report["service_notes"][0]
    assert f.store.to_graph().fingerprint() == g.remove_edges(g.train_edges[:, :2]).fingerprint()


# ---------------------------------------------------------------------- idempotency
def test_request_id_is_applied_once(tmp_path):
    f, g = make_service(tmp_path)
    pairs = raw_pairs(g, g.train_edges[:, [2, 3]])
    first = f.forget(pairs, request_id="once")
    state = snapshot(f)
    again = f.forget(list(reversed(pairs)), request_id="once")  # same request, other order
    assert again.replayed and not first.replayed
    assert (again.checkpoint_sha256, again.num_edges, again.report) == (first.checkpoint_sha256, 2, first.report)
    assert_same(state, snapshot(f))
    with pytest.raises(ValueError, match="already used for a different request"):
        f.forget(raw_pairs(g, g.train_edges[:, [4]]), request_id="once")
    f.close()
    # after a restart too
    f2 = Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    assert f2.forget(pairs, request_id="once").replayed
    assert sum(e.request_id == "once" for e in f2.history()) == 1


# ---------------------------------------------------------------------- isolated nodes
def test_forgotten_user_and_item_become_isolated_and_inert(tmp_path):
    g = random_graph(20, 25, 120, seed=4)
    f, _ = make_service(tmp_path, graph=g, model="lightgcn")
    user = int(torch.bincount(g.train_edges[0]).argmax())
    item = int(torch.bincount(g.train_edges[1], minlength=g.num_items).argmax())
    res = f.forget_user(str(user), request_id="gdpr-user")
    held = int((g.valid_edges[0] == user).sum() + (g.test_edges[0] == user).sum())
    assert res.num_edges == int((g.train_edges[0] == user).sum()) and res.num_heldout == held
    h = f.store.to_graph()
    assert (h.num_users, h.num_items) == (g.num_users, g.num_items)  # ids kept, node isolated
    assert not (torch.cat([h.train_edges, h.valid_edges, h.test_edges], 1)[0] == user).any()
    if (h.train_edges[1] == item).any():
        f.forget_item(str(item), request_id="gdpr-item")
        h = f.store.to_graph()
        assert not (torch.cat([h.train_edges, h.valid_edges, h.test_edges], 1)[1] == item).any()
    model, _ = load_checkpoint(tmp_path / f.current["name"], h)
    adj = h.adj()
    with torch.no_grad():
        out = model.propagate(adj)
        ego = model.embedding.clone()
        for node in (user, g.num_users + item):
            ego[node] += torch.randn(ego.shape[1]) * 10
        out2 = model.propagate(adj, ego)
    others = torch.ones(h.num_nodes, dtype=torch.bool)
    others[[user, g.num_users + item]] = False
    assert torch.equal(out[others], out2[others])  # nobody else depends on the isolated nodes
    # the isolated node keeps only its own layer-0 term
    assert torch.allclose(out[user], model.alpha[0] * model.embedding[user])
    assert (torch.cat([h.train_edges, h.valid_edges, h.test_edges], 1)[0] == user).sum() == 0


# ---------------------------------------------------------------------- reconcile and refusal
def test_reconcile_removes_orphans_and_refuses_bad_checkpoints(tmp_path):
    f, g = make_service(tmp_path)
    res = f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="a")
    orphan = tmp_path / f.version_name("never-committed")
    with f.store.transaction() as c:  # recorded, then written, then the process died
        f.store.own_file(c, orphan.name)
    f.close()
    orphan.write_bytes(b"partial")
    tmp = tmp_path / f"{orphan.name}.abc123.tmp"
    tmp.write_bytes(b"partial")
    unrelated = [tmp_path / n for n in ("other.pt", "model.r-never-recorded.pt", "model.r-x.pt.abc.tmp")]
    for p in unrelated:
        p.write_bytes(b"keep me")
    f = Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    assert not orphan.exists() and not tmp.exists() and all(p.exists() for p in unrelated)
    assert f.store.owned_files() == [res.checkpoint]
    assert f.current["name"] == res.checkpoint
    f.close()
    # a modified current checkpoint is refused
    ckpt = tmp_path / res.checkpoint
    data = bytearray(ckpt.read_bytes())
    data[-10] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing a modified checkpoint"):
        Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    ckpt.unlink()
    with pytest.raises(ValueError, match="missing"):
        Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    with pytest.raises(ValueError, match="bound to checkpoint series 'model.pt'"):
        Forgetter(tmp_path / "store.sqlite", tmp_path / "other.pt", unlearner=GradientSteps(), fallback=None)


def test_checkpoint_of_another_graph_is_refused(tmp_path):
    g = random_graph(20, 25, 90, seed=1)
    with InteractionStore(tmp_path / "store.sqlite") as s:
        s.import_graph(g)
    other = g.remove_edges(g.train_edges[:, :1])
    save_checkpoint(tmp_path / "model.pt", build_model("mf", 20, 25, dim=8, seed=0), other)
    with pytest.raises(ValueError, match="another training graph"):
        Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    with InteractionStore(tmp_path / "store.sqlite") as s:
        assert s.current_checkpoint() is None


# ---------------------------------------------------------------------- retrain, audit
def test_retrain_refreshes_from_store(tmp_path):
    f, g = make_service(tmp_path, model="lightgcn")
    f.forget(raw_pairs(g, g.train_edges[:, :5]), request_id="a")
    res = f.retrain({"epochs": 2}, seed=3)
    assert res.kind == "retrain" and res.method == "retrain"
    h = f.store.to_graph()
    model, payload = load_checkpoint(tmp_path / res.checkpoint, h)  # matches the store's graph
    assert payload["train_config"]["epochs"] == 2 and payload["train_config"]["seed"] == 3
    assert f.store.current_checkpoint()["name"] == res.checkpoint
    assert f.history()[-1].kind == "retrain"
    # equal to training from scratch on the store's graph with the same config
    from graphforget.train import TrainConfig, train
    ref = build_model("lightgcn", h.num_users, h.num_items, dim=8, layers=2, seed=3)
    ref = train(ref, h, TrainConfig(**payload["train_config"])).model
    assert torch.allclose(ref.embedding, model.embedding)
    with pytest.raises(ValueError, match="unknown training options"):
        f.retrain({"epochz": 1})


def test_default_audit_figures_match_evaluate(tmp_path):
    g = random_graph(20, 25, 90, seed=1)
    f, _ = make_service(tmp_path, graph=g, model="lightgcn", audit=audit_figures)
    model0 = copy.deepcopy(f.model)
    res = f.forget(raw_pairs(g, g.train_edges[:, :3]), request_id="a")
    ref_before = evaluate(model0, g, "test", (20,))["recall@20"]
    ref_after = evaluate(f.model, f.graph, "test", (20,))["recall@20"]
    assert res.audit_before["utility"]["overall"]["recall@20"] == pytest.approx(ref_before)
    assert res.audit_after["utility"]["overall"]["recall@20"] == pytest.approx(ref_after)
    assert res.audit_after["deleted_ranks"]["n"] == 3
    assert f.history()[-1].audit_after == res.audit_after


def test_real_method_if_available(tmp_path):
    """The service with a library method (ifru) on a tiny LightGCN."""
    pytest.importorskip("graphforget.unlearning.ifru")
    f, g = make_service(tmp_path, model="lightgcn", unlearner=None, fallback=None, method="ifru")
    res = f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="a")
    assert res.method == "ifru" and res.report["converged"] is not False
    assert load_checkpoint(tmp_path / res.checkpoint, f.store.to_graph())[0] is not None


# ---------------------------------------------------------------------- CLI
def test_cli_import_forget_history(tmp_path, monkeypatch, capsys):
    import graphforget.cli as cli
    import graphforget.unlearning as ul

    assert "graphforget.cli.service" in cli.COMMAND_MODULES
    monkeypatch.setitem(ul.METHODS, "test-gd", f"{__name__}:GradientSteps")
    monkeypatch.setitem(ul.SUMMARIES, "test-gd", "test-only gradient steps")
    g = random_graph(20, 25, 90, seed=1)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        e = getattr(g, f"{split}_edges")
        lines = [" ".join(map(str, [u] + e[1][e[0] == u].tolist())) for u in range(g.num_users)
                 if (e[0] == u).any()]
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n")
    db, ckpt = str(tmp_path / "s.sqlite"), str(tmp_path / "m.pt")
    assert cli.main(["store", "import", str(data), "--db", db, "--model", "mf", "--dim", "8",
                     "--epochs", "2", "--checkpoint", ckpt, "--quiet"]) == 0
    out = capsys.readouterr().out
    from graphforget.data import load_dataset
    carved = load_dataset(data)  # train + test only: a seeded validation split is carved
    assert carved.valid_edges.shape[1] > 0 and carved.num_train + carved.valid_edges.shape[1] == g.num_train
    assert "bound checkpoint m.pt" in out and f"train={carved.num_train}" in out
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(f"{u} {i}" for u, i in carved.train_edges[:, :2].t().tolist()))
    base = ["forget", "--db", db, "--checkpoint", ckpt, "--method", "test-gd", "--option", "steps=1",
            "--fallback", "none", "--quiet"]
    assert cli.main(base + ["--edges", str(pairs), "--request-id", "cli-1"]) == 0
    assert "applied cli-1: forgot 2 training interactions with test-gd" in capsys.readouterr().out
    assert cli.main(base + ["--user", "0", "--request-id", "cli-2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["request_id"] == "cli-2"
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    assert cli.main(base + ["--edges", str(bad)]) == 2
    assert "malformed edges file" in capsys.readouterr().err
    assert cli.main(base + ["--user", "nobody"]) == 2
    assert "unknown user ids" in capsys.readouterr().err
    assert cli.main(["history", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "cli-1" in out and "cli-2" in out and "2 forget requests applied" in out
    assert cli.main(["history", "--db", db, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["import", "bind", "edges", "user"]
    assert rows[2]["options"] == {"seed": 0, "steps": 1, "lr": 0.05}
    assert cli.main(["history", "--db", str(tmp_path / "none.sqlite")]) == 2


@pytest.mark.parametrize("kw", [{"method": "no-such-method"}, {"method": "ifru", "fallback": "bogus"},
                                {"method": None}])
def test_unknown_method_refused_before_store_is_touched(tmp_path, kw):
    from graphforget.unlearning import METHODS

    fresh = tmp_path / "fresh" / "store.sqlite"  # must not even be created
    with pytest.raises(ValueError, match="unknown unlearning") as err:
        Forgetter(fresh, tmp_path / "fresh" / "model.pt", **kw)
    assert str(next(v for v in kw.values() if v not in ("ifru",))) in str(err.value)
    assert all(name in str(err.value) for name in METHODS)
    assert not fresh.parent.exists()
    # an existing store and checkpoint series are left byte-for-byte unchanged
    f, g = make_service(tmp_path)
    f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="a")
    before = snapshot(f)
    f.close()
    db_bytes = (tmp_path / "store.sqlite").read_bytes()
    with pytest.raises(ValueError, match="unknown unlearning"):
        Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", **kw)
    assert (tmp_path / "store.sqlite").read_bytes() == db_bytes
    f = Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(), fallback=None)
    assert_same(before, snapshot(f))
    f.close()
