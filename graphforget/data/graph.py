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

    @classmethod
    def from_pyg(cls, data, num_users: Optional[int] = None, name: str = "") -> "InteractionGraph":
        r"""Creates a graph from a PyG :class:`~torch_geometric.data.HeteroData` or
        homogeneous :class:`~torch_geometric.data.Data` object.

        **Heterogeneous input** needs exactly one edge type whose source node type
        is :obj:`'user'` and destination :obj:`'item'` (any relation name; other
        edge types, *e.g.* the reverse :obj:`('item', 'rated_by', 'user')`, are
        ignored). Read from that edge type: :obj:`edge_index` (training edges,
        :obj:`[2, E]`, row 0 users, row 1 items), and if present
        :obj:`edge_label` and :obj:`time` (one value per training edge),
        :obj:`valid_edge_index` / :obj:`test_edge_index` and
        :obj:`valid_edge_label` / :obj:`test_edge_label`, i.e. the layout written
        by :meth:`to_pyg`. Node counts come from :obj:`data['user'].num_nodes`
        and :obj:`data['item'].num_nodes` (or :obj:`num_users`), else from the
        largest id + 1; raw ids from :obj:`data['user'].raw_id` /
        :obj:`data['item'].raw_id`. Training edges must be distinct.

        **Homogeneous input** follows the :attr:`edge_index` convention: nodes
        :obj:`0..U-1` are users and :obj:`U..U+I-1` items, with :obj:`U` given as
        :obj:`num_users` or :obj:`data.num_users` and :obj:`U + I` as
        :obj:`data.num_nodes` (set it explicitly; PyG otherwise infers it as the
        largest id + 1, dropping trailing isolated items). Each edge must join a
        user and an item, in either direction; each undirected user-item pair is
        kept once, in order of first occurrence (so both directions, as in
        :attr:`edge_index`, give one edge each). Optional :obj:`valid_edge_index` /
        :obj:`test_edge_index` use the same numbering and rules; optional
        :obj:`edge_label` / :obj:`time` (and :obj:`valid_edge_label` /
        :obj:`test_edge_label`) have one value per column and must agree across
        the copies of a pair.

        Tensors are moved to the CPU and ids to :obj:`torch.long`; labels become
        :obj:`float32`.

        Args:
            data (torch_geometric.data.HeteroData or torch_geometric.data.Data):
                the PyG graph.
            num_users (int, optional): number of users; required for homogeneous
                input unless :obj:`data.num_users` is set. (default: :obj:`None`)
            name (str, optional): dataset name; defaults to :obj:`data.name` if
                set. (default: :obj:`""`)

        Raises:
            ValueError: no or several user->item edge types, missing
                :obj:`num_users` for :class:`~torch_geometric.data.Data`, ids out of
                range, an edge between two users (or two items), a malformed
                :obj:`edge_index`, attributes of the wrong length, or duplicate
                training edges in heterogeneous input.
            TypeError: :obj:`data` is neither :class:`~torch_geometric.data.HeteroData`
                nor :class:`~torch_geometric.data.Data`.
        """
        from torch_geometric.data import Data, HeteroData

        if isinstance(data, HeteroData):
            kw = _from_hetero(data, num_users)
        elif isinstance(data, Data):
            kw = _from_homogeneous(data, num_users)
        else:
            raise TypeError(f"from_pyg expects torch_geometric HeteroData or Data, got {type(data).__name__}")
        name = name or getattr(data, "name", None) or ""
        try:
            return cls(name=str(name), **kw)
        except ValueError as err:
            raise ValueError(f"from_pyg: {err}") from None

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

    def to_pyg(self):
        r"""Converts the graph to a :class:`torch_geometric.data.HeteroData` object.

        The training edges become the edge type :obj:`('user', 'rates', 'item')`,
        and their flipped copy the reverse type :obj:`('item', 'rated_by', 'user')`
        for message passing in both directions. Held-out splits are stored as
        attributes of the forward edge type; their names end in :obj:`_index`, so
        :class:`~torch_geometric.loader.DataLoader` batching offsets them like
        :obj:`edge_index`. :meth:`from_pyg` inverts this conversion exactly.

        .. code-block:: python

            data = graph.to_pyg()
            data['user'].num_nodes                      # U
            data['user', 'rates', 'item'].edge_index    # train_edges, [2, E]
            data['user', 'rates', 'item'].edge_label    # train_labels, [E] (if labelled)
            data['user', 'rates', 'item'].time          # train_timestamps, [E] (if any)
            data['user', 'rates', 'item'].test_edge_index  # test_edges, [2, T]
            data['item', 'rated_by', 'user'].edge_index    # train_edges.flip(0)

        Returns:
            :class:`~torch_geometric.data.HeteroData` with node types :obj:`'user'`
            and :obj:`'item'` (:obj:`num_nodes`, and :obj:`raw_id` (list of raw ids
            indexed by internal id) when :attr:`user_ids` / :attr:`item_ids` is
            set); on :obj:`('user', 'rates', 'item')`: :obj:`edge_index`,
            :obj:`valid_edge_index`, :obj:`test_edge_index` (always present,
            possibly empty :obj:`[2, 0]`), :obj:`edge_label` (aligned with
            :obj:`edge_index`, *not* with an :obj:`edge_label_index`),
            :obj:`valid_edge_label`, :obj:`test_edge_label` (each only when that
            split has labels) and :obj:`time` (only with timestamps); on
            :obj:`('item', 'rated_by', 'user')`: :obj:`edge_index` only. The graph's
            :attr:`name` is kept as :obj:`data.name`. The forward edge type's
            tensors are the graph's own (not copied); the graph stays immutable, so
            do not modify them in place.
        """
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data.name = self.name
        data["user"].num_nodes = self.num_users
        data["item"].num_nodes = self.num_items
        if self.user_ids is not None:
            data["user"].raw_id = list(self.user_ids)
        if self.item_ids is not None:
            data["item"].raw_id = list(self.item_ids)
        fwd = data["user", "rates", "item"]
        fwd.edge_index = self.train_edges
        fwd.valid_edge_index = self.valid_edges
        fwd.test_edge_index = self.test_edges
        for attr, value in (("edge_label", self.train_labels), ("valid_edge_label", self.valid_labels),
                            ("test_edge_label", self.test_labels), ("time", self.train_timestamps)):
            if value is not None:
                fwd[attr] = value
        data["item", "rated_by", "user"].edge_index = self.train_edges.flip(0)
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


