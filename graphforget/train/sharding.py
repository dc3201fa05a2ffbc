r"""Shard training for the partition-based unlearning baselines (SISA, RecEraser).

Partitioning the training interactions :math:`\mathcal{D}` into ``S`` disjoint shards:

* ``"random"`` (SISA, Bourtoule et al. 2021): a seeded uniform random permutation dealt out
  round-robin, so every shard gets :math:`\lfloor E/S \rfloor` or :math:`\lceil E/S \rceil` edges.
* ``"kmeans"`` (RecEraser's interaction-based balanced partition, InBP, Chen et al. 2022):
  interaction :math:`(u, i)` is the point :math:`p_{ui} = [e_u \| e_i]` of pretrained user and
  item representations, so :math:`\lVert p_{ui} - p_{vj} \rVert^2 = \lVert e_u - e_v\rVert^2 +
  \lVert e_i - e_j\rVert^2` is the paper's interaction distance. Starting from ``S`` random
  interactions as anchors, each iteration assigns interactions to anchors under the capacity
  :math:`t = \lceil E/S \rceil + \lfloor \text{slack} \cdot \lceil E/S \rceil \rfloor` and moves
  every anchor to the mean of its interactions.

  The paper's assignment sorts all (interaction, anchor) pairs by distance and greedily takes a
  pair when the interaction is free and the anchor below capacity. Since both sides rank pairs
  by the same distance, that greedy result is the unique stable matching (absent ties), which
  :func:`capacitated_assign` computes *vectorised* by deferred acceptance: in each round every
  unplaced interaction proposes to its best anchor not yet tried, and each anchor keeps its
  ``t`` closest among held and new proposers (one sort per round, no loop over edges).

Training: :func:`fit_sharded` partitions, trains every shard model from scratch on its own
shard graph (same node ids, only that shard's training edges, the full validation/test splits)
with its own seed, optionally in parallel processes (``spawn`` start method; workers receive
edge tensors and plain dicts and send back state dicts), and for RecEraser trains the attention
aggregator with the shards frozen. :func:`retrain_shards` and :func:`train_aggregator` are what
unlearning calls after deleting edges.

Caveat (as in the RecEraser paper): the ``kmeans`` partition itself is computed from
embeddings pretrained on all data, so the *assignment* of the remaining edges can depend on
deleted ones; the parameters of retrained shards and of the retrained aggregator do not.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.graph import InteractionGraph
from ..models import build_model
from ..models.base import RecModel
from ..models.ensemble import ShardedRecommender
from . import distributed as gfd
from .trainer import TrainConfig, Trainer, train

STRATEGIES = ("random", "kmeans")


# ---------------------------------------------------------------------- partitioning
def random_partition(num_edges: int, num_shards: int, seed: int = 0) -> Tensor:
    """Uniform balanced random shard of each of ``num_edges`` edges, ``LongTensor [E]``.

    A seeded permutation is dealt round-robin: shard sizes differ by at most one.
    """
    _check_sizes(num_edges, num_shards)
    perm = torch.randperm(num_edges, generator=torch.Generator().manual_seed(int(seed)))
    assignment = torch.empty(num_edges, dtype=torch.long)
    assignment[perm] = torch.arange(num_edges) % num_shards
    return assignment


def shard_capacity(num_edges: int, num_shards: int, slack: float = 0.0) -> int:
    """Per-shard capacity ``⌈E/S⌉ + ⌊slack·⌈E/S⌉⌋`` of the balanced partition."""
    if slack < 0:
        raise ValueError(f"slack must be >= 0, got {slack}")
    base = -(-int(num_edges) // int(num_shards))
    return base + int(slack * base)


def capacitated_assign(dist: Tensor, capacity: int) -> Tensor:
    """Assign ``E`` points to ``S`` centres under ``capacity``; ``dist [E, S]`` (smaller = closer).

    Returns ``LongTensor [E]``: the stable matching of points proposing to centres that each
    keep their ``capacity`` closest proposers (deferred acceptance, vectorised per round). For
    distinct distances this equals the greedy "take the globally closest free pair" assignment
    of RecEraser's InBP. Ties are broken by centre id (for a point) and, for a centre, in favour
    of points it already holds, then by point id; distances are compared in float32.
    Raises ``ValueError`` if ``capacity · S < E`` or a distance is not finite.
    """
    if dist.dim() != 2:
        raise ValueError(f"dist must be [E, S], got shape {tuple(dist.shape)}")
    num_points, num_centres = dist.shape
    if capacity * num_centres < num_points:
        raise ValueError(f"capacity {capacity} x {num_centres} shards < {num_points} points")
    dist = dist.detach().cpu()
    if not bool(torch.isfinite(dist).all()):
        raise ValueError("dist contains NaN or infinite values")
    pref = torch.argsort(dist, dim=1, stable=True)  # each point's centres, closest first
    tried = torch.zeros(num_points, dtype=torch.long)
    assign = torch.full((num_points,), -1, dtype=torch.long)
    free = torch.arange(num_points)
    while free.numel():
        if int(tried[free].max()) >= num_centres:  # impossible when capacity · S >= E
            raise RuntimeError("capacitated assignment failed to place every point")
        prop = pref[free, tried[free]]
        held = torch.nonzero(torch.isin(assign, torch.unique(prop))).view(-1)
        cand = torch.cat([held, free])
        centre = torch.cat([assign[held], prop])
        # one stable sort by (centre, distance); equal pairs keep candidate order
        order = torch.argsort((centre << 32) | _ordered_bits(dist[cand, centre]), stable=True)
        c = centre[order]
        counts = torch.bincount(c, minlength=num_centres)
        rank = torch.arange(c.numel()) - (torch.cumsum(counts, 0) - counts)[c]
        keep = rank < capacity
        assign[cand[order[keep]]] = c[keep]
        rejected = torch.sort(cand[order[~keep]]).values
        assign[rejected] = -1
        tried[rejected] += 1
        free = rejected
    return assign


def _ordered_bits(x: Tensor) -> Tensor:
    """Non-negative int64 ``< 2**32`` with the same order as the float32 values ``x``."""
    bits = x.to(torch.float32).contiguous().view(torch.int32)
    return torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64) + 2**31


def balanced_kmeans(features: Tensor, num_shards: int, seed: int = 0, iters: int = 10,
                    slack: float = 0.0) -> Tensor:
    """Balanced k-means of the rows of ``features [E, f]`` into ``num_shards`` clusters.

    Anchors start at ``S`` distinct seeded random rows; each iteration assigns by
    :func:`capacitated_assign` on squared Euclidean distances under
    :func:`shard_capacity` and moves each anchor to its cluster mean (an empty cluster keeps its
    anchor); stops early when the assignment no longer changes.
    """
    features = features.detach().float().cpu()
    num_edges = features.shape[0]
    _check_sizes(num_edges, num_shards)
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    cap = shard_capacity(num_edges, num_shards, slack)
    gen = torch.Generator().manual_seed(int(seed))
    centroids = features[torch.randperm(num_edges, generator=gen)[:num_shards]].clone()
    assign: Optional[Tensor] = None
    for _ in range(iters):
        dist = torch.cdist(features, centroids).pow(2)
        new = capacitated_assign(dist, cap)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=num_shards)
        sums = torch.zeros_like(centroids).index_add_(0, assign, features)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty, None].float()
    return assign


def interaction_features(edges: Tensor, user_emb: Tensor, item_emb: Tensor) -> Tensor:
    """``[E, d_u + d_i]`` points ``[e_u ‖ e_i]`` of the interactions ``edges [2, E]``."""
    return torch.cat([user_emb[edges[0]], item_emb[edges[1]]], dim=1)


def pretrain_embeddings(graph: InteractionGraph, model_name: str = "mf", dim: int = 64,
                        layers: int = 3, epochs: int = 10, config: Optional[TrainConfig] = None,
                        seed: int = 0) -> tuple[Tensor, Tensor]:
    """User and item representations ``([U, d'], [I, d'])`` of a model briefly trained on
    ``graph`` (``epochs`` epochs, no early stopping), for the ``kmeans`` partition."""
    cfg = TrainConfig(**{**(config or TrainConfig()).to_dict(), "epochs": int(epochs),
                         "patience": None, "progress": False, "log_path": None, "seed": int(seed)})
    model = build_model(model_name, graph.num_users, graph.num_items, dim=dim, layers=layers, seed=seed)
    train(model, graph, cfg)
    with torch.no_grad():
        out = model.propagate(graph.adj(cfg.device)).cpu()
    return model.split(out)


def partition_edges(graph: InteractionGraph, num_shards: int, strategy: str = "random",
                    seed: int = 0, *, embeddings: Optional[tuple[Tensor, Tensor]] = None,
                    slack: float = 0.0, iters: int = 10, pretrain_model: str = "mf",
                    pretrain_epochs: int = 10, dim: int = 64, layers: int = 3,
                    config: Optional[TrainConfig] = None) -> Tensor:
    """Shard of each column of ``graph.train_edges`` (``LongTensor [E]``).

    ``strategy="random"``: :func:`random_partition`. ``strategy="kmeans"``: :func:`balanced_kmeans`
    of :func:`interaction_features` from ``embeddings = (user_emb, item_emb)``, or, when not
    given, from :func:`pretrain_embeddings` (``pretrain_model``, ``pretrain_epochs``).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown partition strategy {strategy!r}; choose from {STRATEGIES}")
    _check_sizes(graph.num_train, num_shards)
    if strategy == "random":
        return random_partition(graph.num_train, num_shards, seed)
    if embeddings is None:
        embeddings = pretrain_embeddings(graph, pretrain_model, dim, layers, pretrain_epochs, config, seed)
    user_emb, item_emb = embeddings
    if user_emb.shape[0] != graph.num_users or item_emb.shape[0] != graph.num_items:
        raise ValueError(f"embeddings must have {graph.num_users} user and {graph.num_items} item "
                         f"rows, got {user_emb.shape[0]} and {item_emb.shape[0]}")
    feats = interaction_features(graph.train_edges, user_emb.detach().cpu(), item_emb.detach().cpu())
    return balanced_kmeans(feats, num_shards, seed, iters, slack)


