r"""Full-ranking top-K metrics (training items masked) and AUC.

Definitions follow the LightGCN reference code. For a user :math:`u` with test set
:math:`T_u` (users without test items are skipped) and top-K list :math:`R_u` of items not in
the user's training set:

* Recall@K :math:`= |R_u \cap T_u| / |T_u|`
* Precision@K :math:`= |R_u \cap T_u| / K`
* HitRate@K :math:`= [\,|R_u \cap T_u| > 0\,]`
* NDCG@K :math:`= \mathrm{DCG}/\mathrm{IDCG}`, :math:`\mathrm{DCG} = \sum_{r=1}^{K} \frac{[R_u[r] \in T_u]}{\log_2(r+1)}`,
  :math:`\mathrm{IDCG} = \sum_{r=1}^{\min(K, |T_u|)} \frac{1}{\log_2(r+1)}`

each averaged over users. Ties are broken deterministically (higher score first, then the
smaller item id) with an exact integer key, so metrics do not depend on the evaluation batch size.

Memory: a batch of ``b`` users is scored against the items in chunks of at most ``item_chunk``
items (by default as many as fit :data:`RANKING_MEMORY_BUDGET` at :data:`BYTES_PER_SCORE` bytes
per user–item score, so all items at once for ``b = 1024`` up to 52,428 items); the top-K of
each chunk is merged with the running top-K. The integer keys are unique per item, so the
merged lists are exactly the single-chunk ones.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from .data.sparse import ragged_arange

#: bytes the full ranking may use per batch for its ``[batch, chunk]`` score / key tensors;
#: beyond it the items are ranked in chunks (``item_chunk`` / ``memory_budget`` override it)
RANKING_MEMORY_BUDGET = 2**30
#: working bytes per user–item score: the float32 scores, their ``+ 0.0`` copy, the int32 bit
#: pattern and the int64 key of :func:`order_key`
BYTES_PER_SCORE = 20
_LOW31 = (1 << 31) - 1


def order_key(scores: Tensor, start: int = 0) -> Tensor:
    """int64 key whose descending order is (score desc, item id asc), exactly.

    The float32 bit pattern ``b`` of a score is made monotone (``b`` for ``b >= 0``, ``b ^ 0x7FFFFFFF``
    otherwise), shifted left by 31 bits and completed by ``2^31 - 1 - item``. Adding ``+0.0``
    first maps ``-0.0`` to ``+0.0`` (IEEE 754), so exactly-zero scores tie and are ordered by
    item id whatever their sign bit. Column ``j`` of ``scores`` is item ``start + j`` (a chunk
    of the items); :func:`key_items` recovers the item ids from keys.
    """
    bits = (scores.to(torch.float32) + 0.0).contiguous().view(torch.int32)
    key = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    idx = torch.arange(start, start + scores.shape[-1], device=scores.device, dtype=torch.int64)
    return key.bitwise_left_shift_(31).add_(_LOW31 - idx)  # in place: one [b, I] int64


def key_items(keys: Tensor) -> Tensor:
    """Item ids of :func:`order_key` keys (their low 31 bits are ``2^31 - 1 - item``)."""
    return _LOW31 - (keys & _LOW31)


def item_chunk_size(batch: int, num_items: int, item_chunk: int | None = None,
                    memory_budget: int | None = None) -> int:
    """Items scored at once for a batch of ``batch`` users: ``item_chunk`` if given, else as
    many as fit ``memory_budget`` (default :data:`RANKING_MEMORY_BUDGET`) at
    :data:`BYTES_PER_SCORE` bytes per score; at least 1, at most ``num_items``."""
    if item_chunk is not None:
        if int(item_chunk) < 1:
            raise ValueError(f"item_chunk must be a positive number of items, got {item_chunk}")
        return max(1, min(int(item_chunk), num_items))
    budget = RANKING_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    return max(1, min(num_items, budget // max(1, batch * BYTES_PER_SCORE)))


def csr_of(edges: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    order = torch.argsort(edges[0], stable=True)
    ptr = torch.zeros(num_users + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(edges[0], minlength=num_users), 0)
    return ptr, edges[1][order]


def topk_items(user_emb: Tensor, item_emb: Tensor, users: Tensor, k: int,
               exclude: Tensor | None = None, batch_size: int = 1024,
               item_chunk: int | None = None, memory_budget: int | None = None) -> Tensor:
    """Top-``k`` item ids ``[len(users), k]`` per user, excluding ``exclude`` edges ``[2, m]``.

    Ordered by score, ties by the smaller item id (:func:`order_key`). Items are scored in
    chunks of :func:`item_chunk_size` items (``item_chunk``, or what fits ``memory_budget``
    bytes per batch); the result does not depend on the chunking.
    """
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    ex_ptr, ex_items = csr_of(exclude, num_users) if exclude is not None else (None, None)
    out = []
    for start in range(0, users.numel(), batch_size):
        ub = users[start:start + batch_size]
        rows = cols = None
        if ex_ptr is not None:
            cnt = ex_ptr[ub + 1] - ex_ptr[ub]
            rows = torch.repeat_interleave(torch.arange(ub.numel()), cnt)
            cols = ex_items[torch.repeat_interleave(ex_ptr[ub], cnt) + ragged_arange(cnt)]
        chunk = item_chunk_size(ub.numel(), num_items, item_chunk, memory_budget)
        if chunk >= num_items or k > num_items:  # one chunk (k > num_items: topk's own error)
            scores = user_emb[ub] @ item_emb.t()
            if rows is not None:
                scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
            out.append(torch.topk(order_key(scores), k, dim=1).indices.cpu())
            continue
        uvec = user_emb[ub]
        if rows is not None:
            rows, cols = rows.to(uvec.device), cols.to(uvec.device)
        best = None  # running top-k keys [b, <= k], descending
        for c0 in range(0, num_items, chunk):
            c1 = min(c0 + chunk, num_items)
            scores = uvec @ item_emb[c0:c1].t()
            if rows is not None:
                inside = (cols >= c0) & (cols < c1)
                scores[rows[inside], cols[inside] - c0] = float("-inf")
            top = torch.topk(order_key(scores, c0), min(k, c1 - c0), dim=1).values
            del scores
            if best is not None:
                top = torch.cat([best, top], 1)
                top = torch.topk(top, min(k, top.shape[1]), dim=1).values
            best = top
        out.append(key_items(best).cpu())
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)


@torch.no_grad()
def ranking_metrics(user_emb: Tensor, item_emb: Tensor, train_edges: Tensor, test_edges: Tensor,
                    ks: Sequence[int] = (20,), batch_size: int = 1024,
                    users: Tensor | None = None, item_chunk: int | None = None,
                    memory_budget: int | None = None) -> dict[str, float]:
    """Recall / Precision / NDCG / HitRate @ each K, full ranking with training items masked.

    Args:
        user_emb, item_emb: final representations ``[U, d]`` and ``[I, d]``.
        train_edges: ``[2, m]`` pairs masked from the ranking.
        test_edges: ``[2, t]`` held-out pairs.
        users: optional subset of users to evaluate (those without test items are skipped).
        item_chunk, memory_budget: items scored at once per batch, or the bytes the scores of a
            batch may take (default :data:`RANKING_MEMORY_BUDGET`); see :func:`topk_items`.
    """
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    ks = sorted(set(int(k) for k in ks))
    kmax = min(max(ks), num_items)
    test_count = torch.bincount(test_edges[0], minlength=num_users)
    cand = torch.arange(num_users) if users is None else torch.unique(torch.as_tensor(users))
    cand = cand[test_count[cand] > 0]
    res = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "precision", "ndcg", "hit")}
    res["users"] = int(cand.numel())
    if cand.numel() == 0:
        return res
    top = topk_items(user_emb, item_emb, cand, kmax, train_edges, batch_size, item_chunk, memory_budget)
    test_keys = torch.sort(test_edges[0] * num_items + test_edges[1]).values
    keys = cand[:, None] * num_items + top
    pos = torch.searchsorted(test_keys, keys).clamp(max=test_keys.numel() - 1)
    hits = (test_keys[pos] == keys).float()  # [n, kmax]
    n_test = test_count[cand].float()
    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float32))
    for k in ks:
        kk = min(k, kmax)
        h = hits[:, :kk]
        nh = h.sum(1)
        dcg = (h * discount[:kk]).sum(1)
        ideal_len = torch.clamp(n_test, max=kk).long()
        idcg = torch.cumsum(discount[:kk], 0)[ideal_len - 1]
        res[f"recall@{k}"] = float((nh / n_test).mean())
        res[f"precision@{k}"] = float((nh / k).mean())
        res[f"ndcg@{k}"] = float((dcg / idcg).mean())
        res[f"hit@{k}"] = float((nh > 0).float().mean())
    return res


def auc(scores: Tensor, labels: Tensor) -> float:
    """ROC-AUC by the Mann–Whitney statistic, ties given average ranks. NaN if one class is empty."""
    scores = torch.as_tensor(scores, dtype=torch.float64).view(-1)
    labels = torch.as_tensor(labels).view(-1) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    sorted_scores, order = torch.sort(scores)
    uniq, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each tie group
    ranks = torch.empty_like(scores)
    ranks[order] = avg_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def format_metrics(m: dict, keys: Iterable[str] | None = None) -> str:
    keys = keys or [k for k in m if "@" in k or k == "auc"]
    return "  ".join(f"{k}={m[k]:.4f}" for k in keys if k in m)
