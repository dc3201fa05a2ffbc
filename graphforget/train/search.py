"""``--l2 auto``: choose λ on validation for the recipe as it will be used.

Each λ of a seeded log grid trains a fresh model (same initialisation seed) with the full
recipe — early stopping and, for ``until="stationary"``, the stationary finish — and is scored
on the *validation* split (never test); the best model is returned. For the stationary recipe
this picks the λ whose minimiser generalises best, which is not the λ that suits early
stopping (there the stopping time regularises too).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

from ..data.graph import InteractionGraph
from ..models import RecModel
from .trainer import TrainConfig, TrainResult, Trainer, evaluate

log = logging.getLogger("graphforget.train")

#: the default grid: half-decades from 1e-4 to 1
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def search_l2(make_model: Callable[[], RecModel], graph: InteractionGraph, config: TrainConfig,
              grid: Sequence[float] = L2_GRID) -> tuple[float, TrainResult, list[dict]]:
    """Train one model per λ of ``grid`` with ``config`` and keep the best on validation.

    Args:
        make_model: returns a fresh, identically initialised model.
        graph: must have validation edges (labelled: AUC; implicit: ``config.metric``).

    Returns:
        ``(best λ, its TrainResult, one row per λ: {"l2", "valid", "grad_norm_rel", "epochs"})``.
    """
    if graph.valid_edges.shape[1] == 0:
        raise ValueError("--l2 auto chooses λ on validation: the graph has no validation edges")
    if not grid or min(grid) < 0:
        raise ValueError(f"the λ grid must be non-empty and non-negative, got {list(grid)}")
    metric = "auc" if graph.has_labels else config.metric
    rows: list[dict] = []
    best: Optional[tuple[float, float, TrainResult]] = None
    for l2 in grid:
        cfg = dataclasses.replace(config, weight_decay=float(l2))
        res = Trainer(cfg).fit(make_model(), graph)
        score = evaluate(res.model, graph, "valid", cfg.ks, cfg.eval_batch_size, cfg.device).get(metric, float("nan"))
        rows.append({"l2": float(l2), "valid": score, "grad_norm_rel": res.stationarity["grad_norm_rel"],
                     "epochs": res.epochs_run})
        log.info("l2 %g: valid %s %.4f, |grad|/|theta| %.2e", l2, metric, score, rows[-1]["grad_norm_rel"])
        if best is None or score > best[1]:
            best = (float(l2), score, res)
    return best[0], best[2], rows


__all__ = ["search_l2", "L2_GRID"]
