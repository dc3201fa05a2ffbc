"""Unlearning cost against retraining: time, solver statistics and utility after forgetting.

Trains (or loads the cached) checkpoint, then for each scenario — one user's interactions, a
random fraction of all interactions — runs every method of the list through
``graphforget.unlearning.get_unlearner(name, **options)`` and records wall time, the report
summary and test Recall@20 / NDCG@20 on the new graph. Each scenario also gets a **retrain**
row with the original training configuration (same epochs, batch size, seed):

* ``--retrain full`` trains it and times it — the speed-up and the utility of every method are
  then relative to a real retrain;
* ``--retrain extrapolate`` (for data where a full retrain does not fit the time) trains
  ``--retrain-epochs`` epochs, and reports ``measured seconds / epochs × --converge-epochs`` as
  the retrain time, flagged ``"extrapolated": true``; there is no retrain utility then.

The method list is data (``--method NAME[:key=value,...]``, repeatable). Example, the numbers in
README::

    python experiments/bench_unlearn.py --data ../shared/data/gowalla-25 --epochs 20 --retrain full
    python experiments/bench_unlearn.py --data ../shared/data/gowalla --epochs 1 \\
        --retrain extrapolate --converge-epochs 72

On CUDA a short warm-up request runs first (untimed) so one-off start-up is not billed to a method.
Results go to ``--out`` as JSON lines.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from graphforget.data.loaders import load_lightgcn_txt
from graphforget.models import build_model
from graphforget.unlearning import parse_method
from graphforget.train import TrainConfig, evaluate, load_checkpoint, train
from graphforget.unlearning import get_unlearner, load_methods

METHODS = ["if", "ifru", "alteraser", "finetune:max_epochs=1"]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def utility(model, graph, device: str) -> dict:
    m = evaluate(model, graph, "test", (20,), device=device)
    return {"recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "gowalla"))
    ap.add_argument("--model", default="lightgcn")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs of the original model")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--checkpoint", default=None, help="default runs/bench/<data>-<model><layers>-e<epochs>.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", action="append", default=None,
                    help="NAME[:key=value,...]; repeatable; default: " + ", ".join(METHODS))
    ap.add_argument("--retrain", choices=["full", "extrapolate", "none"], default="full")
    ap.add_argument("--retrain-epochs", type=int, default=1, help="epochs timed with --retrain extrapolate")
    ap.add_argument("--retrain-seeds", type=int, default=1,
                    help="with --retrain full: also retrain with seeds seed+1.. to show the "
                         "seed-to-seed spread of utility (the first seed is the timed reference)")
    ap.add_argument("--converge-epochs", type=int, default=None,
                    help="epochs a retrain needs, for --retrain extrapolate (default --epochs)")
    ap.add_argument("--out", default="runs/bench/bench_unlearn.jsonl")
    args = ap.parse_args()
    dev = args.device
    methods = [parse_method(m) for m in (args.method or METHODS)]
    load_methods(["retrain"] + [name for name, _ in methods])

    graph = load_lightgcn_txt(args.data)
    print(graph)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, patience=None, eval_every=10 ** 6,
                         progress=False, seed=args.seed, device=dev)
    ckpt = Path(args.checkpoint or f"runs/bench/{Path(args.data).name}-{args.model}{args.layers}-e{args.epochs}.pt")
    if ckpt.exists():
        model, _ = load_checkpoint(ckpt, graph)
        print(f"loaded {ckpt}")
    else:
        model = build_model(args.model, graph.num_users, graph.num_items, dim=args.dim,
                            layers=args.layers, seed=args.seed)
        t = time.perf_counter()
        train(model, graph, config, checkpoint=str(ckpt))
        print(f"trained {args.epochs} epochs in {time.perf_counter() - t:.1f}s -> {ckpt}")
    model.to(dev)
    before = utility(model, graph, dev)
    print(f"before: {before}")

    gen = torch.Generator().manual_seed(args.seed)
    deg = torch.bincount(graph.train_edges[0], minlength=graph.num_users)
    typical = torch.nonzero((deg >= 20) & (deg <= 60)).view(-1)  # a user with a typical history
    user = int(typical[torch.randint(typical.numel(), (1,), generator=gen)])
    m = int(args.fraction * graph.num_train)
    scenarios = {f"user {user} ({int(deg[user])} edges)": graph.user_edges([user]),
                 f"random {args.fraction:.0%} ({m} edges)":
                     graph.train_edges[:, torch.randperm(graph.num_train, generator=gen)[:m]]}

    for name, opts in methods if dev.startswith("cuda") else []:  # warm-up: CUDA context, kernels
        if name != "finetune":
            get_unlearner(name, weight_decay=args.weight_decay, seed=args.seed, **opts).unlearn(
                model, graph, graph.train_edges[:, :2])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    common = {"data": graph.stats(), "model": model.config(), "train_config": config.to_dict(),
              "before": before, "device": dev, "threads": torch.get_num_threads()}
    with open(out, "a") as f:
        for scen, edges in scenarios.items():
            ref = None
            if args.retrain != "none":
                epochs = args.epochs if args.retrain == "full" else args.retrain_epochs
                seeds = range(args.seed, args.seed + (args.retrain_seeds if args.retrain == "full" else 1))
                for seed in seeds:
                    un = get_unlearner("retrain", config=dataclasses.replace(config, epochs=epochs, seed=seed),
                                       seed=seed)
                    sync(dev)
                    t = time.perf_counter()
                    res = un.unlearn(model, graph, edges)
                    sync(dev)
                    wall = time.perf_counter() - t
                    row = {"scenario": scen, "method": "retrain", "options": {"epochs": epochs, "seed": seed},
                           "wall_seconds": wall, "extrapolated": args.retrain == "extrapolate"}
                    if args.retrain == "extrapolate":
                        conv = args.converge_epochs or args.epochs
                        row.update(wall_seconds=wall / epochs * conv, measured_seconds=wall,
                                   measured_epochs=epochs, converge_epochs=conv)
                    else:
                        row.update(utility(res.model, res.graph, dev))
                        if ref is not None:
                            row["relative_to_retrain"] = {k: row[k] / ref[k] - 1 for k in ("recall@20", "ndcg@20")}
                        ref = ref or row
                    if seed == args.seed:
                        retrain_seconds = row["wall_seconds"]
                    print(f"[{scen}] retrain {row}")
                    f.write(json.dumps({**common, **row}) + "\n")
                    f.flush()
            for name, opts in methods:
                un = get_unlearner(name, weight_decay=args.weight_decay, seed=args.seed, **opts) \
                    if name != "finetune" else get_unlearner(name, config=config, seed=args.seed, **opts)
                sync(dev)
                t = time.perf_counter()
                res = un.unlearn(model, graph, edges)
                sync(dev)
                wall = time.perf_counter() - t
                row = {"scenario": scen, "method": name, "options": opts, "wall_seconds": wall,
                       **utility(res.model, res.graph, dev)}
                if args.retrain != "none":
                    row["speedup"] = retrain_seconds / wall
                if ref is not None:
                    row["relative_to_retrain"] = {k: row[k] / ref[k] - 1 for k in ("recall@20", "ndcg@20")}
                r = res.report
                print(f"[{scen}] {name} {opts or ''} wall={wall:.3f}s recall@20={row['recall@20']:.4f} "
                      f"ndcg@20={row['ndcg@20']:.4f} speedup={row.get('speedup', float('nan')):.0f}\n  {r.summary()}")
                for note in r.notes:
                    print(f"    {note}")
                f.write(json.dumps({**common, **row, "report": r.to_dict()}) + "\n")
                f.flush()


if __name__ == "__main__":
    main()
