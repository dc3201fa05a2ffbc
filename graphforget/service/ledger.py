"""The append-only, hash-chained ledger: one row per forget request (and per import, bind,
retrain and chaining of an old store).

The ``ledger`` table lives in the store's SQLite file, so
:class:`~graphforget.service.Forgetter` commits a request's tombstones, its ledger row and the
new current-checkpoint pointer in one transaction. Triggers reject ``UPDATE`` and ``DELETE``, so
rows can only be appended through SQL. At most one row per request id has status ``applied`` (a
partial unique index); ``failed`` rows record requests that were refused after validation (e.g.
a solver that did not converge with no fallback), and change nothing else.

Columns: ``seq`` (order, contiguous from 1), ``request_id``, ``time`` (unix seconds), ``kind``
(``edges``, ``user``, ``item``, ``import``, ``bind``, ``retrain``, ``chain``), ``status``,
``request`` (JSON; for a forget request no raw ids: ``{"pairs": n}`` for edges,
``{"user": placeholder}`` / ``{"item": placeholder}`` for a whole node, see
:mod:`~graphforget.service.tokens`), ``request_digest`` (a keyed digest of the canonical
request as given, for idempotency), ``num_edges`` (training edges forgotten), ``num_heldout`` (validation / test
pairs purged), ``method``, ``options``, ``report`` (the :class:`~graphforget.unlearning.UnlearnReport`:
times, solver residual, iterations, …), ``audit_before`` / ``audit_after`` (utility figures),
``checkpoint`` (file name), ``checkpoint_sha256``, ``graph_fingerprint`` (training edges after
the request), ``parent_sha256`` (checkpoint the request started from), ``error``,
``tombstones_sha256`` and ``hash`` (below).

**The chain.** Triggers only stop well-behaved SQL: anyone who can write the file can drop them,
or edit its bytes. So every row also stores

* ``tombstones_sha256``: sha256 of the tombstones an ``applied`` row added (the ``deleted`` rows
  carrying its request id: their sorted keyed tokens, :mod:`~graphforget.service.tokens`; ``NULL`` when
  it added none, and for every ``failed`` row), and
* ``hash``: sha256 of the canonical JSON ``{"prev": <previous row's hash>, "row": {every other
  column, seq and tombstones_sha256 included, as stored}}`` (:func:`row_hash`); the first row's
  ``prev`` is :func:`genesis_hash` of the store's random ``store_id``.

:meth:`Ledger.chain_problem` recomputes every hash in order, and also requires ``seq`` to be
contiguous and SQLite's AUTOINCREMENT counter to equal the last ``seq``;
:meth:`Ledger.tombstone_problem` recomputes every applied row's tombstone digest and requires
each tombstone to belong to an applied row. So, without recomputing hashes, editing a row
(through SQL or the file's bytes), deleting or inserting a row, changing the store id, and
deleting, inserting or re-attributing a tombstone are all detected, and named by row; so is
deleting the last rows unless the counter is edited too (deleting a forget row also leaves its
tombstones without a row, and moves the current checkpoint off the ledger's latest).

What the chain alone cannot stop: the algorithm is public and has no secret, so someone with
write access can append forged rows with correct hashes, rewrite any suffix of the ledger and
recompute every hash from there on, or truncate the tail (fixing the counter, the tombstones
and the pointer); the file is then self-consistent. That is closed by *anchoring*: keep a row's
hash outside the file (``graphforget forget`` prints the new row's hash, ``history`` the head's)
and check it later with ``graphforget verify --anchor HASH``, which requires that row to still
be in the verified chain: a rewrite or removal of that row or of anything before it changes or
drops its hash. Rows after the newest anchor are only as trustworthy as the file.

A store written before the chain (schema version 1, or unmarked) is chained on its first
writable open (:meth:`Ledger.chain_existing`, in the opening transaction): its rows are rehashed
as found, with the same functions, and a ``chain`` row records how many rows predate the chain.
Their content is only tamper-evident from then on; an untampered ledger of schema version 1
gets the hashes it would have had (its store id is kept), so a later anchor is meaningful.
(Someone who strips the hash columns and sets the schema version back gets the same
re-chaining: that is a rewrite of the whole ledger, which only an anchor detects, as above.)
A store of schema 2 (chained, but its tombstones and forget requests held raw ids) is checked
first (chain and tombstones; a broken one is refused, not laundered), then its tombstones become
keyed tokens, forgotten nodes lose their raw ids, and its rows are rehashed with raw ids
replaced in the same way, under a ``chain`` row: anchors taken before that row no longer match.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

import numpy as np

from .tokens import tombstones_digest

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL CHECK(kind IN ('edges', 'user', 'item', 'import', 'bind', 'retrain', 'chain')),
    status TEXT NOT NULL CHECK(status IN ('applied', 'failed')),
    request TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    num_edges INTEGER NOT NULL DEFAULT 0,
    num_heldout INTEGER NOT NULL DEFAULT 0,
    method TEXT, options TEXT, report TEXT, audit_before TEXT, audit_after TEXT,
    checkpoint TEXT, checkpoint_sha256 TEXT, graph_fingerprint TEXT, parent_sha256 TEXT,
    error TEXT, tombstones_sha256 TEXT, hash TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_applied ON ledger(request_id) WHERE status = 'applied';
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

GENESIS_PREFIX = b"graphforget ledger chain v1\0"  # + store id: the first row's "prev"
TOMBSTONES_PREFIX = b"graphforget tombstones v2\0"  # + the sorted 16-byte tokens
LEGACY_TOMBSTONES_PREFIX = b"graphforget tombstones v1\0"  # schema 2: + sorted int64 pairs

_JSON_COLUMNS = ("request", "options", "report", "audit_before", "audit_after")
_INT_COLUMNS = ("seq", "num_edges", "num_heldout")


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute ``;``-separated statements inside the caller's transaction (unlike
    ``executescript``, which commits first)."""
    for stmt in script.split(";\n"):
        if stmt.strip():
            conn.execute(stmt)


