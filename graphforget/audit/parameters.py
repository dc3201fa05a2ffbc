r"""Distance in parameter space to a reference retrain.

With ego embeddings :math:`E` and a set of rows :math:`S` (node ids, items at ``U + i``; usually
the nodes whose receptive field contains a deleted edge),

.. math::
    d(\theta, \theta^{\mathrm{ref}}) = \lVert E_S - E^{\mathrm{ref}}_S \rVert_F, \qquad
    \mathrm{relative} = \frac{d(\theta^{\mathrm{unlearned}}, \theta^{\mathrm{ref}})}
                             {d(\theta^{\mathrm{original}}, \theta^{\mathrm{ref}})}.

The reference should be the minimiser of the objective after deletion *nearest the original
parameters* (:func:`~graphforget.train.stationary.stationary_finish` on the new graph from the
original): retraining from a fresh seed lands in another basin of a non-convex objective, where
parameter distances mean nothing. Even then the objectives of MF and LightGCN are invariant
under a rotation of the embedding space, :math:`E \mapsto E Q` with :math:`Q^\top Q = I` (scores
and row norms unchanged), so two solvers reach the same scores at rotated parameters; with
``align=True`` each model is first rotated onto the reference (orthogonal Procrustes,
:math:`Q = U V^\top` from the SVD :math:`E_S^\top E^{\mathrm{ref}}_S = U \Sigma V^\top`), giving
the distance modulo that symmetry.
``relative`` is 1 for a method that did not move the affected rows towards the reference, 0 for
one that reached it, and NaN when the original already equals the reference on ``rows``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..models import RecModel
from .utility import check_ids


def procrustes(a: Tensor, b: Tensor) -> Tensor:
    """``a Q`` for the orthogonal ``Q`` minimising ``‖a Q − b‖_F``."""
    u, _, vt = torch.linalg.svd(a.t() @ b)
    return a @ (u @ vt)


@torch.no_grad()
def _distance(a: RecModel, b: RecModel, rows: Optional[Tensor], align: bool = False) -> float:
    ea, eb = a.embedding.detach(), b.embedding.detach().to(a.embedding.device)
    if ea.shape != eb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(ea.shape)} vs {tuple(eb.shape)}")
    if rows is not None:
        r = rows.to(ea.device)
        ea, eb = ea[r], eb[r]
    ea, eb = ea.double(), eb.double()
    if align:
        ea = procrustes(ea, eb)
    return float((ea - eb).norm())


def parameter_distance(model: RecModel, reference: RecModel, rows=None,
                       original: Optional[RecModel] = None, align: bool = False) -> dict:
    """L2 (Frobenius) distance of ``model``'s ego embedding rows ``rows`` (all rows if ``None``)
    to ``reference``, and relative to ``original``'s distance when ``original`` is given;
    ``align``: modulo a rotation of the embedding space (module docstring).

    Returns:
        ``{"distance", "rows"}`` plus ``"original_distance"`` and ``"relative"`` with ``original``.
    """
    r = None if rows is None else check_ids(rows, model.num_nodes, "parameter_distance", "row")
    res = {"distance": _distance(model, reference, r, align),
           "rows": int(model.num_nodes if r is None else r.numel())}
    if original is not None:
        d0 = _distance(original, reference, r, align)
        res["original_distance"] = d0
        res["relative"] = res["distance"] / d0 if d0 > 0 else float("nan")
    return res
