r"""Influence-function unlearning (method ``"if"``) and the machinery IFRU and SCIF share.

**Objective.** With ego embeddings :math:`\theta = E^{(0)} \in \mathbb{R}^{(U+I)\times d}` and the
training objective of :mod:`graphforget.train.objective` (read from ``model.recipe``),

.. math::
    \mathcal{L}(\theta; \mathcal{D}, \hat{A}) = \sum_{s \in \mathcal{D}} \ell_s(\theta; \hat{A})
        + \tfrac{\lambda}{2} \textstyle\sum_v c_v \lVert e_v \rVert^2.

**Newton step.** Deleting :math:`\Delta\mathcal{D}` (and its edges, :math:`\hat{A} \to
\hat{A}'`) moves the optimum to :math:`\theta^* = \arg\min \mathcal{L}(\theta; \mathcal{D}',
\hat{A}')`. One damped Newton step from the trained :math:`\theta_0` gives

.. math::
    \theta^* \approx \theta_0 - (H' + \delta I)^{-1} g, \qquad
    H' = \nabla^2_\theta \mathcal{L}(\theta_0; \mathcal{D}', \hat{A}'),

with :math:`g = \nabla\mathcal{L}(\theta_0; \mathcal{D}', \hat{A}')`, which at a stationary
:math:`\theta_0` (:math:`\nabla \mathcal{L}(\theta_0; \mathcal{D}, \hat{A}) = 0`) equals

.. math::
    g = \nabla\mathcal{L}(\theta_0; \mathcal{D}', \hat{A}') - \nabla\mathcal{L}(\theta_0;
    \mathcal{D}, \hat{A}) = \underbrace{-\sum_{s \in \mathcal{D} \setminus \mathcal{D}'} \nabla\ell_s(\hat{A})
    + \sum_{s \in \mathcal{D}' \setminus \mathcal{D}} \nabla\ell_s(\hat{A}')}_{\text{direct}}
    + \underbrace{\sum_{s \in \mathcal{D} \cap \mathcal{D}'} \big(\nabla\ell_s(\hat{A}') -
    \nabla\ell_s(\hat{A})\big)}_{\text{spillover}}

(:math:`\mathcal{D}' \setminus \mathcal{D}`: the few negatives a deleting user redraws,
:func:`~graphforget.train.objective.split_samples`). For a quadratic objective and
:math:`\delta = 0` the step lands exactly on :math:`\theta^*`; :math:`\delta` keeps the system
positive definite where the non-convex objective is not.

**Stationarity, and a trap.** The difference form of :math:`g` is the gradient of the *tilted*
objective :math:`\mathcal{L}(\theta; \mathcal{D}') - \langle \nabla\mathcal{L}(\theta_0;
\mathcal{D}), \theta \rangle`, for which *any* :math:`\theta_0` is stationary — an early-stopped
model too. But the tilt is computed on data that includes the deleted samples, so the tilted
minimiser is not a model trained without them and an influence step from a non-stationary model
does not head for the retrain. Hence the stationary recipe
(:func:`~graphforget.train.stationary.stationary_finish`), where the tilt vanishes; the report
carries the model's ``grad_norm_rel`` and says so in a note when it is not small.

**Newton iterations** (``steps > 1``). Step :math:`t` solves again at :math:`\theta_t` with the
exact gradient of the tilted objective on the free rows (zero tilt at a stationary model: plain
Newton on :math:`\mathcal{L}(\cdot; \mathcal{D}')`), with an Armijo backtracking line search, until
``newton_tol``; the report lists the relative gradient after each step.

**Parameters.** Only rows :math:`S` of the embedding table change (``θ_S``, ``[|S|, d]``); all
other rows and NGCF's weight matrices stay fixed (the weights are shared by every node, so a
Newton step on them would couple the whole graph; the influence methods here, like the IFRU
reference, treat them as constants). The ego matrix is built as ``E.index_put((S,), θ_S)`` so
autograd sees only ``θ_S``, and ``g`` and ``H'`` are restricted to those rows. Both are taken
*through propagation* on exact k-hop regions (:mod:`graphforget.unlearning.subgraph`): the
gradient of a sample set needs the nodes within ``K`` hops of its nodes; the Hessian w.r.t.
``θ_S`` needs the samples touching the ``K``-hop reach of ``S`` and then the ``K``-hop region of
their nodes; a region holding more than ``fallback_fraction`` of the graph is replaced by the
full graph (noted in the report). The system :math:`(H'_{SS} + \delta I) p = g_S` is solved by
conjugate gradients with exact Hessian-vector products (closed form for linear-propagation
models, :mod:`graphforget.unlearning.curvature`; double backward otherwise), or LiSSA. Rows that
no remaining sample touches get a fresh draw from the initialisation (:func:`untouched_rows`).

**IF** (this class): the direct term only, on the deleted edges' endpoints plus ``coupling``
hops of the rows the Hessian couples to them through a shared sample (:func:`coupled_rows`;
``coupling=0`` is the IF baseline of the IFRU paper, endpoints only). For MF a deleted edge's
effect reaches every row sharing a sample with an endpoint; on the endpoints alone the step
cannot move the model towards :math:`\theta^*` beyond them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..data.sparse import NormalizedAdjacency
from ..models import RecModel
from ..train.objective import Objective, SampleSet, split_samples, summed_loss
from ..train import distributed as gfd
from .base import Timer, UnlearnReport, Unlearner, objective_for, stationarity_note
from .curvature import LinearModelHessian
from .blocks import BlockCurvature
from .linalg import (HessianOperator, conjugate_gradient, lanczos_damped_solve, lissa, power_iteration,
                     preconditioned_cg)
from .subgraph import Region, khop, node_mask, region, touching


@dataclass
class Term:
    """``weight * Σ_{s∈samples} ℓ_s(θ; Â_graph)`` with ``graph`` ``"old"`` or ``"new"``."""

    samples: SampleSet
    graph: str
    weight: float = 1.0


class LocalObjective:
    r"""A weighted sum of sample losses as an exact function of the ego rows ``rows``.

    .. math::
        f(\theta_S) = \sum_t w_t \sum_{s \in t} \ell_s\big(E \text{ with rows } S
            \leftarrow \theta_S;\ \hat{A}_t\big)

    Only samples with a node in the ``hops``-hop reach of ``S`` depend on ``θ_S``; they are
    kept and evaluated on the ``hops``-hop region of their nodes (exact, see
    :mod:`graphforget.unlearning.subgraph`). With ``propagate=False`` the representations are the
    ego embeddings themselves (the MF-style objective of the IFRU reference code). A model
    with ``num_layers == 0`` gets ``adj=None`` (MF ignores it). Regions relabel nodes, which
    assumes ``model.propagate`` treats rows as the nodes of the adjacency it is given (true
    for MF, LightGCN and NGCF); a model that reads rows by global position needs
    ``fallback_fraction=0`` (always the full graph).

    Args:
        model: supplies ``propagate`` and the loss terms (its own parameters are not read for
            the embedding; NGCF weights enter as constants).
        embedding: ``[N, d]`` ego matrix (detached) around which to evaluate.
        rows: ``LongTensor [|S|]`` global node ids of the free rows.
        terms: the sample sets, graphs and weights.
        adjacencies: ``{"old": ..., "new": ...}`` :class:`NormalizedAdjacency`.
        distributed: under an initialised process group, keep this rank's contiguous share of
            every term's samples (:func:`~graphforget.train.distributed.shard_range`) and sum
            values, gradients and Hessian-vector products over the ranks with all-reduce: every
            rank then sees the single-process objective, and a solver runs identically on all
            of them (one all-reduce per product).
    """

    def __init__(self, model: RecModel, embedding: Tensor, rows: Tensor, terms: list[Term],
                 adjacencies: dict[str, NormalizedAdjacency], weight_decay: float,
                 fallback_fraction: float = 0.5, propagate: bool = True,
                 distributed: bool = False) -> None:
        self.model, self.weight_decay = model, float(weight_decay)
        self.propagate = propagate
        self.distributed = bool(distributed) and gfd.is_distributed()
        hops = model.num_layers if propagate else 0
        n, nu = model.num_nodes, model.num_users
        dev = embedding.device
        graph_key = "old" if any(t.graph == "old" for t in terms) else "new"
        expand = adjacencies[graph_key]  # deletion only: the old graph contains the new one
        reach = node_mask(khop(expand, rows, hops) if hops else rows, n)
        kept = []
        for t in terms:
            sel = torch.nonzero(touching(t.samples, reach, nu)).view(-1)
            if self.distributed:  # this rank's share of the term's samples
                lo, hi = gfd.shard_range(sel.numel())
                sel = sel[lo:hi]
            if sel.numel():
                kept.append(Term(t.samples.select(sel), t.graph, t.weight))
        self.num_samples = sum(len(t.samples) for t in kept)
        seeds = torch.cat([t.samples.nodes(nu).reshape(-1) for t in kept]) if kept else rows[:0]
        self.region: Region = region(expand, seeds, hops, fallback_fraction)
        self.base = self.region.take(embedding.detach())
        loc = self.region.local(rows)
        inside = loc >= 0
        self.all_inside = bool(inside.all())
        self.inside = inside.to(dev)
        self.loc = loc[inside].to(dev)
        self.adj = {}
        for key in {t.graph for t in kept}:  # a model without layers never reads the adjacency
            self.adj[key] = (self.region.adj(adjacencies[key], embedding.dtype, dev)
                             if propagate and hops > 0 else None)
        self.terms = [Term(self.region.localise(t.samples, nu), t.graph, t.weight) for t in kept]

    def ego(self, theta: Tensor, base: Optional[Tensor] = None) -> Tensor:
        """The region's ego matrix with the free rows set to ``theta`` (rows outside the
        region are dropped); ``base`` replaces the fixed rows (default: the embedding's)."""
        part = theta if self.all_inside else theta[self.inside]
        return (self.base if base is None else base).index_put((self.loc,), part)

    def represent(self, graph: str, ego: Tensor) -> Tensor:
        """Representations of the region under adjacency ``graph`` (``"old"``/``"new"``)."""
        return self.model.propagate(self.adj[graph], ego) if self.propagate else ego

    def __call__(self, theta: Tensor) -> Tensor:
        """``f(θ)`` (summed over the ranks when distributed; then without autograd)."""
        value = self._local(theta)
        return gfd.all_reduce_sum(value.detach()) if self.distributed else value

    def _local(self, theta: Tensor) -> Tensor:
        """This rank's terms of ``f(θ)`` (all of them in one process), differentiable."""
        ego = self.ego(theta)
        total = theta.sum() * 0.0  # keeps f a function of θ when no sample depends on it
        outs: dict[str, Tensor] = {}
        for t in self.terms:
            if t.graph not in outs:
                outs[t.graph] = self.represent(t.graph, ego)
            total = total + t.weight * summed_loss(self.model, outs[t.graph], ego, t.samples,
                                                   self.weight_decay)
        return total

    def linear(self) -> bool:
        """Whether the closed forms of :mod:`graphforget.unlearning.curvature` apply (fixed linear
        map from ego embeddings to representations)."""
        return self.model.linear_propagation or not self.propagate

    def gradient(self, theta: Tensor) -> Tensor:
        """``∇f(θ)``, shaped like ``theta``: closed form for linear-propagation models (one
        propagation per graph, score-level derivatives, one propagation back), autograd
        otherwise."""
        theta = theta.detach()
        if self.linear():
            g = LinearModelHessian(self, theta).grad
        else:
            x = theta.clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._local(x), x, allow_unused=True)
            g = torch.zeros_like(theta) if g is None else g
        return gfd.all_reduce_sum(g) if self.distributed else g

    def hessian_operator(self, theta: Tensor, damping: float = 0.0):
        """Matrix-free ``v ↦ (∇²f(θ) + δI) v`` at ``theta``: closed-form products through
        the propagation matrix for linear-propagation models (MF, LightGCN; and any model in
        paper mode), double backward otherwise (:mod:`graphforget.unlearning.curvature`)."""
        op = LinearModelHessian(self, theta, damping) if self.linear() else \
            HessianOperator(self._local, theta, damping)
        return gfd.DistributedOperator(op, damping) if self.distributed else op

    def describe(self) -> str:
        r = self.region
        where = "full graph (fallback)" if r.full else f"{r.size}-node subgraph"
        share = f" (rank {gfd.rank()}'s share of {gfd.world_size()})" if self.distributed else ""
        return f"{self.num_samples} samples{share} on {where}"


