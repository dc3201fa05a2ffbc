"""Tamper evidence of the deletion service: every tampering with a store file (ledger rows,
tombstones, interactions, the current checkpoint) is found by ``graphforget verify`` (exit 1,
naming the check and the row) and refused at service start-up; an untampered store verifies
(exit 0); a rewrite that recomputes the chain is only caught against an anchor; old stores are
chained as found; request ids with control characters are refused and, if stored, escaped."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3

import pytest
from conftest import random_graph
from test_service import GradientSteps, make_service, raw_pairs

import graphforget.cli as cli
from graphforget.service import Forgetter, InteractionStore, Ledger, LedgerEntry

NUM_CHECKS = 7  # without --anchor: chain, tombstones, forgotten pairs, pointer, graph, 2 file checks


def open_forgetter(tmp_path) -> Forgetter:
    return Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(),
                     fallback=None, audit=None)


@pytest.fixture
def served(tmp_path):
    """A closed store after three forget requests: rows 1 import, 2 bind, 3 ``a`` (2 pairs),
    4 ``b`` (1 pair), 5 ``c`` (a whole user). Returns (folder, {request id: row hash})."""
    f, g = make_service(tmp_path)
    hashes = {"a": f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="a").ledger_hash,
              "b": f.forget(raw_pairs(g, g.train_edges[:, 2:3]), request_id="b").ledger_hash,
              "c": f.forget_user(str(int(g.train_edges[0, -1])), request_id="c").ledger_hash}
    f.close()
    return tmp_path, hashes


def sql(tmp_path, *statements) -> list:
    """Run statements on the store file as anyone with write access can (the last one's rows)."""
    c = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    try:
        rows = []
        for stmt in statements:
            rows = c.execute(stmt).fetchall()
        return rows
    finally:
        c.close()


def verify(tmp_path, capsys, *extra) -> tuple[int, list[str]]:
    code = cli.main(["verify", "--db", str(tmp_path / "store.sqlite"), "--checkpoint",
                     str(tmp_path / "model.pt"), *extra])
    return code, capsys.readouterr().out.splitlines()


def failed(lines: list[str]) -> dict[str, str]:
    """``{check name: detail}`` of the FAIL lines."""
    return dict(re.match(r"FAIL  ([^:]+): (.*)", line).groups() for line in lines if line.startswith("FAIL"))


def rehash(tmp_path, first: int, last: int | None = None) -> None:
    """What an attacker who knows the (public) algorithm does after an edit: recompute the hash
    of rows ``first`` … ``last`` (default: to the end) from the row before them."""
    from graphforget.service.ledger import CHAINED_COLUMNS, row_hash

    c = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    c.execute("DROP TRIGGER IF EXISTS ledger_no_update")
    (prev,) = c.execute("SELECT hash FROM ledger WHERE seq=?", (first - 1,)).fetchone()
    for values in c.execute(f"SELECT {', '.join(CHAINED_COLUMNS)} FROM ledger WHERE seq >= ? "
                            "AND seq <= ? ORDER BY seq", (first, last or 1 << 62)).fetchall():
        prev = row_hash(prev, dict(zip(CHAINED_COLUMNS, values)))
        c.execute("UPDATE ledger SET hash=? WHERE seq=?", (prev, values[0]))
    c.close()


def edit_bytes(tmp_path) -> None:
    """Change one digit of row 4's report in the file's bytes: no SQL, so no trigger fires."""
    (report,) = sql(tmp_path, "PRAGMA wal_checkpoint(TRUNCATE)",
                    "SELECT report FROM ledger WHERE seq=4")[0]
    old = re.search(r'"seconds_total": [0-9.e-]+', report).group(0).encode()
    new = old[:-1] + (b"1" if old[-1:] != b"1" else b"2")
    db = tmp_path / "store.sqlite"
    data = db.read_bytes()
    assert data.count(old) == 1
    db.write_bytes(data.replace(old, new))


def replace_current_checkpoint(tmp_path) -> None:
    (name,) = sql(tmp_path, "SELECT value FROM meta WHERE key='checkpoint_name'")[0]
    shutil.copy(tmp_path / "model.pt", tmp_path / name)  # another valid checkpoint


LIVE_PAIR = "SELECT user, item FROM interactions WHERE split='train' ORDER BY user, item LIMIT 1"


def key_of(tmp_path) -> bytes:
    from graphforget.service.tokens import read_key

    return read_key(tmp_path / "store.sqlite.key")


def insert_tombstone(tmp_path, request_id: str) -> None:
    """An attacker who also holds the key file tombstones a live pair for ``request_id``."""
    from graphforget.service.tokens import pair_tokens

    (pair,) = sql(tmp_path, LIVE_PAIR)
    (token,) = pair_tokens(key_of(tmp_path), [[pair[0]], [pair[1]]])
    c = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    c.execute("INSERT INTO deleted(token, request_id, time) VALUES(?, ?, 0)", (token, request_id))
    c.close()


def reinsert_forgotten(tmp_path, request_id: str) -> None:
    """With the key, recover a request's pair by hashing every (user, item) pair, and put it
    back into the training rows."""
    import torch

    from graphforget.service.tokens import pair_tokens

    ((nu,),), ((ni,),) = sql(tmp_path, "SELECT COUNT(*) FROM users"), sql(tmp_path, "SELECT COUNT(*) FROM items")
    dead = {t for (t,) in sql(tmp_path, f"SELECT token FROM deleted WHERE request_id='{request_id}'")}
    every = torch.cartesian_prod(torch.arange(nu), torch.arange(ni)).t()
    hit = [k for k, t in enumerate(pair_tokens(key_of(tmp_path), every)) if t in dead]
    (u, i), = every[:, hit].t().tolist()
    sql(tmp_path, f"INSERT INTO interactions(user, item, split) VALUES({u}, {i}, 'train')")

# tampering -> ({failing check: text in its detail}, text in the start-up refusal)
TAMPERING = {
    "edit row bytes": (edit_bytes, {"chain": "broken at row 4 (request b)"}, "broken at row 4"),
    "drop triggers and edit": (
        lambda t: sql(t, "DROP TRIGGER ledger_no_update", "UPDATE ledger SET num_edges=0 WHERE seq=3"),
        {"chain": "broken at row 3 (request a)"}, "broken at row 3"),
    "edit and rehash the row": (
        lambda t: (sql(t, "DROP TRIGGER ledger_no_update", "UPDATE ledger SET method='retrain' WHERE seq=4"),
                   rehash(t, 4, 4)),
        {"chain": "broken at row 5 (request c)"}, "broken at row 5"),
    "delete a row": (
        lambda t: sql(t, "DROP TRIGGER ledger_no_delete", "DELETE FROM ledger WHERE seq=4"),
        {"chain": "broken at row 5 (request c): row 4 is missing", "tombstones": "no applied ledger row"},
        "broken at row 5"),
    "delete the last row": (
        lambda t: sql(t, "DROP TRIGGER ledger_no_delete", "DELETE FROM ledger WHERE seq=5"),
        {"chain": "broken after row 4, the last", "tombstones": "no applied ledger row",
         "pointer": "not the ledger's latest"}, "broken after row 4"),
    "delete a tombstone": (
        lambda t: sql(t, "DELETE FROM deleted WHERE token = (SELECT token FROM deleted "
                         "WHERE request_id='a' ORDER BY token LIMIT 1)"),
        {"tombstones": "at row 3 (request a): 1 tombstones carry its request id, it recorded 2"},
        "tombstones do not match the ledger at row 3"),
    "insert a tombstone of a request": (
        lambda t: insert_tombstone(t, "b"),
        {"tombstones": "at row 4 (request b): 2 tombstones", "forgotten pairs": "1 forgotten pairs"},
        "tombstones do not match the ledger at row 4"),
    "insert a tombstone of no request": (
        lambda t: insert_tombstone(t, "made-up"),
        {"tombstones": "1 tombstones belong to no applied ledger row (request ids made-up)"},
        "no applied ledger row"),
    "reinsert a forgotten pair": (
        lambda t: reinsert_forgotten(t, "b"),
        {"forgotten pairs": "1 forgotten pairs have interaction rows again", "graph": "is not the current"},
        "forgotten pairs have interaction rows again"),
    "replace the current checkpoint": (
        replace_current_checkpoint,
        {"checkpoint files": "differ from the ledger", "current checkpoint": "the store recorded"},
        "refusing a modified checkpoint"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_and_refused_at_start_up(served, capsys, case):
    tmp_path, _ = served
    tamper, expected, refusal = TAMPERING[case]
    tamper(tmp_path)
    code, lines = verify(tmp_path, capsys)
    assert code == 1, lines
    assert lines[-1] == "NOT verified" and len(lines) == NUM_CHECKS + 1
    fails = failed(lines)
    for check, text in expected.items():
        assert text in fails.get(check, ""), (check, lines)
    with pytest.raises(ValueError) as err:
        open_forgetter(tmp_path)
    message = str(err.value)
    assert refusal in message and "\n" not in message
    if "checkpoint" not in case:
        assert "run `graphforget verify --db" in message
    assert cli.main(["history", "--db", str(tmp_path / "store.sqlite")]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("ledger chain intact" if "checkpoint" in case else "WARNING: ")


def test_recomputed_chain_is_caught_only_by_an_anchor(served, capsys):
    """The chain alone has no secret: an edit followed by recomputing every later hash gives a
    self-consistent file. A row hash kept elsewhere (printed by ``forget``) still catches it."""
    tmp_path, hashes = served
    sql(tmp_path, "DROP TRIGGER ledger_no_update", "UPDATE ledger SET method='retrain' WHERE seq=3")
    rehash(tmp_path, 3)
    code, lines = verify(tmp_path, capsys)
    assert code == 0 and lines[-1] == "verified"  # the documented limit
    code, lines = verify(tmp_path, capsys, "--anchor", hashes["b"])
    assert code == 1 and "no ledger row has hash" in failed(lines)["anchor"]
    (before,) = sql(tmp_path, "SELECT hash FROM ledger WHERE seq=2")[0]
    assert verify(tmp_path, capsys, "--anchor", before)[0] == 0  # rows before the rewrite


def test_untampered_store_verifies_after_forgets_through_the_cli(tmp_path, monkeypatch, capsys):
    import graphforget.unlearning as ul

    monkeypatch.setitem(ul.METHODS, "test-gd", "test_service:GradientSteps")
    monkeypatch.setitem(ul.SUMMARIES, "test-gd", "test-only gradient steps")
    g = random_graph(20, 25, 90, seed=1)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        e = getattr(g, f"{split}_edges")
        (data / f"{split}.txt").write_text("\n".join(
            " ".join(map(str, [u] + e[1][e[0] == u].tolist())) for u in range(g.num_users)
            if (e[0] == u).any()) + "\n")
    db, ckpt = str(tmp_path / "s.sqlite"), str(tmp_path / "m.pt")
    assert cli.main(["store", "import", str(data), "--db", db, "--model", "mf", "--dim", "8",
                     "--epochs", "2", "--checkpoint", ckpt, "--quiet"]) == 0
    capsys.readouterr()
    base = ["forget", "--db", db, "--checkpoint", ckpt, "--method", "test-gd", "--option",
            "steps=1", "--fallback", "none", "--quiet", "--no-audit"]
    anchors = []
    for argv in (["--user", "3"], ["--item", "5"], ["--user", "7", "--request-id", "t-3"]):
        assert cli.main(base + argv) == 0
        anchors.append(re.search(r"ledger row hash ([0-9a-f]{64})", capsys.readouterr().out).group(1))
    assert cli.main(base + ["--user", "7", "--request-id", "t-3"]) == 0  # a replay adds no row
    assert anchors[-1] in capsys.readouterr().out
    run = ["verify", "--db", db, "--checkpoint", ckpt]
    assert cli.main(run) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "verified" and len(lines) == NUM_CHECKS + 1
    assert all(line.startswith("ok ") for line in lines[:-1]), lines
    assert f"5 rows, every hash recomputed; head {anchors[-1]}" in lines[0]
    assert cli.main(run + ["--anchor", anchors[0], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and [c["name"] for c in out["checks"]][-3:] == [
        "anchor", "checkpoint files", "current checkpoint"]
    assert cli.main(run + ["--anchor", "0" * 64]) == 1
    assert cli.main(["verify", "--db", db]) == 0  # file checks skipped, still verified
    assert "skip  current checkpoint" in capsys.readouterr().out
    assert cli.main(["history", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"ledger chain intact: 5 rows, head {anchors[-1]}"
    # bad input: exit 2, one line, nothing written
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE notes(x)").connection.close()
    for argv in (["verify", "--db", str(tmp_path / "none.sqlite")], ["verify", "--db", str(foreign)],
                 run[:3] + ["--checkpoint", str(tmp_path / "other.pt")]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


def downgrade_to_unchained(db) -> None:
    """Turn a store into one of schema version 1, written before the ledger was chained."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("ALTER TABLE ledger DROP COLUMN hash")
    c.execute("ALTER TABLE ledger DROP COLUMN tombstones_sha256")
    c.execute("PRAGMA user_version=1")
    c.close()


def test_store_written_before_the_chain_is_chained_as_found(served, capsys):
    tmp_path, hashes = served
    db = str(tmp_path / "store.sqlite")
    downgrade_to_unchained(db)
    assert cli.main(["verify", "--db", db]) == 2
    assert "not chained yet" in capsys.readouterr().err
    assert cli.main(["history", "--db", db]) == 0
    assert "ledger NOT CHAINED" in capsys.readouterr().out.splitlines()[-1]
    assert cli.main(["store", "migrate", "--db", db]) == 0
    assert "the store is converted now (chain row 6)" in capsys.readouterr().out
    code, lines = verify(tmp_path, capsys, "--anchor", hashes["c"])  # same functions: same hashes
    assert code == 0 and "rows before row 6 were written before the chain" in lines[0]
    f = open_forgetter(tmp_path)
    f.forget_user(str(sql(tmp_path, "SELECT user FROM interactions WHERE split='train' LIMIT 1")[0][0]))
    f.close()
    assert verify(tmp_path, capsys)[0] == 0
    assert cli.main(["store", "migrate", "--db", db]) == 0
    assert "was already current" in capsys.readouterr().out
    kinds = [r[0] for r in sql(tmp_path, "SELECT kind FROM ledger ORDER BY seq")]
    assert kinds == ["import", "bind", "edges", "edges", "user", "chain", "user"]


# ---------------------------------------------------------------------- request ids
@pytest.mark.parametrize("rid", ["\x1b[31mred", "two\nlines", "tab\tid", "bidi\u202eevil", "nul\x00"])
def test_request_ids_with_control_characters_are_refused(served, rid):
    tmp_path, _ = served
    f = open_forgetter(tmp_path)
    before = f.store.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()
    with pytest.raises(ValueError, match="printable") as err:
        f.forget_user(str(f.graph.train_edges[0, 0].item()), request_id=rid)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    assert f.store.conn.execute("SELECT COUNT(*) FROM ledger").fetchone() == before
    f.close()


def test_stored_control_characters_are_escaped_by_history(served, capsys):
    """A row written before such ids were refused (appended here through the ledger, so the
    chain stays valid) prints as its repr, on one line."""
    tmp_path, _ = served
    rid = "evil\x1b[31m\nsecond line"
    with InteractionStore(tmp_path / "store.sqlite") as store, store.transaction() as c:
        Ledger(c).append(c, LedgerEntry(request_id=rid, time=0.0, kind="edges", status="failed",
                                        request=[], request_digest="", error="boom\r\x07"))
    assert cli.main(["history", "--db", str(tmp_path / "store.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert repr(rid) in out and repr("boom\r\x07") in out
    assert len(out.splitlines()) == 6 + 3  # rows, totals, checkpoint, chain state
    assert verify(tmp_path, capsys)[0] == 0


def test_audit_of_a_running_service_sees_tampering(served):
    """Tombstones deleted under a running service: its audit no longer says ``forgotten``."""
    tmp_path, _ = served
    f = open_forgetter(tmp_path)
    assert f.audit("a")["forgotten"] and f.audit("a")["ledger_problem"] is None
    sql(tmp_path, "DELETE FROM deleted WHERE request_id='a'")
    aud = f.audit("a")
    assert not aud["forgotten"] and (aud["pairs"], aud["pairs_recorded"]) == (0, 2)
    assert "tombstones do not match the ledger at row 3" in aud["ledger_problem"]
    f.close()


def test_missing_store_id_breaks_the_chain(served, capsys):
    tmp_path, _ = served
    sql(tmp_path, "DELETE FROM meta WHERE key='store_id'")
    code, lines = verify(tmp_path, capsys)
    assert code == 1 and "store_id, the chain's genesis, is missing" in failed(lines)["chain"]
