r"""The deletion service: apply forget requests atomically to the store, the model and the ledger.

A :class:`Forgetter` binds an :class:`~graphforget.service.InteractionStore` (SQLite file) to a
*checkpoint series*: the base checkpoint ``dir/NAME.pt`` you trained, then one versioned file
per applied request, ``dir/NAME.r-<request id>.<store id>.pt`` (``NAME.h-<sha256>.<store
id>.pt`` for request ids that are not file-name safe; the store's random ``store_id`` keeps two
stores that share a folder and a base checkpoint apart). The store's ``meta`` table holds the
*current checkpoint* pointer (file name, sha256, graph fingerprint).

**Owned files.** The service deletes only files its store recorded as its own in the ``files``
table: each versioned name is recorded (and committed) *before* the file or its temp file
``<versioned name>.<random>.tmp`` (:func:`~graphforget.train.save_checkpoint`) is created, so a
crash can orphan only recorded files. A user's ``NAME.r-final-backup.pt``, another store's
series and the base checkpoint are never touched.

Request protocol (one request at a time per series: an exclusive ``flock`` on
``dir/NAME.pt.lock`` serialises processes; SIGKILL releases it, but a *stopped* process —
``SIGSTOP``, Ctrl-Z, a debugger — keeps holding it, so waiting is bounded by ``lock_timeout``
(default 60 s, ``--lock-timeout``): then :class:`LockTimeout` names the lock file and the pid
that last took it):

1. **Replay.** A request id already ``applied`` in the ledger returns the recorded result and
   changes nothing (if the same id comes with a *different* request: ``ValueError``).
2. **Validate**, before anything is computed or written: a malformed request or edges file,
   an empty request, unknown raw user / item ids, duplicate pairs inside the request, pairs
   already forgotten (by any earlier request — this is an **error**, not a silent no-op: the
   message names the pairs and the request ids that forgot them; use the request id to retry
   safely) and pairs that are not training interactions all raise ``ValueError`` naming the
   offending raw ids. Nothing changes.
3. **Compute** the unlearned model in memory (``Unlearner.unlearn`` copies the model). The
   result is refused if a parameter is non-finite, if ``report.converged is False`` or if the
   method raises a numerical error (``ArithmeticError``, ``torch.linalg.LinAlgError``); then the
   ``fallback`` method (fine-tuning by default) is tried, and if it fails too, a ``failed``
   ledger row is appended and :class:`UnlearningFailed` is raised: store, model and checkpoint
   are untouched and no NaN checkpoint is ever written.
4. **Write**: record the versioned name in ``files`` (one committed transaction), then write
   the new checkpoint to a temp file, ``fsync``, rename to its versioned name, fsync the
   directory (:func:`~graphforget.train.save_checkpoint`).
5. **Commit**, in ONE SQLite transaction: delete the pairs' rows from every split and add their
   tombstones (keyed tokens, :mod:`~graphforget.service.tokens`; a user / item forgotten as a
   whole also loses its raw id), append the ``applied`` ledger row (with the checkpoint's
   sha256; its request holds no raw ids), move the current-checkpoint pointer. A failure here
   rolls back and removes the new file (its record goes at the next clean-up). Then the WAL is
   checkpointed and truncated, so with ``secure_delete`` the deleted bytes are gone from the
   database file and its WAL.
6. **Clean up**: the previous versioned checkpoint is deleted (it still encodes the forgotten
   data) unless ``keep_history=True``, and forgotten from ``files``. The *base* checkpoint is
   never deleted by the service: archive or remove it yourself once requests have been applied.

**The leftover window.** Between the commit (5) and the clean-up (6) the *superseded*
checkpoint — which still encodes the interactions the request just forgot — is on disk. A crash
or SIGKILL in that window leaves it there (owned, no longer current) until the next
:class:`Forgetter` start (any request, ``graphforget forget``, ``store rebind`` /
``store retrain``) removes it in :meth:`Forgetter.reconcile`; nothing removes it while no
process starts. ``graphforget verify --checkpoint BASE`` reports such a file on a ``warn
leftover files`` line (``keep_history=True`` keeps them on purpose, and they are reported too).
The base checkpoint itself is never the service's to delete and also still encodes every
forgotten interaction.

A crash (even SIGKILL) at any point leaves either the old state (pointer, tombstones and ledger
unchanged; maybe an orphan checkpoint file) or the new state (all three updated). On start-up
:meth:`Forgetter.reconcile` first checks the store's integrity
(:func:`~graphforget.service.verify.integrity_problem`: the ledger's hash chain, the tombstones
against the digests the ledger recorded, no forgotten pair back in the interactions, the pointer
is the ledger's latest checkpoint) and refuses to start with a one-line ``ValueError`` naming
the first broken row and ``graphforget verify``; then it removes the orphans: every recorded
file other than the current checkpoint (and the ledger's, with ``keep_history``) and the temp
files of recorded names, then forgets them from ``files``; it verifies the current checkpoint's
sha256 and its graph fingerprint against the store, loading it with ``weights_only=True``; a
checkpoint that does not match the store is refused with ``ValueError``.

Request ids are printable strings (no control characters: an id such as ``"\x1b[31m"`` or one
with a newline is refused before anything is read), at most 200 characters. Each applied
request's :class:`ForgetResult` carries ``ledger_hash``, the hash of its ledger row: keeping it
outside the store anchors the chain (``graphforget verify --anchor HASH``).

**Checks at bind.** A checkpoint is bound (first use, :func:`rebind_checkpoint`) or loaded
(:meth:`Forgetter.reconcile`) only if its model config's ``num_users`` / ``num_items`` equal the
store graph's (read from the file memory-mapped, before any model is built: a crafted config
claiming ``10**9`` users allocates nothing), its graph fingerprint is the store's, and every
parameter is finite (a NaN / inf checkpoint is refused).

**Recovery** (a store whose bound checkpoint was replaced, e.g. by ``graphforget train --out``
onto it, lost, or no longer matches the store's graph): :func:`rebind_checkpoint`
(``graphforget store rebind --db DB --checkpoint CKPT``) binds an existing checkpoint of the
store's *current* graph; :func:`retrain_checkpoint` (``graphforget store retrain --db DB
--checkpoint NEW``) trains a fresh model on the store's current graph with the recipe the
ledger recorded (the bind / retrain rows' ``request["recipe"]``; options override it) and binds
it. Both need a store that passes the integrity checks, append a ``bind`` / ``retrain`` row to
the hash chain, and make the checkpoint's file name the store's series (``--checkpoint`` of
later commands). :meth:`Forgetter.reconcile` names them in its refusal.

Whole users / items: :meth:`Forgetter.forget_user` / :meth:`forget_item` forget every training
interaction of the user (item) and also purge their validation / test rows; the node keeps its
internal id and becomes isolated, so in LightGCN it no longer influences anyone's
representation (its row and column of :math:`\hat{A}` are zero).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from contextlib import contextmanager
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor

from ..data.graph import InteractionGraph, edge_keys
from ..train.checkpoint import file_sha256, save_checkpoint
from ..unlearning import Unlearner, get_unlearner, method_key
from .ledger import LedgerEntry, jsonable, Ledger
from .recovery import (is_finite_model, recipe_of, recovery_hint, train_finite, binding_digest,
                       rebind_checkpoint, retrain_checkpoint)
from .requests import ForgetResult, UnlearningFailed, raw_id, new_request_id, normalise_pairs
from .series import DEFAULT_LOCK_TIMEOUT, acquire_lock, release_lock
from .store import InteractionStore
from .tokens import placeholder
from .verify import integrity_problem, load_for_store

AuditFn = Callable[..., dict]
log = logging.getLogger("graphforget.service")

def audit_figures(model, graph: InteractionGraph, deleted_edges: Optional[Tensor] = None,
                  adj_graph: Optional[InteractionGraph] = None, ks: Sequence[int] = (20,)) -> dict:
    """Audit figures recorded in the ledger before and after a request.

    ``utility``: :func:`graphforget.audit.utility_report` (overall and on the test rows of the
    deletion's users / items) of ``model`` served on ``adj_graph`` (default ``graph``);
    ``deleted_ranks``: :func:`~graphforget.audit.rank_summary` of the deleted items' ranks for
    their users among the candidates of ``graph`` (the graph after deletion). Without deleted
    edges (a retrain) only the overall utility.
    """
    from ..audit.forgetting import deleted_item_ranks, rank_summary
    from ..audit.utility import utility, utility_report

    serve = adj_graph if adj_graph is not None else graph
    if deleted_edges is None or deleted_edges.shape[1] == 0:
        return {"utility": {"overall": utility(model, serve, ks)}}
    ranks = deleted_item_ranks(model, graph, deleted_edges, adj_graph=adj_graph)
    return {"utility": utility_report(model, serve, deleted_edges, ks),
            "deleted_ranks": rank_summary(ranks, k=max(ks))}


def _refuse_overlaps(specs: list[dict], num_items: int) -> None:
    """``ValueError`` naming two requests of one batch that share a (user, item) pair."""
    if len(specs) < 2:
        return
    keys = torch.cat([edge_keys(sp["edges"], num_items) for sp in specs])
    owner = torch.cat([torch.full((sp["edges"].shape[1],), k) for k, sp in enumerate(specs)])
    uniq, inv, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    shared = counts[inv] > 1
    if bool(shared.any()):
        who = sorted(set(owner[shared].tolist()))
        raise ValueError(f"requests {[specs[k]['rid'] for k in who][:5]} of one batch share "
                         f"{int(shared.sum()) // 2 or 1} pairs: give each pair to one request")


def _keys_in(edges: Tensor, reference: Tensor, num_items: int) -> Tensor:
    """Bool ``[m]``: which pairs of ``edges`` occur in ``reference``."""
    if reference.shape[1] == 0 or edges.shape[1] == 0:
        return torch.zeros(edges.shape[1], dtype=torch.bool)
    return torch.isin(edge_keys(edges, num_items), edge_keys(reference, num_items))


# ---------------------------------------------------------------------- the service
class Forgetter:
    """Forget interactions by raw id, atomically across store, model checkpoint and ledger.

    Args:
        db_path: the store's SQLite file (data imported with
            :meth:`InteractionStore.import_graph` or ``graphforget store import``).
        checkpoint_path: the base checkpoint of the series, trained on the store's graph; it is
            bound to the store on first use (a checkpoint of another graph is refused).
        method: unlearning method name for :func:`graphforget.unlearning.get_unlearner`, or an
            :class:`~graphforget.unlearning.Unlearner` instance.
        options: keyword options of the method.
        fallback: method name or instance tried when ``method`` fails numerically; ``None`` to
            fail cleanly instead.
        fallback_options: keyword options of the fallback.
        unlearner: an :class:`Unlearner` instance that takes precedence over ``method``.
        audit: ``fn(model, graph_after, deleted_edges, adj_graph=graph_before) -> dict`` whose
            figures go to the ledger (default :func:`audit_figures`); ``None`` records none.
        ks: cut-offs for the default audit.
        device: where the model lives while unlearning.
        keep_history: keep superseded versioned checkpoints (they still encode forgotten data).
        progress: optional ``fn(phase)`` called at each phase of a request.
        key_path: the store's key file (default ``DB.key`` beside the database; see
            :mod:`~graphforget.service.tokens`).
        lock_timeout: seconds to wait for the series' lock file (held by another request, or
            by a stopped process); then :class:`LockTimeout`. ``None`` waits forever.

    Example::

        f = Forgetter("store.sqlite", "model.pt", method="ifru", fallback="finetune")
        f.forget([("196", "242")], request_id="ticket-17")
        f.forget_user("186")
        f.history()[-1].summary()
    """

    def __init__(self, db_path: str | os.PathLike, checkpoint_path: str | os.PathLike,
                 method: str | Unlearner = "ifru", options: Optional[dict] = None,
                 fallback: str | Unlearner | None = "finetune", fallback_options: Optional[dict] = None,
                 unlearner: Optional[Unlearner] = None, audit: Optional[AuditFn] = audit_figures,
                 ks: Sequence[int] = (20,), device: str = "cpu", keep_history: bool = False,
                 progress: Optional[Callable[[str], None]] = None,
                 lock_timeout: Optional[float] = DEFAULT_LOCK_TIMEOUT,
                 key_path: str | os.PathLike | None = None) -> None:
        # methods first: a bad name fails before the store, ledger or model are touched
        if not isinstance(method, Unlearner):
            method_key(method)
        if fallback is not None and not isinstance(fallback, Unlearner):
            method_key(fallback)
        if unlearner is None:
            unlearner = method if isinstance(method, Unlearner) else get_unlearner(method, **(options or {}))
        self.unlearner = unlearner
        if fallback is None or isinstance(fallback, Unlearner):
            self.fallback = fallback
        else:
            self.fallback = get_unlearner(fallback, **(fallback_options or {}))
        self.store = InteractionStore(db_path, key_path=key_path)
        self.ledger = Ledger(self.store.conn)
        self.checkpoint_path = Path(checkpoint_path)
        self.dir = self.checkpoint_path.parent
        self.stem, self.suffix = self.checkpoint_path.stem, self.checkpoint_path.suffix or ".pt"
        self.audit_fn = audit
        self.ks = tuple(ks)
        self.device = device
        self.keep_history = keep_history
        self.progress = progress
        self.lock_timeout = lock_timeout
        self._lock_fd: Optional[int] = None
        self._lock_depth = 0
        self.graph: InteractionGraph
        self.model = None
        self.payload: dict = {}
        self.current: dict = {}
        try:
            if self.store.is_empty():
                raise ValueError(f"{db_path}: the store holds no data; import a data set first")
            self.reconcile()
        except BaseException:
            self.store.close()  # a refused start leaves no connection (nor -wal / -shm files)
            raise

    # ------------------------------------------------------------------ files and locks
    @contextmanager
    def _locked(self):
        """Exclusive lock on the checkpoint series across processes (re-entrant here)."""
        if self._lock_depth == 0:
            self._lock_fd = acquire_lock(self.dir / f"{self.checkpoint_path.name}.lock",
                                          self.lock_timeout)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                release_lock(self._lock_fd)
                self._lock_fd = None

    def version_name(self, request_id: str) -> str:
        """File name of the checkpoint written by ``request_id`` (unique to this store)."""
        tail = f".{self.store.store_id}{self.suffix}"
        if re.fullmatch(r"[A-Za-z0-9_-]{1,80}", request_id):
            return f"{self.stem}.r-{request_id}{tail}"
        return f"{self.stem}.h-{hashlib.sha256(request_id.encode()).hexdigest()[:24]}{tail}"

    def _write_checkpoint(self, name: str, model, graph: InteractionGraph, config: Optional[dict],
                          extra: dict) -> str:
        """Record ``name`` as the store's own (committed), then write it; returns its sha256."""
        with self.store.transaction() as c:
            self.store.own_file(c, name)
        return save_checkpoint(self.dir / name, model, graph, config, extra)

    def _remove_orphans(self) -> list[str]:
        """Delete the recorded files other than those kept (the current checkpoint, and the
        ledger's with ``keep_history``) and every temp file of a recorded name; forget the
        deleted ones from the record. Returns the names of the files removed."""
        import glob

        keep = {self.current.get("name")}
        if self.keep_history:
            keep |= self.ledger.checkpoints()
        removed, gone = [], []
        for name in self.store.owned_files():
            paths = [Path(p) for p in glob.glob(glob.escape(str(self.dir / name)) + ".*.tmp")]
            if name not in keep:
                paths.append(self.dir / name)
                gone.append(name)
            for p in paths:
                if p.exists():
                    p.unlink()
                    removed.append(p.name)
        if gone:
            with self.store.transaction() as c:
                self.store.disown_files(c, gone)
        return removed

    def _phase(self, name: str) -> None:
        if self.progress is not None:
            self.progress(name)

    # ------------------------------------------------------------------ start-up
    def _check_series(self) -> None:
        bound, series = self.store.get_meta("checkpoint_series"), self.checkpoint_path.name
        if bound is not None and bound != series:
            raise ValueError(f"store {self.store.path} is bound to checkpoint series {bound!r}, "
                             f"not {series!r}")

    def reconcile(self) -> dict:
        """Bring files in line with the store after a crash (see the module docstring).

        Refuses a store that fails :func:`~graphforget.service.verify.integrity_problem`
        (broken ledger chain, tombstones or pointer off the ledger, forgotten pairs back), binds
        the base checkpoint on first use, checks the current checkpoint's sha256 and graph
        fingerprint, loads it, and removes the orphans among the files the store recorded
        as its own (no other file is touched). Raises ``ValueError`` if the checkpoint is
        missing, modified or of another graph.
        """
        self._check_series()  # before the lock: another series' lock file is never created
        with self._locked():
            problem = integrity_problem(self.store, self.ledger)
            if problem:
                raise ValueError(f"{self.store.path}: {problem}; run `graphforget verify --db "
                                 f"{self.store.path}` for every check")
            graph = self.store.to_graph()
            series = self.checkpoint_path.name
            self._check_series()  # again under the lock
            ptr = self.store.current_checkpoint()
            if ptr is None:
                ptr = self._bind(graph)
            path = self.dir / ptr["name"]
            db = self.store.path
            if not path.exists():
                raise ValueError(f"current checkpoint {path} is missing; "
                                 f"{recovery_hint(db, path, self.dir)}")
            sha = file_sha256(path)
            if sha != ptr["sha256"]:
                replaced = " (the bound base checkpoint was replaced, e.g. by `graphforget train " \
                           "--out` onto it)" if ptr["name"] == series else ""
                raise ValueError(f"checkpoint {path} has sha256 {sha}, the store recorded "
                                 f"{ptr['sha256']}: refusing a modified checkpoint{replaced}; "
                                 f"{recovery_hint(db, path, self.dir)}")
            if ptr["fingerprint"] != self.store.graph_digest(graph):
                raise ValueError(f"checkpoint {path} is for graph {ptr['fingerprint']}, the store "
                                 f"holds graph {self.store.graph_digest(graph)} (interactions imported or "
                                 f"removed outside the service): retrain or re-bind — "
                                 f"{recovery_hint(db, None, self.dir)}")
            model, payload = load_for_store(path, graph)  # sizes, weights_only, fingerprint, finite
            self.graph, self.model, self.payload = graph, model.to(self.device), payload
            self.current = dict(ptr)
            removed = self._remove_orphans()
        return {"checkpoint": ptr["name"], "sha256": ptr["sha256"],
                "fingerprint": ptr["fingerprint"], "removed": removed}

    def _bind(self, graph: InteractionGraph) -> dict:
        path = self.checkpoint_path
        if not path.exists():
            raise FileNotFoundError(f"base checkpoint {path} does not exist")
        _, payload = load_for_store(path, graph)  # sizes, another graph, NaN / inf
        sha = file_sha256(path)
        ptr = {"name": path.name, "sha256": sha, "fingerprint": self.store.graph_digest(graph)}
        rid = f"bind-{sha}"
        with self.store.transaction() as c:
            if self.store.current_checkpoint() is not None:
                raise RuntimeError("another process bound a checkpoint concurrently; retry")
            self.store.set_meta(c, "checkpoint_series", path.name)
            self.store.set_current_checkpoint(c, ptr["name"], sha, ptr["fingerprint"])
            self.ledger.append(c, LedgerEntry(
                request_id=rid, time=time.time(), kind="bind", status="applied",
                request={"checkpoint": path.name, "recipe": recipe_of(payload)},
                request_digest=binding_digest("bind", path.name),
                checkpoint=path.name, checkpoint_sha256=sha, graph_fingerprint=ptr["fingerprint"]))
        return ptr

    def _refresh(self) -> None:
        """Reload if another process moved the pointer since we loaded."""
        if self.store.current_checkpoint() != self.current:
            self.reconcile()

    # ------------------------------------------------------------------ requests
    def forget(self, edges_raw: Iterable, request_id: Optional[str] = None) -> ForgetResult:
        """Forget training interactions given as raw ``(user, item)`` id pairs."""
        return self._submit([self._spec("edges", edges_raw, request_id)])[0]

    def forget_user(self, raw_user_id, request_id: Optional[str] = None) -> ForgetResult:
        """Forget every interaction of a user (training ones unlearned, held-out ones purged)."""
        return self._submit([self._spec("user", raw_user_id, request_id)])[0]

    def forget_item(self, raw_item_id, request_id: Optional[str] = None) -> ForgetResult:
        """Forget every interaction with an item (training ones unlearned, held-out purged)."""
        return self._submit([self._spec("item", raw_item_id, request_id)])[0]

    def forget_many(self, requests: Sequence[dict]) -> list[ForgetResult]:
        """Apply queued requests as ONE unlearning step (a coalesced stream): each request is
        ``{"edges": [(user, item), ...]}``, ``{"user": raw}`` or ``{"item": raw}``, optionally
        with ``"request_id"``. The union of their pairs is unlearned at once and written as one
        checkpoint; each request keeps its own ledger row and tombstones, all committed in one
        transaction (all or none). Requests already applied are replayed; the batch is refused
        as a whole (nothing changed) if any request is invalid or two requests share a pair.
        Returns one :class:`ForgetResult` per request, in order.

        The result equals one-by-one application for methods that depend only on the final
        graph (a seeded ``retrain``). An influence step on the union is not the sequence of
        steps: both start from a stationary model only for the first request, and where the new
        objective's Hessian is indefinite (damping raised) the two can differ by a sizeable part
        of the step, so compare them with the audit rather than assume they agree."""
        if isinstance(requests, (str, bytes, dict)) or not hasattr(requests, "__iter__"):
            raise ValueError("forget_many takes a list of requests ({'edges': ...}, {'user': ...} "
                             "or {'item': ...}, each with an optional 'request_id')")
        specs = []
        for k, r in enumerate(requests):
            kinds = [key for key in ("edges", "user", "item") if isinstance(r, dict) and key in r]
            extra = set(r) - {"edges", "user", "item", "request_id"} if isinstance(r, dict) else set()
            if len(kinds) != 1 or extra:
                raise ValueError(f"request #{k}: expected exactly one of 'edges', 'user', 'item' "
                                 f"(and optionally 'request_id'), got {r!r:.200}")
            specs.append(self._spec(kinds[0], r[kinds[0]], r.get("request_id")))
        if not specs:
            raise ValueError("forget_many: no requests given")
        return self._submit(specs)

    @staticmethod
    def _single_id(x, what: str) -> str:
        raw = raw_id(x)
        if raw is None:
            raise ValueError(f"malformed {what} id {x!r}: expected a str or int raw id")
        return raw

    def _spec(self, kind: str, value: Any, request_id: Optional[str]) -> dict:
        """A validated request: kind, canonical raw form, request id, its keyed digest, what the
        ledger stores (no raw ids) and how to resolve it against the served graph."""
        if kind == "edges":
            pairs = normalise_pairs(value)
            canonical: Any = [list(p) for p in (sorted(set(pairs)) if len(set(pairs)) == len(pairs) else pairs)]
            resolve, stored = (lambda: self._resolve_edges(pairs)), {"pairs": len(canonical)}
        else:
            canonical = self._single_id(value, kind)
            resolve = (lambda: self._resolve_node(canonical, kind))
            stored = {kind: placeholder(self.store.key, kind, canonical)}
        rid = new_request_id() if request_id is None else request_id
        if not isinstance(rid, str) or not rid.strip() or len(rid) > 200 or not rid.isprintable():
            raise ValueError("request id must be a non-empty printable string (no control "
                             f"characters) of at most 200 characters, got {rid!r}")
        return {"kind": kind, "rid": rid, "digest": self.store.request_digest(kind, canonical),
                "stored": stored, "resolve": resolve}

    def _submit(self, specs: list[dict]) -> list[ForgetResult]:
        """Replay, validate (every request before any work) and apply ``specs`` as one step."""
        rids = [sp["rid"] for sp in specs]
        if len(set(rids)) != len(rids):
            raise ValueError(f"request ids repeated in one batch: {sorted({r for r in rids if rids.count(r) > 1})[:5]}")
        with self._locked():
            self._refresh()
            results: list[Optional[ForgetResult]] = [None] * len(specs)
            pending = []
            for k, sp in enumerate(specs):
                prior = self.ledger.applied(sp["rid"])
                if prior is None:
                    pending.append(k)
                elif prior.request_digest != sp["digest"]:
                    raise ValueError(f"request id {sp['rid']!r} was already used for a different request "
                                     f"({prior.kind}: {json.dumps(prior.request)[:200]})")
                else:
                    results[k] = ForgetResult.from_entry(prior, replayed=True)
            if pending:
                self._phase("validate")
                for k in pending:
                    specs[k]["edges"], specs[k]["heldout"] = specs[k]["resolve"]()
                _refuse_overlaps([specs[k] for k in pending], self.graph.num_items)
                for k, res in zip(pending, self._apply([specs[k] for k in pending])):
                    results[k] = res
            return results

    def _resolve_edges(self, pairs: list[tuple[str, str]]) -> tuple[Tensor, Tensor]:
        if not pairs:
            raise ValueError("empty forget request: no (user, item) pairs given")
        errors = []
        u = i = None
        try:
            u = self.store.lookup_users([p[0] for p in pairs])
        except ValueError as exc:
            errors.append(str(exc))
        try:
            i = self.store.lookup_items([p[1] for p in pairs])
        except ValueError as exc:
            errors.append(str(exc))
        if errors:
            raise ValueError("; ".join(errors))
        g = self.graph
        e = torch.stack([u, i])
        keys = edge_keys(e, g.num_items)
        uniq, inv, counts = torch.unique(keys, return_inverse=True, return_counts=True)
        dup = counts[inv] > 1
        if bool(dup.any()):
            raise ValueError(f"duplicate pairs in request: {sorted(set(p for p, d in zip(pairs, dup.tolist()) if d))[:10]}")
        gone = self.store.deleted_by(e)
        if any(r is not None for r in gone):
            named = [(p, r) for p, r in zip(pairs, gone) if r is not None]
            raise ValueError(f"{len(named)} pairs are already forgotten (pair, by request): {named[:10]}")
        hit = _keys_in(e, g.train_edges, g.num_items)
        if not bool(hit.all()):
            missing = [p for p, h in zip(pairs, hit.tolist()) if not h]
            raise ValueError(f"{len(missing)} pairs are not training interactions: {missing[:10]}")
        held = torch.cat([g.valid_edges, g.test_edges], 1)
        return e, e[:, _keys_in(e, held, g.num_items)]

    def _resolve_node(self, raw: str, what: str) -> tuple[Tensor, Tensor]:
        g = self.graph
        lookup = self.store.lookup_users if what == "user" else self.store.lookup_items
        node = lookup([raw])
        row = 0 if what == "user" else 1
        edges = g.train_edges[:, g.train_edges[row] == node[0]]
        if edges.shape[1] == 0:
            by = self.store.deleted_of(**{f"{what}s": node})
            detail = f"; forgotten by requests {sorted(by)[:10]}" if by else ""
            raise ValueError(f"{what} {raw!r} has no training interactions left{detail}")
        held = torch.cat([g.valid_edges, g.test_edges], 1)
        held = held[:, held[row] == node[0]]
        keys = torch.unique(edge_keys(held, g.num_items))
        return edges, torch.stack([keys // g.num_items, keys % g.num_items])

    # ------------------------------------------------------------------ the transaction
    def _audit(self, model, graph_after, edges, adj_graph=None) -> Optional[dict]:
        if self.audit_fn is None:
            return None
        return jsonable(self.audit_fn(model, graph_after, edges, adj_graph=adj_graph))

    def _describe(self, unlearner: Unlearner) -> tuple[str, dict]:
        return unlearner.name, {"seed": getattr(unlearner, "seed", None), **getattr(unlearner, "options", {})}

    def _run_unlearning(self, graph: InteractionGraph, edges: Tensor, expected: InteractionGraph):
        """The first acceptable result of method, then fallback, on ``graph`` (the served graph
        without the requests' held-out pairs); else ``UnlearningFailed``."""
        failures = []
        for unlearner in [self.unlearner] + ([self.fallback] if self.fallback is not None else []):
            name = unlearner.name
            try:
                res = unlearner.unlearn(self.model, graph, edges)
            except (ArithmeticError, torch.linalg.LinAlgError) as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if res.graph.fingerprint() != expected.fingerprint():
                raise RuntimeError(f"{name} returned a graph {res.graph.fingerprint()} that is not "
                                   f"the store's graph minus the request ({expected.fingerprint()})")
            if not is_finite_model(res.model):
                failures.append(f"{name}: non-finite parameters")
                continue
            if res.report.converged is False:
                failures.append(f"{name}: solver did not converge (residual "
                                f"{res.report.solver_residual:.3g} after {res.report.solver_iterations} iterations)")
                continue
            return res, unlearner, failures
        raise UnlearningFailed("unlearning failed, the model is unchanged: " + "; ".join(failures))

    def _without_heldout(self, graph: InteractionGraph, heldout: Tensor) -> InteractionGraph:
        if heldout.shape[1] == 0:
            return graph

        def keep(e: Tensor, lab: Optional[Tensor]):
            m = ~_keys_in(e, heldout, graph.num_items)
            return e[:, m], (None if lab is None else lab[m])

        va, val = keep(graph.valid_edges, graph.valid_labels)
        te, tel = keep(graph.test_edges, graph.test_labels)
        return InteractionGraph(graph.num_users, graph.num_items, graph.train_edges, va, te,
                                train_labels=graph.train_labels, valid_labels=val, test_labels=tel,
                                train_timestamps=graph.train_timestamps, user_ids=graph.user_ids,
                                item_ids=graph.item_ids, name=graph.name,
                                _adjacency=graph.adjacency, _check=False)

    def _apply(self, specs: list[dict]) -> list[ForgetResult]:
        """Unlearn the union of the resolved ``specs`` in one step and commit one ledger row per
        request (their tombstones, the shared checkpoint) in one transaction."""
        n_items = self.graph.num_items
        edges = torch.cat([sp["edges"] for sp in specs], 1)
        heldout = torch.cat([sp["heldout"] for sp in specs], 1)
        # the held-out pairs of the requests are purged before anything uses the graph: no
        # retrain selects its epoch on them, and the audit does not score them
        old_graph = self._without_heldout(self.graph, heldout)
        expected = old_graph.remove_edges(edges)
        self._phase("audit")
        before = self._audit(self.model, expected, edges, adj_graph=old_graph)
        self._phase("unlearn")
        try:
            res, used, failures = self._run_unlearning(old_graph, edges, expected)
        except UnlearningFailed as exc:
            name, opts = self._describe(self.unlearner)
            with self.store.transaction() as c:
                for sp in specs:
                    self.ledger.append(c, LedgerEntry(
                        request_id=sp["rid"], time=time.time(), kind=sp["kind"], status="failed",
                        request=sp["stored"], request_digest=sp["digest"],
                        num_edges=int(sp["edges"].shape[1]), method=name, options=opts,
                        parent_sha256=self.current["sha256"], error=str(exc)))
            raise
        new_graph = res.graph
        self._phase("audit")
        after = self._audit(res.model, new_graph, edges)
        report = res.report.to_dict()
        if failures:
            report["service_notes"] = [f"fallback used after: {f}" for f in failures]
        if len(specs) > 1:
            report.setdefault("service_notes", []).append(
                f"coalesced: {len(specs)} requests unlearned as one step "
                f"({', '.join(sp['rid'] for sp in specs)[:300]})")
        report = jsonable(report)  # as stored, so a replay returns the same values
        name, opts = self._describe(used)
        ckpt = self.version_name(specs[0]["rid"])
        self._phase("checkpoint")
        sha = self._write_checkpoint(ckpt, res.model, new_graph, self.payload.get("train_config"),
                                     {"request_id": [sp["rid"] for sp in specs] if len(specs) > 1
                                      else specs[0]["rid"], "parent_sha256": self.current["sha256"]})
        self._phase("commit")
        fingerprint, when = self.store.graph_digest(new_graph), time.time()
        entries, names = [], {}
        for sp in specs:
            keys = torch.unique(edge_keys(torch.cat([sp["edges"], sp["heldout"]], 1), n_items))
            sp["pairs"] = torch.stack([keys // n_items, keys % n_items])
            sp["node"] = None if sp["kind"] == "edges" else int(sp["edges"][0 if sp["kind"] == "user" else 1, 0])
            entries.append(LedgerEntry(
                request_id=sp["rid"], time=when, kind=sp["kind"], status="applied",
                request=sp["stored"], request_digest=sp["digest"], num_edges=int(sp["edges"].shape[1]),
                num_heldout=int(sp["pairs"].shape[1] - sp["edges"].shape[1]), method=name,
                options=opts, report=report, audit_before=before, audit_after=after,
                checkpoint=ckpt, checkpoint_sha256=sha, graph_fingerprint=fingerprint,
                parent_sha256=self.current["sha256"]))

        def forget_rows(c) -> None:
            for sp in specs:
                self.store.mark_deleted(c, sp["pairs"], sp["rid"], when)
                if sp["node"] is not None:  # the node keeps its id, not its raw id
                    names[(sp["kind"], sp["node"])] = self.store.forget_node(c, sp["kind"], sp["node"])

        self._commit(entries, res.model, new_graph, forget_rows)
        for (kind, node), placeholder_name in names.items():
            ids = getattr(new_graph, f"{kind}_ids")
            if ids is not None:
                ids[node] = placeholder_name
        return [ForgetResult.from_entry(e, replayed=False) for e in entries]

    def _commit(self, entries: list[LedgerEntry], model, graph: InteractionGraph,
                changes: Optional[Callable] = None) -> None:
        """The one commit path of every request: with the checkpoint of ``entries`` written, in
        ONE transaction check that the pointer did not move, apply ``changes(conn)`` (forget
        requests' tombstones), append ``entries`` to the ledger and move the pointer to the new
        checkpoint; any failure rolls back and removes the new file. Then the WAL is
        truncated, ``model`` / ``graph`` are served, and superseded files are removed."""
        last = entries[-1]
        try:
            with self.store.transaction() as c:
                if self.store.current_checkpoint() != self.current:
                    raise RuntimeError("the store's checkpoint pointer moved during the request; retry")
                if changes is not None:
                    changes(c)
                for entry in entries:
                    entry.seq = self.ledger.append(c, entry)
                self.store.set_current_checkpoint(c, last.checkpoint, last.checkpoint_sha256,
                                                  last.graph_fingerprint)
        except BaseException:
            (self.dir / last.checkpoint).unlink(missing_ok=True)
            raise
        if not self.store.scrub():  # deleted bytes leave the database file and its WAL
            log.warning(f"{self.store.path}: another connection holds a read snapshot, so the WAL "
                        "could not be truncated: the deleted bytes stay in the store's files until "
                        "its next writable open (any graphforget command but history / verify)")
        self.graph, self.model = graph, model.to(self.device)
        self.current = {"name": last.checkpoint, "sha256": last.checkpoint_sha256,
                        "fingerprint": last.graph_fingerprint}
        self._remove_orphans()

    # ------------------------------------------------------------------ retrain, history, audit
    def retrain(self, config=None, seed: Optional[int] = None) -> ForgetResult:
        """Retrain from scratch on the store's current interactions (periodic full refresh).

        ``config``: a :class:`~graphforget.train.TrainConfig` or a dict of overrides of the
        training config stored in the current checkpoint. The new model goes through the same
        checkpoint + single-transaction commit as a forget request (ledger kind ``retrain``).
        """
        from ..models import from_config
        from ..train import TrainConfig

        with self._locked():
            self._refresh()
            known = {f.name for f in dc_fields(TrainConfig)}
            base = {k: v for k, v in (self.payload.get("train_config") or {}).items() if k in known}
            base.setdefault("progress", False)
            if isinstance(config, TrainConfig):
                cfg = config
            else:
                unknown = set(config or {}) - known
                if unknown:
                    raise ValueError(f"unknown training options {sorted(unknown)}")
                cfg = TrainConfig(**{**base, **(config or {})})
            if seed is not None:
                cfg = TrainConfig(**{**cfg.to_dict(), "seed": seed})
            cfg = TrainConfig(**{**cfg.to_dict(), "device": self.device})
            graph = self.graph
            self._phase("train")
            model = from_config(self.payload["model"], seed=cfg.seed)
            result = train_finite(model, graph, cfg, "the model is unchanged")
            model, seconds = result.model, result.seconds
            self._phase("audit")
            after = self._audit(model, graph, None)
            rid = new_request_id("retrain")
            ckpt = self.version_name(rid)
            self._phase("checkpoint")
            sha = self._write_checkpoint(ckpt, model, graph, cfg.to_dict(),
                                         {"request_id": rid, "parent_sha256": self.current["sha256"]})
            self._phase("commit")
            entry = LedgerEntry(
                request_id=rid, time=time.time(), kind="retrain", status="applied",
                request={"config": cfg.to_dict(),
                         "recipe": recipe_of({"model": self.payload.get("model"),
                                               "train_config": cfg.to_dict()})},
                request_digest=binding_digest("retrain", rid),
                method="retrain", options=cfg.to_dict(),
                report=jsonable({"seconds_total": seconds, "epochs_run": result.epochs_run,
                                 "best_epoch": result.best_epoch, "best_metric": result.best_metric}),
                audit_after=after, checkpoint=ckpt, checkpoint_sha256=sha,
                graph_fingerprint=self.store.graph_digest(graph), parent_sha256=self.current["sha256"])
            self._commit([entry], model, graph)
            self.payload = {**self.payload, "train_config": cfg.to_dict()}
        return ForgetResult.from_entry(entry, replayed=False)

    rebind = staticmethod(rebind_checkpoint)
    retrain_into = staticmethod(retrain_checkpoint)

    def history(self) -> list[LedgerEntry]:
        """Every ledger row in commit order."""
        return self.ledger.history()

    def audit(self, request_id: str) -> dict:
        """Ledger rows of ``request_id`` plus checks against the current state: its tombstones
        are as many as the row recorded, none of its pairs has a row in the store or an edge in
        the served graph, the store passes :func:`~graphforget.service.integrity_problem`
        (``ledger_problem``, ``None`` when intact), and whether its checkpoint file is still
        present with the recorded sha256. ``forgotten`` requires all but the last."""
        rows = self.ledger.history(request_id)
        if not rows:
            raise ValueError(f"unknown request id {request_id!r}")
        out: dict = {"request_id": request_id, "entries": [r.to_dict() for r in rows]}
        applied = self.ledger.applied(request_id)
        out["status"] = "applied" if applied else rows[-1].status
        if applied is None or applied.kind not in ("edges", "user", "item"):
            return out
        toks = self.store.request_tokens(request_id)
        in_store = self.store.present_tokens(toks)
        graph_toks = set(self.store.tokens(self.graph.train_edges)) if toks else set()
        in_graph = sum(t in graph_toks for t in toks)
        path = self.dir / applied.checkpoint
        recorded = applied.num_edges + applied.num_heldout
        problem = integrity_problem(self.store, self.ledger)
        out.update({"pairs": len(toks), "pairs_recorded": recorded,
                    "rows_in_store": in_store, "ledger_problem": problem,
                    "edges_in_served_graph": in_graph, "checkpoint_present": path.exists(),
                    "checkpoint_sha256_ok": (file_sha256(path) == applied.checkpoint_sha256)
                    if path.exists() else None,
                    "is_current": applied.checkpoint == self.current["name"],
                    "forgotten": in_store == 0 and in_graph == 0 and len(toks) == recorded
                    and problem is None})
        return out

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Forgetter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