@dataclass
class InfluenceProblem:
    """Everything one influence update is built from (exposed for tests and audits).

    ``deleted`` are the samples of :math:`\\mathcal{D}` that :math:`\\mathcal{D}'` lacks (the
    deleted edges' samples and the old draws of redrawn negatives), ``added`` the redrawn ones,
    ``kept`` the rest; ``remaining = kept ∪ added`` (:func:`~graphforget.train.objective.split_samples`).
    """

    model: RecModel
    graph: InteractionGraph
    new_graph: InteractionGraph
    edges: Tensor
    objective: Objective
    deleted: SampleSet
    added: SampleSet
    kept: SampleSet
    endpoints: Tensor
    embedding: Tensor
    rows: Optional[Tensor] = None
    gradient_terms: list = field(default_factory=list)
    hessian_terms: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def remaining(self) -> SampleSet:
        return SampleSet.cat([self.kept, self.added]) if len(self.added) else self.kept

    @property
    def adjacencies(self) -> dict:
        return {"old": self.graph.adjacency, "new": self.new_graph.adjacency}

    def direct_terms(self) -> list:
        """``−Σ_deleted ∇ℓ(Â) + Σ_added ∇ℓ(Â')``: the samples that leave and enter."""
        terms = [Term(self.deleted, "old", -1.0)]
        if len(self.added):
            terms.append(Term(self.added, "new", 1.0))
        return terms


