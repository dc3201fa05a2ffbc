r"""One interface for every recommender: parameters, ``propagate``, ``score`` and losses.

A model holds base ("ego") embeddings :math:`E^{(0)} \in \mathbb{R}^{(U+I) \times d}` as one
parameter ``embedding`` (users first, item ``i`` at row ``U + i``) plus model weights (NGCF).
``propagate(adj, embedding=None)`` maps *any* adjacency and *any* ego embeddings to final node
representations, so unlearning can evaluate the loss under the old and the new graph and take
Hessian-vector products through propagation. Scores are inner products
:math:`\hat{y}_{ui} = \langle z_u, z_i \rangle`.

Training objective (sum reduction, as differentiated by unlearning):

.. math::
    \mathcal{L}(\theta; \mathcal{D}, \hat{A}) = \sum_{s \in \mathcal{D}} \ell_s(\theta; \hat{A})
        + \frac{\lambda}{2} \lVert \theta \rVert^2,

with BPR :math:`\ell_{(u,i,j)} = -\log\sigma(\hat{y}_{ui} - \hat{y}_{uj})` or BCE-with-logits
:math:`\ell_{(u,i,y)} = -y\log\sigma(\hat{y}_{ui}) - (1-y)\log(1-\sigma(\hat{y}_{ui}))`.
Mini-batch training uses the mean over the batch and the LightGCN-paper regulariser on the
batch's ego embeddings, :math:`\frac{\lambda}{2B}\sum_{b}(\lVert e_u\rVert^2 + \lVert e_i\rVert^2 + \lVert e_j\rVert^2)`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RecModel(nn.Module):
    """Base class. Subclasses implement :meth:`propagate`."""

    name = "base"
    num_layers = 0
    #: ``propagate`` is ``Z = P E`` for a fixed symmetric matrix ``P`` (a polynomial in the
    #: adjacency, or ``I``) and the scores/losses are this class's inner-product ones; lets
    #: unlearning take Hessian-vector products in closed form (``unlearning.curvature``).
    linear_propagation = False
    #: the parameters include ego embeddings ``embedding`` (the objective's gradient and the
    #: stationary finish are taken w.r.t. them); ``False`` for a head over frozen models
    has_ego = True

    def __init_subclass__(cls, **kwargs) -> None:
        # a subclass that redefines how representations, scores or losses are computed is not
        # covered by the closed form unless it says so itself
        super().__init_subclass__(**kwargs)
        redefined = {"propagate", "score", "bpr_terms", "bce_terms"} & set(cls.__dict__)
        if redefined and "linear_propagation" not in cls.__dict__:
            cls.linear_propagation = False

    def __init__(self, num_users: int, num_items: int, dim: int = 64, init_std: float = 0.1,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        self.num_users, self.num_items, self.dim = int(num_users), int(num_items), int(dim)
        self.init_std = float(init_std)
        #: the training recipe (``TrainConfig.to_dict()`` plus the measured ``grad_norm_rel``),
        #: set by :func:`graphforget.train.train` and :func:`graphforget.train.load_checkpoint`;
        #: unlearning reads the objective (λ, loss, fixed negatives) and retraining the recipe
        #: from it. ``None`` for a model built by hand.
        self.recipe: Optional[dict] = None
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.embedding = nn.Parameter(torch.randn(self.num_nodes, dim, generator=gen) * init_std)

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the model (stored in checkpoints)."""
        return {"model": self.name, "num_users": self.num_users, "num_items": self.num_items,
                "dim": self.dim, "layers": self.num_layers, "init_std": self.init_std}

    FRESH_BLOCK = 1024  #: rows per seeded block of :meth:`fresh_rows`

    @torch.no_grad()
    def fresh_rows(self, rows: Tensor, seed: int) -> Tensor:
        r"""Rows drawn afresh from the initialisation distribution :math:`\mathcal{N}(0,
        \sigma_0^2)` (``[len(rows), d]``, seeded): what a retrain leaves in the row of a node
        that no training sample touches. Row ``v``'s draw depends only on ``(seed, v)`` — the
        rows are cut into blocks of :attr:`FRESH_BLOCK`, each drawn from a generator seeded by
        ``(seed, block)`` — so forgetting two nodes together or one after the other gives them
        the same rows."""
        rows = rows.view(-1).long().cpu()
        out = torch.empty(rows.numel(), self.dim, dtype=torch.float64)
        block = rows // self.FRESH_BLOCK
        for b in torch.unique(block).tolist():  # one draw per touched block, not per row
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(b))
            draw = torch.randn(self.FRESH_BLOCK, self.dim, generator=gen, dtype=torch.float64)
            hit = block == b
            out[hit] = draw[rows[hit] % self.FRESH_BLOCK]
        return (out * self.init_std).to(self.embedding.device, self.embedding.dtype)

    def propagate(self, adj: Optional[Tensor], embedding: Optional[Tensor] = None) -> Tensor:
        """Final node representations ``[N, d_out]`` for adjacency ``adj``."""
        raise NotImplementedError

    def forward(self, adj: Optional[Tensor], embedding: Optional[Tensor] = None) -> Tensor:
        return self.propagate(adj, embedding)

    def split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """``(user_rows, item_rows)`` of a node matrix."""
        return out[: self.num_users], out[self.num_users:]

    def score(self, users: Tensor, items: Tensor, out: Tensor) -> Tensor:
        """Scores of ``(users[b], items[b])`` pairs from propagated representations ``out``."""
        return (out[users] * out[items + self.num_users]).sum(-1)

    # ---------------------------------------------------------------- losses
    def bpr_terms(self, out: Tensor, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Per-sample BPR losses ``-log σ(ŷ_ui − ŷ_uj)``, as ``-log σ(z_uᵀ(z_i − z_j))`` (one
        gather of ``z_u`` and one product instead of two: the margin is the hot path of
        training and of every Hessian-vector product)."""
        nu = self.num_users
        return -F.logsigmoid((out[users] * (out[pos + nu] - out[neg + nu])).sum(-1))

    def bce_terms(self, out: Tensor, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        """Per-sample BCE-with-logits losses."""
        logits = self.score(users, items, out)
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")

    def batch_l2(self, users: Tensor, *item_sets: Tensor, embedding: Optional[Tensor] = None) -> Tensor:
        """``½ Σ_b (‖e_u‖² + Σ ‖e_i‖²)`` over the batch's ego embeddings (LightGCN paper)."""
        emb = self.embedding if embedding is None else embedding
        reg = emb[users].pow(2).sum()
        for items in item_sets:
            reg = reg + emb[items + self.num_users].pow(2).sum()
        return 0.5 * reg

    def check_graph(self, graph) -> None:
        """``ValueError`` unless ``graph`` has this model's id spaces (a model holding its own
        training edges, :class:`~graphforget.models.ensemble.ShardedRecommender`, also checks
        that they are exactly ``graph``'s)."""
        if (graph.num_users, graph.num_items) != (self.num_users, self.num_items):
            raise ValueError(f"graph has {graph.num_users} users / {graph.num_items} items, the "
                             f"model {self.num_users} / {self.num_items}")

    def extra_l2(self) -> Tensor:
        """``½‖W‖²`` of weights other than the embeddings (NGCF); zero otherwise."""
        return self.embedding.new_zeros(())
