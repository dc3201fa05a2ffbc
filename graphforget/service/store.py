"""The interaction store: users, items, interactions and deletion tombstones in SQLite.

One SQLite file (stdlib :mod:`sqlite3`, WAL journal, ``synchronous=FULL``, ``secure_delete``)
holds

* ``users(id, raw)`` / ``items(id, raw)``: internal id ↔ raw id (as users know them). Id spaces
  only grow; deleting interactions never renumbers, so a checkpoint's embedding rows stay valid
  and a user whose interactions are all forgotten remains as an isolated node.
* ``interactions(user, item, rating, label, timestamp, split)`` with ``split`` in
  ``train`` / ``valid`` / ``test``.
* ``deleted(token, request_id, time)``: one tombstone per forgotten ``(user, item)`` pair, as a
  keyed token under the key kept in the key file beside the database, not the pair itself
  (:mod:`graphforget.service.tokens`, which also says what a holder of the file can learn). A
  tombstoned pair has no row in any split, and every later import skips it, so a forgotten
  interaction never comes back through a reload or a retrain. A user (item) forgotten as a
  whole keeps its internal id but its raw id becomes a ``forgotten:…`` placeholder.
* ``meta(key, value)``: data set name, whether training labels are used, the store's random
  ``store_id``, and the "current checkpoint" pointer maintained by
  :class:`~graphforget.service.Forgetter`.
* ``files(name, time)``: every checkpoint file the store's service wrote (or is about to write)
  in the checkpoint folder. A name is recorded *before* the file is created, so the service's
  clean-up touches only files recorded here, never a user's or another store's.
* ``ledger``: the append-only, hash-chained request log of :mod:`graphforget.service.ledger`, in
  the same file so a store change and its ledger row commit in one transaction (imports are
  logged too). Each applied row's hash covers the tombstones it added.

Every write runs inside :meth:`InteractionStore.transaction` (``BEGIN IMMEDIATE`` …
``COMMIT``, ``ROLLBACK`` on any exception); the connection is in autocommit mode so nothing is
ever committed implicitly.

A store is marked in the SQLite header: ``PRAGMA application_id`` is
:data:`APPLICATION_ID` and ``PRAGMA user_version`` the schema version :data:`SCHEMA_VERSION`
(1: the first marked stores; 2: the ledger is hash-chained; 3: keyed tombstones, no raw ids
of forgotten data).
Before anything is created or written, an existing file is inspected read-only (:func:`probe`):
a directory, a file that is not SQLite or is damaged, an SQLite file of another program (another
application id, or objects without graphforget's tables) and a store of a newer schema are
refused with a one-line ``ValueError`` naming the file, and nothing is written. An empty file
(zero bytes, or SQLite without any schema object) becomes a new store. A store written before
stores were marked (application id 0 with graphforget's tables) is accepted; it is stamped on
its first writable open, which also records the checkpoints its ledger names as its own (orphans
that such a store's crashes left behind are never recorded, so they are not removed). A store of
schema version 1 (or unmarked) has an unchained ledger: the same first writable open chains it,
in the same transaction (:meth:`~graphforget.service.Ledger.chain_existing`: rows rehashed as
found, plus a ``chain`` row saying so; ``graphforget store migrate`` does just that). Read-only
opens never chain; :func:`graphforget.service.verify_store` refuses an unchained store. A
store of schema 2 is converted on its first writable open in the same way (see
:mod:`graphforget.service.ledger`). After each forget request the WAL is checkpointed and
truncated, and ``secure_delete`` zeroes deleted content, so the forgotten bytes are gone from
the database file and its WAL (not from backups, copies, or the file system's free blocks). With
``readonly=True`` the file is opened through a ``file:…?mode=ro`` URI and never written.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from ..data.graph import InteractionGraph, as_edge_tensor, edge_keys
from ..data.interactions import Interactions
from . import tokens as tk
from .ledger import LEDGER_SCHEMA, Ledger, LedgerEntry, legacy_tombstone_problem, run_script

SPLITS = ("train", "valid", "test")
_CHUNK = 500  # host parameters per IN (...) query, well below SQLite's limit

APPLICATION_ID = int.from_bytes(b"GFst", "big")  # 0x47467374, PRAGMA application_id of a store
SCHEMA_VERSION = 3  # PRAGMA user_version; 2: hash-chained ledger; 3: keyed tombstones
_TABLES = frozenset({"meta", "users", "items", "interactions", "deleted", "ledger"})  # in every store

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, raw TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, raw TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS interactions(
    user INTEGER NOT NULL REFERENCES users(id),
    item INTEGER NOT NULL REFERENCES items(id),
    rating REAL, label REAL, timestamp INTEGER,
    split TEXT NOT NULL CHECK(split IN ('train', 'valid', 'test')),
    PRIMARY KEY(user, item, split)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS interactions_item ON interactions(item);
CREATE INDEX IF NOT EXISTS interactions_split ON interactions(split, user, item);
CREATE TABLE IF NOT EXISTS deleted(
    token BLOB PRIMARY KEY, request_id TEXT NOT NULL, time REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deleted_request ON deleted(request_id);
CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, time REAL NOT NULL);
"""

