r"""A partitioned recommender: ``S`` shard models of one architecture plus an aggregator.

Used by the SISA (Bourtoule et al., S&P 2021) and RecEraser (Chen et al., WWW 2022) unlearning
baselines. The training edges are split into disjoint shards :math:`\mathcal{D}_1, \dots,
\mathcal{D}_S`; shard model :math:`s` is a complete :class:`~graphforget.models.RecModel` over the
full node id space, trained only on :math:`\mathcal{D}_s` and propagated on its own normalised
adjacency :math:`\hat{A}_s` (built from :math:`\mathcal{D}_s` alone), giving representations
:math:`Z^s = f_s(\hat{A}_s) \in \mathbb{R}^{N \times d'}`.

Aggregation (``aggregator``):

* ``"mean"`` (SISA score averaging):
  :math:`\hat{y}_{ui} = \frac{1}{S}\sum_s \langle z^s_u, z^s_i \rangle`.
  :meth:`ShardedRecommender.propagate` returns user rows :math:`[\tfrac{1}{S} z^1_u \| \dots \|
  \tfrac{1}{S} z^S_u]` and item rows :math:`[z^1_i \| \dots \| z^S_i]` (width :math:`S d'`), so
  the ordinary inner product of :meth:`~RecModel.score` and of full-ranking evaluation *is* the
  averaged score.
* ``"attention"`` (RecEraser's attention-based adaptive aggregation): each shard representation
  is first mapped by a shard-specific affine transform :math:`\tilde{z}^s_v = z^s_v W_s + b_s`,
  then combined with node-wise attention, separately for users and items
  (:math:`T \in \{\text{user}, \text{item}\}`):

  .. math::
      a_s(v) = \operatorname{softmax}_s\big(h_T^\top \operatorname{ReLU}(\tilde{z}^s_v W_T + c_T)\big),
      \qquad z_v = \sum_s a_s(v)\, \tilde{z}^s_v, \qquad \hat{y}_{ui} = \langle z_u, z_i \rangle.

  The aggregator is trained with BPR (or BCE on labelled data) while the shard models are
  frozen (:func:`graphforget.train.sharding.train_aggregator`). Unlike the paper's Xavier
  initialisation, :math:`W_s = I`, :math:`b_s = 0` and :math:`h_T = 0` initially, so training
  starts from equal attention over shards; the paper's embedding dropout is left out so the
  model is deterministic.

``propagate`` ignores the adjacency it is given (each shard uses its own), so the model works
unchanged with :func:`graphforget.train.evaluate`. The shard assignment (training edge →
shard) is stored as buffers ``edges`` ``[2, E]`` and ``assignment`` ``[E]`` so unlearning knows
which shards held a deleted edge; edges keep the order of the graph's training edges at fit
time, minus deleted ones.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.graph import InteractionGraph, as_edge_tensor, edge_keys
from ..data.sparse import NormalizedAdjacency
from .base import RecModel

AGGREGATORS = ("mean", "attention")


class _AdjacencyCache(dict):
    """Shard adjacencies by ``(shard, device)``; never copied or pickled (sparse CSR tensors
    cannot be deep-copied), rebuilt on demand from the ``edges`` / ``assignment`` buffers."""

    def __deepcopy__(self, memo) -> "_AdjacencyCache":
        return _AdjacencyCache()

    def __reduce__(self):
        return (_AdjacencyCache, ())


class AttentionAggregator(nn.Module):
    r"""RecEraser's attention aggregator over ``num_shards`` representations of width ``dim``.

    Parameters: shard transforms ``W [S, d, d]``, ``b [S, d]``; per node type
    (``user`` / ``item``) an attention layer ``W_T [d, k]``, ``c_T [k]``, ``h_T [k]`` with
    ``k = attention_dim``. See the module docstring for the equations and the initialisation.
    """

    def __init__(self, num_shards: int, dim: int, attention_dim: Optional[int] = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.num_shards, self.dim = int(num_shards), int(dim)
        self.attention_dim = int(attention_dim or dim)
        s, d, k = self.num_shards, self.dim, self.attention_dim
        self.shard_weight = nn.Parameter(torch.empty(s, d, d))
        self.shard_bias = nn.Parameter(torch.empty(s, d))
        self.att_weight = nn.ParameterDict({t: nn.Parameter(torch.empty(d, k)) for t in ("user", "item")})
        self.att_bias = nn.ParameterDict({t: nn.Parameter(torch.empty(k)) for t in ("user", "item")})
        self.att_vector = nn.ParameterDict({t: nn.Parameter(torch.empty(k)) for t in ("user", "item")})
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Identity shard transforms, zero attention vector (equal weights), seeded Xavier-uniform
        attention layer; the same ``seed`` always gives the same parameters."""
        gen = torch.Generator().manual_seed(int(seed))
        self.shard_weight.copy_(torch.eye(self.dim).expand(self.num_shards, -1, -1))
        self.shard_bias.zero_()
        bound = math.sqrt(6.0 / (self.dim + self.attention_dim))
        for t in ("user", "item"):
            w = (torch.rand(self.dim, self.attention_dim, generator=gen) * 2 - 1) * bound
            self.att_weight[t].copy_(w)
            self.att_bias[t].zero_()
            self.att_vector[t].zero_()

    def transform(self, z: Tensor) -> Tensor:
        """Shard transforms :math:`\\tilde{z}^s = z^s W_s + b_s` of ``z [S, n, d]``."""
        return torch.einsum("snd,sde->sne", z, self.shard_weight) + self.shard_bias[:, None, :]

    def weights(self, z_t: Tensor, kind: str) -> Tensor:
        """Attention weights ``[n, S]`` (rows sum to 1) from transformed ``z_t [S, n, d]``."""
        hidden = F.relu(z_t @ self.att_weight[kind] + self.att_bias[kind])
        return torch.softmax((hidden @ self.att_vector[kind]).t(), dim=1)

    def forward(self, z: Tensor, kind: str) -> Tensor:
        """Aggregated representations ``[n, d]`` of ``z [S, n, d]`` for ``kind`` in
        ``{"user", "item"}``."""
        if kind not in ("user", "item"):
            raise ValueError(f"kind must be 'user' or 'item', got {kind!r}")
        z_t = self.transform(z)
        a = self.weights(z_t, kind)
        return torch.einsum("ns,snd->nd", a, z_t)

    def l2(self) -> Tensor:
        """``½‖θ_agg‖²`` over all aggregator parameters."""
        return 0.5 * sum(p.pow(2).sum() for p in self.parameters())


