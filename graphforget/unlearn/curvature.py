r"""Hessian-vector products for linear-propagation models without double backward.

MF and LightGCN compute representations by a *fixed linear map* of the ego embeddings,
:math:`Z = P E` with :math:`P = \sum_{k=0}^{K} \alpha_k \hat{A}^k` (LightGCN; symmetric because
:math:`\hat{A}` is) or :math:`P = I` (MF, and the propagation-free Hessian of paper mode). The
objective of :class:`~graphforget.unlearn.influence.LocalObjective` is then

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

The per-sample constants (:math:`z_u`, :math:`b`, :math:`w\varphi'`, :math:`w\varphi''`) are
computed once at :math:`\theta`, so each product costs :math:`2K` sparse products, two
gathers and one scatter of ``[n, d]`` (the last two as sparse incidence products).
Equal to the double-backward product of
:class:`~graphforget.unlearn.linalg.HessianOperator` (tested); NGCF (non-linear propagation)
uses that operator instead.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data.sparse import grouped_csr
from ..models import RecModel
from .objective import SampleSet, node_counts


def _incidence(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """The sparse matrix with ``values`` at ``(rows, cols)`` as ``torch.sparse_csr``: entries
    grouped by row in their given order (products only need the grouping), duplicates kept,
    so they add up in products."""
    order = torch.argsort(rows, stable=True)
    return grouped_csr(rows[order], cols[order], values[order], shape)


class ScoreCurvature:
    r"""The score-level Hessian :math:`w\,\nabla^2_Z \sum_s \varphi_s(Z)` at fixed ``out``.

    Gathers and scatters between the ``n`` samples and the ``R`` rows go through two sparse
    incidence matrices built once: ``B`` (``[n, R]``, :math:`+1` at each sample's item and
    :math:`-1` at its negative), so :math:`dz_i - dz_j = B\,dZ` in one product, and
    ``S = [U^\top \; B^\top]`` (``[R, 2n]``), so the three scatters of a product are one
    CSR product. On full Gowalla that is about twice as fast as ``index_add_``, which adds
    row by row.

    Args:
        model: supplies ``num_users`` (item ``i`` is row ``num_users + i``).
        out: representations ``[R, d']`` at the expansion point.
        samples: BPR (with negatives) or BCE (with labels) samples, ids local to ``out``.
        weight: the term's weight :math:`w`.
    """

    def __init__(self, model: RecModel, out: Tensor, samples: SampleSet, weight: float = 1.0) -> None:
        dev, nu = out.device, model.num_users
        r, n = out.shape[0], len(samples)
        self.u = samples.users.to(dev)
        i = samples.items.to(dev) + nu
        j = None if samples.negatives is None else samples.negatives.to(dev) + nu
        ids = torch.arange(n, device=dev)
        one = torch.ones(n, dtype=out.dtype, device=dev)
        b_rows, b_cols, b_vals = (ids, i, one) if j is None else (
            torch.cat([ids, ids]), torch.cat([i, j]), torch.cat([one, -one]))
        self.B = _incidence(b_rows, b_cols, b_vals, (n, r))
        self.S = _incidence(torch.cat([self.u, b_cols]), torch.cat([ids, b_rows + n]),
                            torch.cat([one, b_vals]), (r, 2 * n))
        # work buffers: every product reuses them (fresh [n, d] tensors each call cost more in
        # page faults than the arithmetic: they exceed the allocator's mmap threshold)
        self._du: Optional[Tensor] = None  # [dz_u; dz_i - dz_j], allocated by the first product
        self._h = out.new_empty(2 * n, out.shape[1])  # [h_u; h_b], the scatter's operand
        self._out = out.new_empty(out.shape)
        self.a = torch.index_select(out, 0, self.u)
        self.b = self._product(self.B, out, out.new_empty(n, out.shape[1]))
        s = torch.sigmoid(torch.einsum("nd,nd->n", self.a, self.b)).unsqueeze(-1)
        target = 1.0 if j is not None else samples.labels.to(dev, out.dtype).unsqueeze(-1)
        self.d1 = weight * (s - target)
        self.d2 = weight * s * (1.0 - s)

    @staticmethod
    def _product(sparse: Tensor, dense: Tensor, out: Tensor) -> Tensor:
        """``sparse @ dense`` written into ``out`` (``addmm`` with β = 0: ``torch.sparse.mm``
        would zero-fill a fresh result and copy it once more)."""
        return torch.addmm(out, sparse, dense, beta=0, out=out)

    def gradient(self) -> Tensor:
        r""":math:`w \nabla_Z \Phi` at the expansion point, ``[R, d']``: :math:`w\varphi' b` on
        :math:`z_u`, :math:`w\varphi' z_u` on :math:`z_i` and its negative on :math:`z_j`."""
        n = self.a.shape[0]
        torch.mul(self.b, self.d1, out=self._h[:n])
        torch.mul(self.a, self.d1, out=self._h[n:])
        return self._product(self.S, self._h, torch.empty_like(self._out))

    def __call__(self, dz: Tensor) -> Tensor:
        r""":math:`w \nabla^2_Z \Phi \cdot dZ`, shape of ``dz``; the result is a buffer that
        the next call overwrites."""
        n = self.a.shape[0]
        if self._du is None:
            self._du = torch.empty_like(self._h)
        du, db, hu, hb = self._du[:n], self._du[n:], self._h[:n], self._h[n:]
        torch.index_select(dz, 0, self.u, out=du)
        self._product(self.B, dz, db)
        dm = torch.einsum("nd,nd->n", du, self.b) + torch.einsum("nd,nd->n", self.a, db)
        c = self.d2 * dm.unsqueeze(-1)
        torch.mul(self.b, c, out=hu).addcmul_(self.d1, db)
        torch.mul(self.a, c, out=hb).addcmul_(self.d1, du)
        return self._product(self.S, self._h, self._out)


class LinearModelHessian:
    r"""Matrix-free :math:`v \mapsto (H + \delta I) v` for a
    :class:`~graphforget.unlearn.influence.LocalObjective` of a linear-propagation model, at
    ``theta`` (rows ``S`` of the ego matrix); a drop-in for
    :class:`~graphforget.unlearn.linalg.HessianOperator` (``count``, ``damping``).
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
        """The free rows of ``hx`` (region rows) plus the regulariser's :math:`\lambda c \odot v`,
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


__all__ = ["ScoreCurvature", "LinearModelHessian"]
