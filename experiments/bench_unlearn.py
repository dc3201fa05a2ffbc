"""Unlearning cost on full Gowalla: time, solver statistics and Recall@20 after forgetting.

Trains (or loads the cached) LightGCN checkpoint, then for each scenario — one user's
interactions, a random fraction of all interactions — runs every method of the list through
``graphforget.unlearn.get_unlearner(name, **options)`` and prints the report summary and the
test Recall@20 on the new graph. The method list is data: add rows to ``METHODS`` or pass
``--method NAME[:key=value,...]`` (repeatable), e.g. ``--method ifru:prune_ratio=0.5``.

    python experiments/bench_unlearn.py --data ../shared/data/gowalla --device cuda \\
        --checkpoint runs/bench/gowalla-lightgcn3.pt --epochs 5

A short warm-up request runs first (untimed) so one-off CUDA start-up is not billed to a method.
Results go to ``--out`` as JSON lines.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from graphforget.data.loaders import load_lightgcn_txt
from graphforget.models import build_model
from graphforget.train import evaluate, load_checkpoint, train
from graphforget.unlearn import get_unlearner

# (method name, options); weight_decay is filled in from the training config
METHODS = [("if", {}), ("ifru", {})]


def parse_method(text: str):
    name, _, rest = text.partition(":")
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                continue
        else:
            v = {"true": True, "false": False}.get(v.lower(), v)
        opts[k] = v
    return name, opts


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "gowalla"))
    ap.add_argument("--model", default="lightgcn")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--checkpoint", default="runs/bench/gowalla-lightgcn3.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", action="append", default=None,
                    help="NAME[:key=value,...]; repeatable; default: " + ", ".join(m for m, _ in METHODS))
    ap.add_argument("--out", default="runs/bench/bench_unlearn.jsonl")
    args = ap.parse_args()
    dev = args.device
    methods = [parse_method(m) for m in args.method] if args.method else METHODS

    graph = load_lightgcn_txt(args.data)
    print(graph)
    ckpt = Path(args.checkpoint)
    if ckpt.exists():
        model, _ = load_checkpoint(ckpt, graph)
        print(f"loaded {ckpt}")
    else:
        model = build_model(args.model, graph.num_users, graph.num_items, dim=args.dim,
                            layers=args.layers, seed=args.seed)
        t = time.perf_counter()
        train(model, graph, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
              batch_size=2048, patience=None, eval_every=10 ** 6, progress=False, seed=args.seed,
              device=dev, checkpoint=str(ckpt))
        print(f"trained {args.epochs} epochs in {time.perf_counter() - t:.1f}s -> {ckpt}")
    model.to(dev)
    before = evaluate(model, graph, "test", (20,), device=dev)["recall@20"]
    print(f"Recall@20 before: {before:.4f}")

    gen = torch.Generator().manual_seed(args.seed)
    deg = torch.bincount(graph.train_edges[0], minlength=graph.num_users)
    typical = torch.nonzero((deg >= 20) & (deg <= 60)).view(-1)  # a user with a typical history
    user = int(typical[torch.randint(typical.numel(), (1,), generator=gen)])
    m = int(args.fraction * graph.num_train)
    scenarios = {f"user {user} ({int(deg[user])} edges)": graph.user_edges([user]),
                 f"random {args.fraction:.0%} ({m} edges)":
                     graph.train_edges[:, torch.randperm(graph.num_train, generator=gen)[:m]]}

    for name, opts in methods:  # warm-up: CUDA context, kernels, cached CSR on the device
        get_unlearner(name, weight_decay=args.weight_decay, seed=args.seed, **opts).unlearn(
            model, graph, graph.train_edges[:, :2])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        for scen, edges in scenarios.items():
            for name, opts in methods:
                un = get_unlearner(name, weight_decay=args.weight_decay, seed=args.seed, **opts)
                sync(dev)
                t = time.perf_counter()
                res = un.unlearn(model, graph, edges)
                sync(dev)
                wall = time.perf_counter() - t
                rec = evaluate(res.model, res.graph, "test", (20,), device=dev)["recall@20"]
                r = res.report
                print(f"[{scen}] {name} {opts or ''} wall={wall:.3f}s recall@20={rec:.4f}\n  {r.summary()}")
                for note in r.notes:
                    print(f"    {note}")
                f.write(json.dumps({"scenario": scen, "method": name, "options": opts,
                                    "wall_seconds": wall, "recall@20": rec,
                                    "recall@20_before": before, "device": dev,
                                    "report": r.to_dict()}) + "\n")


if __name__ == "__main__":
    main()
