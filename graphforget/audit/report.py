r"""One call that audits an unlearning: utility, forgetting, membership, agreement, parameters.

``audit(original, unlearned, graph_before, graph_after, deleted_edges, retrained=...,
retrained_alt=..., reference=...)`` evaluates every model it is given on *its own* graph (the
original on ``graph_before``, the others on ``graph_after``) and fills the sections it can:

* utility (:mod:`.utility`) overall and on the test pairs touching the deletion, per model;
* forgetting: rank of each deleted item among the user's candidates after deletion
  (:mod:`.forgetting`), per model;
* membership inference AUC of the deleted edges (:mod:`.membership`), per model, with members
  sampled from the remaining training edges and non-members the test edges;
* agreement with ``retrained`` on the affected users, beside the noise floor
  ``agreement(retrained, retrained_alt)`` and a verdict per figure (:mod:`.agreement`);
* parameter distance to ``reference`` — a retrain warm-started from the original — on the
  affected rows and on all rows, relative to the original's (:mod:`.parameters`).

Affected nodes are ``graph_before.khop_nodes(deleted, L)`` with ``L`` the original model's
number of layers (the deleted edges' endpoints for MF); affected users are the user nodes among
them.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import torch

from ..data.graph import InteractionGraph
from ..models import RecModel
from .agreement import agreement, verdict
from .forgetting import deleted_item_ranks, rank_summary
from .membership import membership_inference_auc
from .parameters import parameter_distance
from .utility import SUBSETS, check_edges, edge_membership, utility_report

MODEL_ORDER = ("original", "unlearned", "retrained", "retrained_alt")


@dataclass
class AuditReport:
    """Results of :func:`audit`; sections absent when their inputs were not given are ``{}``.

    Attributes:
        utility: ``model -> subset -> metrics``.
        forgetting: ``model -> rank summary`` of the deleted items.
        membership: ``model -> MembershipResult.to_dict()``.
        agreement: ``{"unlearned_vs_retrained", "original_vs_retrained", "noise_floor",
            "verdict"}`` (each present when computable).
        parameters: ``{"affected": ..., "all": ...}`` distances of the unlearned model.
    """

    num_deleted: int
    affected_users: int
    affected_nodes: int
    hops: int
    ks: list
    seed: int
    tolerance: float
    utility: dict = field(default_factory=dict)
    forgetting: dict = field(default_factory=dict)
    membership: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A readable multi-line table of every section."""
        k0 = self.ks[0]
        lines = [f"Audit: {self.num_deleted} deleted edges; {self.affected_users} affected users, "
                 f"{self.affected_nodes} affected nodes ({self.hops}-hop); seed {self.seed}; "
                 f"{self.seconds:.1f}s"]
        names = [m for m in MODEL_ORDER if m in self.utility or m in self.forgetting or m in self.membership]
        head = lambda title: f"{title:<34}" + "".join(f"{n:>15}" for n in names)  # noqa: E731
        cell = lambda v: f"{v:>15.4f}" if isinstance(v, float) else f"{v:>15}"  # noqa: E731

        if self.utility:
            lines += ["", head("Utility (test)")]
            any_rep = next(iter(self.utility.values()))
            metric_keys = [k for k in any_rep["overall"] if k == "auc" or k.split("@")[0] in ("recall", "ndcg")]
            count_key = "rows" if "auc" in metric_keys else "users"
            for subset in ("overall",) + SUBSETS:
                for mk in metric_keys + [count_key]:
                    label = f"  {subset:<8}{mk}"
                    lines.append(f"{label:<34}" + "".join(cell(self.utility[n][subset].get(mk, math.nan))
                                                          if n in self.utility else f"{'-':>15}" for n in names))
        if self.forgetting:
            lines += ["", head("Forgetting: rank of deleted items")]
            for mk in ("mean_rank", "median_rank", f"in_top@{k0}"):
                lines.append(f"  {mk:<32}" + "".join(cell(self.forgetting[n][mk]) if n in self.forgetting
                                                     else f"{'-':>15}" for n in names))
        if self.membership:
            lines += ["", head("Membership inference (0.5=forgot)")]
            for mk, label in (("auc", "AUC deleted vs non-members"), ("member_auc", "AUC members (attack power)")):
                lines.append(f"  {label:<32}" + "".join(cell(self.membership[n][mk]) if n in self.membership
                                                        else f"{'-':>15}" for n in names))
        if self.agreement:
            keys = [f"overlap@{k0}", "spearman"]
            lines += ["", f"{'Agreement on affected users':<34}" + "".join(f"{k:>15}" for k in keys)]
            for key, label in (("unlearned_vs_retrained", "unlearned vs retrained"),
                               ("noise_floor", "noise floor (retrain vs retrain)"),
                               ("original_vs_retrained", "original vs retrained")):
                if key in self.agreement:
                    lines.append(f"  {label:<32}" + "".join(cell(self.agreement[key][k]) for k in keys))
            if "verdict" in self.agreement:
                for k in keys:
                    v, f = self.agreement["unlearned_vs_retrained"][k], self.agreement["noise_floor"][k]
                    lines.append(f"  verdict {k}: {self.agreement['verdict'][k]} "
                                 f"({v:.4f} vs floor {f:.4f} - tolerance {self.tolerance:g})")
        if self.parameters:
            lines += ["", "Parameter distance to warm-started reference"]
            for key, p in self.parameters.items():
                lines.append(f"  {key + ' rows (' + str(p['rows']) + ')':<32} unlearned {p['distance']:.4f}"
                             f"  original {p['original_distance']:.4f}  relative {p['relative']:.4f}")
        if self.notes:
            lines += ["", *("note: " + n for n in self.notes)]
        return "\n".join(lines)


