r"""The bipartite user–item interaction graph every model, trainer and unlearner works on.

Node convention: users ``0..U-1``; in the homogeneous propagation graph item ``i`` is node
``U + i``. Edges are always given as ``LongTensor [2, m]`` of internal ``(user, item)`` ids.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import torch
from torch import Tensor

from .interactions import Interactions
from .sparse import NormalizedAdjacency, khop


def edge_keys(edges: Tensor, num_items: int) -> Tensor:
    """One int64 key ``u * I + i`` per edge, for set operations on edges."""
    return edges[0] * num_items + edges[1]


def as_edge_tensor(edges, name: str = "edges") -> Tensor:
    """Accept ``[2, m]`` / ``[m, 2]`` tensors or arrays, or a list of ``(user, item)`` pairs;
    return ``LongTensor [2, m]``.

    A Python list / tuple is always read as pairs (``[[u, i], ...]``, so ``[[0, 5], [1, 6]]`` is
    two edges); a tensor or array is ``[2, m]`` unless only its second dimension is 2 (a
    ``2 × 2`` tensor is ``[2, m]``)."""
    pairs = isinstance(edges, (list, tuple))
    t = torch.as_tensor(edges, dtype=torch.long)
    if t.dim() == 1 and t.numel() == 0:
        return t.view(2, 0)
    if t.dim() != 2 or 2 not in t.shape or (pairs and t.shape[1] != 2):
        expected = "a list of (user, item) pairs" if pairs else "shape [2, m] or [m, 2]"
        raise ValueError(f"{name} must be {expected}, got shape {tuple(t.shape)}")
    return t.t().contiguous() if pairs or t.shape[0] != 2 else t


class InteractionGraph:
    r"""Train / validation / test interactions of ``num_users`` users and ``num_items`` items.

    The training edges define the propagation graph with cached symmetric-normalised
    adjacency :math:`D^{-1/2} A D^{-1/2}` (:attr:`adj`, a ``torch.sparse`` CSR). Graphs are
    immutable: :meth:`remove_edges` returns a new graph.

    Args:
        num_users, num_items: sizes of the two node sets.
        train_edges: ``LongTensor [2, E]`` ``(user, item)`` pairs, duplicates not allowed.
        valid_edges, test_edges: held-out pairs (may be empty).
        train_labels, valid_labels, test_labels: optional 0/1 (or real) targets per edge, for
            labelled data trained with BCE; propagation always uses every training edge.
        train_timestamps: optional ``LongTensor [E]``.
        user_ids, item_ids: raw ids indexed by internal id.
        name: dataset name for reports.
    """

    def __init__(self, num_users: int, num_items: int, train_edges: Tensor,
                 valid_edges: Optional[Tensor] = None, test_edges: Optional[Tensor] = None,
                 train_labels: Optional[Tensor] = None, valid_labels: Optional[Tensor] = None,
                 test_labels: Optional[Tensor] = None, train_timestamps: Optional[Tensor] = None,
                 user_ids: Optional[Sequence[str]] = None, item_ids: Optional[Sequence[str]] = None,
                 name: str = "", _adjacency: Optional[NormalizedAdjacency] = None,
                 _check: bool = True) -> None:
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        empty = torch.zeros(2, 0, dtype=torch.long)
        self.train_edges = as_edge_tensor(train_edges, "train_edges")
        self.valid_edges = empty if valid_edges is None else as_edge_tensor(valid_edges, "valid_edges")
        self.test_edges = empty if test_edges is None else as_edge_tensor(test_edges, "test_edges")
        self.train_labels = None if train_labels is None else torch.as_tensor(train_labels, dtype=torch.float32)
        self.valid_labels = None if valid_labels is None else torch.as_tensor(valid_labels, dtype=torch.float32)
        self.test_labels = None if test_labels is None else torch.as_tensor(test_labels, dtype=torch.float32)
        self.train_timestamps = train_timestamps
        self.user_ids = list(user_ids) if user_ids is not None else None
        self.item_ids = list(item_ids) if item_ids is not None else None
        self.name = name
        if _check:
            self._validate()
        self._adjacency = _adjacency
        self._fingerprint: Optional[str] = None
        #: how the graph was made, for reports (e.g. a carved validation split)
        self.notes: list[str] = []

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_splits(cls, train: Interactions, valid: Optional[Interactions] = None,
                    test: Optional[Interactions] = None, labels: bool = False,
                    name: str = "") -> "InteractionGraph":
        """Graph from split tables. With ``labels=True`` the ``ratings`` become edge labels."""
        lab = (lambda t: None if t is None or not labels else t.ratings)  # noqa: E731
        return cls(train.num_users, train.num_items, train.edge_index(),
                   None if valid is None else valid.edge_index(),
                   None if test is None else test.edge_index(),
                   train_labels=lab(train), valid_labels=lab(valid), test_labels=lab(test),
                   train_timestamps=train.timestamps,
                   user_ids=train.user_ids or None, item_ids=train.item_ids or None, name=name)

    def _validate(self) -> None:
        for nm in ("train", "valid", "test"):
            e = getattr(self, f"{nm}_edges")
            if e.numel() == 0:
                continue
            if int(e[0].min()) < 0 or int(e[0].max()) >= self.num_users:
                raise ValueError(f"{nm}_edges: user id out of range 0..{self.num_users - 1}")
            if int(e[1].min()) < 0 or int(e[1].max()) >= self.num_items:
                raise ValueError(f"{nm}_edges: item id out of range 0..{self.num_items - 1}")
            lab = getattr(self, f"{nm}_labels")
            if lab is not None and lab.numel() != e.shape[1]:
                raise ValueError(f"{nm}_labels must have one value per edge")
        keys = edge_keys(self.train_edges, self.num_items)
        if torch.unique(keys).numel() != keys.numel():
            raise ValueError("train_edges contain duplicate (user, item) pairs")

    # ------------------------------------------------------------------ views
    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    @property
    def num_train(self) -> int:
        return int(self.train_edges.shape[1])

    @property
    def has_labels(self) -> bool:
        return self.train_labels is not None

    @property
    def edge_index(self) -> Tensor:
        """Homogeneous, both directions: ``LongTensor [2, 2E]`` with items offset by ``U``."""
        u, i = self.train_edges
        return torch.stack([torch.cat([u, i + self.num_users]), torch.cat([i + self.num_users, u])])

    def hetero(self):
        """``torch_geometric.data.HeteroData`` with ``('user','rates','item')`` and its reverse."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["user"].num_nodes = self.num_users
        data["item"].num_nodes = self.num_items
        data["user", "rates", "item"].edge_index = self.train_edges
        data["item", "rated_by", "user"].edge_index = self.train_edges.flip(0)
        if self.train_labels is not None:
            data["user", "rates", "item"].edge_label = self.train_labels
        return data

    @property
    def adjacency(self) -> NormalizedAdjacency:
        if self._adjacency is None:
            u, i = self.train_edges
            self._adjacency = NormalizedAdjacency.build(u, i, self.num_users, self.num_items)
        return self._adjacency

    def adj(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Cached normalised adjacency ``D^-1/2 A D^-1/2`` as ``torch.sparse_csr`` ``[N, N]``
        (float32; another ``dtype`` is converted on each call)."""
        csr = self.adjacency.csr(device)
        return csr if dtype is None or csr.dtype == dtype else csr.to(dtype)

    @property
    def degree(self) -> Tensor:
        return self.adjacency.degree

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the sizes and the sorted training edge set (order-independent)."""
        if self._fingerprint is None:
            keys = torch.sort(edge_keys(self.train_edges, self.num_items)).values
            h = hashlib.sha256(f"{self.num_users},{self.num_items};".encode())
            h.update(keys.numpy().tobytes())
            if self.train_labels is not None:
                order = torch.argsort(edge_keys(self.train_edges, self.num_items))
                h.update(self.train_labels[order].numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def stats(self) -> dict:
        return {"name": self.name, "users": self.num_users, "items": self.num_items,
                "train": self.num_train, "valid": int(self.valid_edges.shape[1]),
                "test": int(self.test_edges.shape[1]),
                "density": round(self.num_train / max(1, self.num_users * self.num_items), 6),
                "sha256": self.fingerprint()}

    def user_items(self, split: str = "train") -> list[Tensor]:
        """Item ids per user for a split (CSR slices; for tests and small helpers)."""
        e = getattr(self, f"{split}_edges")
        order = torch.argsort(e[0] * self.num_items + e[1])
        counts = torch.bincount(e[0], minlength=self.num_users)
        return list(torch.split(e[1][order], counts.tolist()))

    # ------------------------------------------------------------------ deletion
    def find_edges(self, edges) -> Tensor:
        """Positions in ``train_edges`` of the given edges.

        Raises ``ValueError`` naming the offending pairs for unknown ids, duplicates inside the
        request, or pairs that are not training edges.
        """
        edges = as_edge_tensor(edges)
        if edges.shape[1] == 0:
            raise ValueError("empty deletion request: no edges given")
        bad_u = (edges[0] < 0) | (edges[0] >= self.num_users)
        bad_i = (edges[1] < 0) | (edges[1] >= self.num_items)
        if bool((bad_u | bad_i).any()):
            bad = edges[:, bad_u | bad_i][:, :10].t().tolist()
            raise ValueError(f"unknown user/item ids in request (first {len(bad)}): {bad}")
        keys = edge_keys(edges, self.num_items)
        uniq, counts = torch.unique(keys, return_counts=True)
        if bool((counts > 1).any()):
            dup = uniq[counts > 1][:10]
            raise ValueError(f"duplicate edges in request: {torch.stack([dup // self.num_items, dup % self.num_items], 1).tolist()}")
        train_keys = edge_keys(self.train_edges, self.num_items)
        sorted_keys, order = torch.sort(train_keys)
        pos = torch.searchsorted(sorted_keys, keys).clamp(max=max(0, sorted_keys.numel() - 1))
        found = sorted_keys.numel() > 0
        hit = (sorted_keys[pos] == keys) if found else torch.zeros_like(keys, dtype=torch.bool)
        if not bool(hit.all()):
            missing = edges[:, ~hit][:, :10].t().tolist()
            raise ValueError(f"{int((~hit).sum())} requested edges are not training edges (first {len(missing)}): {missing}")
        return order[pos]

    def user_edges(self, users) -> Tensor:
        """All training edges of the given users, ``[2, m]``; raises on unknown or edgeless users."""
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        if users.numel() == 0:
            raise ValueError("empty request: no users given")
        bad = users[(users < 0) | (users >= self.num_users)]
        if bad.numel():
            raise ValueError(f"unknown user ids: {bad[:10].tolist()}")
        mask = torch.isin(self.train_edges[0], users)
        if not bool(mask.any()):
            raise ValueError(f"users {users[:10].tolist()} have no training interactions")
        return self.train_edges[:, mask]

    def item_edges(self, items) -> Tensor:
        """All training edges of the given items, ``[2, m]``."""
        items = torch.as_tensor(items, dtype=torch.long).view(-1)
        if items.numel() == 0:
            raise ValueError("empty request: no items given")
        bad = items[(items < 0) | (items >= self.num_items)]
        if bad.numel():
            raise ValueError(f"unknown item ids: {bad[:10].tolist()}")
        mask = torch.isin(self.train_edges[1], items)
        if not bool(mask.any()):
            raise ValueError(f"items {items[:10].tolist()} have no training interactions")
        return self.train_edges[:, mask]

    def remove_edges(self, edges) -> "InteractionGraph":
        """A new graph without ``edges`` (``[2, m]`` user/item pairs); ``self`` is untouched.

        The adjacency is updated incrementally: the sorted symmetric entries of the deleted
        edges are masked out and only degrees of their endpoints change (no re-sort, no dense
        matrix). Validation/test edges are kept.
        """
        pos = self.find_edges(edges)
        keep = torch.ones(self.num_train, dtype=torch.bool)
        keep[pos] = False
        removed = self.train_edges[:, pos]
        adjacency = None
        if self._adjacency is not None:
            adjacency = self._adjacency.remove(keep, removed[0], removed[1], self.num_users)
        sel = lambda t: None if t is None else t[keep]  # noqa: E731
        return InteractionGraph(self.num_users, self.num_items, self.train_edges[:, keep],
                                self.valid_edges, self.test_edges,
                                train_labels=sel(self.train_labels), valid_labels=self.valid_labels,
                                test_labels=self.test_labels,
                                train_timestamps=sel(self.train_timestamps),
                                user_ids=self.user_ids, item_ids=self.item_ids, name=self.name,
                                _adjacency=adjacency, _check=False)

    def carve_validation(self, fraction: float = 0.1, seed: int = 0) -> "InteractionGraph":
        """A new graph whose validation split is a seeded ``fraction`` of each user's training
        edges (``round(fraction · degree)``, never a user's last edge); for data that ships
        without one, so early stopping has something to judge by. Test edges are kept.

        Raises ``ValueError`` if the graph already has validation edges or ``fraction`` is not
        in ``(0, 1)``.
        """
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
        if self.valid_edges.shape[1]:
            raise ValueError("the graph already has a validation split")
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(self.num_train, generator=gen)
        users = self.train_edges[0, perm]
        order = torch.argsort(users, stable=True)
        perm, users = perm[order], users[order]
        deg = torch.bincount(users, minlength=self.num_users)
        start = torch.cumsum(deg, 0) - deg
        rank = torch.arange(self.num_train) - start[users]
        take = torch.floor(deg.double() * float(fraction) + 0.5).long().clamp(max=(deg - 1).clamp(min=0))
        valid = torch.zeros(self.num_train, dtype=torch.bool)
        valid[perm[rank < take[users]]] = True
        if not bool(valid.any()):
            raise ValueError(f"no user has enough training edges to carve a {fraction:g} validation split")
        sel = lambda t, m: None if t is None else t[m]  # noqa: E731
        return InteractionGraph(self.num_users, self.num_items, self.train_edges[:, ~valid],
                                self.train_edges[:, valid], self.test_edges,
                                train_labels=sel(self.train_labels, ~valid),
                                valid_labels=sel(self.train_labels, valid), test_labels=self.test_labels,
                                train_timestamps=sel(self.train_timestamps, ~valid),
                                user_ids=self.user_ids, item_ids=self.item_ids, name=self.name,
                                _check=False)

    def khop_nodes(self, edges, k: int) -> Tensor:
        """Nodes (homogeneous ids, items offset by ``U``) whose ``k``-layer receptive field
        contains one of ``edges``.

        Deleting ``(u, i)`` changes the degree of ``u`` and ``i`` and hence the normalised weight
        of every edge at ``u`` or ``i``; layer 1 of a node changes iff it is an endpoint or a
        neighbour of one, and layer ``k`` iff it lies within ``k`` hops of an endpoint. So the
        set is the ``k``-hop neighbourhood (in the graph *before* deletion) of the endpoints
        (sorted; :func:`~graphforget.data.sparse.khop` on the cached adjacency).
        """
        edges = as_edge_tensor(edges)
        seeds = torch.unique(torch.cat([edges[0], edges[1] + self.num_users]))
        if k <= 0:
            return seeds
        return khop(self.adjacency, seeds, k)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"InteractionGraph({self.name or 'unnamed'}: users={s['users']}, items={s['items']}, "
                f"train={s['train']}, valid={s['valid']}, test={s['test']}, sha256={s['sha256']})")