# ---------------------------------------------------------------------------- PyG conversion
def _num_nodes(store) -> Optional[int]:
    """``num_nodes`` of a PyG node store: the explicit attribute, else PyG's inference (from
    ``x`` and other node-level tensors, or largest ``edge_index`` id + 1), else ``None``."""
    import warnings

    if "num_nodes" in store:
        n = store["num_nodes"]
    else:
        with warnings.catch_warnings():  # PyG warns when it falls back to max id + 1
            warnings.simplefilter("ignore")
            n = store.num_nodes
    return None if n is None else int(n)


def _pyg_index(value, what: str) -> Tensor:
    """``value`` as CPU ``LongTensor [2, m]``; ``ValueError`` if it is not ``[2, m]``."""
    t = torch.as_tensor(value).cpu()
    if t.dim() != 2 or t.shape[0] != 2:
        raise ValueError(f"from_pyg: {what} must have shape [2, m], got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"from_pyg: {what} must hold integer node ids, got {t.dtype}")
    return t.long()


def _pyg_values(store, key: str, n: int, what: str) -> Optional[Tensor]:
    """Per-edge attribute ``store[key]`` (CPU, flattened) or ``None``; ``ValueError`` unless it
    has ``n`` values."""
    if key not in store or store[key] is None:
        return None
    t = torch.as_tensor(store[key]).cpu().reshape(-1)
    if t.numel() != n:
        raise ValueError(f"from_pyg: {what} has {t.numel()} values but its edge index has {n} edges"
                         + (" (edge_label must align with edge_index; edge_label_index is not supported)"
                            if key == "edge_label" else ""))
    return t


def _check_range(ids: Tensor, n: int, what: str) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
        bad = ids[(ids < 0) | (ids >= n)]
        raise ValueError(f"from_pyg: {what} id {int(bad[0])} out of range 0..{n - 1} "
                         f"({bad.numel()} ids out of range)")


def _from_hetero(data, num_users: Optional[int]) -> dict:
    cands = [et for et in data.edge_types if et[0] == "user" and et[2] == "item"]
    if not cands:
        raise ValueError(f"from_pyg: HeteroData has no ('user', *, 'item') edge type (edge types: {data.edge_types})")
    if len(cands) > 1:
        raise ValueError(f"from_pyg: HeteroData has several ('user', *, 'item') edge types {cands}; keep exactly one")
    et = cands[0]
    store = data[et]
    if "edge_index" not in store:
        raise ValueError(f"from_pyg: edge type {et} has no edge_index")
    splits = {"train": _pyg_index(store["edge_index"], f"{et}.edge_index")}
    for nm in ("valid", "test"):
        key = f"{nm}_edge_index"
        splits[nm] = _pyg_index(store[key], f"{et}.{key}") if key in store and store[key] is not None else None
    present = [e for e in splits.values() if e is not None]
    sizes = {}
    for nt, row, given in (("user", 0, num_users), ("item", 1, None)):
        n = _num_nodes(data[nt]) if nt in data.node_types else None
        if given is not None:
            if n is not None and n != int(given):
                raise ValueError(f"from_pyg: num_users={given} contradicts data['user'].num_nodes={n}")
            n = int(given)
        if n is None:
            n = max([int(e[row].max()) + 1 for e in present if e.numel()] + [0])
        for nm, e in splits.items():
            if e is not None:
                _check_range(e[row], n, f"{nm} edges: {nt}")
        sizes[nt] = n
    m = {nm: (0 if e is None else e.shape[1]) for nm, e in splits.items()}
    labels = {
        "train": _pyg_values(store, "edge_label", m["train"], f"{et}.edge_label"),
        "valid": _pyg_values(store, "valid_edge_label", m["valid"], f"{et}.valid_edge_label"),
        "test": _pyg_values(store, "test_edge_label", m["test"], f"{et}.test_edge_label"),
    }
    time = _pyg_values(store, "time", m["train"], f"{et}.time")
    ids = {}
    for nt in ("user", "item"):
        raw = data[nt].get("raw_id") if nt in data.node_types else None
        if raw is not None:
            raw = raw.tolist() if isinstance(raw, Tensor) else list(raw)
            if len(raw) != sizes[nt]:
                raise ValueError(f"from_pyg: data['{nt}'].raw_id has {len(raw)} entries for {sizes[nt]} nodes")
        ids[nt] = raw
    return dict(num_users=sizes["user"], num_items=sizes["item"], train_edges=splits["train"],
                valid_edges=splits["valid"], test_edges=splits["test"], train_labels=labels["train"],
                valid_labels=labels["valid"], test_labels=labels["test"], train_timestamps=time,
                user_ids=ids["user"], item_ids=ids["item"])


def _first_occurrence(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Positions of the first occurrence of each distinct key (in order of position), and the
    index of each key's group among those positions."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(keys.numel()), reduce="amin")
    keep, group_order = torch.sort(first)
    rank = torch.empty_like(group_order)
    rank[group_order] = torch.arange(group_order.numel())
    return keep, rank[inverse]


def _homogeneous_split(ei: Tensor, num_users: int, num_nodes: int, what: str,
                       values: dict) -> tuple[Tensor, dict]:
    """Orient homogeneous edges to ``(user, item)`` pairs and keep each pair once (first
    occurrence); ``values`` (per-column attributes or ``None``) are taken at the kept columns
    and must agree across the copies of a pair."""
    _check_range(ei.reshape(-1), num_nodes, f"{what}: node")
    is_user = ei < num_users
    for bad, kind, nodes in ((is_user[0] & is_user[1], "users", f"0..{num_users - 1}"),
                             (~(is_user[0] | is_user[1]), "items", f"{num_users}..{num_nodes - 1}")):
        if bool(bad.any()):
            c = int(bad.nonzero()[0])
            raise ValueError(f"from_pyg: {what} has {int(bad.sum())} edges between two {kind}, first "
                             f"({int(ei[0, c])}, {int(ei[1, c])}); {kind} are nodes {nodes}")
    user = torch.where(is_user[0], ei[0], ei[1])
    item = torch.where(is_user[0], ei[1], ei[0]) - num_users
    keep, group = _first_occurrence(user * max(1, num_nodes - num_users) + item)
    out = {}
    for key, v in values.items():
        if v is not None and not bool((v[keep][group] == v).all()):
            raise ValueError(f"from_pyg: {what}: copies of the same user-item pair disagree on {key}")
        out[key] = None if v is None else v[keep]
    return torch.stack([user[keep], item[keep]]), out


def _from_homogeneous(data, num_users: Optional[int]) -> dict:
    if num_users is None:
        num_users = getattr(data, "num_users", None)
    if num_users is None:
        raise ValueError("from_pyg: homogeneous Data needs num_users (argument or data.num_users)")
    num_users = int(num_users)
    if "edge_index" not in data or data.edge_index is None:
        raise ValueError("from_pyg: homogeneous Data has no edge_index")
    train = _pyg_index(data.edge_index, "edge_index")
    num_nodes = _num_nodes(data._store)
    if num_nodes is None:
        num_nodes = int(train.max()) + 1 if train.numel() else num_users
    if not 0 <= num_users <= num_nodes:
        raise ValueError(f"from_pyg: num_users={num_users} must be in 0..num_nodes={num_nodes}")
    kw = dict(num_users=num_users, num_items=num_nodes - num_users)
    for nm, ekey, lkey in (("train", "edge_index", "edge_label"), ("valid", "valid_edge_index", "valid_edge_label"),
                           ("test", "test_edge_index", "test_edge_label")):
        if ekey not in data or data[ekey] is None:
            kw[f"{nm}_edges"] = None
            continue
        ei = train if nm == "train" else _pyg_index(data[ekey], ekey)
        vals = {lkey: _pyg_values(data._store, lkey, ei.shape[1], lkey)}
        if nm == "train":
            vals["time"] = _pyg_values(data._store, "time", ei.shape[1], "time")
        kw[f"{nm}_edges"], got = _homogeneous_split(ei, num_users, num_nodes, ekey, vals)
        kw[f"{nm}_labels"] = got[lkey]
        if nm == "train":
            kw["train_timestamps"] = got["time"]
    return kw
