"""The store keeps only what its guarantees need (issue 13, item 7): after ``forget --user U``
neither the database file nor its WAL contains U's raw id, no row links U's items to U, and
``verify`` still proves the deletion; a re-import of U's rows is still refused; tombstones need
the key file; a schema-2 store (raw tombstones) is converted without keeping its raw ids."""
from __future__ import annotations

import json
import sqlite3

import pytest
import torch

import graphforget.cli as cli
from graphforget.service import InteractionStore, Ledger
from graphforget.service.tokens import pair_tokens, read_key

SECRET = "user-7f3a9c"
FORGET = ["--method", "retrain", "--fallback", "none", "--no-audit", "--quiet"]


def write_inter(path, users: int = 24, items: int = 30, seed: int = 0) -> list[tuple[str, str]]:
    """A RecBole ``.inter`` file of string ids; user ``SECRET`` has 8 interactions."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    names = [f"u{k:03d}" for k in range(users - 1)] + [SECRET]
    for u in names:
        for i in torch.randperm(items, generator=gen)[:8].tolist():
            rows.append((u, f"item-{i:03d}"))
    lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in rows]
    path.write_text("\n".join(lines) + "\n")
    return rows


@pytest.fixture
def forgotten(tmp_path, capsys):
    """A store (MF trained by the CLI) after ``forget --user SECRET``: (db, ckpt, SECRET's items)."""
    data = tmp_path / "data.inter"
    rows = write_inter(data)
    db, ckpt = tmp_path / "store.sqlite", tmp_path / "m.pt"
    assert cli.main(["store", "import", str(data), "--db", str(db), "--checkpoint", str(ckpt),
                     "--model", "mf", "--dim", "8", "--epochs", "2", "--quiet"]) == 0
    assert SECRET.encode() in file_bytes(db)  # the checks below can fail
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", SECRET,
                     "--request-id", "gdpr-1", *FORGET]) == 0
    capsys.readouterr()
    return db, ckpt, [i for u, i in rows if u == SECRET]


def file_bytes(db) -> bytes:
    """The database file and, if there is one, its WAL."""
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_forgotten_user_leaves_no_bytes_and_no_links(forgotten, capsys):
    db, ckpt, items = forgotten
    assert SECRET.encode() not in file_bytes(db)
    c = sqlite3.connect(db)
    try:
        (uid, name), = c.execute("SELECT id, raw FROM users WHERE raw LIKE 'forgotten:%'").fetchall()
        assert c.execute("SELECT COUNT(*) FROM interactions WHERE user=?", (uid,)).fetchone() == (0,)
        assert [r[1] for r in c.execute("PRAGMA table_info(deleted)")] == ["token", "request_id", "time"]
        tokens = {t for (t,) in c.execute("SELECT token FROM deleted WHERE request_id='gdpr-1'")}
        (request,) = c.execute("SELECT request FROM ledger WHERE request_id='gdpr-1'").fetchone()
        assert json.loads(request) == {"user": name}
        item_ids = dict(c.execute("SELECT raw, id FROM items"))
    finally:
        c.close()
    assert len(tokens) == len(items)
    # the tokens are the pairs' keyed hashes: only the key file links them to the user's items
    key = read_key(db.with_name(db.name + ".key"))
    mine = torch.tensor([[uid] * len(items), [item_ids[i] for i in items]])
    assert set(pair_tokens(key, mine)) == tokens
    assert set(pair_tokens(b"\0" * 32, mine)).isdisjoint(tokens)
    # verify still proves the deletion
    assert cli.main(["verify", "--db", str(db), "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "forgotten pairs" in out and "FAIL" not in out


def test_reimport_of_a_forgotten_user_is_refused(forgotten, tmp_path, capsys):
    db, ckpt, items = forgotten
    with InteractionStore(db) as store:
        before = store.counts()
        stats = reimport(store, tmp_path / "data.inter")
        assert stats["rows_forgotten"] == len(items) and stats["rows_added"] == 0
        assert stats["users_added"] == 0  # the raw id maps to its placeholder's internal id
        assert store.counts() == before
        with pytest.raises(ValueError, match="already forgotten"):
            from graphforget.service.forgetter import Forgetter

            with Forgetter(db, ckpt, method="retrain", fallback=None, audit=None) as f:
                f.forget([(SECRET, items[0])])
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", SECRET,
                     *FORGET]) == 2
    assert "no training interactions left; forgotten by requests ['gdpr-1']" in capsys.readouterr().err


def test_bytes_leave_the_wal_of_a_running_service(forgotten):
    """While the service keeps its connection open (so the WAL is not removed on close), a
    forgotten raw id is in neither file once forget_user returns."""
    from graphforget.service.forgetter import Forgetter

    db, ckpt, _ = forgotten
    with Forgetter(db, ckpt, method="retrain", fallback=None, audit=None) as f:
        reimport(f.store, db.with_name("data.inter"))  # a WAL frame
        assert db.with_name(db.name + "-wal").exists() and b"u007" in file_bytes(db)
        f.forget_user("u007")
        assert db.with_name(db.name + "-wal").exists()
        assert b"u007" not in file_bytes(db) and SECRET.encode() not in file_bytes(db)


