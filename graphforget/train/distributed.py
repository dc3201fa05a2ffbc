r"""Beyond one machine: data-parallel training and a sharded objective on ``torch.distributed``.

The engine is PyTorch's own (:mod:`torch.distributed`: gloo on CPU, NCCL on GPU, one process
per rank, launched by ``torchrun`` or spawned). Nothing here is used unless a process group is
initialised with more than one rank: with world size 1 every helper is the identity and
:func:`graphforget.train.train` takes the unchanged single-process path.

**Data-parallel training** (:class:`DistributedTrainer`). Every rank holds the whole model —
the embedding table ``[(U+I), d]`` (plus NGCF's weights) — and the whole normalised adjacency,
and draws the *same* global batch order and per-epoch negatives from the same seed as one
process would. Rank ``r`` of ``W`` takes the contiguous slice ``[B r / W, B (r+1) / W)`` of each
global mini-batch of ``B`` rows, propagates the full graph (replicated: a ``K``-layer
propagation cannot be cut by samples), and takes its share of the single-process loss,

.. math::
    \mathcal{L}_r = \frac{n_r}{B}\,\mathcal{L}_{\text{batch}}(\text{rows}_r), \qquad
    \sum_r \mathcal{L}_r = \frac{1}{B}\sum_{b}\ell_b + \lambda\Big(\frac{\text{reg}}{B}
    + \text{extra}\Big) = \mathcal{L}_{\text{batch}}(\text{rows}),

(the batch loss is a mean over rows plus a per-row regulariser over ``B`` plus a constant, so
the shares ``n_r / B`` add up to it exactly). One ``all_reduce`` (sum) of the flattened
gradients before every optimiser step (an optimiser step pre-hook) gives each rank the
single-process gradient; Adam then takes the same step everywhere, so the replicas stay equal
(bitwise: an all-reduce hands every rank the same sums) and early stopping, which evaluates
the replicated model on each rank, stops everyone at the same epoch. The epoch's loss is summed
over the ranks once per epoch; the ``max_seconds`` decision is an all-reduce too (any rank out
of time stops all: a rank leaving alone would hang the others in their next all-reduce). Only
rank 0 logs and writes the checkpoint.

**Sharded objective** (:class:`ShardedObjective`, :class:`DistributedOperator`). The objective
unlearning differentiates is a sum over samples (:mod:`graphforget.train.objective`), so rank
``r`` owns the contiguous slice :func:`shard_range` of the sample list (its node counts
:math:`c_v` are those of its slice, which add up to the global ones), computes its part of
value, gradient and Hessian-vector product with the full replicated table and adjacency, and
one ``all_reduce`` sums them. :class:`DistributedOperator` turns any per-rank operator
(:class:`ObjectiveHessian`, or unlearning's ``LinearModelHessian`` / ``HessianOperator`` built
on a shard of the samples) into the global one; the damping is added once, after the sum.
Every rank then holds the same right-hand side and the same products, so CG (or PCG, Lanczos,
LiSSA) runs identically on every rank — same iterates, same stopping decision — with one
all-reduce of the parameter block per product.

Plan for N machines
-------------------
* **Replicated**: the embedding table ``E`` (``(U+I)·d`` floats: 1.1 M for Gowalla's
  70 839 nodes at ``d = 16``, 4.5 M at ``d = 64``), NGCF's weights, the normalised adjacency (CSR, ``2|E|``
  non-zeros) and the propagation ``Z = P E`` — each rank propagates the whole graph. This holds
  while one machine's memory holds the table and the graph (all public benchmark graphs do);
  beyond that the table must be row-sharded and the propagation becomes a distributed SpMM
  with halo exchange, which this module does not do.
* **Sharded**: the samples — the rows of each global mini-batch in training, the contiguous
  sample slices of the objective in the Newton solves. Sample work (gathers, margins, scatters
  of ``[n, d]``) divides by ``W``; the propagation (``2K`` SpMMs per step or product) does not.
* **Communication per step**: one all-reduce of the table's gradient, ``(U+I)·d`` floats (plus
  NGCF's ``K·2·d²``; a ring all-reduce moves about ``2·(W-1)/W`` times that per rank), and one
  scalar per epoch. Per Hessian-vector product the same: one all-reduce of a ``[|S|, d]`` (or
  ``[(U+I), d]``) block; CG's inner products are then local (every rank holds the same vectors).
  Speed-up therefore needs the sample work to dominate both the replicated propagation and the
  all-reduce: many samples per node (``negatives = 8`` fixed negatives per positive), small
  ``d``, a fast interconnect (NCCL on GPUs). On a 2-core machine it does not
  (the distributed benchmark under ``experiments/`` measures it).
* **Deletion service** (single writer): the service process stays the only writer of the
  ledger and the model store. For a distributed solve it runs as rank 0 of a standing process
  group whose other ranks wait in a loop on a broadcast: per request rank 0 broadcasts the
  deleted edge list (and the model version id, which every rank loads read-only from the store),
  every rank rebuilds the same :class:`~graphforget.unlearning.influence.InfluenceProblem`
  (deterministic: same graph, same fixed negatives), shards its sample terms with
  :func:`shard_samples`, wraps its per-rank Hessian operator and gradient with
  :class:`DistributedOperator` / :func:`all_reduce_sum`, and runs the same CG; rank 0 alone
  applies ``θ ← θ − Δ``, writes the new version and commits the ledger entry, then broadcasts
  the new version id (the other ranks' copies are replaced from the store, never written).
  A rank that dies mid-solve makes the collective fail on rank 0, which aborts the request
  before anything is committed (the ledger's crash rules apply unchanged).

The unlearners use these blocks under a process group: IF / IFRU through
``LocalObjective(distributed=True)`` (:mod:`graphforget.unlearning.influence`), AltEraser by
sharding its region's samples, SISA / RecEraser by dealing shards to ranks
(:func:`graphforget.train.sharding.retrain_shards`). What this module does not do yet: the
service loop above (``Forgetter`` as rank 0 of a standing group), the stationary finish and
validation run replicated (correct, not faster), and ``--l2 auto`` under ``torchrun`` trains
every grid point replicated on every rank.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from ..data.graph import InteractionGraph
from ..models import RecModel
from .objective import FullObjective, SampleSet, ScoreCurvature, node_counts, total_loss
from .trainer import TrainConfig, Trainer


# ---------------------------------------------------------------------------- process group
def is_distributed(group=None) -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank(group=None) -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def world_size(group=None) -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def barrier(group=None) -> None:
    """``dist.barrier`` when distributed, else nothing."""
    if is_distributed(group):
        dist.barrier(group)


def init_from_env(backend: Optional[str] = None) -> bool:
    """Initialise the default process group from ``torchrun``'s environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) when ``WORLD_SIZE > 1``; returns whether it
    did. The backend is ``"gloo"`` without CUDA, else ``"cpu:gloo,cuda:nccl"`` (CPU tensors on
    gloo, CUDA tensors on NCCL) with the device ``LOCAL_RANK`` made current, so ``--device cuda``
    means this rank's GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend or ("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"))
    return True


