"""The append-only ledger: one row per forget request (and per import, bind and retrain).

The ``ledger`` table lives in the store's SQLite file, so
:class:`~graphforget.service.Forgetter` commits a request's tombstones, its ledger row and the
new current-checkpoint pointer in one transaction. Triggers reject ``UPDATE`` and ``DELETE``, so
rows can only be appended. At most one row per request id has status ``applied`` (a partial
unique index); ``failed`` rows record requests that were refused after validation (e.g. a
solver that did not converge with no fallback), and change nothing else.

Columns: ``seq`` (order), ``request_id``, ``time`` (unix seconds), ``kind`` (``edges``,
``user``, ``item``, ``import``, ``bind``, ``retrain``), ``status``, ``request`` (JSON of the
raw ids as given), ``request_digest`` (sha256 of the canonical request, for idempotency),
``num_edges`` (training edges forgotten), ``num_heldout`` (validation / test pairs purged),
``method``, ``options``, ``report`` (the :class:`~graphforget.unlearn.UnlearnReport`: times,
solver residual, iterations, …), ``audit_before`` / ``audit_after`` (utility figures),
``checkpoint`` (file name), ``checkpoint_sha256``, ``graph_fingerprint`` (training edges after
the request), ``parent_sha256`` (checkpoint the request started from), ``error``.
"""
from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    kind TEXT NOT NULL CHECK(kind IN ('edges', 'user', 'item', 'import', 'bind', 'retrain')),
    status TEXT NOT NULL CHECK(status IN ('applied', 'failed')),
    request TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    num_edges INTEGER NOT NULL DEFAULT 0,
    num_heldout INTEGER NOT NULL DEFAULT 0,
    method TEXT, options TEXT, report TEXT, audit_before TEXT, audit_after TEXT,
    checkpoint TEXT, checkpoint_sha256 TEXT, graph_fingerprint TEXT, parent_sha256 TEXT,
    error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_applied ON ledger(request_id) WHERE status = 'applied';
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

_JSON_COLUMNS = ("request", "options", "report", "audit_before", "audit_after")


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

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def summary(self) -> str:
        """One readable line."""
        import datetime as _dt

        t = _dt.datetime.fromtimestamp(self.time).strftime("%Y-%m-%d %H:%M:%S")
        s = f"#{self.seq:<4} {t}  {self.status:<7} {self.kind:<7} {self.request_id}"
        if self.kind in ("edges", "user", "item"):
            s += f"  edges={self.num_edges}"
            if self.num_heldout:
                s += f" heldout={self.num_heldout}"
            if self.method:
                s += f"  method={self.method}"
            rep = self.report or {}
            if rep.get("seconds_total") is not None:
                s += f"  {rep['seconds_total']:.3f}s"
            if rep.get("solver_iterations"):
                res = rep.get("solver_residual")
                s += f" iters={rep['solver_iterations']}" + (f" residual={res:.1e}" if res is not None else "")
        if self.checkpoint_sha256:
            s += f"  ckpt={self.checkpoint} sha256={self.checkpoint_sha256}"
        if self.error:
            s += f"  error: {self.error}"
        return s


_COLUMNS = [f.name for f in fields(LedgerEntry) if f.name != "seq"]


class Ledger:
    """Read and append ledger rows through the store's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def append(self, conn: sqlite3.Connection, entry: LedgerEntry) -> int:
        """Insert ``entry`` inside the caller's transaction ``conn``; returns its ``seq``."""
        vals = []
        for name in _COLUMNS:
            v = getattr(entry, name)
            vals.append(json.dumps(jsonable(v), sort_keys=True) if name in _JSON_COLUMNS and v is not None else v)
        try:
            cur = conn.execute(f"INSERT INTO ledger({', '.join(_COLUMNS)}) "
                               f"VALUES({', '.join('?' * len(_COLUMNS))})", vals)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"request id {entry.request_id!r} is already applied") from exc
        return int(cur.lastrowid)

    def _rows(self, where: str = "", args: tuple = ()) -> list[LedgerEntry]:
        cols = ["seq"] + _COLUMNS
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

    def checkpoints(self) -> set[str]:
        """File names of every checkpoint an applied row recorded."""
        return {r for (r,) in self.conn.execute(
            "SELECT checkpoint FROM ledger WHERE status='applied' AND checkpoint IS NOT NULL")}

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The whole ledger as a JSON list (non-finite numbers as ``null``)."""
        return json.dumps([e.to_dict() for e in self.history()], indent=indent, sort_keys=True)