def reimport(store, path) -> dict:
    """Import the data file again, as ``store import`` reads it (same splits)."""
    from graphforget.data import load_dataset

    return store.import_graph(load_dataset(path))


def test_tombstones_need_the_store_key(forgotten, tmp_path, capsys):
    db, ckpt, items = forgotten
    key = db.with_name(db.name + ".key")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    saved = key.read_bytes()
    key.unlink()
    before = db.read_bytes()
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", "u000", *FORGET]) == 2
    err = capsys.readouterr().err
    assert "key file is missing" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["verify", "--db", str(db)]) == 1  # the forgotten-pairs check cannot run
    assert "key file is missing" in capsys.readouterr().out
    key.write_text("00" * 32 + "\n")  # somebody else's key
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", "u000", *FORGET]) == 2
    assert "is not the key of" in capsys.readouterr().err
    assert db.read_bytes() == before
    key.write_bytes(saved)
    assert cli.main(["verify", "--db", str(db), "--checkpoint", str(ckpt)]) == 0


def downgrade_to_schema_2(db, key) -> None:
    """Rewrite a schema-3 store as graphforget 0.x (schema 2) wrote it: raw tombstones, raw
    request ids in the ledger, digests over raw pairs, rehashed chain."""
    from graphforget.service.ledger import CHAINED_COLUMNS, genesis_hash, legacy_tombstones_sha256, row_hash
    import numpy as np

    from graphforget.data import load_dataset

    with InteractionStore(db, readonly=True) as store:  # schema 2 kept plain fingerprints
        plain = {"bind": load_dataset(db.with_name("data.inter")).fingerprint(),
                 "user": store.to_graph().fingerprint()}
    c = sqlite3.connect(db, isolation_level=None)
    nu, ni = (c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("users", "items"))
    every = torch.cartesian_prod(torch.arange(nu), torch.arange(ni)).t()
    dead = dict(c.execute("SELECT token, request_id FROM deleted"))
    pairs = [(u, i, dead[t]) for (u, i), t in zip(every.t().tolist(), pair_tokens(key, every)) if t in dead]
    c.execute("DROP TABLE deleted")
    c.execute("CREATE TABLE deleted(user INTEGER NOT NULL, item INTEGER NOT NULL, request_id TEXT "
              "NOT NULL, time REAL NOT NULL, PRIMARY KEY(user, item)) WITHOUT ROWID")
    c.executemany("INSERT INTO deleted VALUES(?, ?, ?, 0)", pairs)
    c.execute(f"UPDATE users SET raw='{SECRET}' WHERE raw LIKE 'forgotten:%'")
    c.execute("DROP TRIGGER ledger_no_update")
    (store_id,) = c.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
    prev = genesis_hash(store_id)
    for values in c.execute(f"SELECT {', '.join(CHAINED_COLUMNS)} FROM ledger ORDER BY seq").fetchall():
        row = dict(zip(CHAINED_COLUMNS, values))
        if row["kind"] == "user":
            row["request"] = json.dumps(SECRET)
        if row["graph_fingerprint"] is not None:
            row["graph_fingerprint"] = plain[row["kind"]]
        if row["status"] == "applied":
            mine = sorted((u, i) for u, i, r in pairs if r == row["request_id"])
            row["tombstones_sha256"] = legacy_tombstones_sha256(np.array(mine, dtype=np.int64).reshape(-1, 2))
        prev = row_hash(prev, row)
        c.execute("UPDATE ledger SET request=?, tombstones_sha256=?, graph_fingerprint=?, hash=? "
                  "WHERE seq=?", (row["request"], row["tombstones_sha256"], row["graph_fingerprint"],
                                  prev, row["seq"]))
    c.execute("UPDATE meta SET value=? WHERE key='checkpoint_fingerprint'", (plain["user"],))
    c.execute("DELETE FROM meta WHERE key='key_id'")
    c.execute("PRAGMA user_version=2")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def test_schema_2_store_is_converted_without_raw_ids(forgotten, capsys):
    db, ckpt, items = forgotten
    keyfile = db.with_name(db.name + ".key")
    downgrade_to_schema_2(db, read_key(keyfile))
    keyfile.unlink()
    assert SECRET.encode() in db.read_bytes()
    assert cli.main(["verify", "--db", str(db)]) == 2  # read-only: asks for the migration
    assert "store migrate" in capsys.readouterr().err
    assert cli.main(["store", "migrate", "--db", str(db)]) == 0
    capsys.readouterr()
    wal = db.with_name(db.name + "-wal")
    assert SECRET.encode() not in db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert keyfile.exists()  # a new key: the tombstones were re-keyed under it
    with InteractionStore(db, readonly=True) as store:
        rows = Ledger(store.conn).history()
        assert rows[-1].kind == "chain" and "keyed digests" in rows[-1].report["note"]
        assert [r.request for r in rows if r.kind == "user"][0]["user"].startswith("forgotten:")
    assert cli.main(["verify", "--db", str(db), "--checkpoint", str(ckpt)]) == 0
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", SECRET,
                     *FORGET]) == 2  # still forgotten, under the new key
    assert "forgotten by requests ['gdpr-1']" in capsys.readouterr().err