def shutdown() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- collectives
def shard_range(n: int, rank_: Optional[int] = None, world: Optional[int] = None,
                group=None) -> tuple[int, int]:
    """``[lo, hi)``: rank ``rank_``'s contiguous slice of ``n`` rows,
    ``lo = n·r // W`` (slices differ in size by at most one; empty when ``n < W``)."""
    r = rank(group) if rank_ is None else int(rank_)
    w = world_size(group) if world is None else int(world)
    if not 0 <= r < w:
        raise ValueError(f"rank {r} outside a world of {w}")
    return n * r // w, n * (r + 1) // w


def shard_samples(samples: SampleSet, rank_: Optional[int] = None, world: Optional[int] = None,
                  group=None) -> SampleSet:
    """This rank's contiguous slice of ``samples`` (:func:`shard_range`)."""
    lo, hi = shard_range(len(samples), rank_, world, group)
    return samples.select(torch.arange(lo, hi))


def all_reduce_sum(tensor: Tensor, group=None) -> Tensor:
    """``Σ_ranks tensor``, a new tensor (``tensor`` itself is left as it is); the identity
    without a process group."""
    if not is_distributed(group):
        return tensor
    out = tensor.detach().clone(memory_format=torch.contiguous_format)
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def all_reduce_gradients(params: Iterable[Tensor], group=None) -> None:
    """Sum ``p.grad`` over the ranks for every parameter, in one all-reduce per dtype/device
    (the flattened gradients plus one presence flag per parameter: a parameter without a
    gradient on every rank keeps ``grad = None``, so Adam skips it as in one process)."""
    if not is_distributed(group):
        return
    buckets: dict = {}
    for p in params:
        if p.requires_grad:
            buckets.setdefault((p.dtype, p.device), []).append(p)
    for (dtype, device), ps in buckets.items():
        parts = []
        for p in ps:
            if p.grad is not None and p.grad.is_sparse:
                raise ValueError("all_reduce_gradients: sparse gradients are not supported")
            parts.append(torch.zeros(p.numel(), dtype=dtype, device=device) if p.grad is None
                         else p.grad.reshape(-1))
        parts.append(torch.tensor([float(p.grad is not None) for p in ps], dtype=dtype, device=device))
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flags = flat[-len(ps):].tolist()
        offset = 0
        for p, present in zip(ps, flags):
            n = p.numel()
            if present > 0:
                g = flat[offset:offset + n].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            offset += n


