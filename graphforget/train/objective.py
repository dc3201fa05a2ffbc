r"""The training objective as a deterministic function of the parameters.

.. math::
    \mathcal{L}(\theta; \mathcal{D}, \hat{A}) = \sum_{s \in \mathcal{D}} \ell^{\text{data}}_s(\theta; \hat{A})
        + \frac{\lambda}{2} \sum_v c_v \lVert e_v \rVert^2,

summed (not averaged) so one sample's influence is on the objective's scale; :math:`c_v` is the
number of samples node :math:`v` occurs in (user, item or negative) — the LightGCN-paper batch
L2 summed over an epoch, so mini-batch training with ``weight_decay`` = λ descends the same
function up to the factor of the batch size. This is the function the unlearning methods
differentiate, that the stationary finish (:mod:`graphforget.train.stationary`) minimises and
that a retrain with the same recipe minimises again on the remaining data.

**Samples** (:class:`Objective.samples`). Labelled data: one BCE sample ``(u, i, y)`` per
training edge. Implicit data: ``negatives`` = :math:`k` BPR samples ``(u, i, j_r)`` per positive,
with the fixed negatives of :func:`~graphforget.train.sampling.fixed_negatives` (seed
``negative_seed``). One fixed negative per positive makes a poor objective — its minimiser ranks
well only against the few items it was contrasted with — so :math:`k \approx 8` is the default:
the minimiser then matches or beats early stopping with fresh negatives each epoch.

**Deletion** (:func:`split_samples`). Removing edges removes their samples; a user who lost an
item may also see some remaining samples draw another negative (the item is no longer rejected).
So :math:`\mathcal{D}' = \text{kept} \cup \text{added}` and :math:`\mathcal{D} = \text{kept} \cup
\text{removed}`, exactly the samples a retrain on the remaining edges uses.

**Closed forms** (:class:`ScoreCurvature`, :class:`LinearObjective`). For models with
``linear_propagation`` (:math:`Z = P E`, :math:`P` symmetric) the gradient is a score-level
gradient propagated back, :math:`\nabla\mathcal{L} = P\,\nabla_Z\Phi + \lambda c \odot E`, without
building an autograd graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.graph import InteractionGraph, edge_keys
from ..data.sparse import grouped_csr
from ..models import RecModel
from .sampling import fixed_negatives

LOSSES = ("auto", "bpr", "bce")


@dataclass
class SampleSet:
    """Training samples of the objective.

    ``users``, ``items``: the positive (or labelled) pair; ``negatives`` (and ``replicas``, the
    replica index ``r`` of each fixed negative) for BPR, ``labels`` for BCE (exactly one of the
    two is set).
    """

    users: Tensor
    items: Tensor
    negatives: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    replicas: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.users.numel())

    def select(self, rows: Tensor) -> "SampleSet":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return SampleSet(self.users[rows], self.items[rows], pick(self.negatives), pick(self.labels),
                         pick(self.replicas))

    @staticmethod
    def cat(parts: list["SampleSet"]) -> "SampleSet":
        """The samples of ``parts`` one after another (all BPR or all BCE)."""
        join = lambda name: None if getattr(parts[0], name) is None else torch.cat(  # noqa: E731
            [getattr(p, name) for p in parts])
        return SampleSet(join("users"), join("items"), join("negatives"), join("labels"), join("replicas"))

    def nodes(self, num_users: int) -> Tensor:
        """Homogeneous node ids touched by each sample, ``[n, 2 or 3]``."""
        cols = [self.users, self.items + num_users]
        if self.negatives is not None:
            cols.append(self.negatives + num_users)
        return torch.stack(cols, 1)


@dataclass(frozen=True)
class Objective:
    """What defines :math:`\\mathcal{L}`: the loss, λ (``weight_decay``), the number of fixed
    negatives per positive and their seed. Stored in checkpoints with the training config."""

    loss: str = "bpr"
    weight_decay: float = 1e-4
    negatives: int = 8
    negative_seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in ("bpr", "bce"):
            raise ValueError(f"objective loss must be 'bpr' or 'bce', got {self.loss!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 1 <= int(self.negatives) <= 4096:
            raise ValueError(f"negatives must be in 1..4096, got {self.negatives}")

    @classmethod
    def for_graph(cls, graph: InteractionGraph, loss: str = "auto", **fields) -> "Objective":
        """``loss="auto"``: BCE when ``graph`` is labelled, else BPR."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss == "auto":
            loss = "bce" if graph.has_labels else "bpr"
        if loss == "bce" and not graph.has_labels:
            raise ValueError("loss='bce' needs a labelled graph")
        return cls(loss=loss, **{k: v for k, v in fields.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def samples(self, graph: InteractionGraph) -> SampleSet:
        """The objective's samples on ``graph`` (module docstring)."""
        u, i = graph.train_edges
        if self.loss == "bce":
            if graph.train_labels is None:
                raise ValueError("a BCE objective needs a labelled graph")
            return SampleSet(u, i, labels=graph.train_labels)
        k = int(self.negatives)
        users, items = u.repeat(k), i.repeat(k)
        replicas = torch.arange(k).repeat_interleave(u.numel())
        neg = fixed_negatives(users, items, replicas, graph.train_edges, graph.num_items,
                              self.negative_seed)
        return SampleSet(users, items, negatives=neg, replicas=replicas)


@dataclass
class DeletionSamples:
    """The objective's samples before and after a deletion: ``D = kept ∪ removed``,
    ``D' = kept ∪ added`` (``added`` are redrawn negatives of the deleting users)."""

    removed: SampleSet
    added: SampleSet
    kept: SampleSet

    @property
    def remaining(self) -> SampleSet:
        return SampleSet.cat([self.kept, self.added]) if len(self.added) else self.kept


def split_samples(objective: Objective, graph: InteractionGraph, new_graph: InteractionGraph,
                  deleted: Tensor, samples: Optional[SampleSet] = None) -> DeletionSamples:
    """Split ``objective.samples(graph)`` (or ``samples``) by the deletion of ``deleted``
    (``[2, m]``) that turned ``graph`` into ``new_graph``; only the deleting users' samples are
    redrawn, so this costs a fraction of :meth:`Objective.samples`."""
    samples = objective.samples(graph) if samples is None else samples
    ni = graph.num_items
    gone = torch.isin(edge_keys(torch.stack([samples.users, samples.items]), ni), edge_keys(deleted, ni))
    if samples.negatives is None:
        return DeletionSamples(samples.select(gone), samples.select(torch.zeros(0, dtype=torch.long)),
                               samples.select(~gone))
    touched = torch.isin(samples.users, torch.unique(deleted[0])) & ~gone
    rows = torch.nonzero(touched).view(-1)
    redrawn = fixed_negatives(samples.users[rows], samples.items[rows], samples.replicas[rows],
                              new_graph.train_edges, ni, objective.negative_seed)
    changed = redrawn != samples.negatives[rows]
    out = gone.clone()
    out[rows[changed]] = True
    added = samples.select(rows[changed])
    added.negatives = redrawn[changed]
    return DeletionSamples(samples.select(out), added, samples.select(~out))


# ---------------------------------------------------------------------------- losses
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
    per node, :math:`\tfrac{\lambda}{2} \sum_v c_v \lVert e_v \rVert^2`: one pass over the
    ``[N, d]`` ego matrix replaces three ``[n, d]`` gathers (and their double backward)."""
    counts = node_counts(samples, model.num_users, ego.shape[0]).to(ego.device, ego.dtype)
    return data_terms(model, out, samples).sum() + 0.5 * weight_decay * (counts * ego.pow(2).sum(-1)).sum()


def total_loss(model: RecModel, adj: Optional[Tensor], ego: Tensor, samples: SampleSet,
               weight_decay: float) -> Tensor:
    """``Σ_s ℓ_s(θ; adj)`` with the ego embeddings ``ego`` (a full ``[N, d]`` matrix)."""
    return summed_loss(model, model.propagate(adj, ego), ego, samples, weight_decay)


# ---------------------------------------------------------------------------- closed forms
class SampleIncidence:
    r"""Two sparse incidence matrices between ``n`` samples and ``R`` rows, built once per
    sample set: ``B`` (``[n, R]``, :math:`+1` at each sample's item and :math:`-1` at its
    negative), so :math:`z_i - z_j = B Z` in one product, and ``S = [U^\top \; B^\top]``
    (``[R, 2n]``), so the three scatters of a gradient or Hessian product are one CSR product
    (about twice as fast as ``index_add_`` on full Gowalla)."""

    def __init__(self, samples: SampleSet, num_users: int, num_rows: int, dtype: torch.dtype,
                 device) -> None:
        n = len(samples)
        self.n, self.num_rows, self.dtype, self.device = n, num_rows, dtype, device
        self.u = samples.users.to(device)
        i = samples.items.to(device) + num_users
        j = None if samples.negatives is None else samples.negatives.to(device) + num_users
        self.bpr = j is not None
        self.labels = None if j is not None else samples.labels.to(device, dtype).unsqueeze(-1)
        ids = torch.arange(n, device=device)
        one = torch.ones(n, dtype=dtype, device=device)
        b_rows, b_cols, b_vals = (ids, i, one) if j is None else (
            torch.cat([ids, ids]), torch.cat([i, j]), torch.cat([one, -one]))
        self.B = _incidence(b_rows, b_cols, b_vals, (n, num_rows))
        self.S = _incidence(torch.cat([self.u, b_cols]), torch.cat([ids, b_rows + n]),
                            torch.cat([one, b_vals]), (num_rows, 2 * n))


def _incidence(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """``torch.sparse_csr`` with ``values`` at ``(rows, cols)``; duplicates add up."""
    order = torch.argsort(rows, stable=True)
    return grouped_csr(rows[order], cols[order], values[order], shape)


class ScoreCurvature:
    r"""Score-level value, gradient and Hessian products :math:`w\,\Phi(Z)`,
    :math:`w\,\nabla_Z\Phi`, :math:`w\,\nabla^2_Z\Phi \cdot dZ` at fixed ``out``, for
    :math:`\Phi = \sum_s \varphi_s`:

    * BPR, :math:`m = z_u^\top (z_i - z_j)`, :math:`\varphi = -\log\sigma(m)`,
      :math:`\varphi' = \sigma(m) - 1`, :math:`\varphi'' = \sigma(m)(1 - \sigma(m))`. With
      :math:`b = z_i - z_j` and :math:`dm = dz_u^\top b + z_u^\top (dz_i - dz_j)`:

      .. math::
          (H\,dZ)_u = \varphi'' dm\, b + \varphi' (dz_i - dz_j), \qquad
          (H\,dZ)_i = -(H\,dZ)_j = \varphi'' dm\, z_u + \varphi'\, dz_u.

    * BCE-with-logits, :math:`x = z_u^\top z_i`, :math:`\varphi' = \sigma(x) - y`,
      :math:`\varphi'' = \sigma(x)(1 - \sigma(x))`: the same with :math:`b = z_i`, no :math:`j`.

    Args:
        model: supplies ``num_users`` (item ``i`` is row ``num_users + i``).
        out: representations ``[R, d']`` at the expansion point.
        samples: the samples (ids local to ``out``).
        weight: the term's weight :math:`w`.
        incidence: a :class:`SampleIncidence` of ``samples`` to reuse (built when ``None``).
    """

    def __init__(self, model: RecModel, out: Tensor, samples: SampleSet, weight: float = 1.0,
                 incidence: Optional[SampleIncidence] = None) -> None:
        inc = incidence or SampleIncidence(samples, model.num_users, out.shape[0], out.dtype, out.device)
        self.u, self.B, self.S, self.weight = inc.u, inc.B, inc.S, float(weight)
        self.labels = None if inc.bpr else inc.labels
        n = inc.n
        # work buffers: every call reuses them (fresh [n, d] tensors each call cost more in
        # page faults than the arithmetic: they exceed the allocator's mmap threshold)
        self._du: Optional[Tensor] = None  # [dz_u; dz_i - dz_j], allocated by the first product
        self._h = out.new_empty(2 * n, out.shape[1])  # [h_u; h_b], the scatter's operand
        self._out = out.new_empty(out.shape)
        self.a = out.new_empty(n, out.shape[1])
        self.b = out.new_empty(n, out.shape[1])
        self.expand(out)

    def expand(self, out: Tensor) -> "ScoreCurvature":
        """Move the expansion point to ``out`` (same shape), reusing every buffer."""
        torch.index_select(out, 0, self.u, out=self.a)
        self._product(self.B, out, self.b)
        self.margin = torch.einsum("nd,nd->n", self.a, self.b)
        s = torch.sigmoid(self.margin).unsqueeze(-1)
        target = 1.0 if self.labels is None else self.labels
        self.d1 = self.weight * (s - target)
        self.d2 = self.weight * s * (1.0 - s)
        return self

    @staticmethod
    def _product(sparse: Tensor, dense: Tensor, out: Tensor) -> Tensor:
        """``sparse @ dense`` written into ``out`` (``addmm`` with β = 0: ``torch.sparse.mm``
        would zero-fill a fresh result and copy it once more)."""
        return torch.addmm(out, sparse, dense, beta=0, out=out)

    def value(self) -> Tensor:
        r""":math:`w\,\Phi`: :math:`\sum_s \mathrm{softplus}(-m_s)` (BPR) or
        :math:`\sum_s \mathrm{softplus}(x_s) - y_s x_s` (BCE), times the weight."""
        if self.labels is None:
            return self.weight * F.softplus(-self.margin).sum()
        return self.weight * (F.softplus(self.margin) - self.labels.view(-1) * self.margin).sum()

    def gradient(self, out: Optional[Tensor] = None) -> Tensor:
        r""":math:`w \nabla_Z \Phi` at the expansion point, ``[R, d']``: :math:`w\varphi' b` on
        :math:`z_u`, :math:`w\varphi' z_u` on :math:`z_i` and its negative on :math:`z_j`;
        written into ``out`` when given."""
        n = self.a.shape[0]
        torch.mul(self.b, self.d1, out=self._h[:n])
        torch.mul(self.a, self.d1, out=self._h[n:])
        return self._product(self.S, self._h, torch.empty_like(self._out) if out is None else out)

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


class FullObjective:
    r""":math:`E \mapsto (\mathcal{L}(E), \nabla_E\mathcal{L})` on the whole graph for fixed
    samples: closed form for linear-propagation models (one propagation, score-level
    derivatives, one propagation back, incidence matrices built once), autograd otherwise
    (NGCF's weights held fixed). Used by the stationary finish and by stationarity checks."""

    def __init__(self, model: RecModel, graph: InteractionGraph, samples: SampleSet,
                 weight_decay: float, dtype: torch.dtype = torch.float64, device=None) -> None:
        device = device or model.embedding.device
        self.model, self.samples, self.weight_decay = model, samples, float(weight_decay)
        self.adj = graph.adj(device).to(dtype) if model.num_layers > 0 else None
        self.counts = node_counts(samples, model.num_users, model.num_nodes).to(device, dtype)
        self.linear = bool(model.linear_propagation)
        self.incidence = (SampleIncidence(samples, model.num_users, model.num_nodes, dtype, device)
                          if self.linear else None)
        self.evaluations = 0
        self._curv: Optional[ScoreCurvature] = None
        self._grad_z: Optional[Tensor] = None

    def __call__(self, ego: Tensor) -> tuple[float, Tensor]:
        self.evaluations += 1
        reg = 0.5 * self.weight_decay * float((self.counts * ego.pow(2).sum(-1)).sum())
        if self.linear:
            with torch.no_grad():
                out = self.model.propagate(self.adj, ego)
                if self._curv is None:
                    self._curv = ScoreCurvature(self.model, out, self.samples, incidence=self.incidence)
                    self._grad_z = torch.empty_like(out)
                curv = self._curv.expand(out)
                grad = self.model.propagate(self.adj, curv.gradient(self._grad_z))
                grad.addcmul_(self.counts.unsqueeze(-1), ego, value=self.weight_decay)
                return float(curv.value()) + reg, grad
        x = ego.detach().requires_grad_(True)
        with torch.enable_grad():
            data = data_terms(self.model, self.model.propagate(self.adj, x), self.samples).sum()
            (grad,) = torch.autograd.grad(data, x)
        grad.addcmul_(self.counts.unsqueeze(-1), ego, value=self.weight_decay)
        return float(data) + reg, grad


__all__ = ["SampleSet", "Objective", "DeletionSamples", "split_samples", "data_terms", "node_counts",
           "sample_losses", "summed_loss", "total_loss", "SampleIncidence", "ScoreCurvature",
           "FullObjective", "LOSSES"]
