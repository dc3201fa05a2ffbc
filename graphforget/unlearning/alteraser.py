r"""AltEraser: alternating block-Newton steps on the new objective, warm-started.

After deleting :math:`\Delta\mathcal{D}` the target is a minimiser of the *new* objective

.. math::
    \mathcal{L}'(E) = \sum_{s \in \mathcal{D} \setminus \Delta\mathcal{D}} \ell_s(E; \hat{A}'),
    \qquad \ell_s = \ell^{\text{data}}_s + \tfrac{\lambda}{2} \textstyle\sum_{v \in s} \lVert e_v \rVert^2

(:mod:`graphforget.train.objective`, read from ``model.recipe``; the remaining samples are
exactly a retrain's, :func:`~graphforget.train.objective.split_samples`).
Starting from the trained ego embeddings, only the rows of *affected* nodes move: the nodes
whose :math:`K`-layer receptive field contains a deleted edge
(:meth:`InteractionGraph.khop_nodes` with :math:`K` = ``model.num_layers``; MF: the endpoints).
Users and items alternate; within a block every affected row takes one damped Newton step at once

.. math::
    e_v \leftarrow e_v - (H_{vv} + \delta I)^{-1} g_v, \qquad
    g_v = \nabla_{e_v} \mathcal{L}', \quad
    H_{vv} = \nabla^2_{e_v e_v} \mathcal{L}' \in \mathbb{R}^{d \times d},

with all other rows fixed and the :math:`d \times d` systems solved as one batched solve.
:math:`\delta` is adapted per block type Levenberg–Marquardt style (``line_search=True``): a
step is kept only if it satisfies the Armijo condition on the objective, otherwise
:math:`\delta \leftarrow 4\delta` and the solve is repeated; after an accepted step
:math:`\delta \leftarrow \max(\delta/3, \delta_{\min})` with :math:`\delta_{\min}` = ``damping``.
So the objective never increases, and steps are Newton steps where the local model is good.
A round is users then items; rounds repeat until the gradient norm over all affected rows
falls below ``tol`` times its initial value or ``rounds`` is spent.
The gradient :math:`g` is exact (autograd through propagation, restricted to the samples that
can reach an affected row); only the Hessian blocks are closed forms.

**Stationarity.** The target is a minimiser of :math:`\mathcal{L}'` near the trained model; from
a model stopped early (not a minimiser of :math:`\mathcal{L}`) block Newton keeps *training* the
affected rows toward the optimum of the objective rather than undoing the deletion, so the
method is meant for models of the stationary recipe (:mod:`graphforget.train.stationary`); the
report says so when the model is not stationary.

The block Hessians are the closed forms of :mod:`graphforget.unlearning.blocks` (exact for MF,
Gauss–Newton self and one-hop paths for LightGCN, the ego block for NGCF).

Under a process group (``torchrun``) each rank keeps a contiguous share of the region's samples
and the gradient, the Hessian blocks and the line search's loss change are all-reduced, so
every rank takes the same steps as one process.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..data.sparse import khop
from ..models import MF, NGCF, LightGCN, RecModel
from ..train import distributed as gfd
from ..train.objective import sample_losses, split_samples
from .base import Timer, Unlearner, UnlearnReport, objective_for, stationarity_note
from .blocks import BlockCurvature
from .influence import coupled_rows, untouched_rows
from .linalg import batched_block_solve

BLOCK_ORDERS = {"alternate": ("users", "items"), "users": ("users",), "items": ("items",)}


class AltEraser(Unlearner):
    """Alternating block-Newton unlearning on the affected users and items (see module doc).

    Args:
        rounds: maximal number of rounds (one round = every block in ``blocks`` order once).
        tol: stop when ``‖g‖ ≤ tol · ‖g at start‖`` over the affected rows of the optimised
            blocks (this norm is reported as ``solver_residual``).
        damping: minimal δ added to every block Hessian (objective units: sum reduction);
            the LM adaptation raises it where steps fail. Use 0 for undamped Newton on
            well-conditioned (e.g. convex, regularised) problems.
        blocks: ``"alternate"`` (users then items), ``"users"`` or ``"items"`` (the other side
            stays fixed).
        weight_decay, loss, negatives, negative_seed: the objective; ``None`` / ``"auto"``
            read it from ``model.recipe`` (:func:`~graphforget.unlearning.base.objective_for`).
        line_search: accept a block update only under the Armijo condition, raising δ
            (Levenberg–Marquardt) otherwise; ``False`` takes every step with δ = ``damping``.
        max_backtracks: δ increases (×4) tried before a block update is skipped.
        paths: LightGCN block-Hessian approximation, ``"neighbours"`` (self path plus the
            one-hop paths) or ``"self"`` (self path only).
        coupling: hops of rows sharing a sample with the affected rows that are optimised too
            (:func:`~graphforget.unlearning.influence.coupled_rows`; 0 = the paper's affected
            rows). For MF the affected rows are only the deleted edges' endpoints, while the
            new minimiser moves every row coupled to them through a sample.
        seed: seed of the fresh draws for rows left without any sample.
    """

    name = "alteraser"

    def __init__(self, rounds: int = 10, tol: float = 1e-3, damping: float = 0.1,
                 blocks: str = "alternate", weight_decay: Optional[float] = None, loss: str = "auto",
                 negatives: Optional[int] = None, negative_seed: Optional[int] = None,
                 line_search: bool = True, max_backtracks: int = 12, paths: str = "neighbours",
                 coupling: int = 0, seed: int = 0) -> None:
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        if not tol >= 0 or not damping >= 0 or not (weight_decay is None or weight_decay >= 0):
            raise ValueError("tol, damping and weight_decay must be non-negative")
        if blocks not in BLOCK_ORDERS:
            raise ValueError(f"blocks must be one of {sorted(BLOCK_ORDERS)}, got {blocks!r}")
        if loss not in ("auto", "bpr", "bce"):
            raise ValueError(f"loss must be 'auto', 'bpr' or 'bce', got {loss!r}")
        if paths not in ("self", "neighbours"):
            raise ValueError(f"paths must be 'self' or 'neighbours', got {paths!r}")
        if int(coupling) < 0:
            raise ValueError(f"coupling must be >= 0, got {coupling}")
        super().__init__(seed=seed)
        self.rounds, self.tol, self.damping = int(rounds), float(tol), float(damping)
        self.blocks, self.weight_decay, self.loss = blocks, weight_decay, loss
        self.negatives, self.negative_seed = negatives, negative_seed
        self.line_search, self.max_backtracks = bool(line_search), int(max_backtracks)
        self.paths, self.coupling = paths, int(coupling)

    def _unlearn(self, model: RecModel, graph: InteractionGraph, edges: Tensor,
                 report: UnlearnReport, timer: Timer) -> InteractionGraph:
        if not isinstance(model, (MF, LightGCN, NGCF)):
            raise ValueError(f"AltEraser supports MF, LightGCN and NGCF, got {type(model).__name__}")
        report.grad_norm_rel, note = stationarity_note(model)
        if note:
            report.notes.append(note)
        dev, dtype = model.embedding.device, model.embedding.dtype
        nu, k_layers = graph.num_users, model.num_layers
        distributed = gfd.is_distributed()
        total = gfd.all_reduce_sum  # Σ over the ranks (the identity in one process)
        with timer("graph_update"):
            objective = objective_for(model, graph, self.weight_decay, self.loss, self.negatives,
                                      self.negative_seed)
            wd = objective.weight_decay
            new_graph = graph.remove_edges(edges)
            adj = new_graph.adj(dev)
            adj = adj if adj.dtype == dtype else adj.to(dtype)
            samples = split_samples(objective, graph, new_graph, edges).remaining
            affected = graph.khop_nodes(edges, k_layers)
            if self.coupling:  # rows the new objective's Hessian couples to the affected ones
                affected = coupled_rows(affected, samples, nu, graph.num_nodes, self.coupling)
            region = affected
            if k_layers > 0:  # rows whose representation depends on an affected ego row
                region = khop(new_graph.adjacency, affected, k_layers)
            in_region = torch.zeros(graph.num_nodes, dtype=torch.bool)
            in_region[region] = True
            samples = samples.select(in_region[samples.nodes(nu)].any(1))
            untouched = untouched_rows(samples, nu, affected)  # fresh draws, not optimised
            free = affected[~torch.isin(affected, untouched)]
            if distributed:  # this rank's share of the samples; every sum below is all-reduced
                lo, hi = gfd.shard_range(len(samples))
                samples = samples.select(torch.arange(lo, hi))
                report.notes.append(f"samples: rank {gfd.rank()}'s share of {gfd.world_size()} "
                                    f"({hi - lo} of the region's samples)")
            groups = {"users": free[free < nu], "items": free[free >= nu]}
            curv = {b: BlockCurvature(model, v, wd, new_graph.adjacency, self.paths)
                    for b, v in groups.items()}
        report.affected_nodes = int(affected.numel())
        report.affected_parameters = int(affected.numel()) * model.dim
        order = BLOCK_ORDERS[self.blocks]
        aff_dev = torch.cat([groups[b] for b in order]).to(dev)  # the rows being optimised
        emb = model.embedding.detach().clone()
        if untouched.numel():  # before the iteration, so the other rows adapt to it
            emb[untouched.to(dev)] = model.fresh_rows(untouched, self.seed)

        def objective_at(e: Tensor, grad: bool):
            e = e.detach().requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                out = model.propagate(adj, e)
                per = sample_losses(model, out, e, samples, wd)
                g = torch.autograd.grad(per.sum(), e)[0] if grad else None
            return per.detach(), None if g is None else total(g), out.detach()

        g0, residual, rounds_done, done = None, float("nan"), 0, False
        delta = {b: self.damping for b in order}
        for _ in range(self.rounds):
            accepted_any = False
            for b in order:
                rows = groups[b].to(dev)
                with timer("gradient"):
                    per, g, out = objective_at(emb, True)
                    gnorm = float(g[aff_dev].norm())
                if g0 is None:
                    g0 = gnorm
                if b == order[0] and gnorm <= self.tol * g0:
                    done, residual = True, gnorm
                    break
                if rows.numel() == 0:
                    continue
                with timer("solve"):
                    h = total(curv[b].hessians(out, samples))
                    empty = h.diagonal(dim1=1, dim2=2).sum(-1) == 0  # rows in no sample: g = 0
                    h[empty] += torch.eye(model.dim, dtype=dtype, device=dev)
                    ok, delta[b] = self._step(emb, rows, h, g[rows], per, objective_at, delta[b])
                    accepted_any |= ok
            if done:
                break
            rounds_done += 1
            if not accepted_any:
                report.notes.append("line search found no decrease in any block; stopped")
                break
        if residual != residual:  # not set by the convergence check: measure at the end
            with timer("gradient"):
                residual = float(objective_at(emb, True)[1][aff_dev].norm())
        with timer("apply"):
            with torch.no_grad():
                model.embedding.copy_(emb)
        if untouched.numel():
            report.notes.append(f"{untouched.numel()} rows have no sample left: fresh draws from "
                                "the initialisation (what a retrain leaves)")
        report.solver_iterations = report.rounds = rounds_done
        report.solver_residual = residual
        report.converged = bool(g0 is not None and residual <= self.tol * g0)
        report.damping = max(delta.values())
        report.notes.append("final damping per block: " + ", ".join(f"{b}={v:.3g}" for b, v in delta.items()))
        report.notes.append(f"initial affected gradient norm {g0:.3e}")
        return new_graph

    def _step(self, emb: Tensor, rows: Tensor, h: Tensor, grad: Tensor, per0: Tensor,
              objective, delta: float) -> tuple[bool, float]:
        """One Levenberg–Marquardt block update ``emb[rows] -= (H + δI)⁻¹ g``.

        With ``line_search`` the step is accepted when it satisfies the Armijo condition (loss
        change summed per sample in float64, so tiny decreases are not lost to rounding);
        otherwise δ is multiplied by 4 and the solve repeated. After an accepted step δ shrinks
        by 3, never below the ``damping`` option. Returns ``(accepted, next δ)``.
        """
        old = emb[rows].clone()
        for _ in range(self.max_backtracks + 1):
            direction = -batched_block_solve(h, grad, delta)
            emb[rows] = old + direction
            if not self.line_search:
                return True, delta
            slope = float((grad * direction).sum())
            change = float(gfd.all_reduce_sum((objective(emb, False)[0].double() - per0.double()).sum()))
            if slope < 0 and change <= 1e-4 * slope:
                return True, max(self.damping, delta / 3)
            delta = max(4 * delta, 1e-6)
        emb[rows] = old
        return False, delta
