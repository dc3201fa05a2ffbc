"""Recovery of a store whose bound checkpoint was replaced, lost or no longer matches its graph:
:func:`rebind_checkpoint` (``graphforget store rebind``) binds an existing checkpoint of the
store's current graph, :func:`retrain_checkpoint` (``store retrain``) trains a new one with the
recipe the ledger recorded (:func:`recorded_recipe`). Both need a store that passes its
integrity checks, append a ``bind`` / ``retrain`` row to the hash chain and make the
checkpoint's file name the store's series.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, Optional

import torch

from ..data.graph import InteractionGraph
from ..train.checkpoint import file_sha256, save_checkpoint
from .ledger import Ledger, LedgerEntry, jsonable
from .requests import UnlearningFailed, new_request_id
from .series import DEFAULT_LOCK_TIMEOUT, series_locks
from .store import InteractionStore
from .verify import integrity_problem, load_for_store


def binding_digest(kind: str, request: Any) -> str:
    """Unkeyed digest of a bind / retrain row's request (no personal data in it)."""
    return hashlib.sha256(json.dumps({"kind": kind, "request": request}, sort_keys=True).encode()).hexdigest()


def train_finite(model, graph: InteractionGraph, cfg, unchanged: str):
    """Train ``model`` with ``cfg``; the ``TrainResult`` (its model on the CPU, and its
    ``seconds``), or :class:`UnlearningFailed` (``"…; " + unchanged``) if the parameters are
    not finite."""
    from ..train import train

    result = train(model, graph, cfg)
    result.model = result.model.cpu()
    if not is_finite_model(result.model):
        raise UnlearningFailed(f"retraining produced non-finite parameters; {unchanged}")
    return result


