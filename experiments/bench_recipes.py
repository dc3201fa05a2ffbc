"""What stationarity costs in utility: the early-stopped model against its stationary finish.

For each data set, model and λ of a grid (and each number of fixed negatives per positive):
train with early stopping on validation Recall@20 (Adam, fresh negatives every epoch), record
validation and test Recall/NDCG@20 and the relative gradient norm of the objective, then run
the stationary finish (float64 L-BFGS on the same objective with its fixed negatives to
‖∇L‖/‖θ‖ ≤ gtol) from there and record the same. λ is chosen on *validation* for each recipe;
the table compares the two selected models' test Recall@20 (target: stationary within 2 %).

    python experiments/bench_recipes.py --datasets ml100k lastfm --models mf lightgcn-2 \\
        --l2 1e-3 1e-2 3e-2 0.1 --negatives 8 --out experiments/results/recipes.jsonl
    python experiments/bench_recipes.py --summary experiments/results/recipes.jsonl

Rows are appended as they finish (a long grid survives a stop; ``--resume`` skips rows already
in ``--out``).
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import time
from pathlib import Path

import torch

from graphforget.models import build_model
from graphforget.reproduce.tables import load_table_dataset
from graphforget.train import TrainConfig, evaluate, stationarity, stationary_finish, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _metrics(model, graph) -> dict:
    out = {}
    for split in ("valid", "test"):
        m = evaluate(model, graph, split, (20,))
        out.update({f"{split}_recall@20": m["recall@20"], f"{split}_ndcg@20": m["ndcg@20"]})
    return out


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.resume and out.exists():
        done = {json.dumps(json.loads(line)["key"], sort_keys=True) for line in out.read_text().splitlines()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for ds in args.datasets:
        graph = load_table_dataset(ds, Path(args.data_root), seed=0)
        print(graph, *graph.notes, flush=True)
        for spec in args.models:
            name, _, layers = spec.partition("-")
            layers = int(layers or 0)
            for negatives in args.negatives:
                for l2 in args.l2:
                    key = {"dataset": ds, "model": spec, "l2": l2, "negatives": negatives,
                           "dim": args.dim, "lr": args.lr, "seed": args.seed, "gtol": args.gtol}
                    if json.dumps(key, sort_keys=True) in done:
                        continue
                    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                      weight_decay=l2, patience=args.patience, negatives=negatives,
                                      seed=args.seed, progress=False)
                    model = build_model(name, graph.num_users, graph.num_items, dim=args.dim,
                                        layers=layers, seed=args.seed)
                    t = time.perf_counter()
                    res = train(model, graph, cfg)
                    row = {"key": key, "commit": commit, "best_epoch": res.best_epoch,
                           "epochs_run": res.epochs_run, "train_seconds": time.perf_counter() - t,
                           "early_stopped": {**_metrics(model, graph),
                                             "grad_norm_rel": res.stationarity["grad_norm_rel"]}}
                    fin = stationary_finish(model, graph, cfg.objective(graph), gtol=args.gtol,
                                            max_iter=args.max_iter)
                    row["stationary"] = {**_metrics(model, graph), "grad_norm_rel": fin.grad_norm_rel,
                                         "converged": fin.converged, "iterations": fin.iterations,
                                         "seconds": fin.seconds}
                    print(json.dumps(row), flush=True)
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")


def summary(path: str) -> str:
    """Markdown: per (dataset, model, negatives) the validation-selected λ of each recipe and
    its test Recall@20, and the relative gap."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    groups: dict = {}
    for r in rows:
        k = r["key"]
        groups.setdefault((k["dataset"], k["model"], k["negatives"]), []).append(r)
    lines = ["| data | model | fixed negatives | early-stopped: λ (valid) | test R@20 | stationary: λ (valid) | test R@20 | gap | ‖∇L‖/‖θ‖ early → stationary |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (ds, model, k), rs in sorted(groups.items()):
        es = max(rs, key=lambda r: r["early_stopped"]["valid_recall@20"])
        st = max(rs, key=lambda r: r["stationary"]["valid_recall@20"])
        a, b = es["early_stopped"]["test_recall@20"], st["stationary"]["test_recall@20"]
        lines.append(f"| {ds} | {model} | {k} | {es['key']['l2']:g} ({es['early_stopped']['valid_recall@20']:.4f}) "
                     f"| {a:.4f} | {st['key']['l2']:g} ({st['stationary']['valid_recall@20']:.4f}) | {b:.4f} "
                     f"| {100 * (b / a - 1):+.1f} % | {es['early_stopped']['grad_norm_rel']:.2g} → "
                     f"{st['stationary']['grad_norm_rel']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml100k"])
    ap.add_argument("--models", nargs="+", default=["mf", "lightgcn-2"])
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-3, 1e-2, 3e-2, 0.1])
    ap.add_argument("--negatives", type=int, nargs="+", default=[8])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--gtol", type=float, default=1e-5)
    ap.add_argument("--max-iter", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=str(SHARED))
    ap.add_argument("--out", default="experiments/results/recipes.jsonl")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--summary", default=None, metavar="JSONL", help="print the table of a results file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.summary:
        print(summary(args.summary))
    else:
        run(args)


if __name__ == "__main__":
    main()