def jsonable(x: Any) -> Any:
    """Plain JSON values: tensors → lists, non-finite floats → ``None``, tuples → lists."""
    if hasattr(x, "tolist") and callable(x.tolist):  # torch / numpy
        x = x.tolist()
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return str(x)


def shown(text: Optional[str]) -> str:
    """``text`` for a terminal: unchanged if printable, else its ``repr`` (control characters,
    e.g. ANSI escapes or newlines of a stored request id, escaped)."""
    text = "" if text is None else str(text)
    return text if text.isprintable() else repr(text)


# ---------------------------------------------------------------------- hashes
def genesis_hash(store_id: str) -> str:
    """The ``prev`` of a store's first ledger row: binds the chain to the store id."""
    return hashlib.sha256(GENESIS_PREFIX + str(store_id).encode()).hexdigest()


def tombstones_sha256(tokens) -> Optional[str]:
    """sha256 of a request's tombstone tokens (:mod:`~graphforget.service.tokens`), sorted;
    ``None`` for none."""
    return tombstones_digest(tokens, TOMBSTONES_PREFIX)


def legacy_tombstones_sha256(pairs: np.ndarray) -> Optional[str]:
    """The digest schema 2 stored: sha256 of raw ``(user, item)`` pairs ``[m, 2]``, sorted."""
    if len(pairs) == 0:
        return None
    return hashlib.sha256(LEGACY_TOMBSTONES_PREFIX
                          + np.ascontiguousarray(pairs, dtype="<i8").tobytes()).hexdigest()


