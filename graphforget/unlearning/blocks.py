r"""Per-node diagonal blocks of the objective's Hessian in closed form: AltEraser's block-Newton
steps and the block-Jacobi preconditioner of the influence solves.

**Closed-form block Hessians.** Write a sample's score margin as :math:`x_s`
(BPR: :math:`x = z_u^\top(z_i - z_j)`, loss :math:`-\log\sigma(x)`; BCE: :math:`x = z_u^\top z_i`,
loss :math:`\mathrm{BCE}(\sigma(x), y)`); in both cases :math:`\partial^2 \ell / \partial x^2 =
w_s = \sigma(x_s)(1 - \sigma(x_s))`. With :math:`r_{s,a} = \partial x_s / \partial z_a` for the
sample's nodes (:math:`r_{s,u} = z_i - z_j,\ r_{s,i} = z_u,\ r_{s,j} = -z_u`; BCE
:math:`r_{s,u} = z_i,\ r_{s,i} = z_u`):

* **MF** (:math:`z = e`): :math:`x_s` is linear in each single row and the rows of one sample
  are distinct, so the diagonal block is exactly

  .. math::
      H_{vv} = \sum_{s \ni v} w_s\, r_{s,v} r_{s,v}^\top + \lambda\, n_v I,

  :math:`n_v` = number of samples containing :math:`v`. Within a block (all users, items fixed)
  the users are decoupled, so a user round is an exact Newton step on the user sub-problem.

* **LightGCN** (:math:`Z = P E`, :math:`P = \sum_k \alpha_k \hat{A}^k`): exactly,
  :math:`\partial x_s/\partial e_v = q_{s,v} = \sum_{a \in s} P_{av}\, r_{s,a}` and

  .. math::
      H_{vv} = \sum_s w_s\, q_{s,v} q_{s,v}^\top
          + \sum_s (\sigma(x_s) - 1) \sum_{a \neq b \in s} P_{av} P_{bv}
            \tfrac{\partial^2 x_s}{\partial z_a \partial z_b} + \lambda n_v I

  (BPR; :math:`\partial^2 x/\partial z_u \partial z_i = I = -\partial^2 x/\partial z_u \partial z_j`),
  which gathers every sample within :math:`K` hops of :math:`v`. The second, *cross* term is a
  negative multiple of :math:`I` for a user and its positive items (:math:`\sigma - 1 < 0`,
  :math:`P > 0`), so the exact block is indefinite on a model that is still growing its
  embeddings (``tests/test_alteraser.py`` measures eigenvalues down to :math:`-0.1` on ml100k
  after 10 epochs). We use its Gauss–Newton part, keep the *self* path :math:`a = v` and, with
  ``paths="neighbours"``, the one-hop paths, and drop within-sample cross products:

  .. math::
      H_{vv} \approx c_v^2 G_v + \sum_{a \sim v} (\alpha_1 \hat{A}_{av})^2 G_a + \lambda n_v I,
      \qquad G_a = \sum_{s \ni a} w_s r_{s,a} r_{s,a}^\top,

  with the self-loop coefficient

  .. math::
      c_v = P_{vv} = \sum_{k} \alpha_k (\hat{A}^k)_{vv}
          = \alpha_0 + \sum_{m \ge 1} \alpha_{2m} \lVert \hat{A}^m \mathbf{1}_v \rVert^2

  (odd powers have a zero diagonal on a bipartite graph without self-loops;
  :math:`\hat{A}` symmetric gives :math:`(\hat{A}^{2m})_{vv} = \lVert \hat{A}^m \mathbf{1}_v \rVert^2`).
  :math:`P_{av} = \alpha_1 \hat{A}_{av}` is exact for neighbours when :math:`K \le 2`; paths
  of length :math:`\ge 2` between distinct nodes are dropped (weights
  :math:`O(1/(d_a d_v))`). The result is positive definite, and the damping adaptation
  absorbs the dropped terms.

* **NGCF** (:math:`z_v = [e_v \,\|\, \text{normalised layers}]`): the same self-path rule with
  :math:`\partial z_v / \partial e_v \approx [I; 0; \dots]`, i.e. the first :math:`d`
  coordinates of :math:`r_{s,v}`; the dependence through the non-linear layers is dropped.

The per-sample outer products are summed per block with batched matrix products
(:func:`_accumulate_outer`); the only Python loops run over rounds, the two blocks,
damping increases, degree buckets and propagation layers.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data.sparse import NormalizedAdjacency
from ..models import LightGCN, RecModel
from ..train.objective import SampleSet


def self_loop_coefficients(model: RecModel, adjacency: NormalizedAdjacency, nodes: Tensor) -> Tensor:
    r"""``c_v = ∂z_v/∂e_v`` along the self path for ``nodes`` (``[n]``).

    LightGCN: :math:`c_v = \sum_k \alpha_k (\hat{A}^k)_{vv}` computed as
    :math:`\alpha_0 + \sum_{m} \alpha_{2m} \lVert \hat{A}^m \mathbf{1}_v \rVert^2` with sparse
    products restricted to the columns ``nodes``. MF and NGCF (ego block): ones.
    """
    dtype = model.embedding.dtype
    if not isinstance(model, LightGCN):
        return torch.ones(nodes.numel(), dtype=dtype)
    alpha = model.alpha.detach().cpu().to(dtype)
    c = torch.full((nodes.numel(),), float(alpha[0]), dtype=dtype)
    if model.num_layers < 2 or nodes.numel() == 0:
        return c
    n_all = adjacency.num_nodes
    vals = adjacency.values.to(dtype)
    col_pos = torch.full((n_all,), -1, dtype=torch.long)
    col_pos[nodes] = torch.arange(nodes.numel())
    sel = col_pos[adjacency.col] >= 0
    shape = (n_all, nodes.numel())
    s = torch.sparse_coo_tensor(torch.stack([adjacency.row[sel].long(), col_pos[adjacency.col[sel]]]),
                                vals[sel], shape, check_invariants=False).coalesce()  # Â[:, nodes]
    a = torch.sparse_coo_tensor(torch.stack([adjacency.row, adjacency.col]).long(), vals,
                                (n_all, n_all), check_invariants=False).coalesce()
    for m in range(1, model.num_layers // 2 + 1):
        if m > 1:
            s = torch.sparse.mm(a, s).coalesce()
        sq = torch.zeros(nodes.numel(), dtype=dtype).index_add_(0, s.indices()[1], s.values().pow(2))
        c += alpha[2 * m] * sq
    return c


def margin_terms(model: RecModel, out: Tensor, samples: SampleSet):
    r"""Per-sample curvature and margin gradients.

    Returns ``(nodes [n, k], r [n, k, d'], w [n])``: the homogeneous node ids of each sample,
    :math:`r_{s,a} = \partial x_s / \partial z_a` and :math:`w_s = \sigma(x_s)(1 - \sigma(x_s))`.
    """
    dev = out.device
    nu = model.num_users
    u, i = samples.users.to(dev), samples.items.to(dev)
    zu, zi = out[u], out[i + nu]
    if samples.negatives is not None:
        j = samples.negatives.to(dev)
        zj = out[j + nu]
        x = (zu * (zi - zj)).sum(-1)
        nodes = torch.stack([u, i + nu, j + nu], 1)
        r = torch.stack([zi - zj, zu, -zu], 1)
    else:
        x = (zu * zi).sum(-1)
        nodes = torch.stack([u, i + nu], 1)
        r = torch.stack([zi, zu], 1)
    p = torch.sigmoid(x)
    return nodes, r, p * (1 - p)


def node_curvature(model: RecModel, out: Tensor, samples: SampleSet, nodes: Tensor,
                   buffer: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    r"""Per-node Gauss–Newton curvature w.r.t. the node's *representation* and sample counts.

    Returns ``G [len(nodes), d, d]`` with :math:`G_a = \sum_{s \ni a} w_s r_{s,a} r_{s,a}^\top`
    (the first ``d`` coordinates of :math:`r` — all of them except for NGCF, whose ego block
    they are) and ``n [len(nodes)]``, the number of samples containing each node. ``buffer``
    (``[len(nodes), d, d]``) receives ``G`` when given (see :func:`_accumulate_outer`).
    """
    d = model.dim
    dev = out.device
    pos = torch.full((model.num_nodes,), -1, dtype=torch.long, device=dev)
    pos[nodes.to(dev)] = torch.arange(nodes.numel(), device=dev)
    snodes, r, w = margin_terms(model, out.detach(), samples)
    slot = pos[snodes.reshape(-1)]
    hit = slot >= 0
    slot = slot[hit]
    q = r.reshape(hit.numel(), -1)[hit][:, :d]
    wq = w.repeat_interleave(snodes.shape[1])[hit]
    return _accumulate_outer(q * wq.sqrt().unsqueeze(1), slot, nodes.numel(), buffer), \
        torch.bincount(slot, minlength=nodes.numel()).to(out.dtype)


class BlockCurvature:
    r"""The graph-dependent part of the block Hessians of one node set, built once.

    ``hessians(out, samples)`` returns ``[len(nodes), d, d]``:
    :math:`c_v^2 G_v + [\sum_{a \sim v} P_{av}^2 G_a] + \lambda n_v I` (LightGCN; the bracket
    only for ``paths="neighbours"``), :math:`G_v + \lambda n_v I` for MF (exact) and NGCF.

    Args:
        adjacency: the (new) normalised adjacency, used by LightGCN.
        paths: ``"self"`` or ``"neighbours"`` (LightGCN only).
    """

    def __init__(self, model: RecModel, nodes: Tensor, weight_decay: float,
                 adjacency: Optional[NormalizedAdjacency] = None, paths: str = "neighbours") -> None:
        if paths not in ("self", "neighbours"):
            raise ValueError(f"paths must be 'self' or 'neighbours', got {paths!r}")
        self.model, self.nodes, self.weight_decay = model, nodes, float(weight_decay)
        self.gnodes, self.self_idx, self.coef, self.spread = nodes, None, None, None
        self._buffers: dict[str, Tensor] = {}
        if isinstance(model, LightGCN) and model.num_layers > 0:
            if adjacency is None:
                raise ValueError("LightGCN block Hessians need the adjacency")
            self.coef = self_loop_coefficients(model, adjacency, nodes)
            if paths == "neighbours":
                pos = torch.full((model.num_nodes,), -1, dtype=torch.long)
                pos[nodes] = torch.arange(nodes.numel())
                sel = pos[adjacency.row] >= 0  # entries (v, a), v in the block, a ~ v
                cols = adjacency.col[sel].long()
                self.gnodes, inv = torch.unique(torch.cat([nodes, cols]), return_inverse=True)
                self.self_idx = inv[: nodes.numel()]
                p1 = float(model.alpha[1]) * adjacency.values[sel].to(model.embedding.dtype)
                self.spread = torch.sparse_coo_tensor(  # P_av² ≈ (α₁ Â_av)², sparse [n, |gnodes|]
                    torch.stack([pos[adjacency.row[sel]], inv[nodes.numel():]]), p1.pow(2),
                    (nodes.numel(), self.gnodes.numel()), check_invariants=False).coalesce()

    def _buffer(self, name: str, rows: int, like: Tensor) -> Tensor:
        """A ``[rows, d, d]`` work buffer kept across calls: fresh tensors of this size cost
        more in page faults than the arithmetic that fills them."""
        d = self.model.dim
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] != rows or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffers[name] = like.new_empty(rows, d, d)
        return buf

    def hessians(self, out: Tensor, samples: SampleSet) -> Tensor:
        """The blocks at ``out``; the result is a buffer that the next call overwrites."""
        d, dev = self.model.dim, out.device
        g, n = node_curvature(self.model, out, samples, self.gnodes,
                              self._buffer("gnodes", self.gnodes.numel(), out))
        if self.spread is not None:
            idx = self.self_idx.to(dev)
            g_all, n = g, n[idx]
            g = torch.index_select(g_all, 0, idx, out=self._buffer("nodes", idx.numel(), out))
        if self.coef is not None:
            g.mul_(self.coef.to(dev, out.dtype).pow(2).view(-1, 1, 1))
        if self.spread is not None:
            flat = g.view(-1, d * d)
            torch.addmm(flat, self.spread.to(dev, out.dtype), g_all.view(-1, d * d), out=flat)
        g.diagonal(dim1=1, dim2=2).add_((self.weight_decay * n).unsqueeze(1))
        return g


def block_hessians(model: RecModel, out: Tensor, samples: SampleSet, nodes: Tensor,
                   weight_decay: float, adjacency: Optional[NormalizedAdjacency] = None,
                   paths: str = "neighbours") -> Tensor:
    r"""Closed-form diagonal blocks :math:`H_{vv}` (``[len(nodes), d, d]``) of
    :math:`\sum_s \ell_s` w.r.t. the ego rows ``nodes`` (homogeneous ids) at the
    representations ``out``; exact for MF, approximations for LightGCN / NGCF as in the module
    docstring. One-shot form of :class:`BlockCurvature`."""
    return BlockCurvature(model, nodes, weight_decay, adjacency, paths).hessians(out, samples)


def _accumulate_outer(x: Tensor, slot: Tensor, n: int, out: Optional[Tensor] = None) -> Tensor:
    r""":math:`G_b = \sum_{p: slot_p = b} x_p x_p^\top` for ``n`` blocks, ``[n, d, d]``.

    Rows are grouped by block and blocks bucketed by ``⌈log2 count⌉``; each bucket is padded to
    its width (at most twice the count) and reduced with one ``bmm``, so the work is
    ``O(P d²)`` in dense matrix products with one Python iteration per bucket. Rows and blocks
    move by ``index_copy_`` (contiguous row copies; advanced-index assignment was most of the
    time on Gowalla). ``out``, an ``[n, d, d]`` tensor to overwrite, saves the allocation.
    """
    d, dev = x.shape[1], x.device
    counts = torch.bincount(slot, minlength=n)
    order = torch.argsort(slot, stable=True)
    slot, x = slot[order], x[order]
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(slot.numel(), device=dev) - start[slot]
    bucket = torch.ceil(torch.log2(counts.clamp(min=1).double())).long()
    pair_bucket = bucket[slot]
    h = torch.empty(n, d, d, dtype=x.dtype, device=dev) if out is None else out  # all written below
    h.index_fill_(0, torch.nonzero(counts == 0).view(-1), 0.0)
    local = torch.empty(n, dtype=torch.long, device=dev)
    for b in torch.unique(bucket[counts > 0]).tolist():
        blocks = torch.nonzero((bucket == b) & (counts > 0)).view(-1)
        width = 1 << b
        local[blocks] = torch.arange(blocks.numel(), device=dev)
        pairs = torch.nonzero(pair_bucket == b).view(-1)
        pad = x.new_zeros(blocks.numel() * width, d)
        pad.index_copy_(0, local[slot[pairs]] * width + rank[pairs], x[pairs])
        pad = pad.view(blocks.numel(), width, d)
        h.index_copy_(0, blocks, pad.transpose(1, 2) @ pad)
    return h


__all__ = ["BlockCurvature", "block_hessians", "margin_terms", "node_curvature",
           "self_loop_coefficients"]
