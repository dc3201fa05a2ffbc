r"""Exact local computation on k-hop subgraphs.

A ``K``-layer message-passing model (LightGCN, NGCF) computes layer ``k`` of node ``v`` from layer
``k-1`` of ``v`` and its neighbours. Hence, for a target set :math:`T` and the node set
:math:`V = \mathcal{N}_K(T)` (all nodes within ``K`` hops of :math:`T`), propagating ``K`` layers
on the *induced* sub-adjacency :math:`\hat{A}_{VV}` gives exact representations on :math:`T`:
by induction, layer ``k`` is exact on every node within ``K - k`` hops of :math:`T`, because all
its neighbours lie in :math:`V` and all edges between them are kept. The sub-adjacency must carry
the entries of the *full* normalised adjacency :math:`D^{-1/2} A D^{-1/2}` (global degrees), never
a re-normalisation of the subgraph. Nodes near the boundary of :math:`V` get wrong values, but
they are never read.

For an unlearning request this lets every loss, gradient and Hessian-vector product touch only
the region the deleted edges can influence; :func:`region` falls back to the whole graph when
that region is most of it (then the induced matrix buys nothing).

Samples of the objective are relabelled to region-local ids by :meth:`Region.localise`, keeping
the models' item offset convention (``items + num_users`` indexes the node matrix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..data.sparse import NormalizedAdjacency, grouped_csr, khop
from ..train.objective import SampleSet


def induced_adjacency(adjacency: NormalizedAdjacency, nodes: Tensor, dtype=torch.float32,
                      device: Optional[torch.device | str] = None) -> Tensor:
    """``torch.sparse_csr`` ``[|V|, |V|]`` block of the full normalised adjacency on ``nodes``
    (sorted unique global ids); values use the global degrees."""
    n = adjacency.num_nodes
    g2l = torch.full((n,), -1, dtype=torch.long)
    g2l[nodes] = torch.arange(nodes.numel())
    keep = (g2l[adjacency.row] >= 0) & (g2l[adjacency.col] >= 0)
    row, col = adjacency.row[keep], adjacency.col[keep]
    deg = adjacency.degree
    dinv = deg.clamp(min=1.0).rsqrt() * (deg > 0)
    val = (dinv[row] * dinv[col]).to(dtype)
    lrow, lcol = g2l[row], g2l[col]  # g2l is increasing on nodes, so (row, col) order holds
    csr = grouped_csr(lrow, lcol, val, (nodes.numel(), nodes.numel()))
    return csr if device is None else csr.to(device)


def full_adjacency(adjacency: NormalizedAdjacency, dtype=torch.float32,
                   device: Optional[torch.device | str] = None) -> Tensor:
    """The whole cached CSR, cast to ``dtype`` when needed."""
    csr = adjacency.csr(device)
    return csr if csr.dtype == dtype else csr.to(dtype)


@dataclass
class Region:
    """A node set on which local computation is exact, or the whole graph (``full``).

    Attributes:
        nodes: sorted global ids (``arange(N)`` when ``full``).
        full: whether the region is the whole graph (no relabelling, cached full CSR).
        num_total: ``N``.
    """

    nodes: Tensor
    full: bool
    num_total: int

    def __post_init__(self) -> None:
        self._g2l = torch.full((self.num_total,), -1, dtype=torch.long)
        self._g2l[self.nodes] = torch.arange(self.nodes.numel())

    @property
    def size(self) -> int:
        return int(self.nodes.numel())

    def local(self, ids: Tensor) -> Tensor:
        """Local ids of global ``ids`` (``-1`` outside the region)."""
        return self._g2l[ids.cpu()]

    def adj(self, adjacency: NormalizedAdjacency, dtype=torch.float32, device=None) -> Tensor:
        if self.full:
            return full_adjacency(adjacency, dtype, device)
        return induced_adjacency(adjacency, self.nodes, dtype, device)

    def take(self, matrix: Tensor) -> Tensor:
        """Rows of a global ``[N, d]`` matrix that belong to the region."""
        return matrix if self.full else matrix[self.nodes.to(matrix.device)]

    def localise(self, samples: SampleSet, num_users: int) -> SampleSet:
        """The samples with node ids relabelled to the region, in the encoding the models read:
        ``users`` is the local row, ``items`` / ``negatives`` are ``local row - num_users``
        (so ``items + num_users`` is again the local row). Every node must lie in the region."""
        if self.full:
            return samples
        g = self._g2l
        users = g[samples.users]
        items = g[samples.items + num_users]
        neg = None if samples.negatives is None else g[samples.negatives + num_users]
        if bool((users < 0).any() or (items < 0).any() or (neg is not None and (neg < 0).any())):
            raise ValueError("localise: a sample has a node outside the region")
        return SampleSet(users, items - num_users, None if neg is None else neg - num_users,
                         samples.labels)


def region(adjacency: NormalizedAdjacency, seeds: Tensor, hops: int,
           fallback_fraction: float = 0.5) -> Region:
    """The exact region ``khop(seeds, hops)`` of a ``hops``-layer model's outputs on ``seeds``,
    or the whole graph when it would hold more than ``fallback_fraction`` of the nodes."""
    n = adjacency.num_nodes
    nodes = khop(adjacency, seeds, hops)
    if nodes.numel() > fallback_fraction * n:
        return Region(torch.arange(n), True, n)
    return Region(nodes, False, n)


def node_mask(nodes: Tensor, num_nodes: int) -> Tensor:
    mask = torch.zeros(num_nodes, dtype=torch.bool)
    mask[nodes.cpu()] = True
    return mask


def touching(samples: SampleSet, mask: Tensor, num_users: int) -> Tensor:
    """``BoolTensor [n]``: samples with at least one node (user, item, negative) in ``mask``."""
    if len(samples) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return mask[samples.nodes(num_users)].any(1)


def subgraph_propagate(model, adjacency: NormalizedAdjacency, embedding: Tensor, targets: Tensor,
                       fallback_fraction: float = 1.0) -> Tensor:
    """``model.propagate(Â, embedding)[targets]`` computed on ``khop(targets, K)`` only
    (``K = model.num_layers``); exact, see the module docstring."""
    reg = region(adjacency, targets, model.num_layers, fallback_fraction)
    out = model.propagate(reg.adj(adjacency, embedding.dtype, embedding.device), reg.take(embedding))
    return out[reg.local(targets).to(out.device)]


__all__ = ["khop", "induced_adjacency", "full_adjacency", "Region", "region", "node_mask",
           "touching", "subgraph_propagate"]
