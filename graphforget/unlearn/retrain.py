"""Retrain from scratch on the remaining edges: the gold standard every method is judged by."""
from __future__ import annotations

import dataclasses
from typing import Optional

from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel, build_model
from ..train import TrainConfig, Trainer
from .base import Timer, Unlearner, UnlearnReport


class Retrain(Unlearner):
    """Train a fresh model of the same architecture on ``graph.remove_edges(edges)``.

    The model is rebuilt from ``model.config()`` (buffers such as LightGCN's ``alpha`` copied),
    initialised and trained with seed ``seed``, with ``config`` (the original
    :class:`~graphforget.train.TrainConfig`, same early stopping on the validation split) on the
    device of the given model. Report: ``solve`` = training time, ``solver_iterations`` = epochs
    run.
    """

    name = "retrain"

    def __init__(self, config: Optional[TrainConfig] = None, seed: int = 0) -> None:
        config = config if config is not None else TrainConfig(progress=False)
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        super().__init__(seed=seed, config=config.to_dict())
        self.config = config

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        with timer("graph_update"):
            new_graph = graph.remove_edges(edges)
        cfg = model.config()
        fresh = build_model(cfg.pop("model"), cfg.pop("num_users"), cfg.pop("num_items"),
                            dim=cfg.pop("dim"), layers=cfg.pop("layers"), seed=self.seed)
        for name, buf in model.named_buffers():
            fresh.get_buffer(name).copy_(buf)
        device = str(model.embedding.device)
        config = dataclasses.replace(self.config, seed=self.seed, device=device)
        with timer("solve"):
            result = Trainer(config).fit(fresh.to(model.embedding.dtype), new_graph)
        with timer("apply"):
            model.load_state_dict(result.model.state_dict())
        report.solver_iterations = result.epochs_run
        report.affected_nodes = graph.num_nodes
        report.affected_parameters = sum(p.numel() for p in model.parameters())
        report.notes.append(f"best epoch {result.best_epoch}, best validation {result.best_metric:.4f}")
        return new_graph