def untouched_rows(remaining: SampleSet, num_users: int, nodes: Tensor) -> Tensor:
    """The ``nodes`` (global ids) that no remaining sample touches: their rows have no term in
    the new objective at all (a user who lost every edge; an item neither positive nor negative
    of anyone). A retrain never moves such a row from its random initial value, so the Newton
    methods give it a fresh draw from the initialisation distribution
    (:meth:`~graphforget.models.RecModel.fresh_rows`) — not zero, which a membership attack
    sees, and not the original row, which still encodes the forgotten edges."""
    if nodes.numel() == 0:
        return nodes
    touched = torch.zeros(int(nodes.max()) + 1, dtype=torch.bool)
    ids = remaining.nodes(num_users).reshape(-1)
    touched[ids[ids <= int(nodes.max())]] = True
    return nodes[~touched[nodes]]


def coupled_rows(rows: Tensor, samples: SampleSet, num_users: int, num_nodes: int, hops: int) -> Tensor:
    """``rows`` plus, ``hops`` times, every node sharing a sample with a row: the nodes the
    new objective's Hessian couples to the rows through a common sample (for MF exactly the
    non-zero off-diagonal blocks)."""
    for _ in range(int(hops)):
        sel = touching(samples, node_mask(rows, num_nodes), num_users)
        rows = torch.unique(torch.cat([rows, samples.select(torch.nonzero(sel).view(-1)).nodes(num_users).reshape(-1)]))
    return rows


