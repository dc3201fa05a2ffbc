"""The unlearning contract every method fulfils.

``Unlearner.unlearn(model, graph, request) -> UnlearnResult``: the request names training edges
(or whole users / items, expanded to their edges); the result holds a *new* model, the *new*
graph and a :class:`UnlearnReport`. Inputs are never mutated.
"""
from __future__ import annotations

import copy
import inspect
import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph, as_edge_tensor
from ..models import RecModel
from ..train.objective import Objective

#: relative gradient norm above which a Newton method's report says the model is not stationary
STATIONARY_RTOL = 1e-3


def objective_for(model: RecModel, graph: InteractionGraph, weight_decay: Optional[float] = None,
                  loss: str = "auto", negatives: Optional[int] = None,
                  negative_seed: Optional[int] = None) -> Objective:
    """The objective ``model`` was trained on: the arguments given (not ``None`` / ``"auto"``),
    else ``model.recipe`` (set by training and by checkpoints), else the defaults of
    :class:`~graphforget.train.objective.Objective` (λ = 1e-4)."""
    recipe = getattr(model, "recipe", None) or {}
    pick = lambda given, key: given if given is not None else recipe.get(key)  # noqa: E731
    return Objective.for_graph(graph, loss if loss != "auto" else recipe.get("loss", "auto"),
                               weight_decay=pick(weight_decay, "weight_decay"),
                               negatives=pick(negatives, "negatives"),
                               negative_seed=pick(negative_seed, "negative_seed"))


_FGE_CACHE: dict = {}


def full_gradient_seconds(model: RecModel, graph: InteractionGraph, objective: Objective) -> float:
    """Wall time of one full-graph value-and-gradient of the training objective at ``model``
    (median of 3 after a warm-up; closed form for linear models, as the unlearners use), the
    unit of the reports' ``fge``. Cached per model configuration, graph, objective, dtype and
    device (measured once per process)."""
    key = (repr(model.config()), graph.fingerprint(), repr(objective), str(model.embedding.dtype),
           str(model.embedding.device))
    if key not in _FGE_CACHE:
        from ..train.objective import FullObjective

        dev = model.embedding.device
        f = FullObjective(model, graph, objective.samples(graph), objective.weight_decay,
                          model.embedding.dtype, dev)
        ego = model.embedding.detach()
        times = []
        for _ in range(4):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            f(ego)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        _FGE_CACHE[key] = sorted(times[1:])[1]
    return _FGE_CACHE[key]


