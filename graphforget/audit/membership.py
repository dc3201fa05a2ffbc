r"""Membership inference against a recommender: do deleted edges still look like training data?

Features of a pair :math:`(u, i)` under a model, all model-derived:

1. score :math:`\hat{y}_{ui}`;
2. loss: BCE-with-logits against the pair's label for labelled data, else BPR
   :math:`-\log\sigma(\hat{y}_{ui} - \hat{y}_{uj})` with one negative :math:`j` per pair drawn
   uniformly (seeded) from the items that are neither training items of :math:`u` nor queried
   with :math:`u`;
3. rank percentile :math:`(\mathrm{rank}(u,i) - 1) / (|C_u| - 1) \in [0, 1]` among the
   candidates :math:`C_u` (items not in :math:`u`'s training set, plus :math:`i`), 0 = top
   (:func:`~graphforget.audit.forgetting.item_ranks`);
No graph feature enters (an earlier version used the user's degree, which gives a deleted
*user* away by its missing edges alone: after a whole-user deletion its degree is 0, a
non-member's is not).

The attack is a logistic regression on the standardised features, fitted in float64 full-batch
with L-BFGS (L2 penalty, zero start, hence deterministic) on a balanced, seeded sample of known
members (e.g. the remaining training edges) against known non-members (held-out test edges). It
is then applied to the deleted edges and to non-members *not used in fitting*; the reported
``auc`` is the ROC-AUC of deleted (positive) vs those held-out non-members (negative): 0.5 means
the deleted edges are as indistinguishable from never-seen pairs as real non-members are;
``member_auc`` (held-out members vs the same non-members) is the attack's power on data it
should detect. Where deleted and held-out pairs differ in distribution (a non-random test split,
or a deletion targeting popular items), even a retrain scores above 0.5: the retrain's figure,
not 0.5, is then the target for an unlearned model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.graph import InteractionGraph
from ..metrics import auc
from ..models import RecModel
from ..train.sampling import sample_negatives
from .forgetting import item_ranks
from .utility import check_edges, representations

FEATURES = ("score", "loss", "rank_percentile")


@torch.no_grad()
def edge_features(model: RecModel, graph: InteractionGraph, edges, labels: Optional[Tensor] = None,
                  adj_graph: Optional[InteractionGraph] = None, seed: int = 0,
                  batch_size: int = 512, out: Optional[Tensor] = None) -> Tensor:
    """Attack features ``FloatTensor [m, 3]`` (order :data:`FEATURES`) of the pairs ``edges``.

    Args:
        graph: defines training sets (rank candidates, BPR negatives, degrees).
        labels: per-pair targets; required when ``graph`` is labelled (BCE loss).
        adj_graph: graph to propagate on (default ``graph``).
        seed: seeds the BPR negatives.
        out: precomputed representations (skips propagation).
    """
    e = check_edges(edges, graph, "edges")
    if graph.has_labels and labels is None:
        raise ValueError("labelled graph: give the labels of the queried edges")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.float32).view(-1)
        if labels.numel() != e.shape[1]:
            raise ValueError(f"labels: expected {e.shape[1]} values, got {labels.numel()}")
    if out is None:
        out = representations(model, adj_graph if adj_graph is not None else graph)
    dev = out.device
    u, i = e[0].to(dev), e[1].to(dev)
    score = model.score(u, i, out)
    if labels is not None:
        loss = F.binary_cross_entropy_with_logits(score, labels.to(dev), reduction="none")
    else:
        gen = torch.Generator().manual_seed(seed)
        j = sample_negatives(e[0], torch.cat([graph.train_edges, e], 1), graph.num_items, gen)
        loss = -F.logsigmoid(score - model.score(u, j.to(dev), out))
    uemb, iemb = model.split(out)
    rank, cand = item_ranks(uemb, iemb, e, graph.train_edges, batch_size)
    pct = (rank - 1).double() / (cand - 1).clamp(min=1).double()
    return torch.stack([score.double().cpu(), loss.double().cpu(), pct], 1).float()


def fit_logistic(x: Tensor, y: Tensor, l2: float = 1e-3, max_iter: int = 200) -> tuple[Tensor, Tensor, Tensor]:
    r"""Logistic regression :math:`p = \sigma(\tilde{x}^\top w + b)` on standardised features
    :math:`\tilde{x} = (x - \mu)/\sigma`, minimising the mean BCE
    :math:`+ \frac{l2}{2}\lVert w\rVert^2` with full-batch L-BFGS from zero (deterministic).

    Returns ``(w_b, mu, sd)`` with ``w_b = [w, b]``; predict with :func:`predict_logistic`.
    """
    x = x.double()
    y = y.double()
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-12)
    z = (x - mu) / sd
    w = torch.zeros(z.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w[:-1] + w[-1], y) + 0.5 * l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), mu, sd


def predict_logistic(params: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
    """Attack logits ``[m]`` of the model fitted by :func:`fit_logistic`."""
    w, mu, sd = params
    return ((x.double() - mu) / sd) @ w[:-1] + w[-1]


@dataclass
class MembershipResult:
    """``auc``: deleted vs held-out non-members; ``member_auc``: held-out members vs the same
    non-members; sample sizes; the attack's weights on the standardised :data:`FEATURES` and
    its intercept (last entry)."""

    auc: float
    member_auc: float
    n_train: int
    n_eval_members: int
    n_eval_non_members: int
    n_deleted: int
    weights: list

    def to_dict(self) -> dict:
        return asdict(self)


def _take(edges: Tensor, labels: Optional[Tensor], idx: Tensor):
    return edges[:, idx], (None if labels is None else labels[idx])


def membership_inference_auc(model: RecModel, graph: InteractionGraph, members, non_members,
                             deleted, seed: int = 0, *, member_labels: Optional[Tensor] = None,
                             non_member_labels: Optional[Tensor] = None,
                             deleted_labels: Optional[Tensor] = None,
                             adj_graph: Optional[InteractionGraph] = None,
                             max_train: int = 20000, max_eval: int = 20000, l2: float = 1e-3,
                             batch_size: int = 512) -> MembershipResult:
    """Fit the attack on known members vs non-members and score the deleted edges.

    Half of ``members`` and half of ``non_members`` (seeded permutations, at most ``max_eval``
    each) are held out for evaluation; from the other halves an equal number
    ``n = min(|M|/2, |N|/2, max_train // 2)`` of each is used for fitting.

    Args:
        model: the model attacked.
        graph: the graph after deletion (training sets for the features).
        members: ``[2, m]`` known training edges of ``model`` (at least 4).
        non_members: ``[2, n]`` pairs never trained on, e.g. test edges (at least 4).
        deleted: ``[2, d]`` deleted edges.
        seed: seeds the splits, subsamples and BPR negatives.
        member_labels, non_member_labels, deleted_labels: per-pair labels (labelled graphs).
        adj_graph: the graph ``model`` propagates on (default ``graph``).
        max_train: cap on the fitting sample (both classes together).
        max_eval: cap on each held-out evaluation class.
        l2: L2 penalty of the attack.
    """
    mem = check_edges(members, graph, "members")
    non = check_edges(non_members, graph, "non_members")
    dele = check_edges(deleted, graph, "deleted")
    if mem.shape[1] < 4 or non.shape[1] < 4:
        raise ValueError(f"need at least 4 members and 4 non-members, got {mem.shape[1]} and {non.shape[1]}")
    for nm, lab, e in (("member_labels", member_labels, mem), ("non_member_labels", non_member_labels, non),
                       ("deleted_labels", deleted_labels, dele)):
        if graph.has_labels and lab is None:
            raise ValueError(f"labelled graph: {nm} is required")
        if lab is not None and torch.as_tensor(lab).numel() != e.shape[1]:
            raise ValueError(f"{nm}: expected {e.shape[1]} values, got {torch.as_tensor(lab).numel()}")
    member_labels, non_member_labels = (None if t is None else torch.as_tensor(t).float().view(-1)
                                        for t in (member_labels, non_member_labels))
    gen = torch.Generator().manual_seed(seed)
    pm = torch.randperm(mem.shape[1], generator=gen)
    pn = torch.randperm(non.shape[1], generator=gen)
    hm, hn = mem.shape[1] // 2, non.shape[1] // 2
    n = min(mem.shape[1] - hm, non.shape[1] - hn, max(1, max_train // 2))
    m_tr, m_tr_y = _take(mem, member_labels, pm[hm:hm + n])
    n_tr, n_tr_y = _take(non, non_member_labels, pn[hn:hn + n])
    hm, hn = min(hm, max_eval), min(hn, max_eval)
    m_ev, m_ev_y = _take(mem, member_labels, pm[:hm])
    n_ev, n_ev_y = _take(non, non_member_labels, pn[:hn])
    out = representations(model, adj_graph if adj_graph is not None else graph)

    def feats(e, y, s):
        return edge_features(model, graph, e, y, seed=s, batch_size=batch_size, out=out)

    x_tr = torch.cat([feats(m_tr, m_tr_y, seed), feats(n_tr, n_tr_y, seed + 1)])
    y_tr = torch.cat([torch.ones(n), torch.zeros(n)])
    params = fit_logistic(x_tr, y_tr, l2)
    s_mem = predict_logistic(params, feats(m_ev, m_ev_y, seed + 2))
    s_non = predict_logistic(params, feats(n_ev, n_ev_y, seed + 3))
    s_del = predict_logistic(params, feats(dele, deleted_labels, seed + 4))
    lab = lambda a, b: torch.cat([torch.ones(a.numel()), torch.zeros(b.numel())])  # noqa: E731
    return MembershipResult(auc=auc(torch.cat([s_del, s_non]), lab(s_del, s_non)),
                            member_auc=auc(torch.cat([s_mem, s_non]), lab(s_mem, s_non)),
                            n_train=2 * n, n_eval_members=hm, n_eval_non_members=hn,
                            n_deleted=int(dele.shape[1]), weights=params[0].tolist())
