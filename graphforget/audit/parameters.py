r"""Distance in parameter space to a reference retrain.

With ego embeddings :math:`E` and a set of rows :math:`S` (node ids, items at ``U + i``; usually
the nodes whose receptive field contains a deleted edge),

.. math::
    d(\theta, \theta^{\mathrm{ref}}) = \lVert E_S - E^{\mathrm{ref}}_S \rVert_F, \qquad
    \mathrm{relative} = \frac{d(\theta^{\mathrm{unlearned}}, \theta^{\mathrm{ref}})}
                             {d(\theta^{\mathrm{original}}, \theta^{\mathrm{ref}})}.

The reference should be a retrain on the graph after deletion *warm-started from the original
parameters*: retraining from a fresh seed lands in another basin of a non-convex objective
(rotations, sign flips of embedding dimensions), where parameter distances mean nothing.
``relative`` is 1 for a method that did not move the affected rows towards the reference, 0 for
one that reached it, and NaN when the original already equals the reference on ``rows``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..models import RecModel
from .utility import check_ids


@torch.no_grad()
def _distance(a: RecModel, b: RecModel, rows: Optional[Tensor]) -> float:
    ea, eb = a.embedding.detach(), b.embedding.detach().to(a.embedding.device)
    if ea.shape != eb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(ea.shape)} vs {tuple(eb.shape)}")
    if rows is not None:
        r = rows.to(ea.device)
        ea, eb = ea[r], eb[r]
    return float((ea.double() - eb.double()).norm())


def parameter_distance(model: RecModel, reference: RecModel, rows=None,
                       original: Optional[RecModel] = None) -> dict:
    """L2 (Frobenius) distance of ``model``'s ego embedding rows ``rows`` (all rows if ``None``)
    to ``reference``, and relative to ``original``'s distance when ``original`` is given.

    Returns:
        ``{"distance", "rows"}`` plus ``"original_distance"`` and ``"relative"`` with ``original``.
    """
    r = None if rows is None else check_ids(rows, model.num_nodes, "parameter_distance", "row")
    res = {"distance": _distance(model, reference, r),
           "rows": int(model.num_nodes if r is None else r.numel())}
    if original is not None:
        d0 = _distance(original, reference, r)
        res["original_distance"] = d0
        res["relative"] = res["distance"] / d0 if d0 > 0 else float("nan")
    return res
