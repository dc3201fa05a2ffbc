"""The paper tables as configurations of :func:`graphforget.reproduce.runner.run_setting`.

``ifru``: IFRU's labelled protocol (explicit ratings → binary labels, 5-core, 60/20/20 random
split, a random 2% (MF) / 1% (LightGCN) of training rows get their labels **flipped** and form
the forget set, BCE, AUC; the authors' recipe: early stopping on validation AUC, d = 48, init
std 1e-3, Adam lr 1e-3, batch 2048, no L2). ``alteraser``: implicit feedback with BPR, random
1% / 5% and whole-user deletions, Recall/NDCG@20, time. Every row is audited
(:class:`graphforget.audit.AuditReference`) against independent retrains with the original's
recipe: per-edge U-MIA (``umia_auc``, 0.5 = retrain; ``score_error`` where retraining is
deterministic), population MIA, top-20 overlap with the held-out retrain, ``forgotten``.

Recipes: ``until="early_stop"`` (default: early stopping on validation, patience 10) or
``"stationary"`` (then the stationary finish, :mod:`graphforget.train.stationary`; needs λ > 0,
``l2``). Differences from the papers, by design: the influence methods solve with
preconditioned CG and HVPs through propagation unless the method spec asks for
``paper_mode``; nothing inside unlearning looks at validation data.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..data.graph import InteractionGraph
from ..train import TrainConfig
from .report import SettingLog, plot_tradeoff, write_results
from ..unlearning import load_methods
from .runner import Setting, parse_method, run_setting

IFRU_METHODS = ["original", "retrain", "sisa", "receraser", "scif", "if", "ifru:k=0", "ifru:k=1",
                "ifru:k=2", "ifru:k=1,paper_mode=true", "alteraser", "finetune"]
ALTERASER_METHODS = ["retrain", "original", "finetune:max_epochs=1", "finetune:max_epochs=3",
                     "finetune:max_epochs=10", "alteraser:rounds=1", "alteraser:rounds=3",
                     "alteraser:rounds=10", "ifru", "if"]

PRESETS = {
    "ifru": {
        "full": dict(datasets=["ml-latest-small"], models=[("mf", 0, 0.02), ("lightgcn", 1, 0.01),
                                                           ("lightgcn", 3, 0.01)],
                     seeds=[0, 1, 2], epochs=400, shadows=16, methods=IFRU_METHODS),
        "smoke": dict(datasets=["ml-latest-small"], models=[("mf", 0, 0.02), ("lightgcn", 1, 0.01)],
                      seeds=[0], epochs=2, shadows=2, methods=IFRU_METHODS, max_rows=6000),
    },
    "alteraser": {
        "full": dict(datasets=["ml100k", "lastfm", "gowalla-25"], models=[("mf", 0), ("lightgcn", 2)],
                     deletions=[("random", 0.01), ("random", 0.05), ("users", 10)],
                     seeds=[0, 1, 2], epochs=400, shadows=16, methods=ALTERASER_METHODS),
        "smoke": dict(datasets=["ml100k"], models=[("mf", 0), ("lightgcn", 2)],
                      deletions=[("random", 0.01), ("users", 2)], seeds=[0], epochs=2, shadows=2,
                      methods=["retrain", "original", "finetune:max_epochs=1", "alteraser:rounds=1",
                               "ifru", "if"]),
    },
}


def load_table_dataset(name: str, root: Path, seed: int = 0,
                       max_rows: Optional[int] = None) -> InteractionGraph:
    """Datasets of the two tables, read from ``root`` (the folder layout of ``../shared/data``
    or of downloads: ``ml-latest-small/ratings.csv``, ``bookcrossing/BX-Book-Ratings.csv``,
    ``amazon-electronics/ratings_Electronics.csv``, ``ml100k/``, ``gowalla-25/``,
    ``lastfm/data1.txt`` + ``test1.txt``)."""
    from ..data import loaders
    from ..data.protocols import ifru_protocol
    from ..data.splits import to_graph

    root = Path(root)
    labelled = {"ml-latest-small": (lambda: loaders.load_movielens(root / "ml-latest-small" / "ratings.csv"), 4, "ge"),
                "bookcrossing": (lambda: loaders.load_bookcrossing(root / "bookcrossing" / "BX-Book-Ratings.csv"), 5, "gt"),
                "amazon-electronics": (lambda: loaders.load_amazon_ratings(root / "amazon-electronics" / "ratings_Electronics.csv"), 4, "gt")}
    if name in labelled:
        load, thr, mode = labelled[name]
        inter = load()
        if max_rows is not None and len(inter) > max_rows:
            inter = inter.select(slice(0, max_rows))
        return ifru_protocol(inter, thr, mode=mode, seed=seed, name=name)
    if name in ("ml100k", "gowalla-25", "gowalla"):
        graph = loaders.load_lightgcn_txt(root / name, name=name)
    elif name == "lastfm":
        train, test = loaders.align([loaders.load_lastfm(root / "lastfm" / "data1.txt"),
                                     loaders.load_lastfm(root / "lastfm" / "test1.txt")])
        train.ratings = test.ratings = None
        graph = to_graph(train, None, test, name="lastfm")
    else:
        raise ValueError(f"unknown dataset {name!r} for the reproduction tables")
    if graph.valid_edges.shape[1] == 0:  # train + test only: early stopping needs a validation split
        graph = graph.carve_validation(0.1, seed)
        graph.notes.append(f"validation carved from train: 0.1 of each user's edges (seed {seed})")
    return graph


def reproduce(table: str, data_root: Path, out_dir: Path, preset: str = "full",
              seeds: Optional[list] = None, epochs: Optional[int] = None,
              methods: Optional[list] = None, datasets: Optional[list] = None,
              models: Optional[list] = None, deletions: Optional[list] = None,
              device: str = "cpu", resume: bool = False, progress: bool = True,
              until: str = "early_stop", l2: Optional[float] = None, shadows: Optional[int] = None,
              log=print) -> dict:
    """Run one paper table; write ``<table>.{csv,md,json,png}`` under ``out_dir``.

    ``seeds``, ``epochs``, ``methods``, ``datasets`` and ``models`` override the preset's;
    ``models`` keeps the preset's model rows named ``"mf"``, ``"lightgcn"`` (every depth) or
    ``"lightgcn-<layers>"``; ``deletions`` keeps the alteraser preset's deletion requests named
    ``"<kind>:<amount>"`` (``"random:0.05"``, ``"users:10"``). ``until`` is the recipe,
    ``l2`` overrides the preset's λ (the stationary recipe needs λ > 0), ``shadows`` the number
    of U-MIA shadow retrains (each row is audited against ``shadows`` + 2 retrains).

    Every finished setting is appended to ``<out_dir>/<table>.rows.jsonl``
    (:class:`~graphforget.reproduce.report.SettingLog`); with ``resume`` the settings found
    there under the same key are reused, so a long table can be built over several runs."""
    if table not in PRESETS:
        raise ValueError(f"unknown table {table!r}; choose from {sorted(PRESETS)}")
    if preset not in PRESETS[table]:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS[table])}")
    p = dict(PRESETS[table][preset])
    seeds = seeds or p["seeds"]
    epochs = epochs or p["epochs"]
    shadows = p["shadows"] if shadows is None else int(shadows)
    if shadows < 2:
        raise ValueError(f"shadows must be >= 2 (the U-MIA fits a distribution per edge), got {shadows}")
    methods = methods or p["methods"]
    load_methods(["retrain"] + [n for n, _ in map(parse_method, methods) if n != "original"])
    datasets = datasets or p["datasets"]
    if models:
        kept = [m for m in p["models"] if m[0] in models or f"{m[0]}-{m[1]}" in models]
        known = sorted({m[0] for m in p["models"]} | {f"{m[0]}-{m[1]}" for m in p["models"]})
        if not kept or any(name not in known for name in models):
            raise ValueError(f"models {models} not in the {table} table's {preset} preset: choose from {known}")
        p["models"] = kept
    if deletions:
        if "deletions" not in p:
            raise ValueError(f"the {table} table has one deletion per model (its flipped-label forget set)")
        known = [f"{kind}:{amount:g}" for kind, amount in p["deletions"]]
        if any(d not in known for d in deletions):
            raise ValueError(f"deletions {deletions} not in the {table} table's {preset} preset: choose from {known}")
        p["deletions"] = [d for d, name in zip(p["deletions"], known) if name in deletions]
    rows: list = []
    done = SettingLog(Path(out_dir) / f"{table}.rows.jsonl")
    originals: dict = {}
    fingerprints = {}
    t0 = time.perf_counter()
    if table == "ifru":
        grid = [(m, layers, ("flip", frac)) for m, layers, frac in p["models"]]
        cfg = TrainConfig(epochs=epochs, batch_size=2048, lr=1e-3, weight_decay=0.0 if l2 is None else l2,
                          patience=10, until=until, device=device, progress=False)
        dim, init_std = 48, 1e-3
    else:
        grid = [(m, layers, d) for m, layers in p["models"] for d in p["deletions"]]
        cfg = TrainConfig(epochs=epochs, batch_size=2048, lr=5e-3, weight_decay=1e-3 if l2 is None else l2,
                          patience=10, until=until, device=device, progress=False)
        dim, init_std = 64, 0.1
    for ds in datasets:
        graph = load_table_dataset(ds, data_root, seed=0, max_rows=p.get("max_rows"))
        fingerprints[ds] = graph.stats()
        log(f"{ds}: {graph}")
        for model, layers, (kind, amount) in grid:
            setting = Setting(ds, graph, model, layers, kind, amount, dim=dim, config=cfg, init_std=init_std)
            for seed in seeds:
                log(f"{ds} {model}-{layers} {kind}:{amount:g} seed {seed}")
                key = {"table": table, "dataset": ds, "data_sha256": fingerprints[ds]["sha256"],
                       "model": model, "layers": layers, "dim": setting.dim, "deletion": kind,
                       "amount": amount, "seed": seed, "methods": list(methods), "shadows": shadows,
                       "init_std": init_std,
                       "config": {k: v for k, v in cfg.to_dict().items() if k != "progress"}}
                cached = done.get(key) if resume else None
                if cached is not None:
                    log(f"  reused from {done.path}")
                    rows += cached
                    continue
                found = run_setting(setting, methods, seed, shadows=shadows, progress=progress, log=log,
                                    originals=originals)
                done.add(key, found)
                rows += found
    if table == "ifru":
        columns = ["deleted", "valid_auc", "test_auc", "test_auc_user_or_item",
                   "test_auc_user_and_item", "umia_auc", "score_error", "mia_auc", "seconds", "speedup"]
        title = "IFRU table: labelled data, flipped-label forget set, BCE"
    else:
        columns = ["deleted", "recall@20", "ndcg@20", "umia_auc", "score_error", "mia_auc", "overlap@20",
                   "seconds", "speedup"]
        title = "AltEraser table: implicit feedback, BPR"
    meta = {"title": title, "table": table, "preset": preset, "seeds": seeds, "epochs": epochs,
            "recipe": until, "shadows": shadows, "dim": dim, "init_std": init_std,
            "methods": methods, "models": [f"{m[0]}-{m[1]}" for m in p["models"]],
            "deletions": [f"{kind}:{amount:g}" for kind, amount in p.get("deletions", [])],
            "train_config": {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "progress")},
            "datasets": fingerprints, "data_root": str(data_root), "device": device,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "protocol": __doc__.strip().split("\n\n")[1]}
    paths = write_results(Path(out_dir), table, rows, columns, meta)
    paths["png"] = plot_table(table, paths["aggregate"], Path(out_dir) / f"{table}.png")
    log(paths["table"])
    return paths


def plot_table(table: str, agg: list, out: Path):
    """The table's plot: U-MIA AUC (0.5 = indistinguishable from retraining) against unlearning
    time per method; the IFRU table beside test AUC, the AltEraser table for AltEraser and
    fine-tuning (the paper's claim), on the same axes."""
    if table == "ifru":
        return plot_tradeoff(agg, out, "umia_auc", "IFRU table: U-MIA AUC (0.5 = retrain) vs unlearning time")
    return plot_tradeoff(agg, out, "umia_auc", "AltEraser table: U-MIA AUC (0.5 = retrain) vs wall time",
                         methods=["AltEraser", "Fine-tune"])