def _check_graphs(graph_before: InteractionGraph, graph_after: InteractionGraph, deleted_edges):
    if (graph_before.num_users, graph_before.num_items) != (graph_after.num_users, graph_after.num_items):
        raise ValueError("graph_before and graph_after have different numbers of users / items")
    deleted = check_edges(deleted_edges, graph_before, "deleted_edges")
    graph_before.find_edges(deleted)  # raises unless they are distinct training edges before
    still = edge_membership(deleted, graph_after.train_edges, graph_after.num_items)
    if bool(still.any()):
        raise ValueError(f"{int(still.sum())} deleted edges are still training edges of graph_after "
                         f"(first: {deleted[:, still][:, :5].t().tolist()})")
    return deleted


def audit(original: RecModel, unlearned: RecModel, graph_before: InteractionGraph,
          graph_after: InteractionGraph, deleted_edges, retrained: Optional[RecModel] = None,
          retrained_alt: Optional[RecModel] = None, reference: Optional[RecModel] = None,
          ks: Sequence[int] = (20,), seed: int = 0, tolerance: float = 0.05,
          max_members: int = 20000, batch_size: int = 512) -> AuditReport:
    """Audit ``unlearned`` against ``original`` and the references given (module docstring).

    Args:
        original: model trained on ``graph_before``.
        unlearned: model after forgetting ``deleted_edges``, on ``graph_after``.
        graph_before, graph_after: the graphs before / after the deletion.
        deleted_edges: ``[2, m]`` the forgotten training edges.
        retrained, retrained_alt: retrains from scratch on ``graph_after`` with two seeds.
        reference: retrain on ``graph_after`` warm-started from ``original``.
        ks: cut-offs; the first is used for ranks and agreement.
        seed: seeds the membership attack's samples.
        tolerance: agreement verdict slack below the noise floor.
        max_members: members sampled from the remaining training edges for the attack.
    """
    t0 = time.perf_counter()
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    deleted = _check_graphs(graph_before, graph_after, deleted_edges)
    hops = int(getattr(original, "num_layers", 0))
    nodes = graph_before.khop_nodes(deleted, hops)
    users = nodes[nodes < graph_before.num_users]
    rep = AuditReport(num_deleted=int(deleted.shape[1]), affected_users=int(users.numel()),
                      affected_nodes=int(nodes.numel()), hops=hops, ks=ks, seed=int(seed),
                      tolerance=float(tolerance))
    models = {"original": (original, graph_before), "unlearned": (unlearned, graph_after),
              "retrained": (retrained, graph_after), "retrained_alt": (retrained_alt, graph_after)}
    models = {n: mg for n, mg in models.items() if mg[0] is not None}

    for name, (model, g) in models.items():
        rep.utility[name] = utility_report(model, g, deleted, ks, batch_size=1024)
        ranks = deleted_item_ranks(model, graph_after, deleted, adj_graph=g, batch_size=batch_size)
        rep.forgetting[name] = rank_summary(ranks, ks[0])

    non_members = graph_after.test_edges
    if non_members.shape[1] >= 8:
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(graph_after.num_train, generator=gen)[:max_members]
        members = graph_after.train_edges[:, pick]
        labels = {}
        if graph_after.has_labels:
            labels = {"member_labels": graph_after.train_labels[pick],
                      "non_member_labels": graph_after.test_labels,
                      "deleted_labels": graph_before.train_labels[graph_before.find_edges(deleted)]}
        for name, (model, g) in models.items():
            rep.membership[name] = membership_inference_auc(
                model, graph_after, members, non_members, deleted, seed, adj_graph=g,
                batch_size=batch_size, **labels).to_dict()
    else:
        rep.notes.append("membership inference skipped: fewer than 8 test edges to serve as non-members")

    k0 = ks[0]
    if retrained is not None:
        ag = rep.agreement
        ag["unlearned_vs_retrained"] = agreement(unlearned, retrained, graph_after, users, k0)
        ag["original_vs_retrained"] = agreement(retrained, original, graph_after, users, k0,
                                                graph_b=graph_before)
        if retrained_alt is not None:
            ag["noise_floor"] = agreement(retrained, retrained_alt, graph_after, users, k0)
            ag["verdict"] = {m: verdict(ag["unlearned_vs_retrained"][m], ag["noise_floor"][m], tolerance)
                             for m in (f"overlap@{k0}", "spearman")}
    elif retrained_alt is not None:
        rep.notes.append("retrained_alt given without retrained: no agreement section")

    if reference is not None:
        rep.parameters["affected"] = parameter_distance(unlearned, reference, nodes, original)
        rep.parameters["all"] = parameter_distance(unlearned, reference, None, original)
    rep.seconds = time.perf_counter() - t0
    return rep