@torch.no_grad()
def broadcast_parameters(model: torch.nn.Module, src: int = 0, group=None) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (replicas start equal even for
    a model built without a seed)."""
    if not is_distributed(group):
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src, group=group)


# ---------------------------------------------------------------------------- training
class DistributedTrainer(Trainer):
    """Data-parallel :class:`~graphforget.train.trainer.Trainer` over a process group (module
    docstring): same batches, seed and Adam steps as one process, each rank computing the loss
    of its slice of every batch; gradients summed by one all-reduce before each step.

    With world size 1 it is the plain trainer. Every rank must call :meth:`fit` with the same
    model (it is broadcast from rank 0 first), graph and config.
    """

    def __init__(self, config: Optional[TrainConfig] = None, group=None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.group = group
        self.rank, self.world = rank(group), world_size(group)
        if self.rank != 0:  # one log, one progress stream
            self.config = dataclasses.replace(self.config, progress=False, log_path=None)

    def fit(self, model: RecModel, graph: InteractionGraph):
        model.to(self.config.device)
        broadcast_parameters(model, 0, self.group)
        return super().fit(model, graph)

    def _optimizer(self, model: RecModel) -> torch.optim.Optimizer:
        opt = super()._optimizer(model)
        if self.world > 1:
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.register_step_pre_hook(lambda *_: all_reduce_gradients(params, self.group))
        return opt

    def batch_loss(self, model: RecModel, graph: InteractionGraph, adj, rows: Tensor,
                   negatives: Optional[Tensor], kind: str) -> Tensor:
        """This rank's share ``n_r / B`` of the single-process loss of the global batch ``rows``."""
        if self.world == 1:
            return super().batch_loss(model, graph, adj, rows, negatives, kind)
        n = rows.numel()
        lo, hi = shard_range(n, self.rank, self.world)
        if hi == lo:  # fewer rows than ranks: a zero gradient for every parameter
            return sum((p * 0.0).sum() for p in model.parameters())
        part = super().batch_loss(model, graph, adj, rows[lo:hi],
                                  None if negatives is None else negatives[lo:hi], kind)
        return part * ((hi - lo) / n)

    def _reduce_loss(self, total: float) -> float:
        if self.world == 1:
            return total
        t = torch.tensor([total], dtype=torch.float64, device=self.config.device)
        return float(all_reduce_sum(t, self.group))

    def _any_rank(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.config.device)
        return float(all_reduce_sum(t, self.group)) > 0


# ---------------------------------------------------------------------------- Newton solves
class ObjectiveHessian:
    r"""Matrix-free :math:`v \mapsto (\nabla^2_E f + \delta I) v` of the whole-graph objective
    :math:`f(E) = \sum_{s \in \text{samples}} \ell_s(E; \hat{A}) + \tfrac{\lambda}{2}\sum_v c_v
    \lVert e_v\rVert^2` at the ego matrix ``ego`` (NGCF's weights held fixed): closed form for
    linear-propagation models (:math:`P^\top \nabla^2_Z\Phi\, P + \lambda\,\mathrm{diag}(c)`,
    one propagation each way, :class:`~graphforget.train.objective.ScoreCurvature`), double
    backward otherwise. The per-rank operator of :class:`ShardedObjective` when ``samples`` is
    a shard; a drop-in for unlearning's operators (``grad``, ``count``, ``damping``)."""

    def __init__(self, model: RecModel, graph: InteractionGraph, samples: SampleSet,
                 weight_decay: float, ego: Tensor, damping: float = 0.0,
                 dtype: torch.dtype = torch.float64, device=None) -> None:
        device = device or ego.device
        self.damping, self.count = float(damping), 0
        self.linear = bool(model.linear_propagation)
        if not self.linear:
            model = _float_copy(model, dtype, device)
        self.model = model
        self.adj = graph.adj(device).to(dtype) if model.num_layers > 0 else None
        ego = ego.detach().to(device, dtype)
        counts = node_counts(samples, model.num_users, model.num_nodes).to(device, dtype)
        self._reg = (float(weight_decay) * counts).unsqueeze(-1)
        if self.linear:
            with torch.no_grad():
                out = model.propagate(self.adj, ego)
                self._curv = ScoreCurvature(model, out, samples)
                self.grad = model.propagate(self.adj, self._curv.gradient()) + self._reg * ego
            return
        self._theta = ego.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = total_loss(model, self.adj, self._theta, samples, weight_decay)
            (self._g,) = torch.autograd.grad(loss, self._theta, create_graph=True)
        self.grad = self._g.detach()

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        if self.linear:
            with torch.no_grad():
                hz = self._curv(self.model.propagate(self.adj, v))
                hv = self.model.propagate(self.adj, hz) + self._reg * v
        else:
            (hv,) = torch.autograd.grad(self._g, self._theta, grad_outputs=v, retain_graph=True,
                                        allow_unused=True)
            hv = torch.zeros_like(v) if hv is None else hv.detach()
        return hv + self.damping * v if self.damping else hv


