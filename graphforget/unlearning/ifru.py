r"""IFRU: influence-function recommendation unlearning with spillover (Zhang et al., 2023).

Method ``"ifru"``. Same Newton step as :class:`~graphforget.unlearning.influence.InfluenceFunction`
(see its module for the derivation), :math:`\Delta\theta_S = -(H'_{SS} + \delta I)^{-1} g_S`,
but with the full first-order change of the objective,

.. math::
    g = -\sum_{s \in \Delta\mathcal{D}} \nabla\ell_s(\theta; \hat{A})
        + \sum_{s \in \mathcal{D}'} \big(\nabla\ell_s(\theta; \hat{A}') - \nabla\ell_s(\theta;
        \hat{A})\big),

where the spillover sum runs only over the remaining samples with a node (user, item or
negative) in the ``k``-hop neighbourhood :math:`C_k` of the deleted endpoints: a ``K``-layer
model's representation of ``v`` changes with the adjacency iff ``v`` is within ``K`` hops of an
endpoint, so with ``k = K = model.num_layers`` (default) the sum is exact and every other
remaining sample contributes zero. ``k < K`` truncates it, ``k = 0`` disables it, and for MF
(``K = 0``) it vanishes identically. Both adjacencies are evaluated on the exact ``K``-hop region
of the spillover samples' nodes with the entries of the full normalised matrices (global
degrees), never by a full-graph propagation unless that region is most of the graph.

**Rows.** Candidates are :math:`C_k` plus every node of the deleted, redrawn and spillover
samples, plus (with ρ = 1) the ``coupling`` hops of rows sharing a sample with them (the
rows whose gradient is largest; the gradient's support extends ``K`` more hops, and those rows
are left fixed). ``prune_ratio`` ρ keeps the top ⌈ρ·|candidates|⌉ by an importance score
(ties to the smaller id), always keeping the endpoints:

.. math::
    s = \sum_{j=0}^{k} \hat{A}^j m, \qquad m_v = \frac{\#\{\text{deleted edges at } v\}}
        {\deg_{\text{old}}(v)},

the deleted share of each node's neighbourhood spread the way a ``k``-layer model spreads it.
The default ρ = 1 keeps the update exact on all candidates: every Hessian-vector product costs
a propagation over the Hessian's region whatever ``|S|`` is, so pruning saves little time
while it drops part of the spillover correction; lower ρ for very large deletions where the
parameter vector itself is the cost.

**Paper mode** (``paper_mode=True``, the IFRU public code): the Hessian is formed without
propagation (representations = ego embeddings, the MF-style Hessian of the samples touching
:math:`S`) and ``k`` is capped at 1.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..data.sparse import NormalizedAdjacency
from ..train.objective import SampleSet
from .influence import InfluenceFunction, InfluenceProblem, Term
from .subgraph import induced_adjacency, khop, node_mask, touching


def deletion_importance(adjacency: NormalizedAdjacency, edges: Tensor, num_users: int,
                        hops: int) -> Tensor:
    r"""Importance :math:`s = \sum_{j \le \text{hops}} \hat{A}^j m` of every node, ``[N]``.

    Computed on the induced block of the ``hops``-hop neighbourhood of the endpoints (every
    walk of length ``≤ hops`` from an endpoint stays inside it, so this is exact); zero
    elsewhere.
    """
    n = adjacency.num_nodes
    ends = torch.cat([edges[0], edges[1] + num_users])
    m = torch.bincount(ends, minlength=n).to(torch.float32) / adjacency.degree.clamp(min=1.0)
    nodes = khop(adjacency, ends, hops)
    x = m[nodes]
    s = x.clone()
    if hops > 0:
        a = induced_adjacency(adjacency, nodes)
        for _ in range(hops):
            x = torch.sparse.mm(a, x.unsqueeze(1)).squeeze(1)
            s = s + x
    out = torch.zeros(n)
    out[nodes] = s
    return out


class IFRU(InfluenceFunction):
    """IFRU unlearning; options of :class:`InfluenceFunction` plus:

    Args:
        k: spillover hops (default ``model.num_layers``; ``0`` disables the spillover term).
        prune_ratio: fraction ρ ∈ (0, 1] of candidate rows kept by importance.
    """

    name = "ifru"

    def __init__(self, k: Optional[int] = None, prune_ratio: float = 1.0, **options) -> None:
        super().__init__(**options)  # the options of InfluenceFunction
        if k is not None and int(k) < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if not 0.0 < prune_ratio <= 1.0:
            raise ValueError(f"prune_ratio must be in (0, 1], got {prune_ratio}")
        self.k, self.prune_ratio = (None if k is None else int(k)), float(prune_ratio)

    def hops(self, num_layers: int) -> int:
        """Effective spillover hops ``min(k, K)`` (``k ≤ 1`` in paper mode)."""
        k = num_layers if self.k is None else self.k
        if self.paper_mode:
            k = min(k, 1)
        return min(k, num_layers)

    def select(self, prob: InfluenceProblem) -> None:
        model, nu, n = prob.model, prob.graph.num_users, prob.graph.num_nodes
        hops = self.hops(model.num_layers)
        old = prob.graph.adjacency
        spill: Optional[SampleSet] = None
        if hops > 0:
            changed = khop(old, prob.endpoints, hops)
            sel = touching(prob.kept, node_mask(changed, n), nu)
            if bool(sel.any()):
                spill = prob.kept.select(torch.nonzero(sel).view(-1))
        else:
            changed = prob.endpoints
        parts = [changed, prob.deleted.nodes(nu).reshape(-1), prob.added.nodes(nu).reshape(-1)]
        if spill is not None:
            parts.append(spill.nodes(nu).reshape(-1))
        cand = torch.unique(torch.cat(parts))
        rows = cand
        if self.prune_ratio < 1.0:
            score = deletion_importance(old, prob.edges, nu, hops)[cand]
            order = torch.argsort(-score, stable=True)
            n_keep = min(cand.numel(), math.ceil(self.prune_ratio * cand.numel()))
            rows = torch.unique(torch.cat([cand[order[:n_keep]], prob.endpoints]))
        else:
            rows = self.couple(prob, rows)
        prob.rows = rows
        prob.gradient_terms = prob.direct_terms()
        if spill is not None:
            prob.gradient_terms += [Term(spill, "new", 1.0), Term(spill, "old", -1.0)]
        prob.hessian_terms = [Term(prob.remaining, "new", 1.0)]
        prob.notes.append(f"spillover: k={hops}, {0 if spill is None else len(spill)} samples; "
                          f"rows {rows.numel()} ({cand.numel()} candidates)")


__all__ = ["IFRU", "deletion_importance"]
