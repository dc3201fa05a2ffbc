"""Matrix factorisation: :math:`\\hat{y}_{ui} = \\langle e_u, e_i \\rangle`, no propagation."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .base import RecModel


class MF(RecModel):
    """Matrix factorisation (BPR-MF / the IFRU "MF" rows). ``propagate`` ignores ``adj``."""

    name = "mf"
    linear_propagation = True

    def propagate(self, adj: Optional[Tensor], embedding: Optional[Tensor] = None) -> Tensor:
        return self.embedding if embedding is None else embedding
