r"""Normalised bipartite adjacency and a twice-differentiable sparse product.

The propagation graph has ``N = U + I`` nodes, item ``i`` at node ``U + i``. For a training
edge set :math:`\mathcal{E}` the adjacency is

.. math::
    \hat{A} = D^{-1/2} A D^{-1/2}, \qquad
    A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix},

with :math:`R_{ui} = 1` for :math:`(u, i) \in \mathcal{E}`. Nodes of degree 0 get a zero row
(never ``inf``). :class:`NormalizedAdjacency` stores the symmetric COO entries sorted by
``(row, col)``, so a CSR is built without sorting, and an edge deletion only masks entries and
rescales those whose endpoint degrees changed (:meth:`NormalizedAdjacency.remove`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


def index_dtype(num_nodes: int, num_entries: int) -> torch.dtype:
    """``int32`` for node and entry ids below 2³¹ (half the memory of ``int64``), else ``int64``."""
    return torch.int32 if max(num_nodes, num_entries) < 2**31 else torch.long


def _sorted_sym_entries(users: Tensor, items: Tensor, num_users: int, num_nodes: int):
    """Both directions of every edge, sorted by (row, col); ``eid`` maps entry → edge; stored
    with :func:`index_dtype`."""
    e = users.numel()
    row = torch.cat([users, items + num_users])
    col = torch.cat([items + num_users, users])
    eid = torch.arange(e, dtype=torch.long).repeat(2)
    order = torch.argsort(row * num_nodes + col)
    dtype = index_dtype(num_nodes, 2 * e)
    return row[order].to(dtype), col[order].to(dtype), eid[order].to(dtype)


def grouped_csr(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """``torch.sparse_csr`` matrix with ``values`` at ``(rows, cols)``; the entries must already
    be grouped by row in increasing row order (within a row in any order: products only need
    the grouping; duplicates add up)."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols.long(), values, size=shape, check_invariants=False)


@dataclass
class NormalizedAdjacency:
    """Symmetric-normalised adjacency of a bipartite graph, cached as ``torch.sparse`` CSR.

    Attributes:
        row, col: ``[2E]`` entries sorted by ``(row, col)`` (``int32`` below 2³¹ nodes and
            entries, :func:`index_dtype`; index with them directly, or ``.long()`` where an
            operation needs ``int64``).
        eid: the training edge each entry comes from.
        degree: ``FloatTensor [N]`` node degrees.
        num_nodes: ``N``.
    """

    row: Tensor
    col: Tensor
    eid: Tensor
    degree: Tensor
    num_nodes: int
    _csr: Optional[Tensor] = None
    _csr_device: Optional[Tensor] = None
    _sparse_tensor: Optional[object] = None

    @classmethod
    def build(cls, users: Tensor, items: Tensor, num_users: int, num_items: int) -> "NormalizedAdjacency":
        n = num_users + num_items
        row, col, eid = _sorted_sym_entries(users, items, num_users, n)
        degree = torch.bincount(row, minlength=n).to(torch.float32)
        return cls(row=row, col=col, eid=eid, degree=degree, num_nodes=n)

    @property
    def values(self) -> Tensor:
        dinv = self.degree.clamp(min=1.0).rsqrt() * (self.degree > 0)
        return dinv[self.row] * dinv[self.col]

    def csr(self, device: torch.device | str | None = None) -> Tensor:
        """The normalised adjacency as a ``torch.sparse_csr`` tensor (built once, cached)."""
        if self._csr is None:
            self._csr = grouped_csr(self.row, self.col, self.values, (self.num_nodes, self.num_nodes))
        if device is None:
            return self._csr
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" is the current "cuda:N"
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self._csr.device:
            return self._csr
        if self._csr_device is None or self._csr_device.device != device:
            self._csr_device = self._csr.to(device)
        return self._csr_device

    def sparse_tensor(self):
        """``torch_sparse.SparseTensor`` of the same matrix, or ``None`` if not importable."""
        if self._sparse_tensor is None:
            try:
                from torch_sparse import SparseTensor
            except ImportError:  # optional extra graphforget[sparse]
                return None
            self._sparse_tensor = SparseTensor(row=self.row.long(), col=self.col.long(), value=self.values,
                                               sparse_sizes=(self.num_nodes, self.num_nodes),
                                               is_sorted=True)
        return self._sparse_tensor

    def remove(self, edge_mask_keep: Tensor, removed_users: Tensor, removed_items: Tensor,
               num_users: int) -> "NormalizedAdjacency":
        """Adjacency after deleting edges: entries masked, degrees decremented, no re-sort.

        Args:
            edge_mask_keep: ``BoolTensor [E]`` over the old training edges.
            removed_users / removed_items: endpoints of the deleted edges.
        """
        keep = edge_mask_keep[self.eid]
        new_index = (torch.cumsum(edge_mask_keep.long(), 0) - 1).to(self.eid.dtype)  # old → new edge id
        degree = self.degree.clone()
        ends = torch.cat([removed_users, removed_items + num_users])
        degree -= torch.bincount(ends, minlength=self.num_nodes).to(degree.dtype)
        return NormalizedAdjacency(row=self.row[keep], col=self.col[keep],
                                   eid=new_index[self.eid[keep]], degree=degree,
                                   num_nodes=self.num_nodes)


def ragged_arange(counts: Tensor) -> Tensor:
    """``cat([arange(c) for c in counts])`` without a Python loop."""
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(int(counts.sum())) - torch.repeat_interleave(starts, counts)


def khop(adjacency: NormalizedAdjacency, seeds: Tensor, k: int) -> Tensor:
    """Sorted node ids within ``k`` hops of ``seeds`` (seeds included) in ``adjacency``'s graph.

    Frontier expansion over the row-sorted entries: each hop looks up only the frontier's
    neighbour lists (binary search on ``row``), so the cost follows the region, not the graph
    (``torch_geometric.utils.k_hop_subgraph``, whose node subset this equals, masks every edge
    at every hop).
    """
    n = adjacency.num_nodes
    seeds = torch.unique(seeds.view(-1).long())
    mask = torch.zeros(n, dtype=torch.bool)
    mask[seeds] = True
    frontier = seeds
    row, col = adjacency.row.long(), adjacency.col.long()
    for _ in range(max(0, int(k))):
        if frontier.numel() == 0:
            break
        start = torch.searchsorted(row, frontier)
        count = torch.searchsorted(row, frontier, right=True) - start
        nbr = col[torch.repeat_interleave(start, count) + ragged_arange(count)]
        nbr = torch.unique(nbr[~mask[nbr]])
        mask[nbr] = True
        frontier = nbr
    return torch.nonzero(mask).view(-1)


def _spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` into a fresh output: for a CSR ``adj`` ``addmm(out=, beta=0)`` writes the
    product directly (``torch.sparse.mm`` zero-fills and copies an intermediate: about 4x the
    time of the product itself on a 47k-node graph)."""
    if adj.layout != torch.sparse_csr or adj.device.type != "cpu":  # CUDA: cuSPARSE as is
        return torch.sparse.mm(adj, x)
    out = torch.empty(adj.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    return torch.addmm(out, adj, x, beta=0, out=out)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A``; backward is ``A @ grad`` (no transpose), and the
    backward is itself built from this function, so double backward (HVPs) works."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj = adj
        return _spmm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, _SymmetricSpMM.apply(ctx.adj, grad)


def sym_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """Multiply the symmetric sparse matrix ``adj`` (CSR/COO) with dense ``x``."""
    return _SymmetricSpMM.apply(adj, x)
