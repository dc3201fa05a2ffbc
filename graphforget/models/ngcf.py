r"""NGCF (Wang et al., SIGIR 2019).

.. math::
    E^{(k+1)} = \mathrm{LeakyReLU}\big((\hat{A} + I) E^{(k)} W_1^{(k)}
        + (\hat{A} E^{(k)} \odot E^{(k)}) W_2^{(k)}\big),\qquad
    Z = \big[E^{(0)} \,\|\, \tfrac{E^{(1)}}{\lVert E^{(1)}\rVert} \,\|\, \dots\big],

(biases included, rows of each propagated layer L2-normalised as in the authors' code).
Message dropout is left out so the model is a deterministic function of its parameters, which
unlearning differentiates.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.sparse import sym_spmm
from .base import RecModel


class NGCF(RecModel):
    name = "ngcf"

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 3,
                 init_std: float = 0.1, seed: Optional[int] = None) -> None:
        super().__init__(num_users, num_items, dim, init_std, seed)
        self.num_layers = int(num_layers)
        gen = torch.Generator().manual_seed(seed + 1) if seed is not None else None
        bound = (6.0 / (2 * dim)) ** 0.5  # xavier-uniform
        def w():
            return nn.Parameter((torch.rand(dim, dim, generator=gen) * 2 - 1) * bound)
        self.w1 = nn.ParameterList([w() for _ in range(self.num_layers)])
        self.w2 = nn.ParameterList([w() for _ in range(self.num_layers)])
        self.b1 = nn.ParameterList([nn.Parameter(torch.zeros(dim)) for _ in range(self.num_layers)])
        self.b2 = nn.ParameterList([nn.Parameter(torch.zeros(dim)) for _ in range(self.num_layers)])

    def propagate(self, adj: Optional[Tensor], embedding: Optional[Tensor] = None) -> Tensor:
        x = self.embedding if embedding is None else embedding
        outs = [x]
        for k in range(self.num_layers):
            side = sym_spmm(adj, x)
            x = F.leaky_relu((side + x) @ self.w1[k] + self.b1[k]
                             + (side * x) @ self.w2[k] + self.b2[k], negative_slope=0.2)
            outs.append(F.normalize(x, p=2, dim=1))
        return torch.cat(outs, dim=1)

    def extra_l2(self) -> Tensor:
        return 0.5 * sum(p.pow(2).sum() for n, p in self.named_parameters() if n != "embedding")