def stationarity_note(model: RecModel) -> tuple[float, Optional[str]]:
    """``(grad_norm_rel, note)`` from ``model.recipe``: the note (or ``None``) says in one line
    when the model is not at a stationary point of its objective, which Newton steps assume."""
    rel = (getattr(model, "recipe", None) or {}).get("grad_norm_rel")
    if rel is None:
        return float("nan"), ("stationarity unknown (no training recipe on the model): influence "
                              "steps assume a stationary model; train with until='stationary'")
    if rel > STATIONARY_RTOL:
        return float(rel), (f"model is not stationary: |grad L|/|theta| = {rel:.3g} (> {STATIONARY_RTOL:g}); "
                            "influence steps assume a stationary point and do not head for the "
                            "retrain from here: train with until='stationary' "
                            "(`graphforget train --until stationary`)")
    return float(rel), None


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
    (:meth:`~graphforget.unlearning.influence.InfluenceFunction.check_step`).
    ``peak_memory_mb``: the call's peak memory (:class:`PeakMemory`; NaN where not measurable).
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
    #: the original model's relative gradient norm (``model.recipe``; NaN when unknown)
    grad_norm_rel: float = float("nan")
    #: Newton steps taken and the relative gradient norm on the free rows after each
    newton_steps: int = 0
    step_gradients: list = field(default_factory=list)
    #: cost in full-gradient-equivalents: ``seconds_total`` over the time of one full-graph
    #: gradient of the training objective in the same process (:func:`full_gradient_seconds`)
    fge: float = float("nan")
    full_gradient_seconds: float = float("nan")
    #: rounds of a method that iterates over blocks (AltEraser) and ``fge / rounds``
    rounds: int = 0
    fge_per_round: float = float("nan")
    affected_nodes: int = 0
    affected_parameters: int = 0
    peak_memory_mb: float = float("nan")
    #: the method's :meth:`Unlearner.get_params` (plus entries the method adds while it runs)
    options: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        s = self.seconds
        fge = f" = {self.fge:.1f} FGE" if math.isfinite(self.fge) else ""
        if self.rounds and math.isfinite(self.fge_per_round):
            fge += f" ({self.fge_per_round:.2f} per round, {self.rounds} rounds)"
        parts = [f"{self.method}: forgot {self.num_deleted} edges in {self.seconds_total:.3f}s{fge}",
                 f"(graph {s['graph_update']:.3f}s, gradient {s['gradient']:.3f}s, "
                 f"solve {s['solve']:.3f}s, apply {s['apply']:.3f}s)"]
        if self.hvps or self.solver_iterations:
            parts.append(f"hvps={self.hvps} iters={self.solver_iterations} "
                         f"residual={self.solver_residual:.2e} damping={self.damping:g} "
                         f"converged={self.converged}")
        if not math.isnan(self.objective_change):  # a Newton step was checked
            parts.append(f"objective_change={self.objective_change:.3g} "
                         f"gradient_mismatch={self.gradient_mismatch:.3g}")
        if self.newton_steps > 1:
            parts.append(f"newton_steps={self.newton_steps} gradient after each: "
                         + ",".join(f"{g:.2e}" for g in self.step_gradients))
        parts.append(f"affected nodes={self.affected_nodes} params={self.affected_parameters} "
                     + (f"peak_mem={self.peak_memory_mb:.1f}MB" if math.isfinite(self.peak_memory_mb)
                        else "peak_mem=n/a"))
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


class PeakMemory:
    """Peak memory of a block of code, in MiB (``mb``; NaN where it cannot be measured).

    On CUDA: :func:`torch.cuda.max_memory_allocated` after a reset — the caching allocator's
    peak of live tensors. On CPU: the process's resident-set high-water mark (``VmHWM`` in
    ``/proc/self/status``, reset on entry by writing ``5`` to ``/proc/self/clear_refs``; Linux)
    minus the resident set on entry — the extra memory the block needed at its peak, tensors
    and everything else alike. Python's ``tracemalloc`` would not do: torch allocates tensor
    storage outside the Python heap. Measures this process only (not the child processes of
    parallel shard retraining), and the high-water mark is per process: two blocks measured at
    once in different threads disturb each other.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.mb, self._start = cuda, float("nan"), 0

    @staticmethod
    def _status_kb(field_name: str) -> int:
        with open("/proc/self/status") as f:
            return int(re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.M).group(1))

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._start = self._status_kb("VmRSS")
        except (OSError, AttributeError):  # not Linux, or /proc not writable
            self._start = -1
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        elif self._start >= 0:
            try:
                self.mb = max(0, self._status_kb("VmHWM") - self._start) / 1024
            except (OSError, AttributeError):
                pass


def _plain(value):
    """A dataclass option value (a ``TrainConfig``) as its dict; anything else unchanged."""
    if callable(getattr(value, "to_dict", None)):
        return value.to_dict()
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def param_names(klass: type) -> list[str]:
    """Constructor parameter names of the :class:`Unlearner` subclass ``klass``, in signature
    order: its ``__init__``'s named parameters and, while an ``__init__`` passes ``**options``
    on, those of the base classes' (``IFRU(k, prune_ratio, **options)`` adds those of
    :class:`~graphforget.unlearning.influence.InfluenceFunction`)."""
    return _param_walk(klass)[0]


def accepts_any_option(klass: type) -> bool:
    """Whether ``klass(...)`` takes any keyword: its ``**options`` reach
    :class:`Unlearner`'s, which stores them (older subclasses that pass options on by hand)."""
    return _param_walk(klass)[1]


