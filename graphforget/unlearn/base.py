"""The unlearning contract every method fulfils.

``Unlearner.unlearn(model, graph, request) -> UnlearnResult``: the request names training edges
(or whole users / items, expanded to their edges); the result holds a *new* model, the *new*
graph and a :class:`UnlearnReport`. Inputs are never mutated.
"""
from __future__ import annotations

import copy
import math
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph, as_edge_tensor
from ..models import RecModel


@dataclass
class UnlearningRequest:
    """What to forget: explicit ``edges`` (``[2, m]`` internal user/item pairs) and/or every
    training edge of ``users`` / ``items``."""

    edges: Optional[Tensor] = None
    users: Optional[Tensor] = None
    items: Optional[Tensor] = None

    @classmethod
    def of(cls, request) -> "UnlearningRequest":
        """Accept a request, an edge tensor ``[2, m]`` / ``[m, 2]`` or a list of pairs."""
        if isinstance(request, cls):
            return request
        return cls(edges=as_edge_tensor(request))

    def resolve(self, graph: InteractionGraph) -> Tensor:
        """The deduplicated training edges ``[2, m]`` this request removes.

        Raises ``ValueError`` for an empty request, unknown ids, duplicates or absent edges.
        """
        parts = []
        if self.edges is not None:
            e = as_edge_tensor(self.edges)
            graph.find_edges(e)  # validates: ids, duplicates, existence
            parts.append(e)
        if self.users is not None:
            parts.append(graph.user_edges(self.users))
        if self.items is not None:
            parts.append(graph.item_edges(self.items))
        if not parts:
            raise ValueError("empty deletion request: give edges, users or items")
        e = torch.cat(parts, 1)
        keys = torch.unique(e[0] * graph.num_items + e[1])
        return torch.stack([keys // graph.num_items, keys % graph.num_items])


@dataclass
class UnlearnReport:
    """What an unlearning call did and what it cost.

    Times in seconds: ``graph_update`` (new graph / adjacency), ``gradient`` (direct and
    spillover terms), ``solve`` (Hessian solve or optimisation), ``apply`` (writing the update).
    Newton-step methods also fill the solver fields and the step diagnostics
    ``gradient_mismatch`` / ``objective_change``
    (:meth:`~graphforget.unlearn.influence.InfluenceFunction.check_step`).
    """

    method: str
    num_deleted: int = 0
    seconds_total: float = 0.0
    seconds: dict = field(default_factory=lambda: {"graph_update": 0.0, "gradient": 0.0,
                                                    "solve": 0.0, "apply": 0.0})
    hvps: int = 0
    solver_iterations: int = 0
    solver_residual: float = float("nan")
    damping: float = 0.0
    converged: Optional[bool] = None
    gradient_mismatch: float = float("nan")
    objective_change: float = float("nan")
    affected_nodes: int = 0
    affected_parameters: int = 0
    peak_memory_mb: float = 0.0
    options: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        s = self.seconds
        parts = [f"{self.method}: forgot {self.num_deleted} edges in {self.seconds_total:.3f}s",
                 f"(graph {s['graph_update']:.3f}s, gradient {s['gradient']:.3f}s, "
                 f"solve {s['solve']:.3f}s, apply {s['apply']:.3f}s)"]
        if self.hvps or self.solver_iterations:
            parts.append(f"hvps={self.hvps} iters={self.solver_iterations} "
                         f"residual={self.solver_residual:.2e} damping={self.damping:g} "
                         f"converged={self.converged}")
        if not math.isnan(self.objective_change):  # a Newton step was checked
            parts.append(f"objective_change={self.objective_change:.3g} "
                         f"gradient_mismatch={self.gradient_mismatch:.3g}")
        parts.append(f"affected nodes={self.affected_nodes} params={self.affected_parameters} "
                     f"peak_mem={self.peak_memory_mb:.1f}MB")
        return " ".join(parts)


@dataclass
class UnlearnResult:
    model: RecModel
    graph: InteractionGraph
    report: UnlearnReport
    deleted_edges: Tensor


class Timer:
    """Accumulates named phase times into a report: ``with timer("solve"): ...``."""

    def __init__(self, report: UnlearnReport) -> None:
        self.report = report

    @contextmanager
    def __call__(self, phase: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.report.seconds[phase] = self.report.seconds.get(phase, 0.0) + time.perf_counter() - t


class Unlearner:
    """Base class: subclasses implement :meth:`_unlearn` on a copied model.

    ``unlearn`` resolves and validates the request *before* touching anything, copies the model,
    times the whole call and records peak memory (CUDA peak when on GPU, else Python heap peak
    via ``tracemalloc`` when ``track_memory=True``).
    """

    name = "base"

    def __init__(self, seed: int = 0, track_memory: bool = False, **options) -> None:
        self.seed = seed
        self.track_memory = track_memory
        self.options = options

    def unlearn(self, model: RecModel, graph: InteractionGraph, request) -> UnlearnResult:
        if (model.num_users, model.num_items) != (graph.num_users, graph.num_items):
            raise ValueError(f"model is for {model.num_users} users x {model.num_items} items, "
                             f"graph has {graph.num_users} x {graph.num_items}")
        request = UnlearningRequest.of(request)
        edges = request.resolve(graph)
        report = UnlearnReport(method=self.name, num_deleted=int(edges.shape[1]),
                               options={"seed": self.seed, **self.options})
        new_model = copy.deepcopy(model)
        cuda = next(model.parameters()).is_cuda
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.track_memory:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            new_graph = self._unlearn(new_model, graph, edges, report, Timer(report))
        finally:
            if not cuda and self.track_memory:
                report.peak_memory_mb = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
        report.seconds_total = time.perf_counter() - t0
        if cuda:
            report.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        for p in new_model.parameters():
            if not bool(torch.isfinite(p).all()):
                raise FloatingPointError(f"{self.name}: non-finite parameters after unlearning; "
                                         "the original model is unchanged")
        return UnlearnResult(model=new_model, graph=new_graph, report=report, deleted_edges=edges)

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        """Update ``model`` (already a copy) in place; return the new graph."""
        raise NotImplementedError