def _check_sizes(num_edges: int, num_shards: int) -> None:
    if int(num_shards) < 1:
        raise ValueError(f"need at least one shard, got {num_shards}")
    if int(num_edges) < int(num_shards):
        raise ValueError(f"cannot split {num_edges} training edges into {num_shards} non-empty shards")


# ---------------------------------------------------------------------- shard training
def _train_shard_job(job: dict) -> dict:
    """Worker: build and train one shard model from plain tensors; return its state dict.

    A shard without training edges keeps its seeded initialisation (training on nothing).
    Top-level so ``spawn`` workers can import it.
    """
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    t0 = time.perf_counter()
    g = InteractionGraph(job["num_users"], job["num_items"], job["train_edges"], job["valid_edges"],
                         job["test_edges"], train_labels=job["train_labels"],
                         valid_labels=job["valid_labels"], test_labels=job["test_labels"], _check=False)
    model = build_model(job["model"], job["num_users"], job["num_items"], seed=job["seed"],
                        **job["model_kwargs"])
    if g.num_train:  # one process per shard, also under a process group (shards are on ranks)
        cfg = TrainConfig(**{**job["config"], "seed": job["seed"], "progress": False, "log_path": None})
        Trainer(cfg).fit(model, g)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"state": state, "seconds": time.perf_counter() - t0}