def is_finite_model(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def recipe_of(payload: dict) -> dict:
    """The training recipe recorded in the ledger for a checkpoint: architecture (model config
    without its sizes) and training config."""
    m = {k: v for k, v in dict(payload.get("model") or {}).items() if k not in ("num_users", "num_items")}
    return jsonable({"model": m, "train_config": dict(payload.get("train_config") or {})})


def recorded_recipe(ledger: Ledger) -> Optional[dict]:
    """The latest recipe a ``bind`` / ``retrain`` row recorded (``request["recipe"]``), or
    ``None`` (stores bound before recipes were recorded)."""
    for e in reversed(ledger.history()):
        if e.status == "applied" and e.kind in ("bind", "retrain") and isinstance(e.request, dict) \
                and isinstance(e.request.get("recipe"), dict):
            return e.request["recipe"]
    return None


def recovery_hint(db: Path, path: Optional[Path], folder: Path) -> str:
    what = "a checkpoint trained on the store's current graph" if path is None else \
        f"{path}, if it was trained on the store's current graph,"
    return (f"bind {what} with `graphforget store rebind --db {db} --checkpoint "
            f"{path or 'CKPT'}`, or train a new one with `graphforget store retrain --db {db} "
            f"--checkpoint {folder / 'NEW.pt'}`")


def open_for_recovery(db_path, key_path=None) -> tuple[InteractionStore, Ledger]:
    if not Path(db_path).exists():
        raise FileNotFoundError(f"{db_path}: no such store (create it with `graphforget store import`)")
    store = InteractionStore(db_path, key_path=key_path)
    try:
        ledger = Ledger(store.conn)
        if store.is_empty():
            raise ValueError(f"{db_path}: the store holds no data; import a data set first")
        problem = integrity_problem(store, ledger)
        if problem:
            raise ValueError(f"{db_path}: {problem}; run `graphforget verify --db {db_path}` — a "
                             "store that fails its integrity checks is not re-bound")
    except BaseException:
        store.close()
        raise
    return store, ledger


def commit_binding(store: InteractionStore, ledger: Ledger, kind: str, rid: str, path: Path,
                    sha: str, fingerprint: str, request: dict, old: Optional[dict],
                    **entry) -> LedgerEntry:
    row = LedgerEntry(request_id=rid, time=time.time(), kind=kind, status="applied",
                      request=jsonable(request), request_digest=binding_digest(kind, rid),
                      checkpoint=path.name, checkpoint_sha256=sha, graph_fingerprint=fingerprint,
                      parent_sha256=None if old is None else old["sha256"], **entry)
    with store.transaction() as c:
        if store.current_checkpoint() != old:
            raise RuntimeError("the store's checkpoint pointer moved meanwhile; retry")
        store.set_meta(c, "checkpoint_series", path.name)
        store.set_current_checkpoint(c, path.name, sha, fingerprint)
        row.seq = ledger.append(c, row)
    return row


def rebind_checkpoint(db_path: str | os.PathLike, checkpoint_path: str | os.PathLike,
                      lock_timeout: Optional[float] = DEFAULT_LOCK_TIMEOUT,
                      key_path: str | os.PathLike | None = None) -> LedgerEntry:
    """Bind an existing checkpoint of the store's **current** graph as its current checkpoint
    (the recovery when the bound one was replaced or lost; see the module docstring).

    Refused (one-line ``ValueError``, nothing written) unless the store passes its integrity
    checks and the checkpoint's sizes, graph fingerprint and finiteness match the store
    (:func:`~graphforget.service.verify.load_for_store`). Appends a ``bind`` row (request
    ``{"checkpoint", "rebind": true, "previous", "recipe"}``) to the hash chain, moves the
    pointer and makes the file's name the store's series. Returns the ledger row."""
    path = Path(checkpoint_path)
    store, ledger = open_for_recovery(db_path, key_path)
    try:
        old_series = store.get_meta("checkpoint_series")
        load_for_store(path, store.to_graph())  # refused before a lock file is created
        with series_locks(path.parent, [path.name] + ([old_series] if old_series else []), lock_timeout):
            graph = store.to_graph()
            _, payload = load_for_store(path, graph)
            sha = file_sha256(path)
            old = store.current_checkpoint()
            ptr = {"name": path.name, "sha256": sha, "fingerprint": store.graph_digest(graph)}
            if old == ptr and old_series == path.name:
                raise ValueError(f"{path} (sha256 {sha}) is already the store's current checkpoint")
            rid = f"rebind-{sha}-{uuid.uuid4().hex[:8]}"
            return commit_binding(store, ledger, "bind", rid, path, sha, ptr["fingerprint"],
                                   {"checkpoint": path.name, "rebind": True, "previous": old,
                                    "recipe": recipe_of(payload)}, old)
    finally:
        store.close()


def retrain_checkpoint(db_path: str | os.PathLike, checkpoint_path: str | os.PathLike,
                       model: Optional[dict] = None, config: Optional[dict] = None,
                       device: str = "cpu",
                       lock_timeout: Optional[float] = DEFAULT_LOCK_TIMEOUT,
                       key_path: str | os.PathLike | None = None) -> LedgerEntry:
    """Train a fresh model on the store's current graph and bind it as ``checkpoint_path`` (a
    new file: an existing one is refused), for when the bound checkpoint is lost or unusable
    and :class:`Forgetter` cannot start (:meth:`Forgetter.retrain` needs a working one).

    The recipe is the ledger's :func:`recorded_recipe`, overridden by ``model`` (``model``,
    ``dim``, ``layers``) and ``config`` (:class:`~graphforget.train.TrainConfig` fields);
    with no recorded recipe, ``model["model"]`` is required. Appends a ``retrain`` row to the
    hash chain and makes the file's name the store's series. Returns the ledger row."""
    from ..models import from_config
    from ..train import TrainConfig

    path = Path(checkpoint_path)
    if path.exists():
        raise ValueError(f"{path} already exists: refusing to overwrite it; give a new file name")
    store, ledger = open_for_recovery(db_path, key_path)
    try:
        recipe = recorded_recipe(ledger) or {}
        arch = {**dict(recipe.get("model") or {}), **{k: v for k, v in (model or {}).items() if v is not None}}
        if not arch.get("model"):
            raise ValueError(f"{db_path}: the ledger records no training recipe (a store bound "
                             "before recipes were recorded): give --model (and --dim, --layers)")
        known = {f.name for f in dc_fields(TrainConfig)}
        base = {k: v for k, v in dict(recipe.get("train_config") or {}).items() if k in known}
        over = dict(config or {})
        unknown = set(over) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        cfg = TrainConfig(**{**base, **over, "device": device, "progress": False})
        old_series = store.get_meta("checkpoint_series")
        with series_locks(path.parent, [path.name] + ([old_series] if old_series else []), lock_timeout):
            if path.exists():
                raise ValueError(f"{path} already exists: refusing to overwrite it; give a new file name")
            graph = store.to_graph()
            old = store.current_checkpoint()
            net = from_config({"dim": 64, "layers": 3, **arch, "num_users": graph.num_users,
                               "num_items": graph.num_items}, seed=cfg.seed)
            result = train_finite(net, graph, cfg, "nothing was bound")
            net, seconds = result.model, result.seconds
            sha = save_checkpoint(path, net, graph, cfg.to_dict(), {"retrained_for": str(db_path)})
            try:
                _, payload = load_for_store(path, graph)
                rid = new_request_id("retrain")
                return commit_binding(
                    store, ledger, "retrain", rid, path, sha, store.graph_digest(graph),
                    {"checkpoint": path.name, "config": cfg.to_dict(), "previous": old,
                     "recipe": recipe_of(payload)}, old, method="retrain", options=cfg.to_dict(),
                    report=jsonable({"seconds_total": seconds, "epochs_run": result.epochs_run,
                                     "best_epoch": result.best_epoch, "best_metric": result.best_metric}))
            except BaseException:
                path.unlink(missing_ok=True)
                raise
    finally:
        store.close()
