r"""SCIF: selective influence-function unlearning by label replacement (method ``"scif"``).

For labelled (BCE) data, a deleted pair ``(u, i, y)`` is not dropped but *replaced* by
``(u, i, ȳ_u)``, with :math:`\bar{y}_u` the mean label of ``u``'s remaining training pairs (the
mean of all remaining labels when ``u`` has none left; the deleted labels are never used, so
the replacement carries no information about them). The objective becomes
:math:`\tilde{\mathcal{L}} = \mathcal{L} - \sum_{\Delta}\ell(\theta; y) + \sum_{\Delta}\ell(\theta;
\bar{y}_u)` and one damped Newton step from the trained :math:`\theta` is

.. math::
    \Delta\theta_S = -(\tilde{H}_{SS} + \delta I)^{-1} \sum_{(u,i) \in \Delta}
        \big(\nabla\ell(\theta; \bar{y}_u) - \nabla\ell(\theta; y)\big)_S,

restricted ("selective") to the endpoints :math:`S` of the deleted pairs, with gradient and
Hessian taken through propagation under the original adjacency (the replaced pairs stay
samples, so the method models no adjacency change; the returned graph drops the edges).

BPR data has no label to replace — the positive/negative contrast *is* the interaction — so
SCIF raises ``ValueError`` there; use ``"if"`` or ``"ifru"``.
"""
from __future__ import annotations

import torch

from .influence import InfluenceFunction, InfluenceProblem, Term
from ..train.objective import SampleSet


class SCIF(InfluenceFunction):
    """Label-replacement influence on the endpoints (labelled data only); options as
    :class:`~graphforget.unlearning.influence.InfluenceFunction`."""

    name = "scif"

    default_coupling = 0  # "selective": the endpoints

    def prepare(self, model, graph, edges) -> InfluenceProblem:
        if self.loss == "bpr" or not graph.has_labels:
            raise ValueError("SCIF replaces the deleted pairs' labels and needs labelled (BCE) "
                             "data; this graph/loss is BPR: use method 'if' or 'ifru'")
        return super().prepare(model, graph, edges)

    def select(self, prob: InfluenceProblem) -> None:
        rem, dele = prob.kept, prob.deleted
        nu = prob.graph.num_users
        sums = torch.bincount(rem.users, weights=rem.labels.double(), minlength=nu)
        counts = torch.bincount(rem.users, minlength=nu)
        overall = float(rem.labels.mean()) if len(rem) else 0.5
        mean = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, overall))
        replaced = SampleSet(dele.users, dele.items, labels=mean[dele.users].to(dele.labels.dtype))
        prob.rows = prob.endpoints
        prob.gradient_terms = [Term(replaced, "old", 1.0), Term(dele, "old", -1.0)]
        prob.hessian_terms = [Term(rem, "old", 1.0), Term(replaced, "old", 1.0)]
        prob.notes.append("SCIF: label replacement under the original adjacency")


__all__ = ["SCIF"]
