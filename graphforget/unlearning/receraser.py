r"""RecEraser (Chen et al., "Recommendation Unlearning", WWW 2022).

The model is a :class:`~graphforget.models.ensemble.ShardedRecommender` trained by
:func:`graphforget.train.sharding.fit_sharded` with ``strategy="kmeans"`` (interaction-based
balanced partition of pretrained embeddings) and the attention aggregator. Forgetting
:math:`\Delta\mathcal{D}` retrains, from scratch with their stored seeds, exactly the shards
that held deleted edges (as in :class:`~graphforget.unlearning.sisa.SISA`), then retrains the
attention aggregator from its seeded initialisation with the shards frozen on the remaining
edges (:func:`~graphforget.train.sharding.train_aggregator`; ``aggregator_epochs`` overrides
the stored number of epochs). Re-initialising the aggregator rather than fine-tuning it keeps
every parameter free of the deleted edges; the partition of the remaining edges is kept (see the
caveat in :mod:`graphforget.train.sharding`). A model with the ``mean`` aggregator is also
accepted (then only shards are retrained).
"""
from __future__ import annotations

from typing import Optional

from ..data.graph import InteractionGraph
from ..models.ensemble import ShardedRecommender
from ..train.sharding import train_aggregator
from .base import Timer, UnlearnReport
from .sisa import SISA


class RecEraser(SISA):
    """Retrain affected shards, then the attention aggregator.

    Args:
        processes: parallel processes for shard retraining.
        aggregator_epochs: epochs of aggregator retraining (default: the model's stored value).
    """

    name = "receraser"
    aggregators = ("attention", "mean")

    def __init__(self, seed: int = 0, processes: int = 1,
                 aggregator_epochs: Optional[int] = None) -> None:
        super().__init__(seed=seed, processes=processes)
        if aggregator_epochs is not None and int(aggregator_epochs) < 0:
            raise ValueError(f"aggregator_epochs must be >= 0, got {aggregator_epochs}")
        self.aggregator_epochs = aggregator_epochs

    def _after_shards(self, model: ShardedRecommender, graph: InteractionGraph,
                      report: UnlearnReport, timer: Timer) -> None:
        if model.aggregator is None:
            report.notes.append("mean aggregator: no aggregator to retrain")
            return
        with timer("solve"):
            history = train_aggregator(model, graph, epochs=self.aggregator_epochs)
        report.options["aggregator_loss"] = history[-1] if history else None
        report.affected_parameters += sum(p.numel() for p in model.aggregator.parameters())
        report.notes.append(f"aggregator retrained for {len(history)} epochs")
