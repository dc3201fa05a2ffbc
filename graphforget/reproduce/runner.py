"""One experiment grid for every reproduction: train the original once, then for each deletion
request run every method, the retrain it is compared with, and the audit.

A row of the result table is one (dataset, model, deletion, method, seed). Method specs are
strings ``name[:key=value,...]`` (``"ifru:k=1"``, ``"alteraser:rounds=3"``), turned into
:func:`graphforget.unlearn.get_unlearner` calls; ``"original"`` is the model before deletion.
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
from ..unlearn import get_unlearner
from ..unlearn.requests import deletion_edges, parse_method


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


def _affected_users(graph: InteractionGraph, deleted: torch.Tensor, layers: int) -> torch.Tensor:
    nodes = graph.khop_nodes(deleted, min(layers, 1))
    return nodes[nodes < graph.num_users]


def run_setting(setting: Setting, methods: Sequence[str], seed: int,
                audit: bool = True, progress: bool = True,
                log: Optional[Callable[[str], None]] = None,
                originals: Optional[dict] = None) -> list[dict]:
    """Rows for every method on one setting and seed.

    ``originals``: a dict shared across calls that keeps each trained original by (training
    data fingerprint, model, layers, dim, training config with its seed) — the original does
    not depend on the deletion request unless it changes the training data (flipped labels),
    so the settings of one grid train it once. Training is seeded, so a kept original equals
    a retrained one."""
    from ..audit import agreement, membership_inference_auc

    log = log or (lambda s: None)
    g0 = setting.graph
    cfg = TrainConfig(**{**setting.config.to_dict(), "seed": seed, "progress": False})
    deleted = deletion_edges(g0, setting.deletion, setting.amount, seed)
    graph = flip_labels(g0, deleted) if setting.deletion == "flip" else g0
    labelled = graph.has_labels

    def fresh(s: int):
        return build_model(setting.model, graph.num_users, graph.num_items, setting.dim,
                           setting.layers, seed=s)

    key = (graph.fingerprint(), setting.model, setting.layers, setting.dim, repr(cfg))
    if originals is not None and key in originals:
        original = originals[key]
        log("  original reused (trained for an earlier deletion of this grid)")
    else:
        t = time.perf_counter()
        original = train(fresh(seed), graph, cfg).model
        log(f"  original trained in {time.perf_counter() - t:.1f}s")
        if originals is not None:
            originals[key] = original
    base = {"dataset": setting.dataset, "model": f"{setting.model}-{setting.layers}"
            if setting.model != "mf" else "mf", "deletion": f"{setting.deletion}:{setting.amount:g}",
            "seed": seed, "deleted": int(deleted.shape[1])}

    def metrics(model, g):
        return _labelled_metrics(model, g, deleted) if labelled else _implicit_metrics(model, g)

    retrainer = get_unlearner("retrain", config=cfg, seed=seed)
    t = time.perf_counter()
    retrained = retrainer.unlearn(original, graph, deleted)
    retrain_seconds = time.perf_counter() - t
    g_new = retrained.graph
    affected = _affected_users(graph, deleted, setting.layers if setting.model != "mf" else 0)
    floor = None
    if audit and not labelled:
        alt = get_unlearner("retrain", config=TrainConfig(**{**cfg.to_dict(), "seed": seed + 1000}),
                            seed=seed + 1000).unlearn(original, graph, deleted)
        floor = agreement(retrained.model, alt.model, g_new, affected, k=20)

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
            model, seconds, g_eval, report = retrained.model, retrain_seconds, g_new, retrained.report
        else:
            start = original
            if name in ("sisa", "receraser"):
                if name not in sharded_cache:
                    from ..unlearn.partition import fit_sharded

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
        if audit and not labelled and name != "retrain":
            a = agreement(model, retrained.model, g_eval, affected, k=20, graph_b=g_new)
            row["overlap@20"] = a["overlap@20"]
            row["rank_corr"] = a["spearman"]
        if audit and not labelled:
            row["mia_auc"] = membership_inference_auc(model, g_new, g_new.train_edges, g_new.test_edges,
                                                      deleted, seed=seed, adj_graph=g_eval).auc
        if floor is not None:
            row["floor_overlap@20"] = floor["overlap@20"]
            row["floor_rank_corr"] = floor["spearman"]
        rows.append(row)
        log(f"  {row['method']:<24} {seconds:8.3f}s " + " ".join(
            f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k not in ("seconds",)))
    return rows