class ShardedRecommender(RecModel):
    """``S`` shard models over one node id space, each trained on its own shard of edges.

    Args:
        shard_models: the ``S`` models (same class, sizes and output width).
        edges: ``LongTensor [2, E]`` training edges at fit time (user, item).
        assignment: ``LongTensor [E]`` shard of each edge, values in ``0..S-1``.
        aggregator: ``"mean"`` (SISA) or ``"attention"`` (RecEraser).
        shard_seeds: per-shard seed used for the shard's initialisation and training (kept so
            unlearning retrains a shard exactly as it was first trained).
        train_config: ``TrainConfig.to_dict()`` the shards were trained with.
        aggregator_seed, attention_dim: attention aggregator options.
        aggregator_config: options of the aggregator training (epochs, lr, ...).

    ``model_kwargs`` records the :func:`~graphforget.models.build_model` arguments of the shard
    models (``dim``, ``layers``, extra keyword arguments) for retraining.
    """

    name = "sharded"
    has_ego = False  # every shard holds its own ego embeddings

    def __init__(self, shard_models: Sequence[RecModel], edges: Tensor, assignment: Tensor,
                 aggregator: str = "mean", shard_seeds: Optional[Sequence[int]] = None,
                 train_config: Optional[dict] = None, model_kwargs: Optional[dict] = None,
                 aggregator_seed: int = 0, attention_dim: Optional[int] = None,
                 aggregator_config: Optional[dict] = None) -> None:
        nn.Module.__init__(self)  # no single ego embedding: every shard holds its own
        self.recipe: Optional[dict] = None
        shard_models = list(shard_models)
        if not shard_models:
            raise ValueError("a sharded model needs at least one shard model")
        first = shard_models[0]
        for m in shard_models:
            if not isinstance(m, RecModel) or isinstance(m, ShardedRecommender):
                raise ValueError("shard models must be plain RecModel instances")
            if (type(m), m.num_users, m.num_items, m.dim) != (type(first), first.num_users,
                                                              first.num_items, first.dim):
                raise ValueError("all shard models must share class, num_users, num_items and dim")
        if aggregator not in AGGREGATORS:
            raise ValueError(f"unknown aggregator {aggregator!r}; choose from {AGGREGATORS}")
        edges = as_edge_tensor(edges, "edges")
        assignment = torch.as_tensor(assignment, dtype=torch.long).view(-1)
        if assignment.numel() != edges.shape[1]:
            raise ValueError(f"assignment has {assignment.numel()} entries for {edges.shape[1]} edges")
        num_shards = len(shard_models)
        if assignment.numel() and (int(assignment.min()) < 0 or int(assignment.max()) >= num_shards):
            raise ValueError(f"assignment values must lie in 0..{num_shards - 1}")
        self.num_users, self.num_items, self.dim = first.num_users, first.num_items, first.dim
        self.num_layers = first.num_layers
        self.base_name = first.name
        self.shards = nn.ModuleList(shard_models)
        self.register_buffer("edges", edges.clone())
        self.register_buffer("assignment", assignment.clone())
        self.aggregator_name = aggregator
        self.shard_seeds = [int(s) for s in (shard_seeds if shard_seeds is not None else range(num_shards))]
        if len(self.shard_seeds) != num_shards:
            raise ValueError(f"need {num_shards} shard seeds, got {len(self.shard_seeds)}")
        self.train_config = dict(train_config or {})
        self.model_kwargs = dict(model_kwargs or {})
        self.aggregator_seed = int(aggregator_seed)
        self.aggregator_config = dict(aggregator_config or {})
        self._adj = _AdjacencyCache()
        self.aggregator: Optional[AttentionAggregator] = None
        if aggregator == "attention":
            with torch.no_grad():
                out_dim = first.propagate(self.shard_adj(0)).shape[-1]
            self.aggregator = AttentionAggregator(num_shards, out_dim, attention_dim, aggregator_seed)

    # ------------------------------------------------------------------ shards
    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def shard_sizes(self) -> Tensor:
        """Number of training edges per shard, ``[S]``."""
        return torch.bincount(self.assignment.cpu(), minlength=self.num_shards)

    def shard_edges(self, shard: int) -> Tensor:
        """Training edges ``[2, m_s]`` of one shard (CPU, fit-time order)."""
        self._check_shard(shard)
        return self.edges.cpu()[:, self.assignment.cpu() == shard]

    def shard_adj(self, shard: int, device=None) -> Tensor:
        """Normalised adjacency of one shard's edges (cached per device)."""
        dev = torch.device(device) if device is not None else self.edges.device
        key = (int(shard), str(dev))
        if key not in self._adj:
            e = self.shard_edges(shard)
            adjacency = NormalizedAdjacency.build(e[0], e[1], self.num_users, self.num_items)
            self._adj[key] = adjacency.csr(dev)
        return self._adj[key]

    def shard_graph(self, shard: int, graph: InteractionGraph) -> InteractionGraph:
        """The training graph of one shard: its edges (with their labels from ``graph`` when
        labelled) and ``graph``'s validation and test splits."""
        e = self.shard_edges(shard)
        labels = None
        if graph.has_labels:
            labels = graph.train_labels[graph.find_edges(e)] if e.shape[1] else graph.train_labels[:0]
        return InteractionGraph(self.num_users, self.num_items, e, graph.valid_edges, graph.test_edges,
                                train_labels=labels, valid_labels=graph.valid_labels,
                                test_labels=graph.test_labels, name=f"{graph.name}[shard {shard}]")

    def check_graph(self, graph: InteractionGraph) -> None:
        """Raise ``ValueError`` unless ``graph``'s training edges are exactly the model's."""
        if (graph.num_users, graph.num_items) != (self.num_users, self.num_items):
            raise ValueError(f"graph has {graph.num_users} users / {graph.num_items} items, the "
                             f"sharded model {self.num_users} / {self.num_items}")
        mine = torch.sort(edge_keys(self.edges.cpu(), self.num_items)).values
        theirs = torch.sort(edge_keys(graph.train_edges, self.num_items)).values
        if mine.shape != theirs.shape or not torch.equal(mine, theirs):
            raise ValueError("the sharded model was trained on a different training edge set than "
                             f"this graph ({mine.numel()} vs {theirs.numel()} edges)")

    def shards_of(self, edges) -> Tensor:
        """Shard of each given edge ``[m]``; ``ValueError`` if one is not a stored edge."""
        edges = as_edge_tensor(edges)
        keys = edge_keys(self.edges.cpu(), self.num_items)
        sorted_keys, order = torch.sort(keys)
        q = edge_keys(edges, self.num_items)
        pos = torch.searchsorted(sorted_keys, q).clamp(max=max(0, keys.numel() - 1))
        hit = sorted_keys[pos] == q if keys.numel() else torch.zeros_like(q, dtype=torch.bool)
        if not bool(hit.all()):
            missing = edges[:, ~hit][:, :10].t().tolist()
            raise ValueError(f"edges not held by any shard (first {len(missing)}): {missing}")
        return self.assignment.cpu()[order[pos]]

    def forget_edges(self, edges) -> list[int]:
        """Drop ``edges`` from the stored assignment; return the sorted shards that held them.

        Only the bookkeeping changes: the shard models are untouched until retrained.
        """
        edges = as_edge_tensor(edges)
        shards = self.shards_of(edges)
        gone = torch.isin(edge_keys(self.edges.cpu(), self.num_items), edge_keys(edges, self.num_items))
        keep = (~gone).to(self.edges.device)
        self.edges = self.edges[:, keep]
        self.assignment = self.assignment[keep]
        affected = torch.unique(shards).tolist()
        for key in [k for k in self._adj if k[0] in affected]:
            del self._adj[key]
        return affected

    def _check_shard(self, shard: int) -> None:
        if not 0 <= int(shard) < self.num_shards:
            raise ValueError(f"shard {shard} out of range 0..{self.num_shards - 1}")

    # ------------------------------------------------------------------ forward
    def shard_outputs(self, embedding: Optional[Tensor] = None) -> Tensor:
        """Representations of every shard model on its own graph, ``[S, N, d']``."""
        if embedding is not None:
            raise ValueError("a sharded model has no single ego embedding; call with embedding=None")
        dev = self.edges.device
        return torch.stack([m.propagate(self.shard_adj(s, dev)) for s, m in enumerate(self.shards)])

    def aggregate(self, z: Tensor) -> Tensor:
        """Node rows whose inner products are the aggregated scores (see module docstring)."""
        u, i = z[:, : self.num_users], z[:, self.num_users:]
        if self.aggregator is None:
            s = self.num_shards
            users = (u / s).permute(1, 0, 2).reshape(self.num_users, -1)
            items = i.permute(1, 0, 2).reshape(self.num_items, -1)
            return torch.cat([users, items])
        return torch.cat([self.aggregator(u, "user"), self.aggregator(i, "item")])

    def propagate(self, adj: Optional[Tensor] = None, embedding: Optional[Tensor] = None) -> Tensor:
        """Aggregated node representations; ``adj`` is ignored (each shard has its own graph)."""
        return self.aggregate(self.shard_outputs(embedding))

    def attention_weights(self) -> tuple[Tensor, Tensor]:
        """Attention over shards ``([U, S], [I, S])`` (uniform for the mean aggregator)."""
        if self.aggregator is None:
            s = self.num_shards
            return (torch.full((self.num_users, s), 1.0 / s), torch.full((self.num_items, s), 1.0 / s))
        z = self.aggregator.transform(self.shard_outputs())
        return (self.aggregator.weights(z[:, : self.num_users], "user"),
                self.aggregator.weights(z[:, self.num_users:], "item"))

    def batch_l2(self, users: Tensor, *item_sets: Tensor, embedding: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError("a sharded model is trained shard by shard "
                                  "(graphforget.train.sharding.fit_sharded), not as one model")

    def config(self) -> dict:
        """Everything but the tensors needed to rebuild the model (:meth:`from_state`); plain
        Python values only, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {"model": self.name, "base_model": self.base_name, "num_users": self.num_users,
                "num_items": self.num_items, "dim": self.dim, "layers": self.num_layers,
                "shards": self.num_shards, "aggregator": self.aggregator_name,
                "shard_seeds": list(self.shard_seeds), "aggregator_seed": self.aggregator_seed,
                "attention_dim": None if self.aggregator is None else self.aggregator.attention_dim,
                "model_kwargs": dict(self.model_kwargs), "train_config": dict(self.train_config),
                "aggregator_config": dict(self.aggregator_config)}

    @classmethod
    def from_state(cls, config: dict, state_dict: dict) -> "ShardedRecommender":
        """Rebuild a model from its :meth:`config` and ``state_dict`` (strict load).

        The shard models are built from ``base_model`` with ``dim``/``layers`` overridden by
        ``model_kwargs``; the ``edges`` / ``assignment`` buffers of ``state_dict`` give the
        shard assignment. ``ValueError`` if the two disagree (missing or extra tensors, shapes).
        """
        from . import build_model

        cfg = dict(config)
        if cfg.get("model") != cls.name:
            raise ValueError(f"not a sharded model config: model={cfg.get('model')!r}")
        for key in ("edges", "assignment"):
            if key not in state_dict:
                raise ValueError(f"sharded model state has no {key!r} tensor")
        kwargs = {"dim": cfg["dim"], "layers": cfg["layers"], **cfg.get("model_kwargs", {})}
        shard_models = [build_model(cfg["base_model"], cfg["num_users"], cfg["num_items"], **kwargs)
                        for _ in range(int(cfg["shards"]))]
        model = cls(shard_models, state_dict["edges"], state_dict["assignment"], cfg["aggregator"],
                    cfg["shard_seeds"], cfg.get("train_config"), cfg.get("model_kwargs"),
                    aggregator_seed=cfg["aggregator_seed"], attention_dim=cfg.get("attention_dim"),
                    aggregator_config=cfg.get("aggregator_config"))
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ValueError(f"sharded model state does not match its config: {exc}") from exc
        return model
