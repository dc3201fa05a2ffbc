r"""Hessian-vector products for linear-propagation models without double backward.

MF and LightGCN compute representations by a *fixed linear map* of the ego embeddings,
:math:`Z = P E` with :math:`P = \sum_{k=0}^{K} \alpha_k \hat{A}^k` (LightGCN; symmetric because
:math:`\hat{A}` is) or :math:`P = I` (MF, and the propagation-free Hessian of paper mode). The
objective of :class:`~graphforget.unlearning.influence.LocalObjective` is then

.. math::
    f(E) = \sum_t w_t \sum_{s \in t} \varphi_s(Z_t) + \frac{\lambda}{2} \sum_v c_v
        \lVert e_v \rVert^2, \qquad Z_t = P_t E,

whose Hessian is, by the chain rule with :math:`P_t` constant,

.. math::
    H = \sum_t w_t\, P_t^\top \big(\nabla^2_Z \Phi_t\big) P_t + \lambda\, \mathrm{diag}(c).

So :math:`Hv` is one propagation of :math:`v`, a closed-form score-level product, and one
propagation back — no autograd graph is built or replayed. The score-level Hessian is a sum
over samples of :math:`\varphi''(m)\,\nabla m \nabla m^\top + \varphi'(m)\,\nabla^2 m`:

* BPR, :math:`m = z_u^\top (z_i - z_j)`, :math:`\varphi = -\log\sigma(m)`,
  :math:`\varphi' = \sigma(m) - 1`, :math:`\varphi'' = \sigma(m)(1 - \sigma(m))`. With
  :math:`b = z_i - z_j` and :math:`dm = dz_u^\top b + z_u^\top (dz_i - dz_j)`:

  .. math::
      (H\,dZ)_u = \varphi'' dm\, b + \varphi' (dz_i - dz_j), \qquad
      (H\,dZ)_i = -(H\,dZ)_j = \varphi'' dm\, z_u + \varphi'\, dz_u.

* BCE-with-logits, :math:`x = z_u^\top z_i`, :math:`\varphi' = \sigma(x) - y`,
  :math:`\varphi'' = \sigma(x)(1 - \sigma(x))`: the same with :math:`b = z_i` and no
  :math:`j`.

The score-level products are :class:`~graphforget.train.objective.ScoreCurvature`'s.
The per-sample constants (:math:`z_u`, :math:`b`, :math:`w\varphi'`, :math:`w\varphi''`) are
computed once at :math:`\theta`, so each product costs :math:`2K` sparse products, two
gathers and one scatter of ``[n, d]`` (the last two as sparse incidence products).
Equal to the double-backward product of
:class:`~graphforget.unlearning.linalg.HessianOperator` (tested); NGCF (non-linear propagation)
uses that operator instead.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..train.objective import ScoreCurvature, node_counts


class LinearModelHessian:
    r"""Matrix-free :math:`v \mapsto (H + \delta I) v` for a
    :class:`~graphforget.unlearning.influence.LocalObjective` of a linear-propagation model, at
    ``theta`` (rows ``S`` of the ego matrix); a drop-in for
    :class:`~graphforget.unlearning.linalg.HessianOperator` (``count``, ``damping``).
    """

    def __init__(self, objective, theta: Tensor, damping: float = 0.0) -> None:
        f = objective
        self.damping, self.count = float(damping), 0
        self._f = f
        theta = theta.detach()
        ego = f.ego(theta)
        outs = {g: f.represent(g, ego) for g in {t.graph for t in f.terms}}
        self._curv: dict[str, list[ScoreCurvature]] = {}
        reg = torch.zeros(ego.shape[0], dtype=ego.dtype, device=ego.device)
        for t in f.terms:
            self._curv.setdefault(t.graph, []).append(ScoreCurvature(f.model, outs[t.graph], t.samples, t.weight))
            reg += t.weight * node_counts(t.samples, f.model.num_users, ego.shape[0]).to(ego.device, ego.dtype)
        self._reg = (f.weight_decay * reg[f.loc]).unsqueeze(-1)
        self._zeros = torch.zeros_like(ego)
        #: :math:`\nabla f(\theta)` (as ``HessianOperator.grad``): score-level gradients
        #: propagated back, :math:`\sum_t w_t P_t^\top \nabla_Z \Phi_t + \lambda c \odot \theta`
        self.grad = self._rows(self._back({g: sum(c.gradient() for c in cs) for g, cs in self._curv.items()}),
                               theta)

    def _back(self, per_graph: dict[str, Tensor]) -> Optional[Tensor]:
        r""":math:`\sum_t P_t^\top x_t` over the graphs (``None`` without terms)."""
        total: Optional[Tensor] = None
        for graph, x in per_graph.items():
            back = self._f.represent(graph, x)  # P symmetric: Pᵀ = P
            total = back if total is None else total + back
        return total

    def _rows(self, hx: Optional[Tensor], v: Tensor) -> Tensor:
        r"""The free rows of ``hx`` (region rows) plus the regulariser's :math:`\lambda c \odot v`,
        shaped like ``v`` (rows outside the region get 0)."""
        f = self._f
        part = v if f.all_inside else v[f.inside]
        out = self._reg * part if hx is None else hx[f.loc] + self._reg * part
        if not f.all_inside:
            full = torch.zeros_like(v)
            full[f.inside] = out
            out = full
        return out

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        x = self._f.ego(v, base=self._zeros)
        hz = {}
        for graph, curvs in self._curv.items():
            dz = self._f.represent(graph, x)
            hz[graph] = curvs[0](dz)
            for c in curvs[1:]:
                hz[graph] = hz[graph] + c(dz)
        hv = self._rows(self._back(hz), v)
        return hv + self.damping * v if self.damping else hv


__all__ = ["LinearModelHessian"]
