r"""LightGCN (He et al., SIGIR 2020).

.. math::
    E^{(k+1)} = \hat{A} E^{(k)}, \qquad
    Z = \sum_{k=0}^{K} \alpha_k E^{(k)}, \quad \alpha_k = \tfrac{1}{K+1}\ \text{by default},

with :math:`\hat{A} = D^{-1/2} A D^{-1/2}` of the user–item graph. Equal to
``torch_geometric.nn.models.LightGCN`` on the same weights and graph (tested). The sparse
product is :func:`graphforget.data.sparse.sym_spmm`, whose backward reuses the symmetric CSR
(no transpose) and is itself differentiable, so Hessian-vector products flow through
propagation.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..data.sparse import sym_spmm
from .base import RecModel


class LightGCN(RecModel):
    """LightGCN with ``num_layers`` propagation layers and layer weights ``alpha``."""

    name = "lightgcn"
    linear_propagation = True

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 3,
                 alpha: Optional[Sequence[float]] = None, init_std: float = 0.1,
                 seed: Optional[int] = None) -> None:
        super().__init__(num_users, num_items, dim, init_std, seed)
        self.num_layers = int(num_layers)
        if alpha is None:
            alpha = [1.0 / (self.num_layers + 1)] * (self.num_layers + 1)
        if len(alpha) != self.num_layers + 1:
            raise ValueError(f"alpha needs {self.num_layers + 1} weights, got {len(alpha)}")
        self.register_buffer("alpha", torch.tensor(list(alpha), dtype=torch.float32))

    def propagate(self, adj: Optional[Tensor], embedding: Optional[Tensor] = None) -> Tensor:
        x = self.embedding if embedding is None else embedding
        alpha = self.alpha.tolist()
        out = x * alpha[0]
        for k in range(1, self.num_layers + 1):
            x = sym_spmm(adj, x)
            out.add_(x, alpha=alpha[k])  # in place: no [N, d] temporaries (autograd-safe)
        return out
