"""Random sequences of forget requests (valid and invalid) against a plain-Python oracle: the
store, the served graph and the ledger always equal the oracle's sets of remaining pairs."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from conftest import random_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphforget.models import build_model
from graphforget.service import Forgetter, InteractionStore
from graphforget.train import save_checkpoint
from graphforget.unlearning import Unlearner

U, I, E = 8, 10, 30


class KeepParams(Unlearner):
    """Test-only: removes the edges from the graph and leaves the parameters as they are (the
    property under test is the bookkeeping, not the maths)."""

    name = "test-keep"

    def _unlearn(self, model, graph, edges, report, timer):
        return graph.remove_edges(edges)


def pairs_of(e: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, e.t().tolist()))


ids = st.one_of(st.integers(0, U + 1).map(str), st.just("ghost"))  # U, U+1 and ghost unknown
item_ids = st.one_of(st.integers(0, I + 1).map(str), st.just("ghost"))
action = st.one_of(
    st.tuples(st.just("edges"), st.lists(st.tuples(ids, item_ids), min_size=0, max_size=4)),
    st.tuples(st.just("edges-known"), st.lists(st.integers(0, E - 1), min_size=1, max_size=4)),
    st.tuples(st.just("user"), ids),
    st.tuples(st.just("item"), item_ids),
    st.tuples(st.just("replay"), st.integers(0, 20)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 5), actions=st.lists(action, min_size=1, max_size=7))
def test_random_request_sequences_match_oracle(seed, actions):
    g = random_graph(U, I, E, seed=seed)
    train, valid, test = pairs_of(g.train_edges), pairs_of(g.valid_edges), pairs_of(g.test_edges)
    forgotten: set[tuple[int, int]] = set()
    applied: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with InteractionStore(d / "s.sqlite") as s:
            s.import_graph(g)
        save_checkpoint(d / "m.pt", build_model("mf", U, I, dim=4, seed=0), g)
        f = Forgetter(d / "s.sqlite", d / "m.pt", unlearner=KeepParams(), fallback=None, audit=None)
        for step, (kind, arg) in enumerate(actions):
            rid = f"p{step}"
            if kind == "replay":
                if not applied:
                    continue
                rid = sorted(applied)[arg % len(applied)]
                kind, arg = applied[rid]
            if kind == "edges-known":
                kind, arg = "edges", [tuple(map(str, g.train_edges[:, k].tolist())) for k in arg]
            # ---- oracle
            if kind == "edges":
                req = [(int(u), int(i)) if u.isdigit() and i.isdigit() else None for u, i in arg]
                valid_req = (len(req) > 0 and None not in req and len(set(req)) == len(req)
                             and all(p in train for p in req))
                remove = set(req) if valid_req else set()
            else:
                k = 0 if kind == "user" else 1
                node = int(arg) if arg.isdigit() else None
                remove = {p for p in train if p[k] == node}
                valid_req = bool(remove)
                remove |= {p for p in valid | test if p[k] == node}
            replay = rid in applied
            # ---- system
            call = {"edges": f.forget, "user": f.forget_user, "item": f.forget_item}[kind]
            try:
                res = call(arg, request_id=rid)
            except ValueError:
                assert not valid_req and not replay, (kind, arg)
            else:
                assert res.replayed == replay
                if not replay:
                    assert valid_req, (kind, arg)
                    applied[rid] = (kind, arg)
                    assert res.num_edges == len(remove & train)
                    train, valid, test = train - remove, valid - remove, test - remove
                    forgotten |= remove
            # ---- compare
            h = f.store.to_graph()
            assert pairs_of(h.train_edges) == train
            assert pairs_of(h.valid_edges) == valid and pairs_of(h.test_edges) == test
            assert f.graph.fingerprint() == h.fingerprint()
            assert pairs_of(f.graph.valid_edges) == valid and pairs_of(f.graph.test_edges) == test
            dead = {t for (t,) in f.store.conn.execute("SELECT token FROM deleted")}
            assert dead == set(f.store.tokens(torch.tensor(sorted(forgotten), dtype=torch.long)
                                              .view(-1, 2).t()))
            rows = [e for e in f.history() if e.kind in ("edges", "user", "item")]
            assert [e.request_id for e in rows] == list(applied)
        f.close()
        # a fresh process sees the same state (reconcile accepts it)
        f = Forgetter(d / "s.sqlite", d / "m.pt", unlearner=KeepParams(), fallback=None, audit=None)
        assert pairs_of(f.graph.train_edges) == train
        f.close()
