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
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from .data.sparse import ragged_arange


def order_key(scores: Tensor) -> Tensor:
    """int64 key whose descending order is (score desc, item id asc), exactly.

    The float32 bit pattern ``b`` of a score is made monotone (``b`` for ``b >= 0``, ``b ^ 0x7FFFFFFF``
    otherwise), shifted left by 31 bits and completed by ``2^31 - 1 - item``. Adding ``+0.0``
    first maps ``-0.0`` to ``+0.0`` (IEEE 754), so exactly-zero scores tie and are ordered by
    item id whatever their sign bit.
    """
    bits = (scores.to(torch.float32) + 0.0).contiguous().view(torch.int32)
    key = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    idx = torch.arange(scores.shape[-1], device=scores.device, dtype=torch.int64)
    return key.bitwise_left_shift_(31).add_((1 << 31) - 1 - idx)  # in place: one [b, I] int64


def csr_of(edges: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    order = torch.argsort(edges[0], stable=True)
    ptr = torch.zeros(num_users + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(edges[0], minlength=num_users), 0)
    return ptr, edges[1][order]


def topk_items(user_emb: Tensor, item_emb: Tensor, users: Tensor, k: int,
               exclude: Tensor | None = None, batch_size: int = 1024) -> Tensor:
    """Top-``k`` item ids ``[len(users), k]`` per user, excluding ``exclude`` edges ``[2, m]``."""
    num_users = user_emb.shape[0]
    ex_ptr, ex_items = csr_of(exclude, num_users) if exclude is not None else (None, None)
    out = []
    for start in range(0, users.numel(), batch_size):
        ub = users[start:start + batch_size]
        scores = user_emb[ub] @ item_emb.t()
        if ex_ptr is not None:
            cnt = ex_ptr[ub + 1] - ex_ptr[ub]
            rows = torch.repeat_interleave(torch.arange(ub.numel()), cnt)
            cols = ex_items[torch.repeat_interleave(ex_ptr[ub], cnt) + ragged_arange(cnt)]
            scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
        out.append(torch.topk(order_key(scores), k, dim=1).indices.cpu())
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)


@torch.no_grad()
def ranking_metrics(user_emb: Tensor, item_emb: Tensor, train_edges: Tensor, test_edges: Tensor,
                    ks: Sequence[int] = (20,), batch_size: int = 1024,
                    users: Tensor | None = None) -> dict[str, float]:
    """Recall / Precision / NDCG / HitRate @ each K, full ranking with training items masked.

    Args:
        user_emb, item_emb: final representations ``[U, d]`` and ``[I, d]``.
        train_edges: ``[2, m]`` pairs masked from the ranking.
        test_edges: ``[2, t]`` held-out pairs.
        users: optional subset of users to evaluate (those without test items are skipped).
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
    top = topk_items(user_emb, item_emb, cand, kmax, train_edges, batch_size)
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
