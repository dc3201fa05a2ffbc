"""Tamper checks of a store, its hash-chained ledger and its checkpoint series.

:func:`verify_store` (``graphforget verify``) opens the store read-only (``mode=ro``, nothing is
created or written) and returns one :class:`Check` per property:

* ``chain``: every ledger row's hash recomputed in order (:meth:`Ledger.chain_problem`); the
  first broken row is named by its ``seq``.
* ``tombstones``: the ``deleted`` table is exactly the union of the tombstones the applied rows
  recorded (:meth:`Ledger.tombstone_problem`).
* ``forgotten pairs``: no tombstoned pair has an interaction row (any split) again (every row's
  keyed token recomputed: it fails, saying so, when the store's key file is missing).
* ``pointer``: the current-checkpoint pointer is the latest checkpoint the ledger recorded.
* ``graph``: the store's training graph is the one the current checkpoint was recorded for.
* ``anchor`` (with ``anchor=``): a row of the verified chain has this hash.
* ``checkpoint files`` (with ``checkpoint=``): every checkpoint file the ledger names that is
  still in the series' folder has the sha256 its last row recorded.
* ``current checkpoint`` (with ``checkpoint=``): present, with the recorded sha256, and a
  graphforget checkpoint of the store's graph (so no forgotten pair is in its graph; a SISA /
  RecEraser checkpoint's stored shard edges are compared edge by edge), of the graph's sizes and
  with finite parameters (:func:`load_for_store`).
* ``wal`` (only when the store's WAL holds frames): a **warning** line: bytes deleted by the last
  requests may remain in the files until the store's next writable open.
* ``leftover files`` (with ``checkpoint=``, only when there are some): a **warning** line
  (``warn``, does not fail verification) naming checkpoint files the store owns that are still
  in the folder but are not the current checkpoint (and their temp files) — superseded
  checkpoints that may still encode forgotten interactions, left by a crash between a request's
  commit and its clean-up (or kept with ``keep_history``); the next service start removes them.

What passing means, and what it does not: the module docstring of
:mod:`graphforget.service.ledger`. In short, edits made without recomputing the chain are
detected; a rewrite that recomputes every hash after the edit is detected only against an
anchor (a row hash kept elsewhere, e.g. the one ``graphforget forget`` prints). Checkpoint
files are bound by the digest :func:`~graphforget.train.file_sha256` records, the first 16 hex
digits (64 bits) of their sha256: a forged file with the same digest costs about 2**64 hashes.

:func:`integrity_problem` runs the first four checks, which need neither the graph nor the
files; :class:`~graphforget.service.Forgetter` refuses to start when one fails.

The store is read in one read transaction; checkpoint files are read while a forget request may
be running in another process, which can remove the superseded file in between: verify a quiet
store, or rerun on a failure.
"""
from __future__ import annotations

import os
import glob
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from ..train.checkpoint import file_sha256, load_checkpoint
from .ledger import Ledger, shown
from .store import InteractionStore


@dataclass
class Check:
    """One verified property: ``ok`` is ``True``, ``False`` (tampering or inconsistency found)
    or ``None`` (skipped)."""

    name: str
    ok: Optional[bool]
    detail: str
    warning: bool = False  # passed, but worth acting on (shown as ``warn``)

    def line(self) -> str:
        tag = 'warn' if self.warning else 'ok' if self.ok else 'skip' if self.ok is None else 'FAIL'
        return f"{tag:<5} {self.name}: {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)


def verified(checks: list[Check]) -> bool:
    """No check failed (skipped ones do not count)."""
    return all(c.ok is not False for c in checks)


