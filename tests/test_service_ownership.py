"""What the deletion service may touch: only the checkpoint files its store recorded as its own
(never a user's file or another store's series in the same folder), and only SQLite files that
are graphforget stores (a foreign or damaged file is refused without a byte written)."""
from __future__ import annotations

import shutil
import sqlite3

import pytest
from conftest import random_graph
from test_service import GradientSteps, make_service, raw_pairs

import graphforget.cli as cli
from graphforget.models import build_model
from graphforget.service import Forgetter, InteractionStore
from graphforget.train import file_sha256, save_checkpoint


def open_forgetter(db, ckpt, **kw) -> Forgetter:
    return Forgetter(db, ckpt, unlearner=GradientSteps(), fallback=None, audit=None, **kw)


def fingerprint(path) -> tuple:
    """Bytes and mtime of a file (what a refused open must leave unchanged)."""
    return path.read_bytes(), path.stat().st_mtime_ns


def downgrade(db) -> None:
    """Turn a store into one written before stores were marked and owned files recorded."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA application_id=0")
    c.execute("PRAGMA user_version=0")
    c.execute("DROP TABLE IF EXISTS files")
    c.execute("DELETE FROM meta WHERE key='store_id'")
    c.close()


# ---------------------------------------------------------------------- owned files
def test_startup_cleanup_spares_files_it_did_not_write(tmp_path):
    f, g = make_service(tmp_path)
    f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="a")
    f.close()
    user_files = [tmp_path / n for n in ("model.r-final-backup.pt", "model.h-0123abcd.pt",
                                         "model.r-x.pt.abc123.tmp")]
    for p in user_files:
        p.write_bytes(b"the user's")
    f = open_forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt")
    f.forget(raw_pairs(g, g.train_edges[:, 1:2]), request_id="b")
    f.close()
    assert all(p.read_bytes() == b"the user's" for p in user_files)


def test_two_stores_in_one_folder_never_touch_each_other(tmp_path):
    g = random_graph(20, 25, 90, seed=1)
    for name in ("a", "b"):
        with InteractionStore(tmp_path / f"{name}.sqlite") as s:
            s.import_graph(g)
    save_checkpoint(tmp_path / "model.pt", build_model("mf", 20, 25, dim=8, seed=0), g)
    fa = open_forgetter(tmp_path / "a.sqlite", tmp_path / "model.pt")
    ra = fa.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="t-1")
    fb = open_forgetter(tmp_path / "b.sqlite", tmp_path / "model.pt")  # starts after a's request
    rb = fb.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="t-1")  # same request id
    assert ra.checkpoint != rb.checkpoint
    rb = fb.forget(raw_pairs(g, g.train_edges[:, 1:2]), request_id="t-2")
    ra = fa.forget(raw_pairs(g, g.train_edges[:, 2:3]), request_id="t-2")
    fa.close()
    fb.close()
    for db, res in (("a", ra), ("b", rb)):  # restart each: both series intact
        f = open_forgetter(tmp_path / f"{db}.sqlite", tmp_path / "model.pt")
        assert f.current["name"] == res.checkpoint
        assert file_sha256(tmp_path / res.checkpoint) == res.checkpoint_sha256
        f.forget(raw_pairs(g, g.train_edges[:, 3:4]), request_id="t-3")
        f.close()
    for db in ("a", "b"):
        assert open_forgetter(tmp_path / f"{db}.sqlite", tmp_path / "model.pt").audit("t-3")["is_current"]


def test_orphans_of_an_interrupted_request_are_still_removed(tmp_path):
    """A request killed between writing its checkpoint and committing leaves a recorded file
    (and maybe temp files of it): the next start-up removes them."""
    f, g = make_service(tmp_path)
    f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="a")

    def crash(phase):
        if phase == "commit":
            raise KeyboardInterrupt

    f.progress = crash
    with pytest.raises(KeyboardInterrupt):
        f.forget(raw_pairs(g, g.train_edges[:, 1:2]), request_id="b")
    orphan = tmp_path / f.version_name("b")
    f.close()
    assert orphan.exists()
    partial = tmp_path / f"{orphan.name}.k3j2h1.tmp"  # what a kill inside save_checkpoint leaves
    partial.write_bytes(b"partial")
    f = open_forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt")
    assert not orphan.exists() and not partial.exists()
    assert f.store.owned_files() == [f.current["name"]]
    assert f.forget(raw_pairs(g, g.train_edges[:, 1:2]), request_id="b").checkpoint == orphan.name
    f.close()


def test_store_written_before_marking_is_adopted(tmp_path):
    """A store without application_id but with graphforget's tables: read without a write,
    stamped on the first write, and its ledger's checkpoints recorded as its own."""
    from graphforget.service.store import APPLICATION_ID, SCHEMA_VERSION

    f, g = make_service(tmp_path)
    old = f.forget(raw_pairs(g, g.train_edges[:, :1]), request_id="a").checkpoint
    f.close()
    db = tmp_path / "store.sqlite"
    downgrade(db)
    before = fingerprint(db)
    assert cli.main(["history", "--db", str(db)]) == 0
    assert fingerprint(db) == before
    f = open_forgetter(db, tmp_path / "model.pt")
    f.forget(raw_pairs(g, g.train_edges[:, 1:2]), request_id="b")
    assert not (tmp_path / old).exists()  # the superseded checkpoint is still deleted
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    c.close()
    f.close()


# ---------------------------------------------------------------------- foreign databases
def foreign_db(path):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)")
    c.execute("INSERT INTO notes(text) VALUES('not graphforget data')")
    c.commit()
    c.close()
    return path


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_cli_refuses_a_foreign_sqlite_file_without_writing(tmp_path, capsys):
    db = foreign_db(tmp_path / "foreign.sqlite")
    before, listing = fingerprint(db), sorted(p.name for p in tmp_path.iterdir())
    for argv in (["history", "--db", str(db)],
                 ["forget", "--db", str(db), "--checkpoint", str(tmp_path / "m.pt"), "--user", "1",
                  "--quiet"]):
        code, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert err.count("\n") == 1 and str(db) in err and "not a graphforget store" in err
        assert "Traceback" not in err
    assert fingerprint(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no -wal / -shm either
    with pytest.raises(ValueError, match="not a graphforget store"):
        InteractionStore(db)
    assert fingerprint(db) == before


@pytest.mark.parametrize("kind", ["directory", "text", "truncated", "newer"])
def test_cli_refuses_unreadable_stores_in_one_line(tmp_path, capsys, kind):
    f, g = make_service(tmp_path / "good")
    f.close()
    db = tmp_path / "bad.sqlite"
    if kind == "directory":
        db.mkdir()
    elif kind == "text":
        db.write_text("user item\n1 2\n" * 100)
    elif kind == "truncated":
        data = (tmp_path / "good" / "store.sqlite").read_bytes()
        db.write_bytes(data[:len(data) // 2])
    else:
        shutil.copy(tmp_path / "good" / "store.sqlite", db)
        c = sqlite3.connect(db)
        c.execute("PRAGMA user_version=99")
        c.close()
    before = None if kind == "directory" else fingerprint(db)
    for argv in (["history", "--db", str(db)],
                 ["forget", "--db", str(db), "--checkpoint", str(tmp_path / "good" / "model.pt"),
                  "--user", "1", "--quiet"]):
        code, err = run_cli(argv, capsys)
        assert code == 2, (kind, argv)
        assert err.count("\n") == 1 and str(db) in err and "Traceback" not in err, err
    if before is not None:
        assert fingerprint(db) == before
