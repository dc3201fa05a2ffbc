r"""Row filters on :class:`~graphforget.data.Interactions`: k-core, rating thresholds, duplicates.

Every filter returns a new table and leaves its input untouched; all are vectorised
(``bincount`` / ``unique``) and deterministic. Only :func:`k_core` and :func:`compact` change
the id spaces (dropping users / items left without rows, keeping the raw ids of the rest).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor

from .interactions import Interactions

MODES = ("ge", "gt")


def _passes(ratings: Optional[Tensor], threshold: float, mode: str, fn: str) -> Tensor:
    if ratings is None:
        raise ValueError(f"{fn}: the interactions have no ratings to threshold")
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be 'ge' (rating >= threshold) or 'gt' (rating > "
                         f"threshold), got {mode!r}")
    return ratings >= threshold if mode == "ge" else ratings > threshold


def compact(inter: Interactions) -> Interactions:
    """Drop users and items without rows and renumber the rest contiguously, keeping their
    relative order and raw ids (``user_ids`` / ``item_ids``)."""
    def remap(ids: Tensor, n: int, names):
        present = torch.bincount(ids, minlength=n) > 0
        new_id = torch.cumsum(present, 0) - 1
        kept = torch.nonzero(present).view(-1)
        new_names = [names[k] for k in kept.tolist()] if len(names) else []
        return new_id[ids], int(kept.numel()), new_names

    users, nu, uid = remap(inter.users, inter.num_users, inter.user_ids)
    items, ni, iid = remap(inter.items, inter.num_items, inter.item_ids)
    return replace(inter, users=users, items=items, user_ids=uid, item_ids=iid,
                   num_users=nu, num_items=ni)


def k_core(inter: Interactions, k: int = 5, user_k: Optional[int] = None,
           item_k: Optional[int] = None) -> Interactions:
    r"""The k-core: the largest subset of rows in which every user has at least ``user_k``
    rows and every item at least ``item_k`` rows (both default to ``k``).

    Computed by iterated pruning until stable: each round counts degrees of the surviving rows
    with ``bincount`` and drops rows whose user or item falls below its threshold. Since the
    core is the unique maximal subset satisfying both conditions, pruning order does not matter
    (pandas-style "users, then items" loops reach the same rows). Degrees count rows, so
    :func:`dedupe` first if the table may repeat a pair. Row order is kept and the id spaces are
    compacted (:func:`compact`).

    Raises:
        ValueError: for a threshold below 1.
    """
    uk = k if user_k is None else user_k
    ik = k if item_k is None else item_k
    if int(uk) < 1 or int(ik) < 1:
        raise ValueError(f"k_core thresholds must be >= 1, got user_k={uk}, item_k={ik}")
    alive = torch.ones(len(inter), dtype=torch.bool)
    while True:
        u, i = inter.users[alive], inter.items[alive]
        ok = (torch.bincount(u, minlength=inter.num_users)[u] >= uk) & \
             (torch.bincount(i, minlength=inter.num_items)[i] >= ik)
        if bool(ok.all()):
            break
        alive[torch.nonzero(alive).view(-1)[~ok]] = False
    return compact(inter.select(alive))


def binarize(inter: Interactions, threshold: float, mode: str = "ge") -> Interactions:
    """Ratings become 0/1 labels: ``1`` where ``rating >= threshold`` (``mode='ge'``) or
    ``rating > threshold`` (``'gt'``), else ``0``. All rows are kept.

    Raises:
        ValueError: no ratings, or an unknown ``mode``.
    """
    return replace(inter, ratings=_passes(inter.ratings, threshold, mode, "binarize").float())


def implicit(inter: Interactions, threshold: float, mode: str = "ge") -> Interactions:
    """Implicit feedback: keep only rows whose rating passes the threshold (as in
    :func:`binarize`) and drop the ratings. Id spaces are unchanged.

    Raises:
        ValueError: no ratings, or an unknown ``mode``.
    """
    keep = _passes(inter.ratings, threshold, mode, "implicit")
    return replace(inter.select(keep), ratings=None)


def dedupe(inter: Interactions, keep: str = "last") -> Interactions:
    """One row per ``(user, item)`` pair: the ``'first'`` or ``'last'`` occurrence in row order
    (its rating and timestamp go with it). Surviving rows keep their relative order.

    Raises:
        ValueError: unknown ``keep``.
    """
    if keep not in ("first", "last"):
        raise ValueError(f"dedupe: keep must be 'first' or 'last', got {keep!r}")
    n = len(inter)
    if n == 0:
        return inter.select(torch.zeros(0, dtype=torch.long))
    keys = inter.users * inter.num_items + inter.items
    _, inverse = torch.unique(keys, return_inverse=True)
    rows = torch.arange(n)
    reduce = "amin" if keep == "first" else "amax"
    init = torch.full((int(inverse.max()) + 1,), n if keep == "first" else -1, dtype=torch.long)
    chosen = init.scatter_reduce(0, inverse, rows, reduce=reduce)
    return inter.select(torch.sort(chosen).values)
