r"""Influence-function unlearning (method ``"if"``) and the machinery IFRU and SCIF share.

**Objective.** With ego embeddings :math:`\theta = E^{(0)} \in \mathbb{R}^{(U+I)\times d}` and the
per-sample losses of :mod:`graphforget.unlearn.objective`,

.. math::
    \mathcal{L}(\theta; \mathcal{D}, \hat{A}) = \sum_{s \in \mathcal{D}} \ell_s(\theta; \hat{A}).

**Newton step.** Deleting :math:`\Delta\mathcal{D}` (and its edges, :math:`\hat{A} \to
\hat{A}'`) moves the optimum to :math:`\theta' = \arg\min \mathcal{L}(\theta; \mathcal{D}',
\hat{A}')`, :math:`\mathcal{D}' = \mathcal{D} \setminus \Delta\mathcal{D}`. One damped Newton
step from the trained :math:`\theta` gives

.. math::
    \theta' \approx \theta - (H' + \delta I)^{-1} g, \qquad
    H' = \nabla^2_\theta \mathcal{L}(\theta; \mathcal{D}', \hat{A}'), \qquad
    g = \nabla_\theta \mathcal{L}(\theta; \mathcal{D}', \hat{A}'),

and since :math:`\nabla \mathcal{L}(\theta; \mathcal{D}, \hat{A}) \approx 0` at the trained point,

.. math::
    g \approx \nabla\mathcal{L}(\theta; \mathcal{D}', \hat{A}') - \nabla\mathcal{L}(\theta;
    \mathcal{D}, \hat{A}) = \underbrace{-\sum_{s \in \Delta\mathcal{D}} \nabla\ell_s(\theta;
    \hat{A})}_{-\text{direct}} + \underbrace{\sum_{s \in \mathcal{D}'} \big(\nabla\ell_s(\theta;
    \hat{A}') - \nabla\ell_s(\theta; \hat{A})\big)}_{\text{spillover}}.

So the update is :math:`\Delta\theta = -(H' + \delta I)^{-1} g`: removing a sample that pulled
:math:`\theta` one way lets it move back (for a quadratic objective and :math:`\delta = 0` the
step lands exactly on the retrained optimum). :math:`\delta` keeps the system positive definite
where the non-convex objective is not, and the samples keep their seeded BPR negatives, so no
randomness enters between :math:`\mathcal{L}(\cdot; \mathcal{D})` and
:math:`\mathcal{L}(\cdot; \mathcal{D}')`.

**Parameters.** Only rows :math:`S` of the embedding table change (``θ_S``, ``[|S|, d]``); all
other rows and NGCF's weight matrices stay fixed (the weights are shared by every node, so a
Newton step on them would couple the whole graph; the influence methods here, like the IFRU
reference, treat them as constants). The ego matrix is built as ``E.index_put((S,), θ_S)`` so
autograd sees only ``θ_S``, and ``g`` and ``H'`` are restricted to those rows. Both are taken
*through propagation* on exact k-hop regions (:mod:`graphforget.unlearn.subgraph`): the
gradient of a sample set needs the nodes within ``K`` hops of its nodes; the Hessian w.r.t.
``θ_S`` needs the samples touching the ``K``-hop reach of ``S`` and then the ``K``-hop region of
their nodes; a region holding more than ``fallback_fraction`` of the graph is replaced by the
full graph (noted in the report). The system :math:`(H'_{SS} + \delta I) p = g_S` is solved by
conjugate gradients with exact Hessian-vector products (closed form for linear-propagation
models, :mod:`graphforget.unlearn.curvature`; double backward otherwise), or LiSSA.

**IF** (this class): the direct term only, on the deleted edges' endpoints
:math:`S = \{u, U + i : (u, i) \in \Delta\mathcal{D}\}` — as the IF baseline of the IFRU paper.
The sampled negatives of the deleted BPR triples are left out of :math:`S`: a random negative
has no link to the deleted interaction.
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
from .base import Timer, UnlearnReport, Unlearner
from .curvature import LinearModelHessian
from .linalg import HessianOperator, conjugate_gradient, lanczos_damped_solve, lissa, power_iteration
from .objective import SampleSet, fitted_ridge, ridge_option, summed_loss
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
    :mod:`graphforget.unlearn.subgraph`). With ``propagate=False`` the representations are the
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
    """

    def __init__(self, model: RecModel, embedding: Tensor, rows: Tensor, terms: list[Term],
                 adjacencies: dict[str, NormalizedAdjacency], weight_decay: float,
                 fallback_fraction: float = 0.5, propagate: bool = True) -> None:
        self.model, self.weight_decay = model, float(weight_decay)
        self.propagate = propagate
        hops = model.num_layers if propagate else 0
        n, nu = model.num_nodes, model.num_users
        dev = embedding.device
        graph_key = "old" if any(t.graph == "old" for t in terms) else "new"
        expand = adjacencies[graph_key]  # deletion only: the old graph contains the new one
        reach = node_mask(khop(expand, rows, hops) if hops else rows, n)
        kept = []
        for t in terms:
            sel = touching(t.samples, reach, nu)
            if bool(sel.any()):
                kept.append(Term(t.samples.select(torch.nonzero(sel).view(-1)), t.graph, t.weight))
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
        """Whether the closed forms of :mod:`graphforget.unlearn.curvature` apply (fixed linear
        map from ego embeddings to representations)."""
        return self.model.linear_propagation or not self.propagate

    def gradient(self, theta: Tensor) -> Tensor:
        """``∇f(θ)``, shaped like ``theta``: closed form for linear-propagation models (one
        propagation per graph, score-level derivatives, one propagation back), autograd
        otherwise."""
        theta = theta.detach()
        if self.linear():
            return LinearModelHessian(self, theta).grad
        x = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self(x), x, allow_unused=True)
        return torch.zeros_like(theta) if g is None else g

    def hessian_operator(self, theta: Tensor, damping: float = 0.0):
        """Matrix-free ``v ↦ (∇²f(θ) + δI) v`` at ``theta``: closed-form products through
        the propagation matrix for linear-propagation models (MF, LightGCN; and any model in
        paper mode), double backward otherwise (:mod:`graphforget.unlearn.curvature`)."""
        if self.linear():
            return LinearModelHessian(self, theta, damping)
        return HessianOperator(self, theta, damping)

    def describe(self) -> str:
        r = self.region
        where = "full graph (fallback)" if r.full else f"{r.size}-node subgraph"
        return f"{self.num_samples} samples on {where}"


