r"""SISA unlearning (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021) for recommenders.

The model is a :class:`~graphforget.models.ensemble.ShardedRecommender` trained by
:func:`graphforget.train.sharding.fit_sharded` (``strategy="random"``, score averaging).
Forgetting :math:`\Delta\mathcal{D}` drops the deleted edges from the shard assignment and
retrains *only* the shards :math:`\{s : \Delta\mathcal{D} \cap \mathcal{D}_s \neq \emptyset\}`
from scratch, each with its original seed and training config, on
:math:`\mathcal{D}_s \setminus \Delta\mathcal{D}` (its own graph); other shards are untouched.
The result is exactly the model that training on the reduced data with the same partition
would give: exact unlearning. (SISA's slicing/checkpointing within shards is not implemented;
each affected shard is retrained in full.) The unlearner's ``seed`` is only recorded: the
retrained shards use the seeds stored in the model.
"""
from __future__ import annotations

from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel
from ..models.ensemble import ShardedRecommender
from ..train.sharding import retrain_shards
from .base import Timer, UnlearnReport, Unlearner


class SISA(Unlearner):
    """Retrain the shards that held deleted edges.

    Args:
        processes: train the affected shards in this many parallel ``spawn`` processes.
        seed: see :class:`~graphforget.unlearning.base.Unlearner`.

    The report's ``options["retrained_shards"]`` lists the retrained shards and
    ``options["shard_seconds"]`` their training times; ``affected_parameters`` counts their
    parameters (and the aggregator's, for RecEraser).
    """

    name = "sisa"
    aggregators = ("mean",)

    def __init__(self, seed: int = 0, processes: int = 1) -> None:
        if int(processes) < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        super().__init__(seed=seed)
        self.processes = int(processes)

    def _check_model(self, model: RecModel) -> ShardedRecommender:
        if not isinstance(model, ShardedRecommender):
            raise ValueError(f"{self.name} unlearning needs a sharded model; got {type(model).__name__}. "
                             "Train one with graphforget.train.sharding.fit_sharded first.")
        if model.aggregator_name not in self.aggregators:
            raise ValueError(f"{self.name} cannot unlearn a model with aggregator "
                             f"{model.aggregator_name!r} (supported: {self.aggregators}); "
                             "use method='receraser' for a learned aggregator")
        return model

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        model = self._check_model(model)
        with timer("graph_update"):
            model.check_graph(graph)
            affected = model.forget_edges(edges)
            new_graph = graph.remove_edges(edges)
        with timer("solve"):
            seconds = retrain_shards(model, new_graph, affected, self.processes)
        self._after_shards(model, new_graph, report, timer)
        sizes = model.shard_sizes().tolist()
        report.options["retrained_shards"] = affected
        report.options["shard_seconds"] = [round(seconds[s], 4) for s in affected]
        report.options["shard_sizes"] = sizes
        report.affected_parameters += sum(p.numel() for s in affected for p in model.shards[s].parameters())
        report.affected_nodes = model.num_nodes  # each retrained shard re-draws every node's embedding
        report.notes.append(f"retrained {len(affected)} of {model.num_shards} shards {affected} "
                            f"(sizes after deletion {[sizes[s] for s in affected]}) with "
                            f"{min(self.processes, len(affected))} process(es)")
        return new_graph

    def _after_shards(self, model: ShardedRecommender, graph: InteractionGraph,
                      report: UnlearnReport, timer: Timer) -> None:
        """Hook after shard retraining (RecEraser retrains its aggregator here)."""