def test_a_tampered_schema_2_store_is_not_converted(forgotten, capsys):
    db, ckpt, items = forgotten
    downgrade_to_schema_2(db, read_key(db.with_name(db.name + ".key")))
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("DELETE FROM deleted WHERE (user, item) = (SELECT user, item FROM deleted LIMIT 1)")
    c.close()
    before = db.read_bytes()
    assert cli.main(["store", "migrate", "--db", str(db)]) == 2
    assert "tombstones do not match the ledger" in capsys.readouterr().err
    assert db.read_bytes() == before


def test_no_plain_fingerprint_lets_a_file_holder_test_guesses(forgotten):
    """The ledger and the pointer record keyed graph digests: the plain fingerprints (unkeyed
    hashes of the training edges) of the graph before and after the request, against which the
    removed pairs could be guessed, are nowhere in the file."""
    from graphforget.data import load_dataset

    db, ckpt, _ = forgotten
    before = load_dataset(db.with_name("data.inter")).fingerprint()
    with InteractionStore(db, readonly=True) as store:
        after = store.to_graph().fingerprint()
        recorded = {r.graph_fingerprint for r in Ledger(store.conn).history()} - {None}
        assert store.current_checkpoint()["fingerprint"] == store.graph_digest(store.to_graph())
    assert len(recorded) == 2 and not recorded & {before, after}
    raw = file_bytes(db)
    assert before.encode() not in raw and after.encode() not in raw


def test_a_reader_snapshot_delays_the_scrub_and_says_so(forgotten, caplog, capsys):
    """A reader holding a snapshot stops the WAL truncation: the request logs a warning,
    verify warns while the WAL holds frames, and the next writable open scrubs the files."""
    import logging

    from graphforget.service.forgetter import Forgetter

    db, ckpt, _ = forgotten
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM users").fetchone()
    with caplog.at_level(logging.WARNING, logger="graphforget"):
        with Forgetter(db, ckpt, method="retrain", fallback=None, audit=None) as f:
            f.forget_user("u007")
    assert "could not be truncated" in caplog.text
    assert b"u007" in file_bytes(db)  # the old pages are still in the files: the warning is due
    assert cli.main(["verify", "--db", str(db), "--checkpoint", str(ckpt)]) == 0
    assert "warn  wal" in capsys.readouterr().out
    reader.close()
    InteractionStore(db).close()  # any writable open scrubs
    assert b"u007" not in file_bytes(db)


def test_key_file_elsewhere_and_a_refused_first_import_leaves_nothing(tmp_path, capsys):
    data, db, ckpt = tmp_path / "data.inter", tmp_path / "s.sqlite", tmp_path / "m.pt"
    write_inter(data)
    vault = tmp_path / "vault"
    vault.mkdir()
    key = vault / "s.key"
    assert cli.main(["store", "import", str(data), "--db", str(db), "--checkpoint", str(ckpt), "--key",
                     str(key), "--model", "mf", "--dim", "8", "--epochs", "2", "--quiet"]) == 0
    assert key.is_file() and not db.with_name("s.sqlite.key").exists()
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", SECRET, *FORGET]) == 2
    assert "s.sqlite.key: the store's key file is missing" in capsys.readouterr().err
    assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ckpt), "--user", SECRET, "--key",
                     str(key), *FORGET]) == 0
    assert cli.main(["verify", "--db", str(db), "--checkpoint", str(ckpt), "--key", str(key)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.inter"
    write_inter(bad)
    bad.write_text(bad.read_text().replace(SECRET, "forgotten:x"))
    new = tmp_path / "new.sqlite"
    assert cli.main(["store", "import", str(bad), "--db", str(new), "--quiet"]) == 2
    assert "may not start with 'forgotten:'" in capsys.readouterr().err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("new.sqlite")]
    empty = tmp_path / "empty.inter"
    empty.write_text("user_id:token\titem_id:token\n" + "".join(  # all dropped by the protocol
        f"{u}\ti{k}\n" for u in ("u1", "u2", "u3") for k in range(6)))
    assert cli.main(["store", "import", str(empty), "--db", str(new), "--quiet"]) == 2
    assert "no training interactions" in capsys.readouterr().err and not new.exists()