# ---------------------------------------------------------------------- loading for a store
def _int(x) -> Optional[int]:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def check_sizes(path: str | os.PathLike, graph) -> None:
    """Refuse, before any model is built, a checkpoint whose model config's ``num_users`` /
    ``num_items`` are not ``graph``'s, or whose stored tensors claim more elements than their
    storage in the file holds (a stride-0 tensor posing as a huge embedding table). The file is
    read memory-mapped with ``weights_only=True``; an unreadable file is left to
    :func:`~graphforget.train.load_checkpoint` to report."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - load_checkpoint reports it in one line
        return
    cfg = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(cfg, dict):
        return
    nu, ni = _int(cfg.get("num_users")), _int(cfg.get("num_items"))
    if (nu, ni) != (graph.num_users, graph.num_items):
        raise ValueError(f"{path}: the checkpoint's model config claims {shown(str(cfg.get('num_users')))} "
                         f"users and {shown(str(cfg.get('num_items')))} items, the store's graph has "
                         f"{graph.num_users} and {graph.num_items}: refused before building the model")
    state = payload.get("state_dict")
    for name, t in (state.items() if isinstance(state, dict) else ()):
        if isinstance(t, torch.Tensor) and t.numel() and \
                t.untyped_storage().nbytes() < t.numel() * t.element_size():
            raise ValueError(f"{path}: tensor {shown(str(name))} claims shape {list(t.shape)} but "
                             f"its stored data holds {t.untyped_storage().nbytes()} bytes: refused")


def load_for_store(path: str | os.PathLike, graph):
    """:func:`~graphforget.train.load_checkpoint` for a store's graph, after
    :func:`check_sizes`, refusing non-finite (NaN / inf) parameters; one-line ``ValueError``."""
    check_sizes(path, graph)
    model, payload = load_checkpoint(path, graph)
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ValueError(f"{path}: parameter {name!r} has non-finite (NaN / inf) values: "
                             "refusing this checkpoint")
    return model, payload


# ---------------------------------------------------------------------- ledger-level checks
def _chain(ledger: Ledger) -> Check:
    problem = ledger.chain_problem()
    if problem:
        return Check("chain", False, problem)
    seq, head = ledger.head() or (0, None)
    detail = f"{seq} rows, every hash recomputed; head {head}"
    first = ledger.conn.execute("SELECT seq FROM ledger WHERE kind='chain' AND status='applied' "
                                "ORDER BY seq LIMIT 1").fetchone()
    if first:
        detail += (f" (rows before row {first[0]} were written before the chain and rehashed "
                   "there, as found)")
    return Check("chain", True, detail)


def _tombstones(ledger: Ledger) -> Check:
    problem = ledger.tombstone_problem()
    if problem:
        return Check("tombstones", False, problem)
    (n,) = ledger.conn.execute("SELECT COUNT(*) FROM deleted").fetchone()
    return Check("tombstones", True, f"{n} tombstones, exactly those the applied rows recorded")


def _forgotten(store: InteractionStore) -> Check:
    try:
        n, examples = store.forgotten_in_store()
    except ValueError as exc:  # the key file is missing or not the store's
        return Check("forgotten pairs", False, f"cannot be checked: {shown(str(exc))}")
    if n:
        shown_ex = ", ".join(f"({shown(u)}, {shown(i)}) of request {shown(r)}" for u, i, r in examples)
        return Check("forgotten pairs", False, f"{n} forgotten pairs have interaction rows again, "
                                               f"e.g. {shown_ex}")
    return Check("forgotten pairs", True, "no forgotten pair has an interaction row")


def _pointer(store: InteractionStore, ledger: Ledger) -> Check:
    ptr, latest = store.current_checkpoint(), ledger.latest_checkpoint()
    if ptr is None and latest is None:
        return Check("pointer", True, "no checkpoint bound yet")
    recorded = None if latest is None else {"name": latest.checkpoint, "sha256": latest.checkpoint_sha256,
                                            "fingerprint": latest.graph_fingerprint}
    if ptr != recorded:
        def fmt(p):
            if p is None:
                return "none"
            return f"{shown(p['name'])} sha256={shown(p['sha256'])} graph={shown(p['fingerprint'])}"
        where = "" if latest is None else f" (row {latest.seq})"
        return Check("pointer", False, f"the current checkpoint pointer ({fmt(ptr)}) is not the "
                                       f"ledger's latest checkpoint ({fmt(recorded)}{where})")
    return Check("pointer", True, f"current checkpoint {shown(ptr['name'])} is the ledger's "
                                  f"latest (row {latest.seq})")


def ledger_checks(store: InteractionStore, ledger: Ledger) -> list[Check]:
    """Chain, tombstones, forgotten pairs and pointer: what needs only the store file."""
    return [_chain(ledger), _tombstones(ledger), _forgotten(store), _pointer(store, ledger)]


def integrity_problem(store: InteractionStore, ledger: Ledger) -> Optional[str]:
    """The first failing :func:`ledger_checks` detail, or ``None``."""
    return next((c.detail for c in ledger_checks(store, ledger) if c.ok is False), None)


# ---------------------------------------------------------------------- graph, anchor, files
def _graph(ptr: Optional[dict], fingerprint: str) -> Check:
    if ptr is None:
        return Check("graph", None, "no checkpoint bound yet")
    if ptr["fingerprint"] != fingerprint:
        return Check("graph", False, f"the store's training graph {fingerprint} is not the current "
                                     f"checkpoint's {shown(ptr['fingerprint'])} (interactions "
                                     "added or removed outside the service)")
    return Check("graph", True, f"the store's training graph is the current checkpoint's ({fingerprint})")


def _anchor(ledger: Ledger, anchor: str) -> Check:
    seq = ledger.has_hash(anchor.strip().lower())
    if seq is None:
        return Check("anchor", False, f"no ledger row has hash {shown(anchor)}: the ledger was "
                                      "rewritten at or before the anchored row")
    return Check("anchor", True, f"row {seq} has the anchored hash")


def _files(ledger: Ledger, folder: Path) -> Check:
    records = ledger.checkpoint_records()
    present = {n: (seq, sha, file_sha256(folder / n)) for n, (seq, sha) in records.items()
               if (folder / n).is_file()}
    bad = [(n, seq, sha, actual) for n, (seq, sha, actual) in present.items() if actual != sha]
    if bad:
        n, seq, sha, actual = bad[0]
        return Check("checkpoint files", False, f"{len(bad)} checkpoint files differ from the "
                                                f"ledger: {shown(n)} has sha256 {actual}, row {seq} "
                                                f"recorded {shown(sha)}")
    return Check("checkpoint files", True, f"{len(present)} of the {len(records)} checkpoint files "
                                           "named in the ledger are present, each with its "
                                           "recorded sha256")


def _current(ptr: Optional[dict], folder: Path, graph) -> Check:
    if ptr is None:
        return Check("current checkpoint", None, "no checkpoint bound yet")
    path = folder / ptr["name"]
    if not path.is_file():
        return Check("current checkpoint", False, f"{shown(str(path))} is missing")
    sha = file_sha256(path)
    if sha != ptr["sha256"]:
        return Check("current checkpoint", False, f"{shown(path.name)} has sha256 {sha}, the "
                                                  f"store recorded {shown(ptr['sha256'])}")
    try:
        load_for_store(path, graph)  # weights_only; its graph must be the store's
    except ValueError as exc:
        return Check("current checkpoint", False, shown(str(exc)))
    return Check("current checkpoint", True, f"{shown(path.name)} has its recorded sha256 {sha} "
                                             "and is a checkpoint of the store's graph")


def _wal(store: InteractionStore) -> Optional[Check]:
    """A warning while the store's WAL holds frames: after a request it is truncated, unless a
    reader's snapshot or a crash stopped that; until the next writable open, bytes deleted by the
    last requests may still be in the database file or the WAL."""
    wal = store.path.with_name(store.path.name + "-wal")
    size = wal.stat().st_size if wal.is_file() else 0
    if not size:
        return None
    return Check("wal", True, f"{shown(wal.name)} holds {size} bytes (a connection is open, or a "
                              "reader or a crash stopped its truncation after a request): bytes "
                              "deleted by the last requests may remain in the store's files until "
                              "its next writable open", warning=True)


def _leftovers(store: InteractionStore, ptr: Optional[dict], folder: Path) -> Optional[Check]:
    current = None if ptr is None else ptr["name"]
    found = []
    for name in store.owned_files():
        paths = [Path(p) for p in glob.glob(glob.escape(str(folder / name)) + ".*.tmp")]
        if name != current and (folder / name).is_file():
            paths.append(folder / name)
        found += [p.name for p in paths]
    if not found:
        return None
    names = ", ".join(shown(n) for n in sorted(found)[:5]) + (" ..." if len(found) > 5 else "")
    return Check("leftover files", True, f"{len(found)} checkpoint files owned by the store but not "
                                         f"current are still in {shown(str(folder))} ({names}): they "
                                         "may still encode forgotten interactions; the next service "
                                         "start removes them (kept on purpose with keep_history)",
                 warning=True)


# ---------------------------------------------------------------------- entry point
def _series_folder(store: InteractionStore, checkpoint: str | os.PathLike) -> Path:
    path = Path(checkpoint)
    bound = store.get_meta("checkpoint_series")
    if bound is not None and bound != path.name:
        raise ValueError(f"{store.path} is bound to checkpoint series {bound!r}, not {path.name!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such checkpoint folder")
    return path.parent


def verify_store(db: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                 anchor: Optional[str] = None, key_path: str | os.PathLike | None = None) -> list[Check]:
    """Run every check on the store ``db`` (read-only) and, with ``checkpoint`` (the base
    checkpoint of its series, for the folder), on its checkpoint files.

    Raises ``ValueError`` / ``FileNotFoundError`` on bad input: no such store, not a store, a
    store whose ledger is not chained yet (schema version 1: chain it with
    ``graphforget store migrate``), another checkpoint series.
    """
    with InteractionStore(db, readonly=True, key_path=key_path) as store, store.snapshot():
        if not store.chained:
            raise ValueError(f"{db}: the ledger is not chained yet (a store written before "
                             "graphforget chained its ledger); chain it with "
                             f"`graphforget store migrate --db {db}`")
        ledger = Ledger(store.conn)
        folder = None if checkpoint is None else _series_folder(store, checkpoint)
        checks = ledger_checks(store, ledger)
        ptr, graph = store.current_checkpoint(), store.to_graph()
        try:
            checks.append(_graph(ptr, "" if ptr is None else store.graph_digest(graph)))
        except ValueError as exc:  # the key file is missing or not the store's
            checks.append(Check("graph", False, f"cannot be checked: {shown(str(exc))}"))
        wal = _wal(store)
        if wal is not None:
            checks.append(wal)
        if anchor is not None:
            checks.append(_anchor(ledger, anchor))
        if folder is None:
            skipped = "not checked (give --checkpoint, the series' base checkpoint)"
            checks += [Check("checkpoint files", None, skipped), Check("current checkpoint", None, skipped)]
        else:
            checks += [_files(ledger, folder), _current(ptr, folder, graph)]
            left = _leftovers(store, ptr, folder)
            if left is not None:
                checks.append(left)
    return checks
