r"""The training objective as a deterministic function of the parameters, for unlearning.

.. math::
    \mathcal{L}(\theta; \mathcal{D}, \hat{A}) = \sum_{s \in \mathcal{D}} \ell_s(\theta; \hat{A})
        + \frac{\delta}{2} \lVert \theta \rVert^2, \qquad
    \ell_s = \ell^{\text{data}}_s + \frac{\lambda}{2} \sum_{v \in s} \lVert e_v \rVert^2,

summed (not averaged) so one sample's influence is on the objective's scale. The per-sample L2
on the ego embeddings of the sample's nodes is the LightGCN-paper regulariser the model was
trained with (``weight_decay`` = λ), so the trained θ is close to a stationary point of this
objective. For BPR each positive ``(u, i)`` gets one negative ``j`` from a seeded draw
(:meth:`SampleSet.bpr`); after deletion the remaining samples keep their negatives, so
``L(θ; D∖ΔD, A_new)`` differs from ``L(θ; D, A)`` only through the deleted samples (direct
term) and the changed adjacency (spillover term).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel
from ..train.sampling import sample_negatives


@dataclass
class SampleSet:
    """Training samples aligned with ``graph.train_edges`` columns.

    ``users``, ``items``: the positive (or labelled) pair; ``negatives`` for BPR, ``labels`` for
    BCE (exactly one of the two is set).
    """

    users: Tensor
    items: Tensor
    negatives: Optional[Tensor] = None
    labels: Optional[Tensor] = None

    @classmethod
    def bpr(cls, graph: InteractionGraph, seed: int = 0) -> "SampleSet":
        gen = torch.Generator().manual_seed(seed)
        u, i = graph.train_edges
        return cls(u, i, negatives=sample_negatives(u, graph.train_edges, graph.num_items, gen))

    @classmethod
    def for_graph(cls, graph: InteractionGraph, loss: str = "auto", seed: int = 0) -> "SampleSet":
        """BCE samples with the graph's labels when labelled (or ``loss="bce"``), else BPR."""
        if loss == "bce" or (loss == "auto" and graph.has_labels):
            if graph.train_labels is None:
                raise ValueError("loss='bce' needs a labelled graph")
            u, i = graph.train_edges
            return cls(u, i, labels=graph.train_labels)
        return cls.bpr(graph, seed)

    def __len__(self) -> int:
        return int(self.users.numel())

    def select(self, rows: Tensor) -> "SampleSet":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return SampleSet(self.users[rows], self.items[rows], pick(self.negatives), pick(self.labels))

    def nodes(self, num_users: int) -> Tensor:
        """Homogeneous node ids touched by each sample, ``[n, 2 or 3]``."""
        cols = [self.users, self.items + num_users]
        if self.negatives is not None:
            cols.append(self.negatives + num_users)
        return torch.stack(cols, 1)


def data_terms(model: RecModel, out: Tensor, samples: SampleSet) -> Tensor:
    """Per-sample data losses ``[n]`` (BPR with the fixed negatives, or BCE with the labels)."""
    dev = out.device
    u, i = samples.users.to(dev), samples.items.to(dev)
    if samples.negatives is not None:
        return model.bpr_terms(out, u, i, samples.negatives.to(dev))
    return model.bce_terms(out, u, i, samples.labels.to(dev))


def node_counts(samples: SampleSet, num_users: int, num_nodes: int) -> Tensor:
    """:math:`c_v`, how often each of ``num_nodes`` rows occurs in the samples, ``[N]``."""
    return torch.bincount(samples.nodes(num_users).reshape(-1), minlength=num_nodes)


def sample_losses(model: RecModel, out: Tensor, ego: Tensor, samples: SampleSet,
                  weight_decay: float) -> Tensor:
    """Per-sample ``ℓ_s`` (data term + ½λ Σ‖e_v‖² over the sample's ego rows), shape ``[n]``.

    Args:
        out: propagated representations ``[N, d']`` (from ``model.propagate(adj, ego)``).
        ego: ego embeddings ``[N, d]`` the representations were computed from.
    """
    nodes = samples.nodes(model.num_users).to(out.device)
    reg = ego.pow(2).sum(-1)[nodes].sum(1)  # squared row norms gathered, not the [n, d] rows
    return data_terms(model, out, samples) + 0.5 * weight_decay * reg


