"""Retrain from scratch on the remaining edges: the gold standard every method is judged by."""
from __future__ import annotations

import dataclasses
from typing import Optional

from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel, from_config
from ..train import TrainConfig, Trainer
from .base import Timer, Unlearner, UnlearnReport


def recipe_config(model: RecModel, config: Optional[TrainConfig] = None) -> TrainConfig:
    """``config``, else the recipe ``model`` was trained with (``model.recipe``), else the
    default :class:`~graphforget.train.TrainConfig`; progress off."""
    if config is not None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        return config
    recipe = getattr(model, "recipe", None)
    return TrainConfig.from_dict(recipe, progress=False) if recipe else TrainConfig(progress=False)


def independent_seed(model: RecModel, seed: Optional[int]) -> int:
    """``seed``, else one that differs from the seed of ``model``'s recipe (its seed + 1)."""
    if seed is not None:
        return int(seed)
    return int((getattr(model, "recipe", None) or {}).get("seed", 0)) + 1


class Retrain(Unlearner):
    """Train a fresh model of the same architecture on ``graph.remove_edges(edges)``.

    The recipe is ``config`` or the one the model was trained with (``model.recipe``: same
    stopping rule, same finish, same λ and fixed negatives); ``seed`` drives the
    initialisation, batch order and per-epoch negatives, by default an *independent* seed (the
    recipe's + 1): a retrain that shares the original's seed makes "do nothing" look like
    forgetting. Runs on the device of the given model. Report: ``solve`` = training time,
    ``solver_iterations`` = epochs run.
    """

    name = "retrain"

    def __init__(self, config: Optional[TrainConfig] = None, seed: Optional[int] = None) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        super().__init__(seed=seed)
        self.config = config

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        with timer("graph_update"):
            new_graph = graph.remove_edges(edges)
        seed = independent_seed(model, self.seed)
        report.options["seed"] = seed
        fresh = from_config(model.config(), seed=seed)
        for name, buf in model.named_buffers():
            fresh.get_buffer(name).copy_(buf)
        config = dataclasses.replace(recipe_config(model, self.config), seed=seed,
                                     device=str(model.embedding.device), progress=False)
        with timer("solve"):
            result = Trainer(config).fit(fresh.to(model.embedding.dtype), new_graph)
        with timer("apply"):
            model.load_state_dict(result.model.state_dict())
            model.recipe = result.model.recipe
        report.solver_iterations = result.epochs_run
        report.affected_nodes = graph.num_nodes
        report.affected_parameters = sum(p.numel() for p in model.parameters())
        report.notes.append(f"seed {seed}; best epoch {result.best_epoch}, best validation "
                            f"{result.best_metric:.4f}; |grad|/|theta| "
                            f"{result.stationarity['grad_norm_rel']:.2e}")
        report.notes.extend(result.notes)
        return new_graph
