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
    """Rebuild the model from a checkpoint. Raises ``ValueError`` if ``graph`` differs.

    Every problem with the file is one ``ValueError`` naming it: a missing path or a directory,
    a truncated or non-torch file, a payload that is not a graphforget checkpoint, a checkpoint
    of another training graph (checked before any model is built), or stored tensors whose
    names or shapes do not match the stored model config (checked on shapes alone, before the
    model's memory is allocated)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{path}: not a readable graphforget checkpoint (is a directory, "
                         "expected a checkpoint file)")
    if not p.exists():
        raise ValueError(f"{path}: not a readable graphforget checkpoint (no such file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"{path}: not a readable graphforget checkpoint (truncated, damaged or "
                         f"not a torch file: {_first_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "graphforget-checkpoint-v1":
        raise ValueError(f"{path}: not a graphforget checkpoint")
    for key, kind in (("model", dict), ("state_dict", dict), ("graph_fingerprint", str)):
        if not isinstance(payload.get(key), kind):
            raise ValueError(f"{path}: damaged graphforget checkpoint: no {key!r} entry of type "
                             f"{kind.__name__}")
    if graph is not None and payload["graph_fingerprint"] != graph.fingerprint():
        raise ValueError(f"{path}: checkpoint is of another training graph: trained on "
                         f"{_describe(payload.get('graph_stats', {}))} (fingerprint "
                         f"{payload['graph_fingerprint']}), given {_describe(graph.stats())} "
                         f"(fingerprint {graph.fingerprint()}); pass the data set and --seed it "
                         "was trained with")
    _check_state(path, dict(payload["model"]), payload["state_dict"])
    model = _rebuild(dict(payload["model"]), payload["state_dict"])
    model.recipe = dict(payload.get("train_config") or {}) or None
    if graph is not None:
        model.check_graph(graph)  # a sharded model: its stored edges must be exactly graph's
    return model, payload


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _expected_shapes(cfg: dict) -> dict:
    """Names and shapes of the tensors a model of config ``cfg`` holds, from a model built on
    the ``meta`` device (no memory allocated, whatever the sizes). For a sharded model only
    its shard models' tensors (``shards.<s>.<name>``); ``ValueError`` for a config that does not
    describe a model."""
    try:
        with torch.device("meta"):
            if cfg.get("model") == ShardedRecommender.name:
                from ..models import build_model

                kwargs = {"dim": cfg["dim"], "layers": cfg["layers"], **cfg.get("model_kwargs", {})}
                base = build_model(cfg["base_model"], cfg["num_users"], cfg["num_items"], **kwargs)
                shapes = {k: tuple(v.shape) for k, v in base.state_dict().items()}
                return {f"shards.{s}.{k}": shape for s in range(int(cfg["shards"]))
                        for k, shape in shapes.items()}
            return {k: tuple(v.shape) for k, v in from_config(cfg).state_dict().items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the stored model config {cfg} does not describe a model "
                         f"({type(exc).__name__}: {exc})") from None


def _check_state(path, cfg: dict, state_dict: dict) -> None:
    """``ValueError`` naming the first tensor of ``state_dict`` missing, of another shape, or
    (plain models) unexpected, for the model of ``cfg`` — before any memory is allocated."""
    try:
        want = _expected_shapes(cfg)
    except ValueError as exc:
        raise ValueError(f"{path}: damaged graphforget checkpoint: {exc}") from None
    what = (f"{cfg.get('model')}, {cfg.get('num_users')} users + {cfg.get('num_items')} items, "
            f"dim {cfg.get('dim')}, {cfg.get('layers')} layers")
    for name, shape in want.items():
        got = state_dict.get(name)
        if not isinstance(got, torch.Tensor):
            raise ValueError(f"{path}: the stored state does not match its config ({what}): no "
                             f"tensor {name!r}")
        if tuple(got.shape) != shape:
            raise ValueError(f"{path}: the stored state does not match its config ({what}): "
                             f"tensor {name!r} has shape {list(got.shape)}, the config needs "
                             f"{list(shape)}")
    if cfg.get("model") != ShardedRecommender.name:
        extra = sorted(set(state_dict) - set(want))
        if extra:
            raise ValueError(f"{path}: the stored state does not match its config ({what}): "
                             f"unexpected tensors {extra[:5]}")


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