def _float_copy(model: RecModel, dtype: torch.dtype, device) -> RecModel:
    import copy

    return copy.deepcopy(model).to(device, dtype)


class DistributedOperator:
    r"""The global operator :math:`v \mapsto (\sum_r H_r + \delta I) v` from this rank's
    :math:`H_r` (``local``, any callable ``v -> H_r v``; its own damping is set to 0 so that
    :math:`\delta` is added once, after the sum). ``grad`` is :math:`\sum_r g_r` when ``local``
    has a ``grad``. Attributes ``damping`` (settable, as the unlearners' solvers do) and
    ``count`` as unlearning's operators: a drop-in for CG, PCG, Lanczos and LiSSA, which then
    run identically on every rank. One all-reduce per product."""

    def __init__(self, local: Callable[[Tensor], Tensor], damping: float = 0.0, group=None) -> None:
        self.local, self.group = local, group
        if hasattr(local, "damping"):
            local.damping = 0.0
        self.damping, self.count = float(damping), 0
        g = getattr(local, "grad", None)
        self.grad = None if g is None else all_reduce_sum(g, group)

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        hv = all_reduce_sum(self.local(v), self.group)
        return hv + self.damping * v if self.damping else hv


class ShardedObjective:
    r"""The training objective :math:`\mathcal{L}(E) = \sum_r \mathcal{L}_r(E)` with this rank's
    term :math:`\mathcal{L}_r` on its contiguous slice of ``samples`` (pass the *global* sample
    list, the same on every rank): ``__call__(ego) -> (value, grad)`` like
    :class:`~graphforget.train.objective.FullObjective` (one all-reduce of the gradient and the
    value together) and :meth:`hessian_operator`. Every rank must make the same calls."""

    def __init__(self, model: RecModel, graph: InteractionGraph, samples: SampleSet,
                 weight_decay: float, dtype: torch.dtype = torch.float64, device=None,
                 group=None) -> None:
        self.model, self.graph, self.group = model, graph, group
        self.weight_decay, self.dtype = float(weight_decay), dtype
        self.device = device or model.embedding.device
        self.samples = shard_samples(samples, group=group)
        self.local = FullObjective(model if model.linear_propagation else
                                   _float_copy(model, dtype, self.device),
                                   graph, self.samples, weight_decay, dtype, self.device)
        self.evaluations = 0

    def __call__(self, ego: Tensor) -> tuple[float, Tensor]:
        self.evaluations += 1
        value, grad = self.local(ego)
        flat = torch.cat([grad.reshape(-1), grad.new_tensor([value])])
        flat = all_reduce_sum(flat, self.group)
        return float(flat[-1]), flat[:-1].view_as(grad)

    def gradient(self, ego: Tensor) -> Tensor:
        """:math:`\\nabla\\mathcal{L}(E)` (global)."""
        return self(ego)[1]

    def hessian_operator(self, ego: Tensor, damping: float = 0.0) -> DistributedOperator:
        """The global :math:`v \\mapsto (\\nabla^2\\mathcal{L}(E) + \\delta I) v` at ``ego``."""
        local = ObjectiveHessian(self.model, self.graph, self.samples, self.weight_decay, ego,
                                 dtype=self.dtype, device=self.device)
        return DistributedOperator(local, damping, self.group)


__all__ = ["is_distributed", "rank", "world_size", "barrier", "init_from_env", "shutdown",
           "shard_range", "shard_samples", "all_reduce_sum", "all_reduce_gradients",
           "broadcast_parameters", "DistributedTrainer", "ObjectiveHessian", "DistributedOperator",
           "ShardedObjective"]
