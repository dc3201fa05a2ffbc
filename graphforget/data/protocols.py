r"""End-to-end preprocessing protocols: raw interaction table → split :class:`InteractionGraph`.

* :func:`ifru_protocol` — the labelled (explicit-feedback) setting of IFRU (Zhang et al.,
  *Recommendation Unlearning via Influence Function*, TORS 2024) and the RecEraser line of work:
  binary labels from a rating threshold, 5-core, random 60/20/20 split.
* :func:`implicit_protocol` — the implicit-feedback default :func:`graphforget.data.registry.load_dataset`
  applies to raw rating files: positives by threshold, 5-core, per-user 80/10/10 split.
* The LightGCN protocol needs no function: the LightGCN / NGCF text folders are already split
  (:func:`graphforget.data.loaders.load_lightgcn_txt`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .filters import binarize, dedupe, implicit, k_core
from .graph import InteractionGraph
from .interactions import Interactions
from .splits import _check_ratios, per_user_split, to_graph


def _first_appearance_ids(ids: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``(new_id_of_old, kept_old_ids)``: ids renumbered by first appearance in ``ids``;
    ids never appearing map to ``-1``."""
    m = ids.numel()
    first = torch.full((n,), m, dtype=torch.long).scatter_reduce(0, ids, torch.arange(m), reduce="amin")
    kept = torch.nonzero(first < m).view(-1)
    kept = kept[torch.argsort(first[kept])]
    new = torch.full((n,), -1, dtype=torch.long)
    new[kept] = torch.arange(kept.numel())
    return new, kept


def ifru_protocol(inter: Interactions, threshold: float, mode: str = "ge", core: int = 5,
                  ratios: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                  name: str = "") -> InteractionGraph:
    r"""IFRU's public preprocessing of an explicit-rating table into a labelled graph.

    Steps (as in the IFRU / RecEraser preprocessing scripts):

    1. duplicate ``(user, item)`` rows are reduced to the last one (a no-op on the rating
       data sets those papers use, needed because a graph edge exists once);
    2. ratings become binary labels :math:`y = [r \ge t]` (``mode='ge'``) or
       :math:`[r > t]` (``'gt'``); *all* rows are kept, positives and negatives
       (IFRU uses ``t = 4`` on MovieLens / Amazon, ``t = 5`` on Book-Crossing);
    3. iterative ``core``-core on all rows (:func:`~graphforget.data.filters.k_core`);
    4. the rows are shuffled with ``numpy.random.RandomState(seed).shuffle`` — the legacy
       generator the public script seeds with ``np.random.seed`` — and cut at
       :math:`\lfloor n r_0 \rfloor` and :math:`\lfloor n (r_0 + r_1) \rfloor` into
       train / validation / test (60/20/20);
    5. validation and test rows whose user or item does not occur in train are dropped;
    6. users and items are renumbered by first appearance in the (shuffled) training rows,
       exactly like the script's ``user_map`` / ``item_map``; ids absent from train are
       dropped from the id spaces. Rows keep the shuffled order.

    The labels are attached to every split (``graph.train_labels`` / ``valid_labels`` /
    ``test_labels``), so models train with BCE and are evaluated with AUC.

    Raises:
        ValueError: no ratings, bad ``mode`` or ``ratios``.
    """
    r = _check_ratios(ratios)
    data = k_core(binarize(dedupe(inter, keep="last"), threshold, mode), k=core)
    n = len(data)
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    idx = torch.from_numpy(idx)
    n1, n2 = int(n * r[0]), int(n * (r[0] + r[1]))
    train, valid, test = data.select(idx[:n1]), data.select(idx[n1:n2]), data.select(idx[n2:])
    new_u, kept_u = _first_appearance_ids(train.users, data.num_users)
    new_i, kept_i = _first_appearance_ids(train.items, data.num_items)
    user_ids = [data.user_ids[k] for k in kept_u.tolist()] if len(data.user_ids) else []
    item_ids = [data.item_ids[k] for k in kept_i.tolist()] if len(data.item_ids) else []

    def relabel(t: Interactions) -> Interactions:
        t = t.select((new_u[t.users] >= 0) & (new_i[t.items] >= 0))
        return replace(t, users=new_u[t.users], items=new_i[t.items], user_ids=user_ids,
                       item_ids=item_ids, num_users=kept_u.numel(), num_items=kept_i.numel())

    return InteractionGraph.from_splits(relabel(train), relabel(valid), relabel(test),
                                        labels=True, name=name)


def implicit_protocol(inter: Interactions, threshold: Optional[float] = 4.0, mode: str = "ge",
                      core: int = 5, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                      name: str = "") -> InteractionGraph:
    r"""Implicit-feedback graph from a rating table (the default for raw rating files).

    1. with ratings and a ``threshold``: keep rows with :math:`r \ge t` (``'ge'``, default
       :math:`t = 4`, the usual MovieLens positive cut) or :math:`r > t`, drop the ratings;
       ``threshold=None`` (or a table without ratings) keeps every row as a positive;
    2. duplicate pairs reduced to the last occurrence;
    3. iterative ``core``-core (default 5);
    4. per-user random split by ``ratios`` (default 80/10/10, :func:`per_user_split`, seeded);
    5. :func:`to_graph`: held-out rows of users / items without training rows dropped.
    """
    if threshold is not None and inter.ratings is not None:
        inter = implicit(inter, threshold, mode)
    else:
        inter = replace(inter, ratings=None)
    data = k_core(dedupe(inter, keep="last"), k=core)
    return to_graph(*per_user_split(data, ratios, seed), name=name)
