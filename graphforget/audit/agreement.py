r"""Agreement of two models' rankings, and the retrain-vs-retrain noise floor.

For each user :math:`u` of a given set, both models rank the candidates :math:`C_u` (items not in
:math:`u`'s training set of the graph, :math:`n_u = |C_u|`), ties broken exactly as in
:func:`~graphforget.metrics.topk_items` (score, then smaller item id), giving rank permutations
:math:`r^a_u, r^b_u` of :math:`1..n_u`. With :math:`K_u = \min(K, n_u)` and top lists
:math:`T^a_u, T^b_u`:

* top-K overlap :math:`= \frac{1}{|U|}\sum_u |T^a_u \cap T^b_u| / K_u`;
* Spearman :math:`\rho_u = 1 - \frac{6 \sum_{j \in C_u} (r^a_{uj} - r^b_{uj})^2}{n_u (n_u^2 - 1)}`
  over *all* candidates (the full served ranking, not just its head), averaged over users with
  :math:`n_u \ge 2`.

Spearman over all candidates was chosen over Kendall on the union of top-Ks: it is exact for
permutations, vectorises to two sorts per user batch, and complements the overlap, which already
measures the head. A model unlearned exactly reproduces a retrain up to the randomness of
training, so the same figures between two independent retrains (the audit's control) are the
yardstick (:mod:`graphforget.audit.report`).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..data.graph import InteractionGraph
from ..data.sparse import ragged_arange
from ..metrics import csr_of, order_key
from ..models import RecModel
from .utility import check_ids, representations


def _ranks(key: Tensor) -> Tensor:
    """0-based position of each column in the descending order of ``key`` (per row)."""
    order = torch.argsort(key, dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(key.shape[1], device=key.device).expand_as(order))
    return ranks


@torch.no_grad()
def agreement(model_a: RecModel, model_b: RecModel, graph: InteractionGraph, users, k: int = 20,
              batch_size: int = 256, graph_b: Optional[InteractionGraph] = None) -> dict:
    """Top-K overlap and mean Spearman correlation of two models' rankings on ``users``.

    Args:
        model_a, model_b: the models compared (on the same device).
        graph: graph both propagate on (``model_b`` on ``graph_b`` if given); its training items
            are excluded from the candidates.
        users: user ids (duplicates ignored).
        k: list length of the overlap.

    Returns:
        ``{"overlap@k", "spearman", "users", "k"}``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    users = check_ids(users, graph.num_users, "agreement", "user id")
    ua, ia = model_a.split(representations(model_a, graph))
    ub, ib = model_b.split(representations(model_b, graph_b if graph_b is not None else graph))
    if ia.device != ib.device:
        raise ValueError(f"models on different devices: {ia.device} and {ib.device}")
    dev = ia.device
    num_items = graph.num_items
    ptr, ex = csr_of(graph.train_edges, graph.num_users)
    lowest = torch.iinfo(torch.int64).min
    overlap_sum, overlap_n, rho_sum, rho_n = 0.0, 0, 0.0, 0
    for s in range(0, users.numel(), batch_size):
        u = users[s:s + batch_size]
        b = u.numel()
        cnt = ptr[u + 1] - ptr[u]
        r = torch.repeat_interleave(torch.arange(b), cnt).to(dev)
        c = ex[torch.repeat_interleave(ptr[u], cnt) + ragged_arange(cnt)].to(dev)
        masked = torch.zeros(b, num_items, dtype=torch.bool, device=dev)
        masked[r, c] = True
        ka = order_key(ua[u.to(dev)] @ ia.t()).masked_fill(masked, lowest)
        kb = order_key(ub[u.to(dev)] @ ib.t()).masked_fill(masked, lowest)
        ra, rb = _ranks(ka), _ranks(kb)  # candidates occupy 0..n_u-1 in both
        n = (num_items - cnt).to(dev)
        kk = n.clamp(max=k)
        both = (ra < kk[:, None]) & (rb < kk[:, None]) & ~masked
        valid = kk > 0
        overlap_sum += float((both.sum(1)[valid].double() / kk[valid].double()).sum())
        overlap_n += int(valid.sum())
        d2 = ((ra - rb).double().pow(2) * (~masked)).sum(1)
        nd = n.double()
        ok = n >= 2
        rho = 1.0 - 6.0 * d2[ok] / (nd[ok] * (nd[ok] ** 2 - 1.0))
        rho_sum += float(rho.sum())
        rho_n += int(ok.sum())
    nan = float("nan")
    return {f"overlap@{k}": overlap_sum / overlap_n if overlap_n else nan,
            "spearman": rho_sum / rho_n if rho_n else nan, "users": int(users.numel()), "k": int(k)}
