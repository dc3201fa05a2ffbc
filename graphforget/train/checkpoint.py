"""Checkpoints: state dict + config + fingerprint of the training edges.

Plain models are rebuilt with :func:`~graphforget.models.build_model`; a
:class:`~graphforget.models.ensemble.ShardedRecommender` (SISA / RecEraser) from its config
(shard architecture, seeds, aggregator options) and its tensors (every shard's parameters, the
``edges`` / ``assignment`` buffers, the attention aggregator's parameters).

Loaded with ``torch.load(weights_only=True)`` (no pickled code runs); a checkpoint trained on
another edge set is refused when a graph is given.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

from ..data.graph import InteractionGraph
from ..models import RecModel, from_config
from ..models.ensemble import ShardedRecommender


def save_checkpoint(path: str | os.PathLike, model: RecModel, graph: InteractionGraph,
                    config: Optional[dict] = None, extra: Optional[dict] = None) -> str:
    """Write atomically (temp file, fsync, rename). Returns the file's sha256 (16 hex).

    ``config`` is the training recipe stored beside the weights (default: ``model.recipe``)."""
    if config is None:
        config = model.recipe
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": "graphforget-checkpoint-v1", "model": model.config(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "graph_fingerprint": graph.fingerprint(), "graph_stats": graph.stats(),
               "train_config": dict(config or {}), "extra": dict(extra or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return file_sha256(path)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_checkpoint(path: str | os.PathLike, graph: Optional[InteractionGraph] = None) -> tuple[RecModel, dict]:
    """Rebuild the model from a checkpoint. Raises ``ValueError`` if ``graph`` differs."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"{path}: not a readable graphforget checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "graphforget-checkpoint-v1":
        raise ValueError(f"{path}: not a graphforget checkpoint")
    if graph is not None and payload["graph_fingerprint"] != graph.fingerprint():
        raise ValueError(f"{path}: checkpoint is of another training graph: trained on "
                         f"{_describe(payload.get('graph_stats', {}))} (fingerprint "
                         f"{payload['graph_fingerprint']}), given {_describe(graph.stats())} "
                         f"(fingerprint {graph.fingerprint()}); pass the data set and --seed it "
                         "was trained with")
    model = _rebuild(dict(payload["model"]), payload["state_dict"])
    model.recipe = dict(payload.get("train_config") or {}) or None
    if graph is not None and isinstance(model, ShardedRecommender):
        model.check_graph(graph)  # the stored shard assignment must cover exactly graph's edges
    return model, payload


def _describe(stats: dict) -> str:
    return (f"{stats.get('name') or 'unnamed'} ({stats.get('users', '?')} users, "
            f"{stats.get('items', '?')} items, {stats.get('train', '?')} training edges)")


def _rebuild(cfg: dict, state_dict: dict) -> RecModel:
    """Model of config ``cfg`` (``model.config()``) holding ``state_dict``."""
    if cfg.get("model") == ShardedRecommender.name:
        return ShardedRecommender.from_state(cfg, state_dict)
    model = from_config(cfg)
    model.load_state_dict(state_dict)
    return model