def row_hash(prev: Optional[str], row: dict) -> str:
    """sha256 of the canonical JSON of the previous row's hash and ``row`` (every column but
    ``hash``, with the values SQLite stores: int, float, str or ``None``)."""
    body = json.dumps({"prev": prev, "row": row}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class LedgerEntry:
    """One ledger row (JSON columns decoded)."""

    request_id: str
    time: float
    kind: str
    status: str
    request: Any
    request_digest: str
    num_edges: int = 0
    num_heldout: int = 0
    method: Optional[str] = None
    options: Optional[dict] = None
    report: Optional[dict] = None
    audit_before: Optional[dict] = None
    audit_after: Optional[dict] = None
    checkpoint: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    graph_fingerprint: Optional[str] = None
    parent_sha256: Optional[str] = None
    error: Optional[str] = None
    seq: Optional[int] = None
    tombstones_sha256: Optional[str] = None  # set by Ledger.append
    hash: Optional[str] = None  # set by Ledger.append

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def summary(self) -> str:
        """One readable line (stored strings that are not printable shown as ``repr``)."""
        import datetime as _dt

        t = _dt.datetime.fromtimestamp(self.time).strftime("%Y-%m-%d %H:%M:%S")
        s = f"#{self.seq:<4} {t}  {shown(self.status):<7} {shown(self.kind):<7} {shown(self.request_id)}"
        if self.kind in ("edges", "user", "item"):
            s += f"  edges={self.num_edges}"
            if self.num_heldout:
                s += f" heldout={self.num_heldout}"
            if self.method:
                s += f"  method={shown(self.method)}"
            rep = self.report or {}
            if rep.get("seconds_total") is not None:
                s += f"  {rep['seconds_total']:.3f}s"
            if rep.get("solver_iterations"):
                res = rep.get("solver_residual")
                s += f" iters={rep['solver_iterations']}" + (f" residual={res:.1e}" if res is not None else "")
        if self.kind == "chain":
            s += f"  chained {(self.request or {}).get('rows')} earlier rows as found"
        if self.checkpoint_sha256:
            s += f"  ckpt={shown(self.checkpoint)} sha256={shown(self.checkpoint_sha256)}"
        if self.error:
            s += f"  error: {shown(self.error)}"
        return s


_CONTENT = [f.name for f in fields(LedgerEntry) if f.name not in ("seq", "tombstones_sha256", "hash")]
CHAINED_COLUMNS = ["seq"] + _CONTENT + ["tombstones_sha256"]  # what a row's hash covers (+ prev)


def _typed(row: dict) -> dict:
    """Column values with the types SQLite gives back (so the hash is of what is stored)."""
    out = {}
    for name, v in row.items():
        if v is None:
            out[name] = None
        elif name in _INT_COLUMNS:
            out[name] = int(v)
        else:
            out[name] = float(v) if name == "time" else str(v)
    return out


def _where(seq: int, request_id: Any) -> str:
    return f"row {seq} (request {shown(request_id)})"


class Ledger:
    """Read, append and check ledger rows through the store's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.columns = [r[1] for r in conn.execute("PRAGMA table_info(ledger)")]

    @property
    def chained(self) -> bool:
        """Whether the table has the chain's columns (stores before schema 2 do not)."""
        return "hash" in self.columns

    # ------------------------------------------------------------------ appending
    def append(self, conn: sqlite3.Connection, entry: LedgerEntry) -> int:
        """Insert ``entry`` as the chain's next row inside the caller's transaction ``conn``,
        after the request's tombstones (its hash covers them). Sets ``entry.seq``,
        ``entry.tombstones_sha256`` and ``entry.hash``; returns the ``seq``."""
        row = {}
        for name in _CONTENT:
            v = getattr(entry, name)
            encode = name in _JSON_COLUMNS and v is not None
            row[name] = json.dumps(jsonable(v), sort_keys=True) if encode else v
        (counter,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence "
                                  "WHERE name='ledger'").fetchone()
        (last,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()
        seq = max(counter, last) + 1  # what AUTOINCREMENT would give: a deleted tail leaves a gap
        try:
            entry.tombstones_sha256, entry.hash = self._insert(conn, seq, row)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"request id {entry.request_id!r} is already applied") from exc
        entry.seq = seq
        return seq

    def _insert(self, conn: sqlite3.Connection, seq: int, row: dict) -> tuple[Optional[str], str]:
        """Insert stored values ``row`` (JSON columns encoded) as row ``seq``, chained onto the
        current last row; returns its ``(tombstones_sha256, hash)``."""
        last = conn.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            store_id = _store_id(conn)
            if store_id is None:
                raise ValueError("the store has no store_id, the ledger chain's genesis")
            prev = genesis_hash(store_id)
        else:
            prev = last[0]
        tomb = _request_tombstones(conn, row["request_id"]) if row["status"] == "applied" else None
        row = _typed({"seq": seq, **row, "tombstones_sha256": tomb})
        h = row_hash(prev, row)
        cols = CHAINED_COLUMNS + ["hash"]
        conn.execute(f"INSERT INTO ledger({', '.join(cols)}) VALUES({', '.join('?' * len(cols))})",
                     [row[c] for c in CHAINED_COLUMNS] + [h])
        return tomb, h

    def chain_existing(self, conn: sqlite3.Connection, from_version: int,
                       transform: Optional[Callable[[dict], dict]] = None) -> int:
        """Rechain the ledger of a store of an older schema, inside the caller's (opening)
        transaction: rebuild the table with the chain's columns, rehash its rows (same ``seq``,
        same functions as :meth:`append`) after ``transform`` (stored values in, stored values
        out: schema 3 replaces raw ids of forget requests by keyed digests) and append a
        ``chain`` row saying so. Returns the number of rows rechained."""
        old = [r[1] for r in conn.execute("PRAGMA table_info(ledger)")]
        cols = [c for c in ["seq"] + _CONTENT if c in old]
        rows = [dict(zip(cols, r)) for r in conn.execute(
            f"SELECT {', '.join(cols)} FROM ledger ORDER BY seq")]
        conn.execute("DROP TABLE ledger")  # fires no trigger; drops them with the table
        run_script(conn, LEDGER_SCHEMA)
        for r in rows:
            row = {c: r.get(c) for c in _CONTENT}
            self._insert(conn, r["seq"], transform(row) if transform else row)
        self.columns = [r[1] for r in conn.execute("PRAGMA table_info(ledger)")]
        when = time.time()
        self.append(conn, LedgerEntry(
            request_id=f"chain-{when:.6f}-{uuid.uuid4().hex[:8]}", time=when, kind="chain",
            status="applied", request={"rows": len(rows), "schema_version": from_version},
            request_digest="", report={"note": (
                "the rows before this one were written before the ledger was chained, and "
                "rehashed as found" if from_version < 2 else
                "the rows before this one were rehashed after their raw ids were replaced by "
                "keyed digests (schema 3); anchors taken before this row no longer match")}))
        return len(rows)

    # ------------------------------------------------------------------ checking
    def chain_problem(self) -> Optional[str]:
        """The first break of the chain (see the module docstring), or ``None`` if every row's
        hash is its recomputed hash, ``seq`` runs 1, 2, … and the counter is at the last row."""
        if not self.chained:
            return "ledger chain broken: the ledger table has no hash column"
        store_id = _store_id(self.conn)
        if store_id is None:
            return "ledger chain broken at row 1: the store's store_id, the chain's genesis, is missing"
        prev = genesis_hash(store_id)
        last = 0
        cur = self.conn.execute(f"SELECT {', '.join(CHAINED_COLUMNS)}, hash FROM ledger ORDER BY seq")
        for values in cur:
            row, stored = dict(zip(CHAINED_COLUMNS, values[:-1])), values[-1]
            where = _where(row["seq"], row["request_id"])
            if row["seq"] != last + 1:
                gap = (f"row {last + 1} is" if row["seq"] == last + 2
                       else f"rows {last + 1}-{row['seq'] - 1} are")
                return f"ledger chain broken at {where}: {gap} missing before it"
            if stored != row_hash(prev, row):
                return (f"ledger chain broken at {where}: its stored hash is not the hash of its "
                        "content and the previous row's hash (this row edited, or the previous "
                        "one edited and its hash recomputed)")
            prev, last = stored, row["seq"]
        (counter,) = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence "
                                       "WHERE name='ledger'").fetchone()
        if counter != last:
            return (f"ledger chain broken after row {last}, the last: the sequence counter is at "
                    f"{counter} (rows after it were deleted, or the counter edited)")
        return None

    def tombstone_problem(self) -> Optional[str]:
        """The first mismatch between the ``deleted`` table and the tombstone digests the
        applied rows recorded (or tombstones of no applied row); ``None`` if they agree."""
        groups = _tombstone_groups(self.conn)
        for seq, rid, kind, recorded, n_edges, n_held in self.conn.execute(
                "SELECT seq, request_id, kind, tombstones_sha256, num_edges, num_heldout FROM ledger "
                "WHERE status='applied' ORDER BY seq"):
            count, digest = groups.pop(rid, (0, None))
            if digest != recorded:
                records = n_edges + n_held if kind in ("edges", "user", "item") else 0
                return (f"tombstones do not match the ledger at {_where(seq, rid)}: {count} "
                        f"tombstones carry its request id, it recorded {records} (tombstones "
                        "deleted, inserted or changed)")
        if groups:
            n = sum(c for c, _ in groups.values())
            return (f"{n} tombstones belong to no applied ledger row (request ids "
                    f"{', '.join(shown(r) for r in list(groups)[:5])})")
        return None

    def head(self) -> Optional[tuple[int, str]]:
        """``(seq, hash)`` of the last row, or ``None`` for an empty ledger."""
        row = self.conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), row[1])

    def has_hash(self, hash_: str) -> Optional[int]:
        """``seq`` of the row whose stored hash is ``hash_`` (an anchor), else ``None``."""
        row = self.conn.execute("SELECT seq FROM ledger WHERE hash=?", (hash_,)).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ reading
    def _rows(self, where: str = "", args: tuple = ()) -> list[LedgerEntry]:
        cols = [c for c in CHAINED_COLUMNS + ["hash"] if c in self.columns]
        out = []
        for row in self.conn.execute(f"SELECT {', '.join(cols)} FROM ledger {where} ORDER BY seq", args):
            d = dict(zip(cols, row))
            for name in _JSON_COLUMNS:
                if d[name] is not None:
                    d[name] = json.loads(d[name])
            out.append(LedgerEntry(**d))
        return out

    def history(self, request_id: Optional[str] = None) -> list[LedgerEntry]:
        """All rows in commit order (or those of one request id)."""
        if request_id is None:
            return self._rows()
        return self._rows("WHERE request_id=?", (request_id,))

    def applied(self, request_id: str) -> Optional[LedgerEntry]:
        """The ``applied`` row of a request id, if any."""
        rows = self._rows("WHERE request_id=? AND status='applied'", (request_id,))
        return rows[0] if rows else None

    def latest_checkpoint(self) -> Optional[LedgerEntry]:
        """The last applied row that recorded a checkpoint (bind, forget or retrain)."""
        rows = self._rows("WHERE seq = (SELECT MAX(seq) FROM ledger WHERE status='applied' "
                          "AND checkpoint IS NOT NULL)")
        return rows[0] if rows else None

    def checkpoint_records(self) -> dict[str, tuple[int, str]]:
        """``{file name: (seq, sha256)}`` of the last applied row naming each checkpoint."""
        return {name: (seq, sha) for seq, name, sha in self.conn.execute(
            "SELECT seq, checkpoint, checkpoint_sha256 FROM ledger WHERE status='applied' "
            "AND checkpoint IS NOT NULL ORDER BY seq")}

    def checkpoints(self) -> set[str]:
        """File names of every checkpoint an applied row recorded."""
        return {r for (r,) in self.conn.execute(
            "SELECT checkpoint FROM ledger WHERE status='applied' AND checkpoint IS NOT NULL")}

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The whole ledger as a JSON list (non-finite numbers as ``null``)."""
        return json.dumps([e.to_dict() for e in self.history()], indent=indent, sort_keys=True)


# ---------------------------------------------------------------------- helpers
def _store_id(conn: sqlite3.Connection) -> Optional[str]:
    row = conn.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
    return None if row is None else row[0]


def _request_tombstones(conn: sqlite3.Connection, request_id: str) -> Optional[str]:
    rows = conn.execute("SELECT token FROM deleted WHERE request_id=?", (request_id,)).fetchall()
    return tombstones_sha256(r[0] for r in rows)


def _tombstone_groups(conn: sqlite3.Connection) -> dict[str, tuple[int, Optional[str]]]:
    """``{request id: (count, tombstones_sha256)}`` of the whole ``deleted`` table, read once."""
    groups: dict[str, list[bytes]] = {}
    for rid, token in conn.execute("SELECT request_id, token FROM deleted"):
        groups.setdefault(rid, []).append(token)
    return {rid: (len(t), tombstones_sha256(t)) for rid, t in groups.items()}


def legacy_tombstone_problem(conn: sqlite3.Connection) -> Optional[str]:
    """:meth:`Ledger.tombstone_problem` of a schema-2 store (raw ``(user, item)`` tombstones),
    checked before such a store is converted to tokens."""
    rows = conn.execute("SELECT request_id, user, item FROM deleted ORDER BY request_id, user, item").fetchall()
    groups: dict[str, list] = {}
    for rid, u, i in rows:
        groups.setdefault(rid, []).append((u, i))
    for seq, rid, recorded in conn.execute("SELECT seq, request_id, tombstones_sha256 FROM ledger "
                                           "WHERE status='applied' ORDER BY seq"):
        pairs = groups.pop(rid, [])
        if legacy_tombstones_sha256(np.array(pairs, dtype=np.int64).reshape(-1, 2)) != recorded:
            return f"tombstones do not match the ledger at {_where(seq, rid)}"
    if groups:
        return f"tombstones of no applied ledger row (request ids {', '.join(shown(r) for r in list(groups)[:5])})"
    return None