@dataclass
class InfluenceProblem:
    """Everything one influence update is built from (exposed for tests and audits)."""

    model: RecModel
    graph: InteractionGraph
    new_graph: InteractionGraph
    edges: Tensor
    samples: SampleSet
    deleted: SampleSet
    remaining: SampleSet
    endpoints: Tensor
    embedding: Tensor
    rows: Optional[Tensor] = None
    gradient_terms: list = field(default_factory=list)
    hessian_terms: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def adjacencies(self) -> dict:
        return {"old": self.graph.adjacency, "new": self.new_graph.adjacency}


def newly_isolated(new_graph: InteractionGraph, endpoints: Tensor) -> Tensor:
    """Endpoints of deleted edges with no training edge left in ``new_graph`` (global ids).

    Such a node's rows get no data term in the new objective (at most fixed-negative terms for
    an item), so its Hessian block is little more than the damping and a Newton step on it is
    unbounded. Such rows are set to 0: for a user (never a BPR negative) that is the exact
    minimiser of what is left of its objective, the L2 term; an item may still be the fixed
    negative of other users' samples, whose minimiser would push it slightly further down —
    we choose 0 anyway, the state of a node that has learned nothing, so it no longer ranks
    anything by what it learned from the forgotten data.
    """
    return endpoints[new_graph.degree[endpoints] == 0]