def _shard_job(model: ShardedRecommender, graph: InteractionGraph, shard: int,
               threads: Optional[int]) -> dict:
    g = model.shard_graph(shard, graph)
    return {"model": model.base_name, "num_users": model.num_users, "num_items": model.num_items,
            "model_kwargs": dict(model.model_kwargs), "seed": model.shard_seeds[shard],
            "config": dict(model.train_config), "threads": threads,
            "train_edges": g.train_edges, "valid_edges": g.valid_edges, "test_edges": g.test_edges,
            "train_labels": g.train_labels, "valid_labels": g.valid_labels,
            "test_labels": g.test_labels}


def retrain_shards(model: ShardedRecommender, graph: InteractionGraph, shards: Iterable[int],
                   processes: int = 1) -> dict[int, float]:
    """Train shard models ``shards`` of ``model`` from scratch on their current edges.

    Each shard uses its stored seed and the model's training config, so the result does not
    depend on ``processes``. ``processes > 1`` trains shards in that many ``spawn`` worker
    processes (each with ``max(1, threads // processes)`` intra-op threads); the state dicts
    are loaded into ``model`` in place. ``graph`` supplies validation/test splits and labels
    and must hold exactly the model's training edges. Returns seconds per retrained shard.

    Under a process group (``torchrun``) the shards are dealt to the ranks round-robin (the
    ``k``-th of ``shards`` to rank ``k mod W``); each rank trains its own (with ``processes``
    workers) and every shard's parameters are then broadcast from its rank, so all ranks end
    with the same model, each shard trained once.
    """
    shards = [int(s) for s in shards]
    if int(processes) < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    for s in shards:
        model._check_shard(s)
    model.check_graph(graph)
    world, me = gfd.world_size(), gfd.rank()
    owner = {s: k % world for k, s in enumerate(shards)}
    mine = [s for s in shards if owner[s] == me]
    workers = min(int(processes), len(mine))
    threads = max(1, torch.get_num_threads() // workers) if workers > 1 else None
    jobs = [_shard_job(model, graph, s, threads) for s in mine]
    if workers <= 1:
        results = [_train_shard_job(j) for j in jobs]
    else:
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_train_shard_job, jobs))
    for s, r in zip(mine, results):
        model.shards[s].load_state_dict(r["state"])
    seconds = torch.zeros(len(shards), dtype=torch.float64)
    for s, r in zip(mine, results):
        seconds[shards.index(s)] = r["seconds"]
    if gfd.is_distributed():
        for s in shards:  # parameters and buffers, in place, from the rank that trained them
            for t in model.shards[s].state_dict().values():
                torch.distributed.broadcast(t, src=owner[s])
        seconds = gfd.all_reduce_sum(seconds)
    return {s: float(seconds[k]) for k, s in enumerate(shards)}


