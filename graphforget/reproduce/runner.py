"""One experiment grid for every reproduction: train the original once, then for each deletion
request run every method, the retrain it is compared with, and the audit.

A row of the result table is one (dataset, model, deletion, method, seed). Method specs are
strings ``name[:key=value,...]`` (``"ifru:k=1"``, ``"alteraser:rounds=3"``), turned into
:func:`graphforget.unlearning.get_unlearner` calls; ``"original"`` is the model before deletion.
SISA / RecEraser start from their own sharded original, trained once per setting.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..data.graph import InteractionGraph
from ..metrics import auc
from ..models import build_model
from ..train import TrainConfig, evaluate, train
from ..unlearning import get_unlearner
from ..unlearning.requests import deletion_edges, parse_method


def method_label(spec: str) -> str:
    name, opts = parse_method(spec)
    pretty = {"if": "IF", "ifru": "IFRU", "scif": "SCIF", "alteraser": "AltEraser",
              "finetune": "Fine-tune", "retrain": "Retrain", "sisa": "SISA",
              "receraser": "RecEraser", "original": "Original"}.get(name, name)
    return pretty + (f" ({', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else "")


def flip_labels(graph: InteractionGraph, edges: torch.Tensor) -> InteractionGraph:
    """IFRU protocol: the forget set's labels are flipped (noise), the rest unchanged."""
    pos = graph.find_edges(edges)
    labels = graph.train_labels.clone()
    labels[pos] = 1.0 - labels[pos]
    return InteractionGraph(graph.num_users, graph.num_items, graph.train_edges, graph.valid_edges,
                            graph.test_edges, train_labels=labels, valid_labels=graph.valid_labels,
                            test_labels=graph.test_labels, train_timestamps=graph.train_timestamps,
                            user_ids=graph.user_ids, item_ids=graph.item_ids, name=graph.name)


@dataclass
class Setting:
    """One cell of the grid: a dataset graph, a model and a deletion."""

    dataset: str
    graph: InteractionGraph
    model: str
    layers: int
    deletion: str  # "random", "users", "flip"
    amount: float
    dim: int = 64
    config: TrainConfig = field(default_factory=TrainConfig)
    init_std: float = 0.1


def _labelled_metrics(model, graph: InteractionGraph, deleted: torch.Tensor) -> dict:
    """Valid / test AUC overall and on test rows touching the forget set."""
    model.eval()
    with torch.no_grad():
        out = model.propagate(graph.adj())
        res = {}
        for split in ("valid", "test"):
            e, y = getattr(graph, f"{split}_edges"), getattr(graph, f"{split}_labels")
            res[f"{split}_auc"] = auc(model.score(e[0], e[1], out), y)
        e, y = graph.test_edges, graph.test_labels
        du, di = torch.unique(deleted[0]), torch.unique(deleted[1])
        hu, hi = torch.isin(e[0], du), torch.isin(e[1], di)
        s = model.score(e[0], e[1], out)
        res["test_auc_user_or_item"] = auc(s[hu | hi], y[hu | hi])
        res["test_auc_user_and_item"] = auc(s[hu & hi], y[hu & hi])
    return res


def _implicit_metrics(model, graph: InteractionGraph, ks=(20,)) -> dict:
    m = evaluate(model, graph, "test", ks=ks)
    return {k: v for k, v in m.items() if "@" in k and (k.startswith("recall") or k.startswith("ndcg"))}


def reference_retrains(original, graph: InteractionGraph, deleted: torch.Tensor, count: int,
                       log: Callable[[str], None]) -> tuple[list, float]:
    """``count`` retrains with the original's recipe and independent seeds, and their mean
    seconds. Under a stationary recipe, four suffice when they turn out deterministic (the
    audit then reports the distance to that unique retrain: more retrains add nothing)."""
    from ..audit import UMIA
    from ..audit.umia import retrain_seeds

    after = graph.remove_edges(deleted)
    models, seconds = [], []
    for r, s in enumerate(retrain_seeds(original, count)):
        res = get_unlearner("retrain", seed=s).unlearn(original, graph, deleted)
        models.append(res.model)
        seconds.append(res.report.seconds_total)
        log(f"  retrain {r + 1}/{count} (seed {s}) in {seconds[-1]:.1f}s")
        if r == 3 and (original.recipe or {}).get("until") == "stationary" and r + 1 < count:
            if UMIA.fit(models[2:], models[0], original, graph, after, deleted).deterministic:
                log("  retraining is deterministic under this recipe: 4 retrains suffice")
                break
    return models, sum(seconds) / len(seconds)