class InfluenceFunction(Unlearner):
    """Influence-function unlearning (direct term only) on the deleted edges' endpoints and
    the rows coupled to them.

    Args:
        damping: :math:`\\delta` added to the Hessian.
        solver: ``"pcg"`` (conjugate gradients preconditioned by the closed-form per-node
            blocks, :meth:`preconditioner`; on negative curvature δ is raised one rung and CG
            restarts), ``"cg"`` (plain CG; raising δ costs no restart,
            :func:`~graphforget.unlearning.linalg.lanczos_damped_solve`) or ``"lissa"``.
        tol: relative residual at which the solver stops.
        max_iter: solver iteration cap per damping. CG that has not reached ``tol`` within it
            counts as failed like negative curvature: δ is raised tenfold (a truncated iterate
            on a near-singular system is not a Newton step).
        steps: Newton steps (≥ 1). Step 1 is the influence step; each further step solves
            again at the new point with the exact gradient of the (tilted, see the module
            docstring) new objective on the free rows, with a backtracking line search.
        newton_tol: stop stepping once that gradient is below ``newton_tol`` times the first.
        coupling: hops of Hessian coupling added to the rows (:func:`coupled_rows`); ``0``
            keeps the endpoints only, as the IF baseline of the IFRU paper.
        weight_decay, loss, negatives, negative_seed: the objective; ``None`` / ``"auto"``
            read it from ``model.recipe`` (:func:`~graphforget.unlearning.base.objective_for`).
        paper_mode: form the Hessian without propagation (representations = ego embeddings),
            as the IFRU public code does; the gradient stays exact (one step only).
        fallback_fraction: use the full graph when a region exceeds this fraction of nodes
            (``0``: always the full graph).
        lissa_scale: LiSSA's scale :math:`s` (default: 1.1 × a 20-step power-iteration
            estimate of :math:`\\lambda_{\\max}`).
        damping_retries, damping_growth: how often, and by what factor, δ may be raised (to at
            least 1e-4) when the solver finds :math:`H' + \\delta I` indefinite or does not
            converge: the removal of samples leaves near-flat directions of a stationary
            model's curvature slightly negative. The damping actually
            used is reported. CG raises δ inside one Krylov space
            (:func:`~graphforget.unlearning.linalg.lanczos_damped_solve`); LiSSA restarts.
        seed: seed of the fresh draws for rows left without any sample (:func:`untouched_rows`).
    """

    name = "if"
    default_coupling = 1

    def __init__(self, damping: float = 0.01, solver: str = "pcg", tol: float = 1e-4,
                 max_iter: int = 300, steps: int = 1, newton_tol: float = 0.0,
                 coupling: Optional[int] = None, weight_decay: Optional[float] = None,
                 loss: str = "auto", negatives: Optional[int] = None,
                 negative_seed: Optional[int] = None, paper_mode: bool = False,
                 fallback_fraction: float = 0.5, lissa_scale: Optional[float] = None,
                 damping_retries: int = 8, damping_growth: float = 4.0, seed: int = 0) -> None:
        if solver not in ("pcg", "cg", "lissa"):
            raise ValueError(f"solver must be 'pcg', 'cg' or 'lissa', got {solver!r}")
        if solver == "pcg" and paper_mode:
            solver = "cg"  # the blocks are of the propagated objective, not paper mode's
        if damping < 0 or tol <= 0 or max_iter < 1:
            raise ValueError("need damping >= 0, tol > 0, max_iter >= 1")
        if not damping_growth > 1 or int(damping_retries) < 0:
            raise ValueError("need damping_growth > 1 and damping_retries >= 0")
        if int(steps) < 1 or not newton_tol >= 0:
            raise ValueError(f"need steps >= 1 and newton_tol >= 0, got {steps}, {newton_tol}")
        if paper_mode and int(steps) > 1:
            raise ValueError("paper_mode's Hessian is not the objective's: only steps=1")
        coupling = self.default_coupling if coupling is None else int(coupling)
        if coupling < 0:
            raise ValueError(f"coupling must be >= 0, got {coupling}")
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if loss not in ("auto", "bpr", "bce"):
            raise ValueError(f"loss must be 'auto', 'bpr' or 'bce', got {loss!r}")
        super().__init__(seed=seed)
        self.damping_growth = float(damping_growth)
        self.damping, self.solver, self.tol, self.max_iter = float(damping), solver, float(tol), int(max_iter)
        self.steps, self.newton_tol, self.coupling = int(steps), float(newton_tol), coupling
        self.weight_decay, self.loss = weight_decay, loss
        self.negatives, self.negative_seed = negatives, negative_seed
        self.paper_mode = bool(paper_mode)
        self.fallback_fraction, self.lissa_scale = float(fallback_fraction), lissa_scale
        self.damping_retries = int(damping_retries)

    # ---------------------------------------------------------------- steps
    def prepare(self, model: RecModel, graph: InteractionGraph, edges: Tensor) -> InfluenceProblem:
        """New graph, the objective's samples split by the deletion (the ``graph_update`` phase)."""
        objective = objective_for(model, graph, self.weight_decay, self.loss, self.negatives,
                                  self.negative_seed)
        graph.adjacency  # build the old CSR first so remove_edges updates it incrementally
        new_graph = graph.remove_edges(edges)
        new_graph.adjacency
        split = split_samples(objective, graph, new_graph, edges)
        nu = graph.num_users
        endpoints = torch.unique(torch.cat([edges[0], edges[1] + nu]))
        return InfluenceProblem(model=model, graph=graph, new_graph=new_graph, edges=edges,
                                objective=objective, deleted=split.removed, added=split.added,
                                kept=split.kept, endpoints=endpoints,
                                embedding=model.embedding.detach())

    def select(self, prob: InfluenceProblem) -> None:
        """Set the free rows and the gradient / Hessian terms (IF: direct terms only)."""
        prob.rows = self.couple(prob, prob.endpoints)
        prob.gradient_terms = prob.direct_terms()
        prob.hessian_terms = [Term(prob.remaining, "new", 1.0)]

    def couple(self, prob: InfluenceProblem, rows: Tensor) -> Tensor:
        """``rows`` with the ``coupling`` hops of :func:`coupled_rows` on the new samples."""
        if not self.coupling:
            return rows
        return coupled_rows(rows, prob.remaining, prob.graph.num_users, prob.graph.num_nodes,
                            self.coupling)

    def problem(self, model: RecModel, graph: InteractionGraph, edges) -> InfluenceProblem:
        """:meth:`prepare` + :meth:`select` for explicit ``edges`` (validated)."""
        from .base import UnlearningRequest

        prob = self.prepare(model, graph, UnlearningRequest.of(edges).resolve(graph))
        self.select(prob)
        return prob

    def gradient_objective(self, prob: InfluenceProblem) -> LocalObjective:
        """``f`` with ``∇f(θ_S) = g`` (always through propagation)."""
        return LocalObjective(prob.model, prob.embedding, prob.rows, prob.gradient_terms,
                              prob.adjacencies, prob.objective.weight_decay, self.fallback_fraction,
                              distributed=True)

    def hessian_objective(self, prob: InfluenceProblem) -> LocalObjective:
        """``f`` with ``∇²f(θ_S) = H'_{SS}`` (without propagation in paper mode); outside paper
        mode also ``∇f(θ_S) = ∇_S L(θ; D', Â')``, every term of the new objective that depends
        on ``θ_S``."""
        return LocalObjective(prob.model, prob.embedding, prob.rows, prob.hessian_terms,
                              prob.adjacencies, prob.objective.weight_decay, self.fallback_fraction,
                              propagate=not self.paper_mode, distributed=True)

    def gradient(self, prob: InfluenceProblem) -> Tensor:
        """``g`` restricted to ``prob.rows``, ``[|S|, d]``."""
        f = self.gradient_objective(prob)
        prob.notes.append(f"gradient: {f.describe()}")
        return f.gradient(prob.embedding[prob.rows.to(prob.embedding.device)])

    def damping_ladder(self) -> list:
        """The dampings tried in order: ``damping``, then ``damping_retries`` times ×``damping_growth``
        (from at least 1e-4)."""
        ladder = [self.damping]
        for _ in range(self.damping_retries):
            ladder.append(max(self.damping_growth * ladder[-1], 1e-4))
        return ladder

    def preconditioner(self, prob: InfluenceProblem, theta: Tensor):
        """``δ ↦ (r ↦ (B + δI)^{-1} r)``: block-Jacobi with the closed-form per-node ``d × d``
        blocks ``B`` of the new objective's Hessian on the free rows at ``theta``
        (:class:`~graphforget.unlearning.blocks.BlockCurvature`: exact Gauss–Newton blocks for
        MF, self and one-hop paths for LightGCN, the ego block for NGCF). The blocks carry
        the degree heterogeneity that makes plain CG slow (3-4× fewer iterations on ml100k)."""
        model, dev = prob.model, theta.device
        ego = prob.embedding.index_put((prob.rows.to(dev),), theta)
        new = prob.new_graph
        with torch.no_grad():
            out = model.propagate(new.adj(dev, ego.dtype) if model.num_layers else None, ego)
        curv = BlockCurvature(model, prob.rows, prob.objective.weight_decay, new.adjacency)
        blocks = curv.hessians(out, prob.remaining).clone()
        eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
        cache: dict = {}

        def at(damping: float):
            if damping not in cache:
                cache.clear()
                cache[damping] = torch.linalg.inv(blocks + damping * eye)
            inv = cache[damping]
            return lambda r: torch.bmm(inv, r.unsqueeze(-1)).squeeze(-1)

        return at

    def _solve_at(self, op, g: Tensor, ladder: list, prob: InfluenceProblem,
                  tol: Optional[float] = None, precond=None) -> tuple[Tensor, dict, float]:
        """``p = (op + δI)^{-1} g`` to relative residual ``tol`` (default the ``tol`` option) for
        the first δ of ``ladder`` that works; ``(p, info, true residual)``, ``op.damping`` left
        at the δ used."""
        tol = self.tol if tol is None else tol
        if self.solver == "pcg":
            p, info = None, {"iterations": 0, "damping": float("nan")}
            k = 0
            while k < len(ladder):
                op.damping = ladder[k]
                p, step = preconditioned_cg(op, g, precond(ladder[k]), tol, self.max_iter)
                info["iterations"] += step["iterations"]
                if not step["negative_curvature"]:
                    info["damping"] = ladder[k]
                    break
                nxt = k + 1
                if nxt < len(ladder):
                    prob.notes.append(f"pcg: H' + {ladder[k]:g} I not positive definite at θ "
                                      f"(non-convex objective); damping raised to {ladder[nxt]:g}")
                k = nxt
            if not math.isfinite(info["damping"]):
                prob.notes.append(f"pcg: H' + {ladder[-1]:g} I still indefinite: no step taken")
                p = torch.zeros_like(g)
        elif self.solver == "cg":
            p, info = lanczos_damped_solve(op, g, ladder, tol, self.max_iter)
            for old, new, why in info["raised"]:
                why = ("not positive definite at θ (non-convex objective)" if why == "indefinite" else
                       f"not solved to tol in {self.max_iter} iterations (near-singular: saturated "
                       "losses leave directions with almost no curvature)")
                prob.notes.append(f"cg: H' + {old:g} I {why}; damping raised to {new:g}")
            op.damping = info["damping"] if math.isfinite(info["damping"]) else ladder[-1]
            if not math.isfinite(info["damping"]):
                prob.notes.append(f"cg: H' + {ladder[-1]:g} I still indefinite: no step taken")
        else:
            op.damping = ladder[0]
            scale = self.lissa_scale or 1.1 * power_iteration(op, g, seed=self.seed)
            for attempt, damping in enumerate(ladder):
                op.damping = damping
                p, info = lissa(op, g, scale + op.damping, tol, self.max_iter)
                if (math.isfinite(info["residual"]) and info["residual"] <= 1.0) or attempt == len(ladder) - 1:
                    break
                prob.notes.append(f"lissa: H' + {damping:g} I not positive definite at θ "
                                  f"(non-convex objective); damping raised to {ladder[attempt + 1]:g}")
            prob.notes.append(f"lissa scale {scale + op.damping:.4g}")
        gnorm = float(g.norm())
        residual = float((g - op(p)).norm()) / gnorm if gnorm > 0 else 0.0  # true residual
        if self.solver in ("cg", "pcg") and residual > tol and math.isfinite(info.get("damping", 0.0)):
            # long Lanczos runs lose orthogonality, so the true residual can end a little above
            # the recurrence's: polish with CG warm-started at p (same damping, positive definite)
            p, extra = conjugate_gradient(op, g, tol, self.max_iter, x0=p)
            info["iterations"] += extra["iterations"]
            residual = float((g - op(p)).norm()) / gnorm
        return p, info, residual

    def solve(self, prob: InfluenceProblem, g: Tensor, report: Optional[UnlearnReport] = None) -> Tensor:
        """The total update ``Δ = θ_S − θ_S^{new}`` of :attr:`steps` damped Newton steps, the
        first ``(H'_{SS} + δI)^{-1} g``; fills the report's solver fields (``damping``: the δ of
        the first step; iterations and products summed over the steps)."""
        f = self.hessian_objective(prob)
        prob.notes.append(f"hessian: {f.describe()}")
        ladder = self.damping_ladder()
        theta0 = prob.embedding[prob.rows.to(prob.embedding.device)]
        op = f.hessian_operator(theta0, 0.0)
        pre = self.preconditioner(prob, theta0) if self.solver == "pcg" else None
        p, info, residual = self._solve_at(op, g, ladder, prob, precond=pre)
        hvps, iters, damping = op.count, info["iterations"], op.damping
        first_residual = residual
        if not self.paper_mode:
            self.check_step(prob, f, g, p, op.grad, report)
        # the tilted objective f(θ) − <t, θ> with t = ∇f(θ0) − g has gradient g at θ0; its
        # Newton iterations continue the first step (t = 0 at a stationary model)
        tilt = op.grad - g
        theta = theta0 - p.to(theta0.dtype)
        g0 = float(g.norm())
        grads = []
        for _ in range(1, self.steps):
            op = f.hessian_operator(theta, 0.0)
            grad = op.grad - tilt
            grads.append(float(grad.norm()) / g0 if g0 > 0 else 0.0)
            if grads[-1] <= self.newton_tol:
                break
            # inexact Newton: a forcing term min(0.1, ‖g_t‖/‖g_0‖) keeps the steps cheap while
            # the gradient still falls by an order of magnitude per step
            pre = self.preconditioner(prob, theta) if self.solver == "pcg" else None
            q, info_t, _ = self._solve_at(op, grad, ladder, prob,
                                          max(self.tol, min(0.1, grads[-1])), pre)
            hvps += op.count
            iters += info_t["iterations"]
            theta = self._line_search(f, tilt, theta, q, grad, prob)
        if self.steps > 1 and (not grads or grads[-1] > self.newton_tol):
            grads.append(float((f.gradient(theta) - tilt).norm()) / g0 if g0 > 0 else 0.0)
        if report is not None:
            report.hvps += hvps
            report.solver_iterations = iters
            report.solver_residual = first_residual  # of the influence step's solve
            report.damping = damping
            report.converged = bool(first_residual <= self.tol)
            report.newton_steps = 1 + max(0, len(grads) - (1 if self.steps > 1 else 0))
            report.step_gradients = grads
        return theta0 - theta

    @staticmethod
    def _line_search(f: LocalObjective, tilt: Tensor, theta: Tensor, q: Tensor, grad: Tensor,
                     prob: InfluenceProblem, backtracks: int = 8) -> Tensor:
        """``θ − a·q`` for the largest ``a = 2^{-m}`` meeting the Armijo condition on the tilted
        objective (``θ`` unchanged when none does)."""
        with torch.no_grad():
            base = float(f(theta)) - float((tilt * theta).sum())
            slope = -float((grad * q).sum())
            a = 1.0
            for _ in range(backtracks + 1):
                cand = theta - a * q
                if float(f(cand)) - float((tilt * cand).sum()) <= base + 1e-4 * a * slope:
                    return cand
                a *= 0.5
        prob.notes.append("newton: line search found no decrease; steps stopped")
        return theta

    def check_step(self, prob: InfluenceProblem, f: LocalObjective, g: Tensor, p: Tensor,
                   grad: Tensor, report: Optional[UnlearnReport] = None) -> None:
        r"""Validation-free diagnostics of the first step, from the new training objective ``f``
        (the terms of :math:`\mathcal{L}(\theta; \mathcal{D}', \hat{A}')` that depend on
        :math:`\theta_S`; ``grad`` its gradient at :math:`\theta_S`):

        * ``gradient_mismatch`` :math:`= \lVert \nabla_S \mathcal{L}(\theta; \mathcal{D}',
          \hat{A}') - g \rVert / \lVert g \rVert` — with IFRU's exact ``g`` this is
          :math:`\lVert \nabla_S \mathcal{L}(\theta; \mathcal{D}, \hat{A}) \rVert / \lVert g
          \rVert`: 0 at a stationary model, ≫ 1 for one stopped early.
        * ``objective_change`` :math:`= f(\theta_S - p) - f(\theta_S)`: negative when the step
          descends on the data kept; a positive value is noted.
        """
        theta = prob.embedding[prob.rows.to(prob.embedding.device)].detach()
        with torch.no_grad():
            change = float(f(theta - p.to(theta.dtype))) - float(f(theta))
        gnorm = float(g.norm())
        mismatch = float((grad - g).norm()) / gnorm if gnorm > 0 else float("nan")
        if report is not None:
            report.gradient_mismatch, report.objective_change = mismatch, change
        if change > 0:
            prob.notes.append(f"the step raises the new training objective by {change:.4g} "
                              f"(gradient mismatch {mismatch:.3g}): the model is not at a stationary "
                              "point of its objective, which influence steps assume")

    # ---------------------------------------------------------------- contract
    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        report.grad_norm_rel, note = stationarity_note(model)
        if note:
            report.notes.append(note)
        with timer("graph_update"):
            prob = self.prepare(model, graph, edges)
        with timer("gradient"):
            self.select(prob)
            untouched = untouched_rows(prob.remaining, graph.num_users, prob.rows)
            if untouched.numel():
                prob.rows = prob.rows[~torch.isin(prob.rows, untouched)]
                prob.notes.append(f"{untouched.numel()} rows have no sample left: fresh draws from "
                                  "the initialisation (what a retrain leaves), not solved for")
            g = self.gradient(prob) if prob.rows.numel() else None
        with timer("solve"):
            delta = self.solve(prob, g, report) if g is not None else None
            if delta is None:
                report.converged, report.solver_residual = True, 0.0
        with timer("apply"):
            with torch.no_grad():
                if delta is not None:
                    model.embedding.index_add_(0, prob.rows.to(delta.device), -delta.to(model.embedding.dtype))
                if untouched.numel():
                    model.embedding[untouched.to(model.embedding.device)] = model.fresh_rows(untouched, self.seed)
        prob.rows = torch.cat([prob.rows, untouched])
        report.affected_nodes = int(prob.rows.numel())
        report.affected_parameters = int(prob.rows.numel()) * model.embedding.shape[1]
        report.notes.extend(prob.notes)
        return prob.new_graph


__all__ = ["InfluenceFunction", "InfluenceProblem", "LocalObjective", "Term", "untouched_rows",
           "coupled_rows"]