class InfluenceFunction(Unlearner):
    """Influence-function unlearning on the deleted edges' endpoints (direct term only).

    Args:
        damping: :math:`\\delta` added to the Hessian.
        solver: ``"cg"`` (conjugate gradients) or ``"lissa"``.
        tol: relative residual at which the solver stops.
        max_iter: solver iteration cap per damping. CG that has not reached ``tol`` within it
            counts as failed like negative curvature: δ is raised tenfold (a truncated iterate
            on a near-singular system is not a Newton step).
        weight_decay: the λ of the per-sample L2 term the model was trained with.
        loss: ``"auto"`` (BCE on labelled graphs, else BPR), ``"bpr"`` or ``"bce"``.
        paper_mode: form the Hessian without propagation (representations = ego embeddings),
            as the IFRU public code does; the gradient stays exact.
        fallback_fraction: use the full graph when a region exceeds this fraction of nodes
            (``0``: always the full graph).
        lissa_scale: LiSSA's scale :math:`s` (default: 1.1 × a 20-step power-iteration
            estimate of :math:`\\lambda_{\\max}`).
        ridge: :math:`\\rho \\ge 0` of a term :math:`\\tfrac{\\rho}{2}\\lVert\\theta_S\\rVert^2`
            added to the objective (old and new alike), or ``"fitted"``:
            :func:`~graphforget.unlearn.objective.fitted_ridge` of the original objective's
            gradient on ``S`` at the trained point, :math:`\\nabla_S\\mathcal{L}(\\theta; \\mathcal{D},
            \\hat{A}) = \\nabla_S\\mathcal{L}' - g` (exact for IFRU with ``k = K``; IF's
            :math:`g` omits the spillover). A model stopped after a fixed budget is stationary
            for the ridged objective as far as a ridge can make it, so :math:`g` keeps its
            meaning and the step becomes :math:`-(H' + (\\rho + \\delta) I)^{-1} g`; 0 for a
            converged model. Default 0.
        damping_retries: how often δ may be raised tenfold (to at least 0.01) when the solver
            finds :math:`H' + \\delta I` indefinite or does not converge — the objective is non-convex, and a model
            trained only briefly can sit where it has negative curvature. The damping actually
            used is reported. CG raises δ inside one Krylov space
            (:func:`~graphforget.unlearn.linalg.lanczos_damped_solve`): no products are spent
            on restarts; LiSSA restarts.
        seed: seed of the fixed BPR negatives (must match the one used to define the
            objective; the negatives are drawn inside unlearning).
    """

    name = "if"

    def __init__(self, damping: float = 0.01, solver: str = "cg", tol: float = 1e-4,
                 max_iter: int = 300, weight_decay: float = 1e-4, loss: str = "auto",
                 paper_mode: bool = False, fallback_fraction: float = 0.5,
                 lissa_scale: Optional[float] = None, damping_retries: int = 6, ridge=0.0,
                 seed: int = 0) -> None:
        if solver not in ("cg", "lissa"):
            raise ValueError(f"solver must be 'cg' or 'lissa', got {solver!r}")
        if damping < 0 or tol <= 0 or max_iter < 1 or weight_decay < 0:
            raise ValueError("need damping >= 0, tol > 0, max_iter >= 1, weight_decay >= 0")
        if loss not in ("auto", "bpr", "bce"):
            raise ValueError(f"loss must be 'auto', 'bpr' or 'bce', got {loss!r}")
        ridge = ridge_option(ridge)
        super().__init__(seed=seed, damping=damping, solver=solver,
                         tol=tol, max_iter=max_iter, weight_decay=weight_decay, loss=loss,
                         paper_mode=paper_mode, fallback_fraction=fallback_fraction,
                         lissa_scale=lissa_scale, damping_retries=damping_retries, ridge=ridge)
        self.damping, self.solver, self.tol, self.max_iter = float(damping), solver, float(tol), int(max_iter)
        self.weight_decay, self.loss, self.paper_mode = float(weight_decay), loss, bool(paper_mode)
        self.fallback_fraction, self.lissa_scale = float(fallback_fraction), lissa_scale
        self.damping_retries = int(damping_retries)
        self.ridge = ridge

    # ---------------------------------------------------------------- steps
    def prepare(self, model: RecModel, graph: InteractionGraph, edges: Tensor) -> InfluenceProblem:
        """New graph, fixed samples, deleted / remaining split (the ``graph_update`` phase)."""
        pos = graph.find_edges(edges)
        graph.adjacency  # build the old CSR first so remove_edges updates it incrementally
        new_graph = graph.remove_edges(edges)
        new_graph.adjacency
        samples = SampleSet.for_graph(graph, self.loss, self.seed)
        keep = torch.ones(graph.num_train, dtype=torch.bool)
        keep[pos] = False
        nu = graph.num_users
        endpoints = torch.unique(torch.cat([edges[0], edges[1] + nu]))
        return InfluenceProblem(model=model, graph=graph, new_graph=new_graph, edges=edges,
                                samples=samples, deleted=samples.select(pos),
                                remaining=samples.select(torch.nonzero(keep).view(-1)),
                                endpoints=endpoints, embedding=model.embedding.detach())

    def select(self, prob: InfluenceProblem) -> None:
        """Set the free rows and the gradient / Hessian terms (IF: endpoints, direct only)."""
        prob.rows = prob.endpoints
        prob.gradient_terms = [Term(prob.deleted, "old", -1.0)]
        prob.hessian_terms = [Term(prob.remaining, "new", 1.0)]

    def problem(self, model: RecModel, graph: InteractionGraph, edges) -> InfluenceProblem:
        """:meth:`prepare` + :meth:`select` for explicit ``edges`` (validated)."""
        from .base import UnlearningRequest

        prob = self.prepare(model, graph, UnlearningRequest.of(edges).resolve(graph))
        self.select(prob)
        return prob

    def gradient_objective(self, prob: InfluenceProblem) -> LocalObjective:
        """``f`` with ``∇f(θ_S) = g`` (always through propagation)."""
        return LocalObjective(prob.model, prob.embedding, prob.rows, prob.gradient_terms,
                              prob.adjacencies, self.weight_decay, self.fallback_fraction)

    def hessian_objective(self, prob: InfluenceProblem) -> LocalObjective:
        """``f`` with ``∇²f(θ_S) = H'_{SS}`` (without propagation in paper mode)."""
        return LocalObjective(prob.model, prob.embedding, prob.rows, prob.hessian_terms,
                              prob.adjacencies, self.weight_decay, self.fallback_fraction,
                              propagate=not self.paper_mode)

    def gradient(self, prob: InfluenceProblem) -> Tensor:
        """``g`` restricted to ``prob.rows``, ``[|S|, d]``."""
        f = self.gradient_objective(prob)
        prob.notes.append(f"gradient: {f.describe()}")
        return f.gradient(prob.embedding[prob.rows.to(prob.embedding.device)])

    def solve(self, prob: InfluenceProblem, g: Tensor, report: Optional[UnlearnReport] = None) -> Tensor:
        """``p = (H'_{SS} + (ρ + δ)I)^{-1} g`` by CG or LiSSA (ρ the ridge, δ the damping);
        fills the report's solver fields (``damping``: the δ used)."""
        f = self.hessian_objective(prob)
        prob.notes.append(f"hessian: {f.describe()}")
        ladder = [self.damping]
        for _ in range(self.damping_retries):
            ladder.append(max(10.0 * ladder[-1], 1e-2))
        theta = prob.embedding[prob.rows.to(prob.embedding.device)]
        op = f.hessian_operator(theta, 0.0)
        rho = self.ridge
        if rho == "fitted":  # ∇_S L(θ; D, Â) = ∇_S L'(θ) − g; the operator holds ∇_S L'(θ)
            rho = fitted_ridge(op.grad - g, theta) if not self.paper_mode else 0.0
            prob.notes.append(f"fitted ridge {rho:.4g} (implicit L2 of the training budget)"
                              if not self.paper_mode else "ridge: not fitted in paper mode (its "
                              "Hessian objective is not the training objective); 0")
        if self.solver == "cg":
            p, info = lanczos_damped_solve(op, g, [rho + d for d in ladder], self.tol, self.max_iter)
            for old, new, why in info["raised"]:
                why = ("not positive definite at θ (non-convex objective)" if why == "indefinite" else
                       f"not solved to tol in {self.max_iter} iterations (near-singular: saturated "
                       "losses leave directions with almost no curvature)")
                prob.notes.append(f"cg: H' + {old - rho:g} I {why}; damping raised to {new - rho:g}")
            op.damping = info["damping"] if math.isfinite(info["damping"]) else rho + ladder[-1]
            if not math.isfinite(info["damping"]):
                prob.notes.append(f"cg: H' + {ladder[-1]:g} I still indefinite: no step taken")
        else:
            op.damping = rho + self.damping
            scale = self.lissa_scale or 1.1 * power_iteration(op, g, seed=self.seed)
            for attempt, damping in enumerate(ladder):
                op.damping = rho + damping
                p, info = lissa(op, g, scale + op.damping, self.tol, self.max_iter)
                if (math.isfinite(info["residual"]) and info["residual"] <= 1.0) or attempt == len(ladder) - 1:
                    break
                prob.notes.append(f"lissa: H' + {damping:g} I not positive definite at θ "
                                  f"(non-convex objective); damping raised to {ladder[attempt + 1]:g}")
            prob.notes.append(f"lissa scale {scale + op.damping:.4g}")
        gnorm = float(g.norm())
        residual = float((g - op(p)).norm()) / gnorm if gnorm > 0 else 0.0  # true residual
        if self.solver == "cg" and residual > self.tol and math.isfinite(info["damping"]):
            # long Lanczos runs lose orthogonality, so the true residual can end a little above
            # the recurrence's: polish with CG warm-started at p (same damping, positive definite)
            p, extra = conjugate_gradient(op, g, self.tol, self.max_iter, x0=p)
            info["iterations"] += extra["iterations"]
            residual = float((g - op(p)).norm()) / gnorm
        if not self.paper_mode:
            self.check_step(prob, f, g, p, op.grad, rho, report)
        if report is not None:
            report.hvps += op.count
            report.solver_iterations = info["iterations"]
            report.solver_residual = residual
            report.damping = op.damping - rho
            report.converged = bool(residual <= self.tol)
        return p

    def check_step(self, prob: InfluenceProblem, f: LocalObjective, g: Tensor, p: Tensor,
                   grad: Tensor, ridge: float = 0.0, report: Optional[UnlearnReport] = None) -> None:
        r"""Validation-free diagnostics of the step, from the new training objective ``f``
        (the terms of :math:`\mathcal{L}(\theta; \mathcal{D}', \hat{A}')` that depend on
        :math:`\theta_S`, plus the ridge :math:`\tfrac{\rho}{2}\lVert\theta_S\rVert^2`;
        ``grad`` the gradient of ``f`` at :math:`\theta_S`, which the Hessian operator already
        holds; two forwards on its region):

        * ``gradient_mismatch`` :math:`= \lVert \nabla_S \mathcal{L}(\theta; \mathcal{D}',
          \hat{A}') - g \rVert / \lVert g \rVert`. With the exact ``g`` of IFRU this is
          :math:`\lVert \nabla_S \mathcal{L}(\theta; \mathcal{D}, \hat{A}) \rVert / \lVert g
          \rVert`: 0 for a model trained to a stationary point, which the Newton step
          assumes, and ≫ 1 for a model stopped after a fixed budget (IF's ``g`` also omits
          the spillover, which adds to it).
        * ``objective_change`` :math:`= f(\theta_S - p) - f(\theta_S)`: negative when the step
          moves the model towards the retrained optimum on the data it keeps. A positive value
          is noted: the step is not a descent step of the new objective, i.e. the stationarity
          assumption fails at this model.
        """
        theta = prob.embedding[prob.rows.to(prob.embedding.device)].detach()
        after = theta - p.to(theta.dtype)
        with torch.no_grad():
            change = float(f(after)) - float(f(theta))
        if ridge:
            change += 0.5 * ridge * float(after.double().pow(2).sum() - theta.double().pow(2).sum())
            grad = grad + ridge * theta
        gnorm = float(g.norm())
        mismatch = float((grad - g).norm()) / gnorm if gnorm > 0 else float("nan")
        if report is not None:
            report.gradient_mismatch, report.objective_change = mismatch, change
        if change > 0:
            prob.notes.append(f"the step raises the new training objective by {change:.4g} "
                              f"(gradient mismatch {mismatch:.3g}): the model is not at a stationary "
                              "point of its objective, which influence steps assume; train it to "
                              "convergence, raise the damping, or use retrain / fine-tune")

    # ---------------------------------------------------------------- contract
    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        with timer("graph_update"):
            prob = self.prepare(model, graph, edges)
        with timer("gradient"):
            self.select(prob)
            isolated = newly_isolated(prob.new_graph, prob.endpoints)
            if isolated.numel():
                prob.rows = prob.rows[~torch.isin(prob.rows, isolated)]
                prob.notes.append(f"{isolated.numel()} nodes lost every training edge: rows set to 0 "
                                  "(their L2 optimum), not solved for")
            g = self.gradient(prob) if prob.rows.numel() else None
        with timer("solve"):
            p = self.solve(prob, g, report) if g is not None else None
            if p is None:
                report.converged, report.solver_residual = True, 0.0
        with timer("apply"):
            with torch.no_grad():
                if p is not None:
                    model.embedding.index_add_(0, prob.rows.to(p.device), -p.to(model.embedding.dtype))
                model.embedding[isolated.to(model.embedding.device)] = 0.0
        prob.rows = torch.cat([prob.rows, isolated])
        report.affected_nodes = int(prob.rows.numel())
        report.affected_parameters = int(prob.rows.numel()) * model.embedding.shape[1]
        report.notes.extend(prob.notes)
        return prob.new_graph


__all__ = ["InfluenceFunction", "InfluenceProblem", "LocalObjective", "Term"]