class AggregatorHead(RecModel):
    r"""RecEraser's attention aggregator as a model of the one :class:`~graphforget.train.Trainer`:
    the shards are frozen, their representations :math:`z \in \mathbb{R}^{S \times N \times d'}`
    are computed once (``propagate`` returns them, whatever the adjacency), and ``split`` /
    ``score`` / the losses aggregate only the rows they touch, so a batch costs its own rows.
    Its only parameters are the aggregator's; its L2 term is :math:`\tfrac12\lVert
    \theta_{agg}\rVert^2` (``extra_l2``), there are no ego embeddings (``has_ego = False``)."""

    name = "receraser-aggregator"
    has_ego = False

    def __init__(self, model: ShardedRecommender) -> None:
        nn.Module.__init__(self)  # no ego embeddings
        self.num_users, self.num_items, self.recipe = model.num_users, model.num_items, None
        self.aggregator = model.aggregator
        with torch.no_grad():
            self.register_buffer("z", model.shard_outputs().detach(), persistent=False)

    def propagate(self, adj=None, embedding=None) -> Tensor:
        return self.z

    def _users(self, z: Tensor, users: Tensor) -> Tensor:
        return self.aggregator(z[:, users], "user")

    def _items(self, z: Tensor, items: Tensor) -> Tensor:
        return self.aggregator(z[:, self.num_users + items], "item")

    def split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        return (self.aggregator(out[:, : self.num_users], "user"),
                self.aggregator(out[:, self.num_users:], "item"))

    def score(self, users: Tensor, items: Tensor, out: Tensor) -> Tensor:
        return (self._users(out, users) * self._items(out, items)).sum(-1)

    def bpr_terms(self, out: Tensor, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        eu = self._users(out, users)
        return -F.logsigmoid((eu * (self._items(out, pos) - self._items(out, neg))).sum(-1))

    def batch_l2(self, users: Tensor, *item_sets: Tensor, embedding=None) -> Tensor:
        return self.z.new_zeros(())

    def extra_l2(self) -> Tensor:
        return self.aggregator.l2()


def train_aggregator(model: ShardedRecommender, graph: InteractionGraph, epochs: Optional[int] = None,
                     lr: Optional[float] = None, batch_size: Optional[int] = None,
                     weight_decay: Optional[float] = None) -> list[float]:
    r"""Train RecEraser's attention aggregator from its seeded initialisation, shards frozen,
    with the one :class:`~graphforget.train.Trainer` (:class:`AggregatorHead`).

    Minimises the mean BPR loss :math:`-\log\sigma(\hat{y}_{ui} - \hat{y}_{uj})` (BCE on labelled
    graphs) of the aggregated scores over ``graph``'s training edges, with one fresh seeded
    negative per edge and epoch, plus :math:`\lambda \cdot \tfrac12\lVert\theta_{agg}\rVert^2`,
    for a fixed number of epochs (no validation, as in RecEraser), Adam, seed
    ``model.aggregator_seed``. Options default to ``model.aggregator_config``. Returns the mean
    loss of every epoch.
    """
    if model.aggregator is None:
        raise ValueError("this sharded model has no learned aggregator (aggregator='mean')")
    model.check_graph(graph)
    cfg = model.aggregator_config
    epochs = int(cfg.get("epochs", 10) if epochs is None else epochs)
    model.aggregator.reset_parameters(model.aggregator_seed)
    config = TrainConfig(
        epochs=epochs, lr=float(cfg.get("lr", 5e-3) if lr is None else lr),
        batch_size=int(cfg.get("batch_size", 2048) if batch_size is None else batch_size),
        weight_decay=float(cfg.get("weight_decay", 1e-4) if weight_decay is None else weight_decay),
        loss=model.train_config.get("loss", "auto"), patience=None, eval_every=epochs + 1,
        seed=model.aggregator_seed, device=str(model.edges.device), progress=False)
    result = Trainer(config).fit(AggregatorHead(model), graph)
    return [rec["loss"] for rec in result.history]


def fit_sharded(graph: InteractionGraph, model_name: str = "lightgcn", shards: int = 10,
                strategy: str = "random", config: Optional[TrainConfig] = None, seed: int = 0,
                processes: int = 1, *, dim: int = 64, layers: int = 3,
                aggregator: Optional[str] = None, slack: float = 0.0, kmeans_iters: int = 10,
                embeddings: Optional[tuple[Tensor, Tensor]] = None, pretrain_model: str = "mf",
                pretrain_epochs: int = 10, aggregator_epochs: int = 10, aggregator_lr: float = 5e-3,
                attention_dim: Optional[int] = None, **model_kwargs) -> ShardedRecommender:
    """Partition ``graph``'s training edges, train one ``model_name`` per shard, aggregate.

    Args:
        graph: training graph (its validation split drives each shard's early stopping).
        model_name, dim, layers, model_kwargs: shard architecture (:func:`build_model`).
        shards: number of shards ``S``.
        strategy: ``"random"`` (SISA) or ``"kmeans"`` (RecEraser InBP; see :func:`partition_edges`
            for ``embeddings``, ``slack``, ``kmeans_iters``, ``pretrain_model``, ``pretrain_epochs``).
        config: training config of every shard; shard ``s`` uses seed ``shard_seeds[s]`` drawn
            from ``seed``.
        processes: shards trained in parallel processes (1 = in this process).
        aggregator: ``"mean"`` or ``"attention"``; default ``"mean"`` for ``random`` and
            ``"attention"`` for ``kmeans``. The attention aggregator trains for
            ``aggregator_epochs`` at ``aggregator_lr`` (batch size and λ from ``config``).

    Returns:
        A :class:`~graphforget.models.ensemble.ShardedRecommender` with ``fit_info`` (seconds
        per phase and shard sizes).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown partition strategy {strategy!r}; choose from {STRATEGIES}")
    aggregator = aggregator or ("mean" if strategy == "random" else "attention")
    config = config or TrainConfig()
    t0 = time.perf_counter()
    assignment = partition_edges(graph, shards, strategy, seed, embeddings=embeddings, slack=slack,
                                 iters=kmeans_iters, pretrain_model=pretrain_model,
                                 pretrain_epochs=pretrain_epochs, dim=dim, layers=layers, config=config)
    sizes = torch.bincount(assignment, minlength=shards)
    if bool((sizes == 0).any()):
        raise ValueError(f"partition left shards {torch.nonzero(sizes == 0).view(-1).tolist()} empty; "
                         "use fewer shards or a smaller slack")
    t_part = time.perf_counter() - t0
    shard_seeds = torch.randint(0, 2**31 - 1, (shards,),
                                generator=torch.Generator().manual_seed(int(seed))).tolist()
    kwargs = {"dim": dim, "layers": layers, **model_kwargs}
    models = [build_model(model_name, graph.num_users, graph.num_items, seed=s, **kwargs)
              for s in shard_seeds]
    agg_cfg = {"epochs": aggregator_epochs, "lr": aggregator_lr, "batch_size": config.batch_size,
               "weight_decay": config.weight_decay}
    model = ShardedRecommender(models, graph.train_edges, assignment, aggregator, shard_seeds,
                               config.to_dict(), kwargs, aggregator_seed=seed,
                               attention_dim=attention_dim, aggregator_config=agg_cfg)
    model.to(config.device)
    t1 = time.perf_counter()
    shard_seconds = retrain_shards(model, graph, range(shards), processes)
    t2 = time.perf_counter()
    if model.aggregator is not None:
        train_aggregator(model, graph)
    model.fit_info = {"partition_seconds": t_part, "shards_seconds": t2 - t1,
                      "shard_seconds": [shard_seconds[s] for s in range(shards)],
                      "aggregator_seconds": time.perf_counter() - t2, "shard_sizes": sizes.tolist()}
    return model


__all__ = ["STRATEGIES", "random_partition", "shard_capacity", "capacitated_assign",
           "balanced_kmeans", "interaction_features", "pretrain_embeddings", "partition_edges",
           "retrain_shards", "train_aggregator", "fit_sharded"]
