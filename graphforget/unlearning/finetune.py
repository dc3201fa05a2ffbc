"""Fine-tune the trained model on the remaining edges (AdamW, warm start)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel
from ..train import TrainConfig, Trainer
from .base import Timer, Unlearner, UnlearnReport
from .retrain import recipe_config


class FineTune(Unlearner):
    """Continue training from the trained parameters on ``graph.remove_edges(edges)``.

    AdamW (``weight_decay=0`` in the optimiser: the L2 term is in the loss) with learning rate
    ``lr`` (default the recipe's), the training loss of ``config`` (default ``model.recipe``) with fresh negatives per
    epoch, for at most ``max_epochs`` epochs; validation is evaluated every
    ``config.eval_every`` epochs, training stops after ``patience`` evaluations without
    improvement and the best evaluated parameters are kept (``patience=None``: all epochs; no
    evaluation within ``max_epochs`` or no validation edges: the last parameters). Report: ``solve`` = training time,
    ``solver_iterations`` = epochs run.
    """

    name = "finetune"

    def __init__(self, config: Optional[TrainConfig] = None, max_epochs: int = 10,
                 patience: Optional[int] = 3, lr: Optional[float] = None, seed: int = 0) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        if int(max_epochs) < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience}")
        if lr is not None and not float(lr) > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(seed=seed)
        self.config, self.max_epochs, self.patience = config, int(max_epochs), patience
        self.lr = None if lr is None else float(lr)

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        with timer("graph_update"):
            new_graph = graph.remove_edges(edges)
        base = recipe_config(model, self.config)
        config = dataclasses.replace(base, optimizer="adamw", lr=self.lr or base.lr,
                                     epochs=self.max_epochs, patience=self.patience,
                                     until="early_stop", seed=self.seed,
                                     device=str(model.embedding.device), progress=False)
        with timer("solve"):
            result = Trainer(config).fit(model, new_graph)
        report.solver_iterations = result.epochs_run
        report.affected_nodes = graph.num_nodes
        report.affected_parameters = sum(p.numel() for p in model.parameters())
        report.notes.append(f"best epoch {result.best_epoch}, best validation {result.best_metric:.4f}")
        return new_graph