def summed_loss(model: RecModel, out: Tensor, ego: Tensor, samples: SampleSet,
                weight_decay: float) -> Tensor:
    r"""``Σ_s ℓ_s`` — the value of ``sample_losses(...).sum()`` — with the regulariser summed
    per node instead of per sample:

    .. math::
        \sum_s \tfrac{\lambda}{2} \sum_{v \in s} \lVert e_v \rVert^2
            = \tfrac{\lambda}{2} \sum_v c_v \lVert e_v \rVert^2,

    :math:`c_v` the number of times row :math:`v` occurs in the samples. One pass over the
    ``[N, d]`` ego matrix replaces three ``[n, d]`` gathers (and their double backward in
    Hessian-vector products, where those gathers were a third of the time on Gowalla).
    """
    counts = node_counts(samples, model.num_users, ego.shape[0]).to(ego.device, ego.dtype)
    return data_terms(model, out, samples).sum() + 0.5 * weight_decay * (counts * ego.pow(2).sum(-1)).sum()


def total_loss(model: RecModel, adj: Optional[Tensor], ego: Tensor, samples: SampleSet,
               weight_decay: float) -> Tensor:
    """``Σ_s ℓ_s(θ; adj)`` with the ego embeddings ``ego`` (a full ``[N, d]`` matrix)."""
    return summed_loss(model, model.propagate(adj, ego), ego, samples, weight_decay)


def ridge_option(ridge):
    """A method's ``ridge`` option, validated: ``"fitted"`` or a float ``>= 0``."""
    if ridge == "fitted":
        return ridge
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
        raise ValueError(f"ridge must be a number >= 0 or 'fitted', got {ridge!r}")
    return float(ridge)


def fitted_ridge(grad: Tensor, theta: Tensor) -> float:
    r"""The ridge strength :math:`\rho = \max(0, -\langle \nabla\mathcal{L}(\theta), \theta
    \rangle / \lVert \theta \rVert^2)` that best cancels a trained model's gradient.

    The least-squares :math:`\rho` for :math:`\nabla\mathcal{L}(\theta) + \rho\theta \approx 0`:
    a model stopped after a fixed training budget is not stationary — its loss still falls as
    the embeddings grow — and early stopping acts like an extra L2 penalty (for gradient
    descent on a quadratic, stopping at step :math:`t` ≈ ridge :math:`1/(\eta t)`).
    :math:`\rho` is that penalty as seen from :math:`\theta`; it is 0 at a stationary point
    (and whenever the gradient points away from shrinking), so adding
    :math:`\tfrac{\rho}{2}\lVert\theta\rVert^2` changes nothing for a converged model.
    ``grad`` and ``theta`` are the same rows.
    """
    den = float(theta.pow(2).sum())
    return max(0.0, -float((grad * theta).sum()) / den) if den > 0 else 0.0


def minimize_rows(model: RecModel, adj: Optional[Tensor], ego: Tensor, samples: SampleSet,
                  weight_decay: float, rows: Tensor, iters: int, ridge: float = 0.0) -> Tensor:
    r"""Minimise :func:`total_loss` :math:`+ \tfrac{\rho}{2} \lVert E_{rows} \rVert^2`
    (``ridge`` :math:`\rho`, default 0) over ``ego[rows]`` with every other row fixed (L-BFGS,
    strong-Wolfe line search); returns a new ego matrix. Used to build the warm-started
    retrain reference that influence and block-Newton steps approximate."""
    x = ego[rows].clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7,
                            tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        e = ego.clone()
        e[rows] = x
        loss = total_loss(model, adj, e, samples, weight_decay)
        if ridge:
            loss = loss + 0.5 * ridge * x.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = ego.clone()
    out[rows] = x.detach()
    return out
