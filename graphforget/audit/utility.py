r"""Utility of a model after unlearning: overall, and on the test rows touching the deletion.

For a deletion :math:`\Delta\mathcal{D}` with endpoint sets :math:`U_\Delta` (users) and
:math:`I_\Delta` (items), the test pairs :math:`(u, i)` fall into the subsets

* ``"user"``: :math:`u \in U_\Delta` (every test pair of a user who lost an interaction),
* ``"or"``: :math:`u \in U_\Delta \lor i \in I_\Delta`,
* ``"and"``: :math:`u \in U_\Delta \land i \in I_\Delta`.

Labelled data (BCE): each subset is a set of rows and its figure is the ROC-AUC of the scores
against the labels on those rows. Implicit data (BPR): Recall / NDCG / Precision / HitRate @K
of :func:`~graphforget.metrics.ranking_metrics` — full ranking over all items with the model's
training *and* validation items masked — where each user's ground truth is restricted to the
subset's pairs. For ``"user"`` that is the usual "affected users" figure (their full test sets);
for ``"and"``, the implicit analogue of the labelled rows, Recall@K is the fraction of the test
pairs *between a deletion user and a deletion item* that reach the user's top-K, averaged over
the users having such pairs; ``"or"`` likewise, so a non-deletion user who holds a test pair
with a deletion item is scored on that pair only.

Each model is evaluated on its own graph: the original on the graph before deletion, an
unlearned or retrained model on the graph after it (both propagation and masking follow the
graph); the test pairs are the same in both.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..data.graph import InteractionGraph, as_edge_tensor, edge_keys
from ..metrics import auc, ranking_metrics
from ..models import RecModel

SUBSETS = ("user", "or", "and")


def model_device(model: RecModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def representations(model: RecModel, graph: InteractionGraph) -> Tensor:
    """Final node representations ``[N, d']`` of ``model`` propagated on ``graph`` (eval mode,
    float32, on the model's device). Raises ``ValueError`` on a size mismatch."""
    if (model.num_users, model.num_items) != (graph.num_users, graph.num_items):
        raise ValueError(f"model has {model.num_users} users / {model.num_items} items but the graph "
                         f"has {graph.num_users} / {graph.num_items}")
    was_training = model.training
    model.eval()
    try:
        out = model.propagate(graph.adj(model_device(model), next(model.parameters()).dtype)).float()
    finally:
        model.train(was_training)
    return out


def check_edges(edges, graph: InteractionGraph, name: str = "edges", allow_empty: bool = False) -> Tensor:
    """``LongTensor [2, m]`` on CPU with ids checked against ``graph``'s sizes."""
    e = as_edge_tensor(edges, name).cpu()
    if e.shape[1] == 0:
        if allow_empty:
            return e
        raise ValueError(f"{name}: no edges given")
    if int(e[0].min()) < 0 or int(e[0].max()) >= graph.num_users:
        raise ValueError(f"{name}: user id out of range 0..{graph.num_users - 1}")
    if int(e[1].min()) < 0 or int(e[1].max()) >= graph.num_items:
        raise ValueError(f"{name}: item id out of range 0..{graph.num_items - 1}")
    return e


def check_ids(ids, size: int, name: str, what: str) -> Tensor:
    """Sorted unique ``LongTensor`` of ``ids`` on CPU, each in ``0..size-1``; ``name`` and
    ``what`` word the error (``"agreement"``, ``"user id"``)."""
    u = torch.unique(torch.as_tensor(ids, dtype=torch.long).view(-1).cpu())
    if u.numel() == 0:
        raise ValueError(f"{name}: no {what}s given")
    if int(u.min()) < 0 or int(u.max()) >= size:
        raise ValueError(f"{name}: {what} out of range 0..{size - 1}")
    return u


def edge_membership(edges: Tensor, reference: Tensor, num_items: int) -> Tensor:
    """``BoolTensor [m]``: whether each pair of ``edges`` occurs in ``reference`` (binary search)."""
    if reference.shape[1] == 0 or edges.shape[1] == 0:
        return torch.zeros(edges.shape[1], dtype=torch.bool)
    ref = torch.sort(edge_keys(reference, num_items)).values
    q = edge_keys(edges, num_items)
    pos = torch.searchsorted(ref, q).clamp(max=ref.numel() - 1)
    return ref[pos] == q


def affected_test_rows(graph: InteractionGraph, deleted_edges) -> dict[str, Tensor]:
    """Masks ``BoolTensor [T]`` over ``graph.test_edges`` for the subsets ``"user"``, ``"or"``
    and ``"and"`` of the deletion (see the module docstring)."""
    deleted = check_edges(deleted_edges, graph, "deleted_edges")
    u, i = graph.test_edges
    in_u = torch.isin(u, torch.unique(deleted[0]))
    in_i = torch.isin(i, torch.unique(deleted[1]))
    return {"user": in_u, "or": in_u | in_i, "and": in_u & in_i}


def _metrics(model: RecModel, out: Tensor, graph: InteractionGraph, rows: Optional[Tensor],
             ks: Sequence[int], batch_size: int) -> dict:
    test = graph.test_edges if rows is None else graph.test_edges[:, rows]
    res: dict = {"rows": int(test.shape[1])}
    if graph.has_labels:
        labels = graph.test_labels if rows is None else graph.test_labels[rows]
        dev = out.device
        s = model.score(test[0].to(dev), test[1].to(dev), out).cpu() if test.shape[1] else torch.zeros(0)
        res["auc"] = auc(s, labels)
        return res
    mask = torch.cat([graph.train_edges, graph.valid_edges], 1)
    uemb, iemb = model.split(out)
    res.update(ranking_metrics(uemb, iemb, mask, test, ks, batch_size))
    if res["users"] == 0:  # an empty subset has no metric, not a zero one
        res.update({k: float("nan") for k in res if "@" in k})
    return res


def utility(model: RecModel, graph: InteractionGraph, ks: Sequence[int] = (20,),
            batch_size: int = 1024) -> dict:
    """Test metrics of ``model`` on ``graph``: ``auc`` for labelled data, else ``recall@K``,
    ``ndcg@K``, ``precision@K``, ``hit@K`` (train + validation masked), with ``rows`` (test
    pairs) and ``users`` (users evaluated) counts."""
    return _metrics(model, representations(model, graph), graph, None, ks, batch_size)


def utility_report(model: RecModel, graph: InteractionGraph, deleted_edges,
                   ks: Sequence[int] = (20,), batch_size: int = 1024) -> dict[str, dict]:
    """Metrics ``{"overall", "user", "or", "and"} -> dict`` of ``model`` on ``graph`` (the graph
    the model was trained / unlearned on), the subsets relative to ``deleted_edges``
    (:func:`affected_test_rows`). One propagation for all subsets."""
    masks = affected_test_rows(graph, deleted_edges)
    out = representations(model, graph)
    rep = {"overall": _metrics(model, out, graph, None, ks, batch_size)}
    for name in SUBSETS:
        rep[name] = _metrics(model, out, graph, masks[name], ks, batch_size)
    return rep
