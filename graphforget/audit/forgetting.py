r"""Where deleted items land in the deleted user's ranking.

For a deleted pair :math:`(u, i)` and a model with representations :math:`z`, the candidates
are the items not in :math:`u`'s training set of the graph *after* deletion (so :math:`i` is a
candidate, and so are :math:`u`'s other deleted items), and

.. math::
    \mathrm{rank}(u, i) = 1 + \big|\{\, j \in C_u \setminus \{i\} :
        (\hat{y}_{uj}, -j) \succ (\hat{y}_{ui}, -i) \,\}\big|,

with :math:`\hat{y}_{uj} = \langle z_u, z_j \rangle` and ties broken exactly like
:func:`~graphforget.metrics.topk_items` (higher score first, then the smaller item id), so
``rank <= K`` iff the item is in the user's served top-K list. The original model still ranks a
memorised item near the top; a model that forgot the pair should rank it like a retrained one.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..data.sparse import ragged_arange
from ..metrics import csr_of, order_key
from ..models import RecModel
from .utility import check_edges, representations


@torch.no_grad()
def item_ranks(user_emb: Tensor, item_emb: Tensor, edges: Tensor, exclude: Optional[Tensor] = None,
               batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Rank (1 = top) of ``edges[1]`` for ``edges[0]`` among the items not in ``exclude``, and
    the number of candidates.

    Args:
        user_emb, item_emb: ``[U, d]`` and ``[I, d]`` representations.
        edges: ``LongTensor [2, m]`` query pairs (CPU).
        exclude: ``[2, e]`` pairs removed from each user's candidates; the query item itself is
            always a candidate.
        batch_size: query pairs scored per ``[b, I]`` block.

    Returns:
        ``(ranks, candidates)``, both ``LongTensor [m]`` on CPU.

    Queries are processed grouped by user, so each block computes one score row per distinct
    user (many queries share a user: a membership-inference sample has ~8 per user on Gowalla).
    """
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    m = edges.shape[1]
    dev = user_emb.device
    ranks = torch.empty(m, dtype=torch.long)
    cands = torch.empty(m, dtype=torch.long)
    ptr, ex_items = csr_of(exclude, num_users) if exclude is not None else (None, None)
    order = torch.argsort(edges[0], stable=True)
    for s in range(0, m, batch_size):
        idx = order[s:s + batch_size]
        u, i = edges[0, idx], edges[1, idx]
        b = u.numel()
        users, inv = torch.unique(u, return_inverse=True)
        key = order_key(user_emb[users.to(dev)] @ item_emb.t())[inv.to(dev)]  # [b, I]
        rows = torch.arange(b, device=dev)
        target = key[rows, i.to(dev)]
        above = torch.count_nonzero(key > target[:, None], dim=1).cpu()  # every item
        n_ex = torch.zeros(b, dtype=torch.long)
        if ptr is not None:  # take back the excluded items (never the query item itself)
            cnt = ptr[u + 1] - ptr[u]
            r = torch.repeat_interleave(torch.arange(b), cnt)
            c = ex_items[torch.repeat_interleave(ptr[u], cnt) + ragged_arange(cnt)]
            pair = torch.unique(r * num_items + c)  # duplicates in ``exclude`` count once
            r, c = pair // num_items, pair % num_items
            keep = c != i[r]
            r, c = r[keep], c[keep]
            above -= torch.zeros(b, dtype=torch.long).index_add_(
                0, r, (key[r.to(dev), c.to(dev)] > target[r.to(dev)]).long().cpu())
            n_ex = torch.bincount(r, minlength=b)
        ranks[idx] = above + 1
        cands[idx] = num_items - n_ex
    return ranks, cands


def deleted_item_ranks(model: RecModel, graph: InteractionGraph, deleted_edges,
                       adj_graph: Optional[InteractionGraph] = None, batch_size: int = 512) -> Tensor:
    """Rank of each deleted item for its user, ``LongTensor [m]`` (see the module docstring).

    Args:
        model: any recommender.
        graph: the graph *after* deletion; its training items are the excluded candidates.
        deleted_edges: ``[2, m]`` deleted ``(user, item)`` pairs.
        adj_graph: graph the model propagates on (default ``graph``); pass the graph before
            deletion for the original model, so that it is scored as it was served.
    """
    deleted = check_edges(deleted_edges, graph, "deleted_edges")
    out = representations(model, adj_graph if adj_graph is not None else graph)
    uemb, iemb = model.split(out)
    return item_ranks(uemb, iemb, deleted, graph.train_edges, batch_size)[0]


def rank_summary(ranks: Tensor, k: int = 20) -> dict:
    """``{"n", "mean_rank", "median_rank", "in_top@k"}``: count, mean and (lower) median rank,
    and the fraction of pairs with rank ``<= k``."""
    r = torch.as_tensor(ranks).double().view(-1)
    if r.numel() == 0:
        raise ValueError("rank_summary: no ranks given")
    return {"n": int(r.numel()), "mean_rank": float(r.mean()), "median_rank": float(r.median()),
            f"in_top@{k}": float((r <= k).double().mean())}
