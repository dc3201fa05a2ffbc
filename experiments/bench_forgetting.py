"""Does unlearning reach the retrain? Every method audited against independent retrains.

For each data set, model, recipe (``early_stop``: early stopping on validation Recall@20;
``stationary``: then the stationary finish), deletion (``random:0.01``, ``users:10``) and seed:

1. the original is trained with the recipe (λ chosen on validation per recipe, from
   ``--l2-from`` = the rows of ``bench_recipes.py``);
2. ``--shadows`` + 2 retrains on the remaining data with the same recipe and independent seeds
   are trained and timed (the held-out retrain, the control, the U-MIA shadows); under the
   stationary recipe the first four decide whether retraining is deterministic, and then no
   more are trained (the audit reports the score-space distance instead of a variance it
   does not have);
3. θ* = the stationary finish on the new graph from the original (the new objective's
   minimiser nearest the original);
4. every method runs, timed as a whole call, and is audited (:class:`graphforget.audit.AuditReference`):
   test Recall@20, U-MIA AUC / score error, population MIA, deleted items in the top 20,
   agreement with the held-out retrain, relative distance to θ* modulo rotation (rows that no
   remaining sample touches excluded: they are fresh draws, arbitrary for θ*), wall seconds,
   FGE, and the speed-up against the mean retrain time measured in the same run.

    python experiments/bench_forgetting.py --datasets ml100k --models mf lightgcn-2 \\
        --seeds 0 1 2 --shadows 16 --out experiments/results/forgetting.jsonl
    python experiments/bench_forgetting.py --summary experiments/results/forgetting-*.jsonl

Rows are appended as each setting finishes; ``--resume`` skips settings already in ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import time
from pathlib import Path

import torch

from graphforget.audit import UMIA, AuditReference, parameter_distance
from graphforget.audit.umia import retrain_seeds
from graphforget.models import build_model
from graphforget.unlearning import deletion_edges, parse_method
from graphforget.reproduce.tables import load_table_dataset
from graphforget.train import TrainConfig, stationary_finish, train
from graphforget.train.objective import split_samples
from graphforget.unlearning import get_unlearner, load_methods
from graphforget.unlearning.influence import untouched_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
METHODS = ["if", "ifru", "ifru:coupling=0", "ifru:steps=3", "alteraser:rounds=10",
           "finetune:max_epochs=1", "finetune:max_epochs=5"]


def chosen_l2(path: Path, dataset: str, model: str, recipe: str) -> float:
    """λ with the best validation Recall@20 for the recipe, from ``bench_recipes.py`` rows."""
    part = "stationary" if recipe == "stationary" else "early_stopped"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if r["key"]["dataset"] == dataset and r["key"]["model"] == model]
    if not rows:
        raise ValueError(f"{path}: no recipe rows for {dataset} {model}; run bench_recipes.py first")
    return max(rows, key=lambda r: r[part]["valid_recall@20"])["key"]["l2"]


def _figures(fig: dict, verdicts: dict) -> dict:
    u = fig.get("umia", {})
    return {"recall@20": fig["utility"]["overall"]["recall@20"],
            "ndcg@20": fig["utility"]["overall"]["ndcg@20"],
            "umia_auc": u.get("auc", float("nan")), "score_error": u.get("score_error", float("nan")),
            "mia_auc": fig["membership"]["auc"], "in_top@20": fig["forgetting"]["in_top@20"],
            "overlap@20": fig["agreement"]["overlap@20"],
            "verdicts": {k: v["verdict"] for k, v in verdicts.items() if isinstance(v, dict)},
            "forgotten": verdicts.get("forgotten")}


def run_setting(graph, spec: str, recipe: str, l2: float, deletion: str, seed: int, args, log) -> list[dict]:
    name, _, layers = spec.partition("-")
    layers = int(layers or 0)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=l2,
                      patience=args.patience, negatives=args.negatives, until=recipe,
                      gtol=args.gtol, seed=seed, progress=False)
    original = build_model(name, graph.num_users, graph.num_items, dim=args.dim, layers=layers, seed=seed)
    t = time.perf_counter()
    train(original, graph, cfg)
    log(f"  original in {time.perf_counter() - t:.1f}s, |grad|/|theta| {original.recipe['grad_norm_rel']:.2e}")
    kind, _, amount = deletion.partition(":")
    edges = deletion_edges(graph, kind, float(amount), seed)
    after = graph.remove_edges(edges)
    # retrains: the held-out one, the control, shadows; stop at 4 if retraining is deterministic
    retrains, seconds = [], []
    for r, s in enumerate(retrain_seeds(original, args.shadows + 2)):
        res = get_unlearner("retrain", seed=s).unlearn(original, graph, edges)
        retrains.append(res.model)
        seconds.append(res.report.seconds_total)
        if r == 3 and recipe == "stationary":
            if UMIA.fit(retrains[2:], retrains[0], original, graph, after, edges).deterministic:
                log("  retraining is deterministic under this recipe: 4 retrains suffice")
                break
    retrain_seconds = sum(seconds) / len(seconds)
    log(f"  {len(retrains)} retrains, {retrain_seconds:.1f}s each")
    reference = copy.deepcopy(original)
    fin = stationary_finish(reference, after, cfg.objective(after), gtol=min(args.gtol, 1e-6),
                            max_iter=args.max_iter)
    ref = AuditReference(original, graph, after, edges, retrains, reference)
    remaining = split_samples(cfg.objective(graph), graph, after, edges).remaining
    nodes = torch.arange(graph.num_nodes)
    rows_kept = nodes[~torch.isin(nodes, untouched_rows(remaining, graph.num_users, nodes))]
    base = {"dataset": graph.name, "model": spec, "recipe": recipe, "l2": l2, "deletion": deletion,
            "seed": seed, "deleted": int(edges.shape[1]), "shadows": len(retrains) - 2,
            "deterministic": bool(ref.umia is not None and ref.umia.deterministic),
            "retrain_seconds": retrain_seconds, "grad_norm_rel": original.recipe["grad_norm_rel"],
            "reference_grad_norm_rel": fin.grad_norm_rel}
    out = []
    candidates = [("original", original, graph, 0.0, None), ("retrain", retrains[1], after, retrain_seconds, None)]
    for spec_m in args.methods:
        mname, opts = parse_method(spec_m)
        res = get_unlearner(mname, seed=seed, **opts).unlearn(original, graph, edges)
        candidates.append((spec_m, res.model, res.graph, res.report.seconds_total, res.report))
    for label, model, g, secs, report in candidates:
        fig = ref.assess(model, g)
        row = {**base, "method": label, "seconds": secs,
               "speedup": retrain_seconds / secs if secs > 0 else float("nan"),
               **_figures(fig, ref.verdicts(fig)),
               "rel_distance": parameter_distance(model, reference, rows_kept, original, align=True)["relative"]}
        if report is not None:
            row.update(fge=report.fge, hvps=report.hvps, damping=report.damping,
                       newton_steps=report.newton_steps, summary=report.summary())
        log(f"  {label:<24} {secs:8.2f}s R@20 {row['recall@20']:.4f} U-MIA {row['umia_auc']:.3f} "
            f"err {row['score_error']:.3f} MIA {row['mia_auc']:.3f} dist {row['rel_distance']:.3f} "
            f"x{row['speedup']:.0f}")
        out.append(row)
    return out


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.resume and out.exists():
        done = {json.dumps([r["dataset"], r["model"], r["recipe"], r["deletion"], r["seed"]])
                for r in map(json.loads, out.read_text().splitlines())}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load_methods(["retrain"] + [parse_method(m)[0] for m in args.methods])
    for ds in args.datasets:
        graph = load_table_dataset(ds, Path(args.data_root), seed=0)
        print(graph, flush=True)
        for spec in args.models:
            for recipe in args.recipes:
                l2 = chosen_l2(Path(args.l2_from), ds, spec, recipe)
                for deletion in args.deletions:
                    for seed in args.seeds:
                        if json.dumps([ds, spec, recipe, deletion, seed]) in done:
                            continue
                        print(f"{ds} {spec} {recipe} (l2 {l2:g}) {deletion} seed {seed}", flush=True)
                        t = time.perf_counter()
                        rows = run_setting(graph, spec, recipe, l2, deletion, seed, args,
                                           lambda m: print(m, flush=True))
                        with open(out, "a") as f:
                            for row in rows:
                                f.write(json.dumps({**row, "commit": commit,
                                                    "setting_seconds": time.perf_counter() - t}) + "\n")


def summary(*paths: str) -> str:
    """Markdown: per (dataset, model, recipe, deletion) and method, means over seeds, from the
    rows of every file in ``paths``."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines()]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"], r["recipe"], r["deletion"]), {}).setdefault(r["method"], []).append(r)
    cols = ["recall@20", "umia_auc", "score_error", "mia_auc", "in_top@20", "overlap@20", "rel_distance",
            "seconds", "fge", "speedup"]
    lines = []
    for (ds, model, recipe, deletion), methods in groups.items():
        first = next(iter(methods.values()))[0]
        lines += ["", f"**{ds} · {model} · {recipe} (λ {first['l2']:g}) · {deletion}** — seeds "
                  f"{sorted({r['seed'] for rs in methods.values() for r in rs})}, R = {first['shadows']} shadows"
                  + (", retraining deterministic" if first["deterministic"] else ""), "",
                  "| method | " + " | ".join(cols) + " | forgotten |", "|---" * (len(cols) + 2) + "|"]
        for m, rs in methods.items():
            def mean(k):
                v = [r.get(k, float("nan")) for r in rs]
                v = [x for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
                return sum(v) / len(v) if v else float("nan")
            cells = [f"{mean(k):.4g}" for k in cols]
            forgot = sum(bool(r.get("forgotten")) for r in rs)
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {forgot}/{len(rs)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml100k"])
    ap.add_argument("--models", nargs="+", default=["mf", "lightgcn-2"])
    ap.add_argument("--recipes", nargs="+", default=["early_stop", "stationary"])
    ap.add_argument("--deletions", nargs="+", default=["random:0.01", "users:10"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shadows", type=int, default=16)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--l2-from", default="experiments/results/recipes.jsonl")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=8)
    ap.add_argument("--gtol", type=float, default=1e-5)
    ap.add_argument("--max-iter", type=int, default=20000)
    ap.add_argument("--data-root", default=str(SHARED))
    ap.add_argument("--out", default="experiments/results/forgetting.jsonl")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--summary", nargs="+", default=None, metavar="JSONL")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.summary:
        print(summary(*args.summary))
    else:
        run(args)


if __name__ == "__main__":
    main()
