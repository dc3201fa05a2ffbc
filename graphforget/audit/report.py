r"""One call that audits an unlearning — and can fail.

An audit counts only if a model that forgot nothing fails it. So every figure of the
unlearned model is set beside the same figure of

* the **original** ("do nothing", evaluated on the graph before deletion, as it was served),
* a **held-out retrain** on the remaining data with the original's recipe and an *independent*
  seed (a retrain that shares the original's seed is not independent of it and makes "do
  nothing" look like forgetting), and
* a **control**: a second independent retrain, which must pass every check — the check's own
  noise level.

:class:`AuditReference` holds what one deletion needs (retrains, fitted attacks) and assesses
any number of models; :func:`audit` is the one-call form. Sections:

* utility (:mod:`.utility`) overall and on the test pairs touching the deletion — subsets
  ``user`` (test pairs of users who lost an edge), ``or`` (… or of an item that lost one),
  ``and`` (between such a user and such an item);
* forgetting: rank of each deleted item among the user's candidates after deletion
  (:mod:`.forgetting`);
* population membership inference AUC of the deleted edges (:mod:`.membership`);
* per-edge U-MIA with shadow retrains (:mod:`.umia`): ``umia_auc`` 0.5 = indistinguishable
  from retraining, or ``score_error`` when retraining is deterministic;
* agreement of rankings on the affected users with the held-out retrain, beside the control's
  (the retrain-vs-retrain noise floor) and the original's;
* parameter distance to ``reference`` — the new objective's minimiser nearest the original —
  modulo the rotation symmetry (:mod:`.parameters`);
* **verdicts**, one line per measure, e.g. ``"MIA 0.56 vs retrain 0.55 ± 0.03: within"``, and
  ``forgotten`` — true when U-MIA (or, deterministic, ``score_error`` ≤ 0.1) and MIA are within.

Affected nodes are ``graph_before.khop_nodes(deleted, L)`` with ``L`` the original model's
number of layers (the deleted edges' endpoints for MF); affected users are the user nodes among
them.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..data.graph import InteractionGraph
from ..models import RecModel
from .agreement import agreement
from .forgetting import deleted_item_ranks, rank_summary
from .membership import membership_inference_auc
from .parameters import parameter_distance
from .umia import UMIA, null_auc_se, train_retrains, verdict_of
from .utility import check_edges, edge_membership, utility_report

MODEL_ORDER = ("original", "unlearned", "retrain", "control")
#: ``score_error`` at or below which a model counts as the (deterministic) retrain
SCORE_ERROR_TOL = 0.1


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


class AuditReference:
    """Everything one deletion's audit compares with, built once.

    Args:
        original: the model trained on ``graph_before``.
        graph_before, graph_after: the graphs before / after the deletion.
        deleted_edges: ``[2, m]`` the forgotten edges.
        retrains: independent retrains on ``graph_after`` (≥ 1): the first is the held-out
            retrain, the second the control, the rest the shadows of the U-MIA (which needs
            ≥ 2 of them, so ≥ 4 retrains in all). Build them with
            :func:`~graphforget.audit.umia.train_retrains` or let :func:`audit` do it.
        reference: the new objective's minimiser nearest the original (parameter distance).
        ks: cut-offs; the first is used for ranks and agreement.
        seed: seeds the membership attack's samples.
        max_members: members sampled from the remaining training edges for the attack.
    """

    def __init__(self, original: RecModel, graph_before: InteractionGraph,
                 graph_after: InteractionGraph, deleted_edges, retrains: Sequence[RecModel],
                 reference: Optional[RecModel] = None, ks: Sequence[int] = (20,), seed: int = 0,
                 max_members: int = 20000, batch_size: int = 512) -> None:
        self.ks = [int(k) for k in ks]
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {list(ks)}")
        retrains = list(retrains)
        if not retrains:
            raise ValueError("an audit needs at least one independent retrain")
        self.deleted = _check_graphs(graph_before, graph_after, deleted_edges)
        self.original, self.graph_before, self.graph_after = original, graph_before, graph_after
        self.retrain, self.control = retrains[0], (retrains[1] if len(retrains) > 1 else None)
        self.shadows = retrains[2:]
        self.reference, self.seed, self.batch_size = reference, int(seed), int(batch_size)
        self.hops = int(getattr(original, "num_layers", 0))
        nodes = graph_before.khop_nodes(self.deleted, self.hops)
        self.nodes, self.users = nodes, nodes[nodes < graph_before.num_users]
        self.notes: list[str] = []
        self.members = None
        if graph_after.test_edges.shape[1] >= 8:
            gen = torch.Generator().manual_seed(self.seed)
            pick = torch.randperm(graph_after.num_train, generator=gen)[:max_members]
            self.members = pick
        else:
            self.notes.append("membership inference skipped: fewer than 8 test edges to serve as non-members")
        self.umia: Optional[UMIA] = None
        if len(self.shadows) >= 2:
            self.umia = UMIA.fit(self.shadows, self.retrain, original, graph_before, graph_after, self.deleted)
            self.notes.extend(self.umia.notes)
        else:
            self.notes.append(f"per-edge U-MIA skipped: {len(self.shadows)} shadow retrains (needs >= 2, "
                              "i.e. >= 4 retrains in all)")
        # the retrains' own figures: the bands the verdicts use
        self.retrain_figures = [self.figures(m, graph_after) for m in retrains[: min(len(retrains), 6)]]

    # ---------------------------------------------------------------- per model
    def figures(self, model: RecModel, graph: InteractionGraph) -> dict:
        """Utility, deleted-item ranks and population MIA of ``model`` on its own ``graph``."""
        ga = self.graph_after
        out = {"utility": utility_report(model, graph, self.deleted, self.ks, batch_size=1024),
               "forgetting": rank_summary(deleted_item_ranks(model, ga, self.deleted, adj_graph=graph,
                                                             batch_size=self.batch_size), self.ks[0])}
        if self.members is not None:
            labels = {}
            if ga.has_labels:
                labels = {"member_labels": ga.train_labels[self.members],
                          "non_member_labels": ga.test_labels,
                          "deleted_labels": self.graph_before.train_labels[self.graph_before.find_edges(self.deleted)]}
            out["membership"] = membership_inference_auc(
                model, ga, ga.train_edges[:, self.members], ga.test_edges, self.deleted, self.seed,
                adj_graph=graph, batch_size=self.batch_size, **labels).to_dict()
        return out

    def assess(self, model: RecModel, graph: InteractionGraph) -> dict:
        """Every figure of ``model`` (on ``graph``): :meth:`figures`, ``umia`` and agreement with
        the held-out retrain on the affected users."""
        out = self.figures(model, graph)
        if self.umia is not None:
            out["umia"] = self.umia.assess(model, graph).to_dict()
        k0 = self.ks[0]
        out["agreement"] = agreement(model, self.retrain, graph, self.users, k0, graph_b=self.graph_after)
        return out

    # ---------------------------------------------------------------- bands and verdicts
    def band(self, getter: Callable[[dict], float], se: float = 0.0) -> tuple[float, float]:
        """``(mean, half-width)`` of a figure over the retrains: half-width = max(2 sd, 2 se)."""
        vals = torch.tensor([getter(f) for f in self.retrain_figures], dtype=torch.float64)
        vals = vals[torch.isfinite(vals)]
        if vals.numel() == 0:
            return float("nan"), float("nan")
        sd = float(vals.std()) if vals.numel() > 1 else 0.0
        return float(vals.mean()), max(2.0 * sd, 2.0 * se)

    def verdicts(self, fig: dict) -> dict:
        """``{measure: {"value", "centre", "band", "verdict", "line"}}`` and ``"forgotten"``."""
        out: dict = {}

        def add(key, label, value, centre, band):
            v = verdict_of(value, centre, band)
            out[key] = {"value": value, "centre": centre, "band": band, "verdict": v,
                        "line": f"{label} {value:.4g} vs retrain {centre:.4g} ± {band:.2g}: {v}"}

        if "umia" in fig:
            u = fig["umia"]
            if self.umia.deterministic:
                v = "within" if u["score_error"] <= SCORE_ERROR_TOL else "above"
                out["umia"] = {"value": u["score_error"], "centre": 0.0, "band": SCORE_ERROR_TOL,
                               "verdict": v, "line": f"score error {u['score_error']:.3g} to the "
                               f"(deterministic) retrain, tolerance {SCORE_ERROR_TOL:g}: {v}"}
            else:
                add("umia", "U-MIA", u["auc"], 0.5, u["band"])
        if "membership" in fig:
            n_del = int(self.deleted.shape[1])
            se = null_auc_se(n_del, fig["membership"]["n_eval_non_members"])
            c, b = self.band(lambda f: f["membership"]["auc"], se)
            add("mia", "MIA", fig["membership"]["auc"], c, b)
        k0 = self.ks[0]
        key = f"in_top@{k0}"
        n = int(self.deleted.shape[1])
        c, b = self.band(lambda f: f["forgetting"][key], math.sqrt(max(1e-12, 0.25 / n)))
        add("rank", f"deleted items in top-{k0}", fig["forgetting"][key], c, b)
        metric = "auc" if self.graph_after.has_labels else f"recall@{k0}"
        c, b = self.band(lambda f: f["utility"]["overall"][metric])
        add("utility", f"test {metric}", fig["utility"]["overall"][metric], c, b)
        decisive = [k for k in ("umia", "mia") if k in out]
        out["forgotten"] = bool(decisive) and all(out[k]["verdict"] == "within" for k in decisive)
        return out


@dataclass
class AuditReport:
    """Results of :func:`audit`: per model (``original``, ``unlearned``, ``retrain``,
    ``control``) its figures (:meth:`AuditReference.assess`) and verdicts; the agreement of the
    control with the retrain is the noise floor."""

    num_deleted: int
    affected_users: int
    affected_nodes: int
    hops: int
    ks: list
    seed: int
    retrains: int
    models: dict = field(default_factory=dict)
    verdicts: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def forgotten(self) -> bool:
        return bool(self.verdicts.get("unlearned", {}).get("forgotten", False))

    def verdict_lines(self, names: Sequence[str] = ("unlearned", "original", "control")) -> list[str]:
        """Per model: ``"unlearned: FORGOTTEN"`` then one indented line per measure, e.g.
        ``"  MIA 0.56 vs retrain 0.55 ± 0.03: within"``."""
        lines = []
        for name in names:
            v = self.verdicts.get(name)
            if v:
                lines.append(f"{name}: {'FORGOTTEN' if v['forgotten'] else 'NOT forgotten'}")
                lines += [f"  {v[k]['line']}" for k in ("umia", "mia", "rank", "utility") if k in v]
        return lines

    def summary(self) -> str:
        """A readable table of every section, then the verdict lines."""
        k0 = self.ks[0]
        names = [m for m in MODEL_ORDER if m in self.models]
        lines = [f"Audit: {self.num_deleted} deleted edges; {self.affected_users} affected users, "
                 f"{self.affected_nodes} affected nodes ({self.hops}-hop); {self.retrains} independent "
                 f"retrains; seed {self.seed}; {self.seconds:.1f}s"]
        head = lambda title: f"{title:<36}" + "".join(f"{n:>12}" for n in names)  # noqa: E731
        cell = lambda v: f"{v:>12.4f}" if isinstance(v, float) else f"{v:>12}"  # noqa: E731

        def row(label, get):
            vals = []
            for n in names:
                try:
                    vals.append(cell(get(self.models[n])))
                except (KeyError, TypeError):
                    vals.append(f"{'-':>12}")
            lines.append(f"  {label:<34}" + "".join(vals))

        first = self.models[names[0]]
        lines += ["", head("Utility (test)")]
        metric_keys = [k for k in first["utility"]["overall"] if k == "auc" or k.split("@")[0] in ("recall", "ndcg")]
        for subset in ("overall", "user", "or", "and"):
            for mk in metric_keys:
                row(f"{subset:<8}{mk}", lambda m, s=subset, k=mk: m["utility"][s][k])
        lines += ["", head("Forgetting: rank of deleted items")]
        for mk in ("mean_rank", "median_rank", f"in_top@{k0}"):
            row(mk, lambda m, k=mk: m["forgetting"][k])
        if "membership" in first:
            lines += ["", head("Membership inference (population)")]
            row("AUC deleted vs non-members", lambda m: m["membership"]["auc"])
            row("AUC members (attack power)", lambda m: m["membership"]["member_auc"])
        if "umia" in first:
            lines += ["", head("Per-edge U-MIA (0.5 = retrain)")]
            row("AUC vs held-out retrain", lambda m: m["umia"]["auc"])
            row("score error (0 = retrain)", lambda m: m["umia"]["score_error"])
        lines += ["", head(f"Agreement with the retrain (affected users)")]
        row(f"overlap@{k0}", lambda m: m["agreement"][f"overlap@{k0}"])
        row("spearman", lambda m: m["agreement"]["spearman"])
        if self.parameters:
            lines += ["", "Parameter distance to the new minimiser (modulo rotation)"]
            for key, p in self.parameters.items():
                lines.append(f"  {key + ' rows (' + str(p['rows']) + ')':<34} unlearned {p['distance']:.4f}"
                             f"  original {p['original_distance']:.4f}  relative {p['relative']:.4f}")
        lines += ["", "Verdicts", *("  " + line for line in self.verdict_lines())]
        if self.notes:
            lines += ["", *("note: " + n for n in self.notes)]
        return "\n".join(lines)


def audit(original: RecModel, unlearned: RecModel, graph_before: InteractionGraph,
          graph_after: InteractionGraph, deleted_edges, retrains: Optional[Sequence[RecModel]] = None,
          reference: Optional[RecModel] = None, shadows: int = 16, ks: Sequence[int] = (20,),
          seed: int = 0, max_members: int = 20000, batch_size: int = 512,
          log: Optional[Callable[[str], None]] = None) -> AuditReport:
    """Audit ``unlearned`` (on ``graph_after``) against the original, an independent held-out
    retrain and a control (module docstring).

    ``retrains``: independent retrains on ``graph_after`` (see :class:`AuditReference`); when
    ``None``, ``shadows + 2`` are trained from the original's recipe with independent seeds
    (``log`` gets a line per retrain).
    """
    t0 = time.perf_counter()
    deleted = _check_graphs(graph_before, graph_after, deleted_edges)
    if retrains is None:
        retrains = train_retrains(original, graph_before, deleted, int(shadows) + 2, log=log)
    ref = AuditReference(original, graph_before, graph_after, deleted, retrains, reference, ks,
                         seed, max_members, batch_size)
    rep = AuditReport(num_deleted=int(deleted.shape[1]), affected_users=int(ref.users.numel()),
                      affected_nodes=int(ref.nodes.numel()), hops=ref.hops, ks=ref.ks, seed=int(seed),
                      retrains=len(retrains), notes=list(ref.notes))
    models = {"original": (original, graph_before), "unlearned": (unlearned, graph_after),
              "retrain": (ref.retrain, graph_after)}
    if ref.control is not None:
        models["control"] = (ref.control, graph_after)
    for name, (model, g) in models.items():
        rep.models[name] = ref.assess(model, g)
        if name != "retrain":
            rep.verdicts[name] = ref.verdicts(rep.models[name])
    if reference is not None:
        rep.parameters["affected"] = parameter_distance(unlearned, reference, ref.nodes, original, align=True)
        rep.parameters["all"] = parameter_distance(unlearned, reference, None, original, align=True)
    rep.seconds = time.perf_counter() - t0
    return rep


__all__ = ["audit", "AuditReport", "AuditReference", "MODEL_ORDER", "SCORE_ERROR_TOL"]