def run_setting(setting: Setting, methods: Sequence[str], seed: int, shadows: int = 16,
                progress: bool = True, log: Optional[Callable[[str], None]] = None,
                originals: Optional[dict] = None) -> list[dict]:
    """Rows for every method on one setting and seed, each audited
    (:class:`~graphforget.audit.AuditReference`) against ``shadows`` + 2 retrains with the
    original's recipe and independent seeds: the first is the ``Retrain`` row (its time is
    the mean over all of them), the second the control, the rest the U-MIA's shadows.

    ``originals``: a dict shared across calls that keeps each trained original by (training
    data fingerprint, model, layers, dim, training config with its seed) — the original does
    not depend on the deletion request unless it changes the training data (flipped labels),
    so the settings of one grid train it once. Training is seeded, so a kept original equals
    a retrained one."""
    from ..audit import AuditReference

    log = log or (lambda s: None)
    g0 = setting.graph
    cfg = TrainConfig(**{**setting.config.to_dict(), "seed": seed, "progress": False})
    deleted = deletion_edges(g0, setting.deletion, setting.amount, seed)
    graph = flip_labels(g0, deleted) if setting.deletion == "flip" else g0
    labelled = graph.has_labels

    def fresh(s: int):
        return build_model(setting.model, graph.num_users, graph.num_items, setting.dim,
                           setting.layers, seed=s, init_std=setting.init_std)

    key = (graph.fingerprint(), setting.model, setting.layers, setting.dim, setting.init_std, repr(cfg))
    if originals is not None and key in originals:
        original = originals[key]
        log("  original reused (trained for an earlier deletion of this grid)")
    else:
        t = time.perf_counter()
        original = train(fresh(seed), graph, cfg).model
        log(f"  original trained in {time.perf_counter() - t:.1f}s, |grad L|/|theta| "
            f"{original.recipe['grad_norm_rel']:.2e}")
        if originals is not None:
            originals[key] = original
    base = {"dataset": setting.dataset, "model": f"{setting.model}-{setting.layers}"
            if setting.model != "mf" else "mf", "deletion": f"{setting.deletion}:{setting.amount:g}",
            "seed": seed, "deleted": int(deleted.shape[1]), "recipe": cfg.until,
            "grad_norm_rel": original.recipe["grad_norm_rel"]}

    def metrics(model, g):
        return _labelled_metrics(model, g, deleted) if labelled else _implicit_metrics(model, g)

    retrains, retrain_seconds = reference_retrains(original, graph, deleted, int(shadows) + 2, log)
    g_new = graph.remove_edges(deleted)
    ref = AuditReference(original, graph, g_new, deleted, retrains, seed=seed)
    base["shadows"] = len(retrains) - 2
    base["deterministic"] = bool(ref.umia is not None and ref.umia.deterministic)

    rows = []
    sharded_cache: dict = {}
    bar = tqdm(methods, desc=f"{base['dataset']} {base['model']} {base['deletion']} s{seed}",
               disable=not progress, leave=False)
    for spec in bar:
        name, opts = parse_method(spec)
        row = dict(base, method=method_label(spec))
        if name == "original":
            model, seconds, g_eval, report = original, 0.0, graph, None
        elif name == "retrain":
            model, seconds, g_eval, report = retrains[0], retrain_seconds, g_new, None
        else:
            start = original
            if name in ("sisa", "receraser"):
                if name not in sharded_cache:
                    from ..train.sharding import fit_sharded

                    sharded_cache[name] = fit_sharded(graph, setting.model, opts.get("shards", 5),
                                                      "random" if name == "sisa" else "kmeans",
                                                      cfg, seed, layers=setting.layers, dim=setting.dim)
                start = sharded_cache[name]
                opts = {k: v for k, v in opts.items() if k != "shards"}
            if name in ("finetune",):
                opts.setdefault("config", cfg)
            res = get_unlearner(name, seed=seed, **opts).unlearn(start, graph, deleted)
            model, seconds, g_eval, report = res.model, res.report.seconds_total, res.graph, res.report
        row.update(metrics(model, g_eval))
        row["seconds"] = seconds
        row["speedup"] = retrain_seconds / seconds if seconds > 0 else float("nan")
        if report is not None and report.solver_iterations:
            row["solver_iters"] = report.solver_iterations
            row["solver_residual"] = report.solver_residual
        fig = ref.assess(model, g_eval)
        verdicts = ref.verdicts(fig)
        umia = fig.get("umia", {})
        row["umia_auc"] = umia.get("auc", float("nan"))
        row["score_error"] = umia.get("score_error", float("nan"))
        row["mia_auc"] = fig["membership"]["auc"] if "membership" in fig else float("nan")
        row["overlap@20"] = fig["agreement"]["overlap@20"]
        row["forgotten"] = bool(verdicts.get("forgotten"))
        rows.append(row)
        log(f"  {row['method']:<24} {seconds:8.3f}s " + " ".join(
            f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k not in ("seconds",)))
    return rows