def _param_walk(klass: type) -> tuple[list[str], bool]:
    names: list[str] = []
    for base in klass.__mro__:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        if base is object:
            break
        passes_on = False
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
            passes_on |= p.kind is p.VAR_KEYWORD
        if base is Unlearner:  # it stores whatever keywords reach it
            return names, True
        if not passes_on:
            break
    return names, False


class Unlearner:
    """Base class: subclasses implement :meth:`_unlearn` on a copied model.

    ``unlearn`` resolves and validates the request *before* touching anything, copies the model,
    times the whole call and records its peak memory (:class:`PeakMemory`).

    Options (scikit-learn convention): every constructor argument is stored as an attribute of
    the same name, and :meth:`get_params` reads them back through the constructor's signature
    (:func:`param_names`), so each option is written once, in the signature. The report records
    ``get_params()`` as its ``options`` (a method may add entries while it runs).
    """

    name = "base"

    def __init__(self, seed: int = 0, **options) -> None:
        """``seed``; ``options`` only for subclasses that still pass their options on by hand:
        each is stored as an attribute of its name and counted among :meth:`get_params`."""
        self.seed = seed
        for key, value in options.items():
            setattr(self, key, value)
        self._passed_options = tuple(options)

    def get_params(self) -> dict:
        """``{name: value}`` of every constructor argument (:func:`param_names`), read from the
        attribute of that name: ``type(self)(**self.get_params())`` is an equivalent method."""
        params = {}
        for key in [*param_names(type(self)), *getattr(self, "_passed_options", ())]:
            if key not in params:
                try:
                    params[key] = getattr(self, key)
                except AttributeError:
                    raise AttributeError(f"{type(self).__name__} does not store its constructor "
                                         f"argument {key!r} as an attribute") from None
        return params

    @property
    def options(self) -> dict:
        """:meth:`get_params` without ``seed``, dataclass values (a ``TrainConfig``) as plain
        dicts: the JSON-ready view callers such as the service ledger record."""
        return {k: _plain(v) for k, v in self.get_params().items() if k != "seed"}

    def unlearn(self, model: RecModel, graph: InteractionGraph, request) -> UnlearnResult:
        if (model.num_users, model.num_items) != (graph.num_users, graph.num_items):
            raise ValueError(f"model is for {model.num_users} users x {model.num_items} items, "
                             f"graph has {graph.num_users} x {graph.num_items}")
        request = UnlearningRequest.of(request)
        edges = request.resolve(graph)
        report = UnlearnReport(method=self.name, num_deleted=int(edges.shape[1]),
                               options=self.get_params())
        new_model = copy.deepcopy(model)
        t0 = time.perf_counter()
        with PeakMemory(next(model.parameters()).is_cuda) as peak:
            new_graph = self._unlearn(new_model, graph, edges, report, Timer(report))
        report.seconds_total = time.perf_counter() - t0
        report.peak_memory_mb = peak.mb
        try:
            fg = full_gradient_seconds(model, graph, objective_for(model, graph))
            report.full_gradient_seconds, report.fge = fg, report.seconds_total / fg
            if report.rounds:
                report.fge_per_round = report.fge / report.rounds
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
            report.notes.append(f"fge not measured: {exc}")  # e.g. a sharded model: no one objective
        for p in new_model.parameters():
            if not bool(torch.isfinite(p).all()):
                raise FloatingPointError(f"{self.name}: non-finite parameters after unlearning; "
                                         "the original model is unchanged")
        return UnlearnResult(model=new_model, graph=new_graph, report=report, deleted_edges=edges)

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        """Update ``model`` (already a copy) in place; return the new graph."""
        raise NotImplementedError
