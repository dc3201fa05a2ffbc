r"""Train / validation / test splits of an :class:`~graphforget.data.Interactions` table.

Each split returns ``(train, valid, test)`` tables over the *same* id spaces as the input; rows
inside each part keep their original relative order. Randomness comes only from a
``torch.Generator`` seeded with ``seed``: the same seed gives the same split on every machine.
:func:`to_graph` turns the three tables into an :class:`~graphforget.data.InteractionGraph`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .filters import dedupe
from .graph import InteractionGraph
from .interactions import Interactions

Split = tuple[Interactions, Interactions, Interactions]


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(x < 0 or not math.isfinite(x) for x in r) or abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"ratios must be three non-negative numbers (train, valid, test) "
                         f"summing to 1, got {tuple(ratios)}")
    return r  # type: ignore[return-value]


def _parts(inter: Interactions, part: Tensor) -> Split:
    """Rows with ``part == 0 / 1 / 2``."""
    return tuple(inter.select(part == p) for p in range(3))  # type: ignore[return-value]


def _round_half_up(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).long()


def random_split(inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> Split:
    r"""Global random split: a seeded permutation of all ``n`` rows; the first
    :math:`\lfloor n r_0 \rfloor` go to train, the next up to :math:`\lfloor n (r_0 + r_1)\rfloor`
    to validation, the rest to test."""
    r = _check_ratios(ratios)
    n = len(inter)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n1, n2 = int(n * r[0]), int(n * (r[0] + r[1]))
    part = torch.empty(n, dtype=torch.long)
    part[perm[:n1]], part[perm[n1:n2]], part[perm[n2:]] = 0, 1, 2
    return _parts(inter, part)


def _user_ranks(users: Tensor, order: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    """For rows visited in ``order``: each row's 0-based rank among its user's rows and its
    user's row count (both indexed by row)."""
    n = users.numel()
    by_user = order[torch.sort(users[order], stable=True).indices]
    counts = torch.bincount(users, minlength=num_users)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.long)
    rank[by_user] = torch.arange(n) - starts[users[by_user]]
    return rank, counts[users]


def per_user_split(inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> Split:
    r"""Split every user's rows by ``ratios``.

    Each user's :math:`c` rows are put in a seeded random order; ranks
    :math:`< \mathrm{round}(c\,r_0)` go to train, ranks
    :math:`< \mathrm{round}(c\,(r_0 + r_1))` to validation, the rest to test (round half up).
    A user with a single row therefore keeps it in train whenever :math:`r_0 \ge 0.5`.
    Vectorised: one permutation, one stable sort by user, ranks from cumulative counts.
    """
    r = _check_ratios(ratios)
    perm = torch.randperm(len(inter), generator=torch.Generator().manual_seed(seed))
    rank, count = _user_ranks(inter.users, perm, inter.num_users)
    c = count.double()
    cut1 = _round_half_up(c * r[0])
    cut2 = _round_half_up(c * (r[0] + r[1]))
    part = torch.where(rank < cut1, 0, torch.where(rank < cut2, 1, 2))
    return _parts(inter, part)


def leave_one_out(inter: Interactions, seed: int = 0, by_time: bool = True) -> Split:
    """Per user: the last interaction goes to test, the second-to-last to validation, the rest
    to train.

    "Last" means latest timestamp (``by_time=True``; equal timestamps are ordered randomly by
    ``seed``) or last in a seeded random order (``by_time=False``). Users with fewer than three
    rows keep at least one in train: with two rows only the test row is held out, with one row
    nothing is.

    Raises:
        ValueError: ``by_time=True`` on a table without timestamps.
    """
    n = len(inter)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if by_time:
        if inter.timestamps is None:
            raise ValueError("leave_one_out(by_time=True) needs timestamps; pass by_time=False "
                             "for a random hold-out")
        order = order[torch.sort(inter.timestamps[order], stable=True).indices]
    rank, count = _user_ranks(inter.users, order, inter.num_users)
    from_end = count - 1 - rank
    part = torch.zeros(n, dtype=torch.long)
    part[(from_end == 0) & (count >= 2)] = 2
    part[(from_end == 1) & (count >= 3)] = 1
    return _parts(inter, part)


def temporal_split(inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    r"""Global time split: rows sorted by timestamp (ties by row order); the earliest
    :math:`\lfloor n r_0 \rfloor` go to train, the next up to :math:`\lfloor n (r_0 + r_1)\rfloor`
    to validation, the latest to test. Deterministic, no seed.

    Raises:
        ValueError: the table has no timestamps.
    """
    r = _check_ratios(ratios)
    if inter.timestamps is None:
        raise ValueError("temporal_split needs timestamps")
    n = len(inter)
    order = torch.sort(inter.timestamps, stable=True).indices
    n1, n2 = int(n * r[0]), int(n * (r[0] + r[1]))
    part = torch.empty(n, dtype=torch.long)
    part[order[:n1]], part[order[n1:n2]], part[order[n2:]] = 0, 1, 2
    return _parts(inter, part)


def to_graph(train: Interactions, valid: Interactions | None = None,
             test: Interactions | None = None, labels: bool = False, name: str = "",
             drop_unseen: bool = True) -> InteractionGraph:
    """An :class:`InteractionGraph` from split tables over the same id spaces.

    * train rows repeating a ``(user, item)`` pair are reduced to the last occurrence
      (:func:`~graphforget.data.filters.dedupe`), since a graph edge exists once;
    * held-out rows repeating a pair within their split are reduced likewise, and held-out
      rows whose pair is a training edge are dropped (they would be masked in ranking);
    * with ``drop_unseen``, held-out rows whose user or item has no training row are dropped
      (no embedding is trained for them);
    * with ``labels``, ``ratings`` become the edge labels of every split.

    Id spaces are kept as given (nodes without training edges stay, with degree 0).

    Raises:
        ValueError: the tables have different id spaces, or ``labels`` without ratings.
    """
    tables = [t for t in (valid, test) if t is not None]
    for t in tables:
        if (t.num_users, t.num_items) != (train.num_users, train.num_items):
            raise ValueError(f"splits have different id spaces: train {train.num_users}x"
                             f"{train.num_items}, held-out {t.num_users}x{t.num_items}")
    if labels and any(t.ratings is None for t in [train, *tables]):
        raise ValueError("to_graph(labels=True) needs ratings on every split")
    train = dedupe(train, keep="last")
    train_keys = train.users * train.num_items + train.items
    seen_u = torch.bincount(train.users, minlength=train.num_users) > 0
    seen_i = torch.bincount(train.items, minlength=train.num_items) > 0

    def held_out(t: Interactions | None) -> Interactions | None:
        if t is None:
            return None
        t = dedupe(t, keep="last")
        keep = ~torch.isin(t.users * t.num_items + t.items, train_keys)
        if drop_unseen:
            keep &= seen_u[t.users] & seen_i[t.items]
        return t.select(keep)

    return InteractionGraph.from_splits(train, held_out(valid), held_out(test), labels=labels,
                                        name=name)