# a store written before stores were marked: the checkpoints its service wrote are in the ledger
_ADOPT_FILES = """INSERT OR IGNORE INTO files(name, time)
SELECT DISTINCT checkpoint, ? FROM ledger
WHERE status = 'applied' AND kind != 'bind' AND checkpoint IS NOT NULL"""


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterator[Sequence]:
    for s in range(0, len(seq), n):
        yield seq[s:s + n]


def _pairs(edges: Tensor) -> list[tuple[int, int]]:
    return list(zip(edges[0].tolist(), edges[1].tolist()))


def _read_only_uri(path: Path, immutable: bool = False) -> str:
    return path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")


def probe(path: str | os.PathLike) -> str:
    """What ``path`` is, found without writing anything: ``"absent"``, ``"empty"`` (a new
    store may be created in it), ``"unmarked"`` (a store written before stores were marked) or
    ``"store"``. Raises a one-line ``ValueError`` naming the file for anything else.

    Without a ``-wal`` file beside it the database is read as immutable, so SQLite creates no
    ``-wal`` / ``-shm`` file next to someone else's database either.
    """
    path = Path(path)
    if not path.exists():
        return "absent"
    if not path.is_file():
        raise ValueError(f"{path}: not a file, expected a graphforget store (SQLite)")
    wal = path.with_name(path.name + "-wal").exists()
    try:
        conn = sqlite3.connect(_read_only_uri(path, immutable=not wal), uri=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = [r for (r,) in conn.execute("SELECT name FROM sqlite_master")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a readable SQLite database ({exc})") from exc
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise ValueError(f"{path}: store schema version {version} is newer than this "
                             f"graphforget's ({SCHEMA_VERSION}); upgrade graphforget")
        return "store"
    if app_id == 0 and version == 0 and not objects:
        return "empty"
    if app_id == 0 and _TABLES <= set(objects):
        return "unmarked"
    raise ValueError(f"{path}: not a graphforget store (SQLite application_id {app_id:#x}, "
                     f"{len(objects)} schema objects, e.g. {sorted(objects)[:3]})")


class InteractionStore:
    """Interactions, id maps and deletion tombstones of one data set in an SQLite file.

    Args:
        path: the database file (created with its schema if absent or empty; another
            program's file is refused, see the module docstring).
        timeout: seconds to wait for another writer's lock.
        readonly: open an existing store for reading only (``mode=ro``); nothing is created,
            stamped or written, and :meth:`transaction` raises ``ValueError``.

    Example::

        store = InteractionStore("store.sqlite")
        store.import_graph(load_lightgcn_txt("ml100k"))
        graph = store.to_graph()            # the current state, same internal ids
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 30.0, readonly: bool = False,
                 key_path: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.key_path = Path(key_path) if key_path is not None else tk.default_key_path(self.path)
        self._key: Optional[bytes] = None
        self.readonly = readonly
        self._in_tx = False
        kind = probe(self.path)  # before anything is created or written
        if readonly:
            if kind == "absent":
                raise FileNotFoundError(f"{self.path}: no such store (create it with "
                                        "`graphforget store import`)")
            if kind == "empty":
                raise ValueError(f"{self.path}: an empty database, not a graphforget store")
            # without a -wal file no writer has the store open: read it as immutable, so the
            # read creates no -wal / -shm files (a read-only connection could not remove them)
            wal = self.path.with_name(self.path.name + "-wal").exists()
            self.conn = sqlite3.connect(_read_only_uri(self.path, immutable=not wal), uri=True,
                                        timeout=timeout, isolation_level=None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA secure_delete=ON")  # overwrite deleted rows' content
        with self.transaction() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]  # under the write lock
            old = version < SCHEMA_VERSION and c.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='ledger'").fetchone()
            if old and version >= 2:
                self._check_before_migration(c)
            run_script(c, SCHEMA)
            if kind != "store":
                self._stamp(c, adopt=kind == "unmarked")
            if old or self.get_meta("key_id") is None:
                self._key = tk.create_key(self.key_path)
                self.set_meta(c, "key_id", tk.key_id(self._key))
            if old:
                transform = self._to_tokens(c)
                Ledger(c).chain_existing(c, version, transform)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            else:
                run_script(c, LEDGER_SCHEMA)
        self.scrub()  # bytes a crash or a reader left behind (after a forget) leave the files

    def _check_before_migration(self, conn: sqlite3.Connection) -> None:
        """A chained (schema 2) store is converted only if its chain and tombstones hold, so a
        conversion never launders tampering."""
        problem = Ledger(conn).chain_problem() or legacy_tombstone_problem(conn)
        if problem:
            raise ValueError(f"{self.path}: {problem}; a store that fails its integrity checks is "
                             "not converted to schema 3 (verify it with an older graphforget)")

    def _to_tokens(self, conn: sqlite3.Connection):
        """Schema 1/2 → 3 inside the opening transaction: tombstones of raw pairs become keyed
        tokens and the users / items forgotten as a whole get their placeholders. Returns the
        ledger row transform that replaces the raw ids of forget requests (see
        :mod:`~graphforget.service.ledger`)."""
        key = self._key
        cols = [r[1] for r in conn.execute("PRAGMA table_info(deleted)")]
        if "token" not in cols:
            rows = conn.execute("SELECT user, item, request_id, time FROM deleted").fetchall()
            conn.execute("DROP TABLE deleted")
            run_script(conn, SCHEMA)
            toks = tk.pair_tokens(key, torch.tensor([r[:2] for r in rows], dtype=torch.long).view(-1, 2).t())
            conn.executemany("INSERT INTO deleted(token, request_id, time) VALUES(?, ?, ?)",
                             [(t, r[2], r[3]) for t, r in zip(toks, rows)])
        names: dict[tuple[str, str], str] = {}
        for kind, request in conn.execute("SELECT kind, request FROM ledger WHERE status='applied' "
                                          "AND kind IN ('user', 'item')").fetchall():
            raw = json.loads(request)
            if isinstance(raw, str):
                names[(kind, raw)] = self._forget_raw(conn, kind, raw)

        def keyed(fp):  # a plain fingerprint is 16 hex digits, a keyed one 32
            return tk.graph_digest(key, fp) if isinstance(fp, str) and len(fp) == 16 else fp

        fp = conn.execute("SELECT value FROM meta WHERE key='checkpoint_fingerprint'").fetchone()
        if fp is not None:  # the pointer's fingerprint becomes keyed like the ledger's
            self.set_meta(conn, "checkpoint_fingerprint", keyed(fp[0]))

        def transform(row: dict) -> dict:
            row = {**row, "graph_fingerprint": keyed(row.get("graph_fingerprint"))}
            if row.get("kind") not in ("edges", "user", "item"):
                return row
            raw = json.loads(row["request"])
            if isinstance(raw, dict):  # already without raw ids
                return row
            kind = row["kind"]
            stored = {"pairs": len(raw)} if kind == "edges" else \
                {kind: names.get((kind, raw), tk.placeholder(key, kind, str(raw)))}
            return {**row, "request": json.dumps(stored, sort_keys=True),
                    "request_digest": tk.request_digest(key, kind, raw)}
        return transform

    def _stamp(self, conn: sqlite3.Connection, adopt: bool) -> None:
        """Mark a new (or, with ``adopt``, an unmarked old) store inside ``conn``'s transaction."""
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('store_id', ?)",
                     (uuid.uuid4().hex[:12],))
        if adopt:
            conn.execute(_ADOPT_FILES, (time.time(),))

    @property
    def key(self) -> bytes:
        """The tombstone key from :attr:`key_path` (read once); a one-line ``ValueError`` if it
        is missing or is not this store's."""
        if self._key is None:
            if not self.key_path.exists():
                raise ValueError(f"{self.key_path}: the store's key file is missing, so its "
                                 "tombstones cannot be checked: restore it (from where it was "
                                 "backed up) before forgetting or importing")
            key = tk.read_key(self.key_path)
            if tk.key_id(key) != self.get_meta("key_id"):
                raise ValueError(f"{self.key_path}: this key file is not the key of {self.path}")
            self._key = key
        return self._key

    def scrub(self) -> bool:
        """Checkpoint the WAL into the database and truncate it, so deleted bytes (zeroed there
        by ``secure_delete``) leave the database file and the WAL. Returns whether it completed:
        a reader holding an old snapshot stops it (it is retried at every writable open)."""
        if self.readonly:
            return False
        (wait,) = self.conn.execute("PRAGMA busy_timeout").fetchone()
        self.conn.execute("PRAGMA busy_timeout=200")  # a reader's snapshot: do not stall the request
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(wait)}")
        return not busy

    def graph_digest(self, graph: InteractionGraph) -> str:
        """The keyed fingerprint of ``graph`` that the ledger and the pointer record
        (:func:`~graphforget.service.tokens.graph_digest`)."""
        return tk.graph_digest(self.key, graph.fingerprint())

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` and re-raise on any exception."""
        if self.readonly:
            raise ValueError(f"{self.path}: store opened read-only")
        if self._in_tx:
            raise RuntimeError("nested store transaction")
        self.conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._in_tx = False

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        if self._in_tx:  # already inside a write transaction: reads see it
            yield self.conn
            return
        self.conn.execute("BEGIN DEFERRED")
        self._in_tx = True
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")
            self._in_tx = False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "InteractionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        """Set a meta value inside the caller's transaction ``conn``."""
        conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                     "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, str(value)))

    @property
    def chained(self) -> bool:
        """Whether the store's schema has the hash-chained ledger (always after a writable
        open; a read-only open may find a store written before the chain)."""
        return self.conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION

    @property
    def store_id(self) -> str:
        """Random id of this store, set when it was created (or first opened after marking)."""
        return self.get_meta("store_id")

    # ------------------------------------------------------------------ owned files
    def own_file(self, conn: sqlite3.Connection, name: str) -> None:
        """Record checkpoint file ``name`` as this store's own, inside ``conn``'s transaction;
        commit it *before* creating the file, so a crash can only orphan a recorded file."""
        conn.execute("INSERT OR IGNORE INTO files(name, time) VALUES(?, ?)", (name, time.time()))

    def owned_files(self) -> list[str]:
        """Names of the checkpoint files this store recorded as its own."""
        return [n for (n,) in self.conn.execute("SELECT name FROM files ORDER BY name")]

    def disown_files(self, conn: sqlite3.Connection, names: Iterable[str]) -> None:
        """Forget files (removed from disk) inside ``conn``'s transaction."""
        conn.executemany("DELETE FROM files WHERE name=?", [(n,) for n in names])

    def current_checkpoint(self) -> Optional[dict]:
        """The current-checkpoint pointer ``{"name", "sha256", "fingerprint"}`` or ``None``."""
        with self.snapshot() as c:
            rows = dict(c.execute("SELECT key, value FROM meta WHERE key IN "
                                  "('checkpoint_name', 'checkpoint_sha256', 'checkpoint_fingerprint')"))
        if "checkpoint_name" not in rows:
            return None
        return {"name": rows["checkpoint_name"], "sha256": rows["checkpoint_sha256"],
                "fingerprint": rows["checkpoint_fingerprint"]}

    def set_current_checkpoint(self, conn: sqlite3.Connection, name: str, sha256: str,
                               fingerprint: str) -> None:
        """Move the pointer inside the caller's transaction ``conn``."""
        self.set_meta(conn, "checkpoint_name", name)
        self.set_meta(conn, "checkpoint_sha256", sha256)
        self.set_meta(conn, "checkpoint_fingerprint", fingerprint)

    # ------------------------------------------------------------------ sizes
    @property
    def num_users(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    @property
    def num_items(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def is_empty(self) -> bool:
        return self.num_users == 0 and self.num_items == 0

    def counts(self) -> dict:
        """Rows per split, tombstones, users and items."""
        with self.snapshot() as c:
            per = dict(c.execute("SELECT split, COUNT(*) FROM interactions GROUP BY split"))
            return {"users": self.num_users, "items": self.num_items,
                    **{s: int(per.get(s, 0)) for s in SPLITS},
                    "deleted": int(c.execute("SELECT COUNT(*) FROM deleted").fetchone()[0])}

    # ------------------------------------------------------------------ import
    def import_graph(self, graph: InteractionGraph, source: str = "") -> dict:
        """Add the train / valid / test edges of ``graph`` (raw ids from ``graph.user_ids`` /
        ``item_ids``, else ``str(internal id)``; training labels and timestamps kept).

        Into an empty store the graph's internal ids are kept as they are, so a checkpoint
        trained on ``graph`` matches :meth:`to_graph`. Into a non-empty store, rows are matched
        by raw id (new raw ids get new internal ids after the existing ones), rows already
        present are skipped, and rows of forgotten pairs are skipped. A store bound to a
        checkpoint refuses an import that would add users, items or rows (``ValueError``,
        nothing written): its checkpoint would no longer be of the store's graph. Returns the
        counts.
        """
        def tab(e, labels, ts=None):
            return e, None, labels, ts

        rows = {"train": tab(graph.train_edges, graph.train_labels, graph.train_timestamps),
                "valid": tab(graph.valid_edges, graph.valid_labels),
                "test": tab(graph.test_edges, graph.test_labels)}
        return self._import(graph.num_users, graph.num_items, graph.user_ids, graph.item_ids,
                            rows, graph.has_labels, graph.name, source or graph.name)

    def import_preview(self, graph: InteractionGraph) -> dict:
        """What :meth:`import_graph` would do, computed with reads only (works on a read-only
        open): the same counts, plus ``existing_users_gaining_rows`` (existing raw user ids that
        would get new rows: another data set whose raw ids collide, or another split seed).
        Raises the same ``ValueError`` as the import for duplicate raw ids or a label mismatch."""
        uraw = [str(x) for x in graph.user_ids] if graph.user_ids is not None else \
            [str(k) for k in range(graph.num_users)]
        iraw = [str(x) for x in graph.item_ids] if graph.item_ids is not None else \
            [str(k) for k in range(graph.num_items)]
        for table, raw in (("users", uraw), ("items", iraw)):
            if len(set(raw)) != len(raw):
                raise ValueError(f"duplicate raw {table[:-1]} ids in the data")
        stats = {"users_added": 0, "items_added": 0, "rows_added": 0, "rows_existing": 0,
                 "rows_forgotten": 0, "existing_users_gaining_rows": 0}
        with self.snapshot() as c:
            had = self.get_meta("labels")
            if had is not None and had != str(int(bool(graph.has_labels))):
                raise ValueError(f"store holds {'labelled' if had == '1' else 'unlabelled'} data; "
                                 f"cannot import {'labelled' if graph.has_labels else 'unlabelled'} rows")
            maps = []
            for table, raw in (("users", uraw), ("items", iraw)):
                known = dict(c.execute(f"SELECT raw, id FROM {table}").fetchall())
                self._add_placeholders(known, table, [r for r in raw if r not in known])
                nxt, out = len(known), []
                for r in raw:
                    k = known.get(r)
                    if k is None:
                        k, nxt = nxt, nxt + 1
                        stats[f"{table}_added"] += 1
                    out.append(k)
                maps.append(torch.tensor(out, dtype=torch.long))
            num_users_before = int(c.execute("SELECT COUNT(*) FROM users").fetchone()[0])
            total_items = int(c.execute("SELECT COUNT(*) FROM items").fetchone()[0]) + stats["items_added"]
            dead = self._dead_tokens(c)
            gaining: set[int] = set()
            for split in SPLITS:
                e = as_edge_tensor(getattr(graph, f"{split}_edges"), f"{split}_edges")
                if e.shape[1] == 0:
                    continue
                e = torch.stack([maps[0][e[0]], maps[1][e[1]]])
                keys = edge_keys(e, total_items)
                alive = self._alive(e, dead)
                stats["rows_forgotten"] += int((~alive).sum())
                rows = c.execute("SELECT user, item FROM interactions WHERE split=?", (split,)).fetchall()
                have = edge_keys(torch.tensor(rows, dtype=torch.long).view(-1, 2).t(), total_items)
                new = alive & ~torch.isin(keys, have)
                stats["rows_added"] += int(new.sum())
                stats["rows_existing"] += int((alive & ~new).sum())
                gaining.update(u for u in e[0][new].tolist() if u < num_users_before)
            stats["existing_users_gaining_rows"] = len(gaining)
        return stats

    def import_interactions(self, train: Interactions, valid: Optional[Interactions] = None,
                            test: Optional[Interactions] = None, labels: bool = False,
                            name: str = "") -> dict:
        """Add split tables from any loader (same semantics as :meth:`import_graph`; ratings and
        timestamps are stored, and with ``labels=True`` the ratings also become edge labels as in
        :meth:`InteractionGraph.from_splits`)."""
        rows = {}
        for split, t in zip(SPLITS, (train, valid, test)):
            if t is None:
                continue
            if (t.num_users, t.num_items) != (train.num_users, train.num_items):
                raise ValueError(f"{split} table has id spaces ({t.num_users}, {t.num_items}), "
                                 f"train has ({train.num_users}, {train.num_items})")
            rows[split] = (t.edge_index(), t.ratings, t.ratings if labels else None, t.timestamps)
        if labels and train.ratings is None:
            raise ValueError("labels=True needs ratings in the training table")
        return self._import(train.num_users, train.num_items, train.user_ids or None,
                            train.item_ids or None, rows, labels, name or train.source,
                            train.source or name)

    def _map_ids(self, conn: sqlite3.Connection, table: str, raw: list[str]) -> tuple[Tensor, int]:
        """Store ids for the incoming raw ids, inserting unknown ones; returns (map, added). A
        raw id of a node forgotten as a whole maps to its placeholder's id."""
        if len(set(raw)) != len(raw):
            seen, dup = set(), []
            for r in raw:
                (dup.append(r) if r in seen else seen.add(r))
            raise ValueError(f"duplicate raw {table[:-1]} ids in the data: {dup[:10]}")
        known = dict(conn.execute(f"SELECT raw, id FROM {table}").fetchall())
        reserved = [r for r in raw if r.startswith(tk.PLACEHOLDER) and r not in known]
        if reserved:
            raise ValueError(f"raw {table[:-1]} ids may not start with {tk.PLACEHOLDER!r} (kept for "
                             f"forgotten {table}): {reserved[:5]}")
        self._add_placeholders(known, table, [r for r in raw if r not in known])
        nxt = len(known)
        mapping, new = [], []
        for r in raw:
            k = known.get(r)
            if k is None:
                k = nxt
                nxt += 1
                new.append((k, r))
            mapping.append(k)
        conn.executemany(f"INSERT INTO {table}(id, raw) VALUES(?, ?)", new)
        return torch.tensor(mapping, dtype=torch.long), len(new)

    def _add_placeholders(self, found: dict, table: str, unknown: list[str]) -> None:
        """Add ``raw → id`` to ``found`` for the ``unknown`` raw ids whose node was forgotten
        as a whole (hashed only when the table has placeholders: then the key is needed)."""
        lo, hi = tk.PLACEHOLDER, tk.PLACEHOLDER[:-1] + chr(ord(tk.PLACEHOLDER[-1]) + 1)
        if not unknown or self.conn.execute(f"SELECT 1 FROM {table} WHERE raw >= ? AND raw < ? "
                                            "LIMIT 1", (lo, hi)).fetchone() is None:
            return
        names = {tk.placeholder(self.key, table[:-1], r): r for r in unknown}
        for chunk in _chunks(list(names)):
            q = f"SELECT raw, id FROM {table} WHERE raw IN ({','.join('?' * len(chunk))})"
            for name, k in self.conn.execute(q, list(chunk)):
                found[names[name]] = k

    def _forget_raw(self, conn: sqlite3.Connection, what: str, raw: str) -> str:
        """Inside ``conn``'s transaction: replace the raw id of the user / item ``raw`` by its
        placeholder (its internal id stays); returns the placeholder."""
        name = tk.placeholder(self.key, what, raw)
        conn.execute(f"UPDATE {what}s SET raw=? WHERE raw=?", (name, raw))
        return name

    def forget_node(self, conn: sqlite3.Connection, what: str, node: int) -> str:
        """Inside ``conn``'s transaction: the user / item with internal id ``node`` loses its raw
        id (:func:`~graphforget.service.tokens.placeholder`); returns the placeholder."""
        (raw,) = conn.execute(f"SELECT raw FROM {what}s WHERE id=?", (int(node),)).fetchone()
        if raw.startswith(tk.PLACEHOLDER):
            return raw
        return self._forget_raw(conn, what, raw)

    def request_digest(self, kind: str, request) -> str:
        """Keyed digest of a forget request's canonical raw form (the ledger's idempotency)."""
        return tk.request_digest(self.key, kind, request)

    def _import(self, num_users: int, num_items: int, user_ids, item_ids, rows: dict,
                labels: bool, name: str, source: str) -> dict:
        uraw = [str(x) for x in user_ids] if user_ids is not None else [str(k) for k in range(num_users)]
        iraw = [str(x) for x in item_ids] if item_ids is not None else [str(k) for k in range(num_items)]
        if len(uraw) != num_users or len(iraw) != num_items:
            raise ValueError(f"raw id lists ({len(uraw)} users, {len(iraw)} items) do not match "
                             f"the id spaces ({num_users}, {num_items})")
        stats = {"users_added": 0, "items_added": 0, "rows_added": 0, "rows_existing": 0,
                 "rows_forgotten": 0}
        with self.transaction() as c:
            had = self.get_meta("labels")
            if had is not None and had != str(int(bool(labels))):
                raise ValueError(f"store holds {'labelled' if had == '1' else 'unlabelled'} data; "
                                 f"cannot import {'labelled' if labels else 'unlabelled'} rows")
            self.set_meta(c, "labels", str(int(bool(labels))))
            if self.get_meta("name") is None:
                self.set_meta(c, "name", name)
            umap, stats["users_added"] = self._map_ids(c, "users", uraw)
            imap, stats["items_added"] = self._map_ids(c, "items", iraw)
            dead = self._dead_tokens(c)
            for split, (e, rating, label, ts) in rows.items():
                e = as_edge_tensor(e, f"{split}_edges")
                if e.shape[1] == 0:
                    continue
                e = torch.stack([umap[e[0]], imap[e[1]]])
                alive = self._alive(e, dead)
                stats["rows_forgotten"] += int((~alive).sum())
                cols = [e[0][alive].tolist(), e[1][alive].tolist()]
                for t in (rating, label, ts):
                    cols.append([None] * len(cols[0]) if t is None else torch.as_tensor(t)[alive].tolist())
                before = self.conn.total_changes
                c.executemany("INSERT OR IGNORE INTO interactions(user, item, rating, label, timestamp, "
                              f"split) VALUES(?, ?, ?, ?, ?, '{split}')", zip(*cols))
                added = self.conn.total_changes - before
                stats["rows_added"] += added
                stats["rows_existing"] += len(cols[0]) - added
            bound = self.get_meta("checkpoint_name")
            if bound is not None and (stats["users_added"] or stats["items_added"] or stats["rows_added"]):
                raise ValueError(  # the transaction rolls back: nothing written
                    f"{self.path} is bound to checkpoint {bound}, and this import would add "
                    f"{stats['users_added']} users, {stats['items_added']} items and "
                    f"{stats['rows_added']} rows that it was not trained on: refused, nothing "
                    "written (re-importing the same rows is fine; import new data into a new store)")
            when = time.time()
            Ledger(c).append(c, LedgerEntry(
                request_id=f"import-{when:.6f}-{uuid.uuid4().hex[:8]}", time=when, kind="import",
                status="applied", request={"source": str(source), "name": name},
                request_digest="", report=stats))
        return stats

    # ------------------------------------------------------------------ export
    def to_graph(self, name: Optional[str] = None) -> InteractionGraph:
        """The current interactions as an :class:`InteractionGraph` over the store's full id
        spaces (forgotten rows absent; users / items without rows are isolated nodes)."""
        with self.snapshot() as c:
            nu = int(c.execute("SELECT COUNT(*) FROM users").fetchone()[0])
            ni = int(c.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            uids = [r for (r,) in c.execute("SELECT raw FROM users ORDER BY id")]
            iids = [r for (r,) in c.execute("SELECT raw FROM items ORDER BY id")]
            labelled = self.get_meta("labels") == "1"
            parts = {}
            for split in SPLITS:
                rows = c.execute("SELECT user, item, label, timestamp FROM interactions "
                                 "WHERE split=? ORDER BY user, item", (split,)).fetchall()
                parts[split] = rows
            ds_name = name if name is not None else (self.get_meta("name") or "")

        def edges(rows):
            if not rows:
                return torch.zeros(2, 0, dtype=torch.long)
            return torch.tensor([[r[0] for r in rows], [r[1] for r in rows]], dtype=torch.long)

        def labels_of(rows, split):
            if not labelled:
                return None
            vals = [r[2] for r in rows]
            if any(v is None for v in vals):
                raise ValueError(f"store is labelled but some {split} rows have no label")
            return torch.tensor(vals, dtype=torch.float32)

        tr = parts["train"]
        ts = [r[3] for r in tr]
        timestamps = torch.tensor(ts, dtype=torch.long) if tr and all(t is not None for t in ts) else None
        return InteractionGraph(nu, ni, edges(tr), edges(parts["valid"]), edges(parts["test"]),
                                train_labels=labels_of(tr, "train"),
                                valid_labels=labels_of(parts["valid"], "valid"),
                                test_labels=labels_of(parts["test"], "test"),
                                train_timestamps=timestamps, user_ids=uids, item_ids=iids,
                                name=ds_name)

    # ------------------------------------------------------------------ lookups
    def _lookup(self, table: str, raw_ids: Iterable) -> Tensor:
        raw = [str(r) for r in raw_ids]
        found: dict[str, int] = {}
        uniq = list(dict.fromkeys(raw))
        for chunk in _chunks(uniq):
            q = f"SELECT raw, id FROM {table} WHERE raw IN ({','.join('?' * len(chunk))})"
            found.update(self.conn.execute(q, list(chunk)).fetchall())
        self._add_placeholders(found, table, [r for r in uniq if r not in found])  # forgotten nodes
        missing = [r for r in uniq if r not in found]
        if missing:
            raise ValueError(f"unknown {table[:-1]} ids ({len(missing)}): {missing[:10]}")
        return torch.tensor([found[r] for r in raw], dtype=torch.long)

    def lookup_users(self, raw_ids: Iterable) -> Tensor:
        """Internal ids of raw user ids; ``ValueError`` naming every unknown id (first 10)."""
        return self._lookup("users", raw_ids)

    def lookup_items(self, raw_ids: Iterable) -> Tensor:
        """Internal ids of raw item ids; ``ValueError`` naming every unknown id (first 10)."""
        return self._lookup("items", raw_ids)

    def raw_users(self, ids: Iterable[int]) -> list[str]:
        return self._raw("users", ids)

    def raw_items(self, ids: Iterable[int]) -> list[str]:
        return self._raw("items", ids)

    def _raw(self, table: str, ids: Iterable[int]) -> list[str]:
        ids = [int(i) for i in ids]
        found: dict[int, str] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            q = f"SELECT id, raw FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(self.conn.execute(q, list(chunk)).fetchall())
        return [found.get(i, f"<unknown {i}>") for i in ids]

    # ------------------------------------------------------------------ tombstones
    def _dead_tokens(self, conn: sqlite3.Connection) -> set[bytes]:
        return {t for (t,) in conn.execute("SELECT token FROM deleted")}

    def _alive(self, edges: Tensor, dead: set[bytes]) -> Tensor:
        """Bool ``[m]``: which pairs of ``edges`` are not tombstoned (no hashing, and no key
        needed, while nothing is)."""
        if not dead:
            return torch.ones(edges.shape[1], dtype=torch.bool)
        return torch.tensor([t not in dead for t in tk.pair_tokens(self.key, edges)], dtype=torch.bool)

    def tokens(self, edges: Tensor) -> list[bytes]:
        """Tombstone tokens of the pairs ``edges [2, m]``."""
        return tk.pair_tokens(self.key, as_edge_tensor(edges))

    def deleted_by(self, edges: Tensor) -> list[Optional[str]]:
        """For each pair of ``edges [2, m]`` the request id that forgot it, else ``None``."""
        if self.conn.execute("SELECT 1 FROM deleted LIMIT 1").fetchone() is None:
            return [None] * int(as_edge_tensor(edges).shape[1])
        toks = self.tokens(edges)
        out: dict[bytes, str] = {}
        for chunk in _chunks(list(dict.fromkeys(toks))):
            q = f"SELECT token, request_id FROM deleted WHERE token IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, list(chunk)).fetchall())
        return [out.get(t) for t in toks]

    def deleted_of(self, users: Optional[Tensor] = None, items: Optional[Tensor] = None) -> dict:
        """``{request_id: count}`` of tombstones of the given users or items (their pairs with
        every item or user of the store, hashed)."""
        nodes = torch.as_tensor(users if users is not None else items).view(-1)
        other = torch.arange(self.num_items if users is not None else self.num_users)
        a, b = torch.cartesian_prod(nodes, other).t() if len(nodes) else (nodes, nodes)
        pairs = torch.stack([a, b]) if users is not None else torch.stack([b, a])
        out: dict[str, int] = {}
        for r in self.deleted_by(pairs):
            if r is not None:
                out[r] = out.get(r, 0) + 1
        return out

    def request_tokens(self, request_id: str) -> list[bytes]:
        """Tokens tombstoned by ``request_id``."""
        return [t for (t,) in self.conn.execute("SELECT token FROM deleted WHERE request_id=?",
                                                (request_id,))]

    def _interaction_tokens(self) -> dict[bytes, tuple[int, int]]:
        """``{token: (user, item)}`` of every pair with an interaction row (any split)."""
        rows = self.conn.execute("SELECT DISTINCT user, item FROM interactions").fetchall()
        pairs = torch.tensor(rows, dtype=torch.long).view(-1, 2).t()
        return dict(zip(self.tokens(pairs), rows)) if rows else {}

    def present_tokens(self, tokens: Iterable[bytes]) -> int:
        """How many of ``tokens`` are pairs that have an interaction row again."""
        tokens = list(tokens)
        if not tokens:
            return 0
        live = self._interaction_tokens()
        return sum(t in live for t in tokens)

    def forgotten_in_store(self, limit: int = 5) -> tuple[int, list[tuple[str, str, str]]]:
        """Tombstoned pairs that have an interaction row again: their number and the first
        ``limit`` as ``(raw user, raw item, request id)`` (every row's token recomputed)."""
        dead = dict(self.conn.execute("SELECT token, request_id FROM deleted").fetchall())
        if not dead:
            return 0, []
        back = sorted((pair, dead[t]) for t, pair in self._interaction_tokens().items() if t in dead)
        rows = back[:limit]
        users, items = self.raw_users([p[0] for p, _ in rows]), self.raw_items([p[1] for p, _ in rows])
        return len(back), [(u, i, r) for u, i, (_, r) in zip(users, items, rows)]

    def heldout_pairs(self, users: Optional[Tensor] = None, items: Optional[Tensor] = None) -> Tensor:
        """Validation / test pairs ``[2, m]`` of the given users or items."""
        col, ids = ("user", users) if users is not None else ("item", items)
        ids = torch.as_tensor(ids).view(-1).tolist()
        q = (f"SELECT DISTINCT user, item FROM interactions WHERE split != 'train' AND "
             f"{col} IN ({','.join('?' * len(ids))}) ORDER BY user, item")
        rows = self.conn.execute(q, ids).fetchall()
        return torch.tensor(rows, dtype=torch.long).view(-1, 2).t().contiguous()

    def mark_deleted(self, conn: sqlite3.Connection, pairs: Tensor, request_id: str,
                     when: float) -> int:
        """Inside the caller's transaction: delete every row of ``pairs`` (all splits) and add
        their tombstone tokens. Raises ``ValueError`` if a pair is already tombstoned (the
        caller's transaction then rolls back). Returns the number of interaction rows removed."""
        pairs = as_edge_tensor(pairs)
        toks = self.tokens(pairs)
        before = self.conn.total_changes
        conn.executemany("DELETE FROM interactions WHERE user=? AND item=?", _pairs(pairs))
        removed = self.conn.total_changes - before
        try:
            conn.executemany("INSERT INTO deleted(token, request_id, time) VALUES(?, ?, ?)",
                             [(t, request_id, when) for t in toks])
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"some pairs of request {request_id!r} are already forgotten") from exc
        return removed
