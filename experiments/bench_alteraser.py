"""AltEraser vs fine-tuning: time to approach a warm-started retrain reference.

For each data set and model: train briefly, pick 1% random training edges to delete, polish
the affected rows on the *old* fixed-negative objective (L-BFGS, so the starting point is
stationary and only the deletion moves the target), compute the reference = L-BFGS on the *new*
objective over the affected rows from there (rows of nodes left without training edges at 0,
the rule of every Newton method), then run AltEraser with rounds 1..T and FineTune
(AdamW) with 1..E epochs and record (wall seconds, L2 distance to the reference on the affected
rows, and the objective gap to the reference — informative for AltEraser only, since
fine-tuning also moves the unaffected rows and can end below the reference). Writes ``experiments/results/bench_alteraser.csv`` (and
``.png`` when matplotlib is importable).

    python experiments/bench_alteraser.py [--datasets ml100k gowalla-25] [--models lightgcn mf]
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from graphforget.data.loaders import load_lightgcn_txt
from graphforget.models import build_model
from graphforget.train import TrainConfig, train
from graphforget.unlearn import SampleSet, sample_losses, unlearn
from graphforget.unlearn.influence import newly_isolated
from graphforget.unlearn.objective import minimize_rows

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results"


def objective(model, adj, emb, samples, wd):
    return sample_losses(model, model.propagate(adj, emb), emb, samples, wd).sum()


def run(dataset, model_name, args, writer):
    g = load_lightgcn_txt(Path(args.data) / dataset)
    dev = args.device
    cfg = TrainConfig(epochs=args.train_epochs, lr=5e-3, weight_decay=args.wd, batch_size=2048,
                      patience=None, progress=False, eval_every=10 ** 6, device=dev)
    model = build_model(model_name, g.num_users, g.num_items, dim=args.dim, layers=2, seed=0)
    t = time.perf_counter()
    train(model, g, cfg)
    print(f"\n== {dataset} {model_name}: {g}  trained {args.train_epochs} epochs in "
          f"{time.perf_counter() - t:.1f}s")
    gen = torch.Generator().manual_seed(0)
    edges = g.train_edges[:, torch.randperm(g.num_train, generator=gen)[: max(1, g.num_train // 100)]]
    rows = g.khop_nodes(edges, model.num_layers).to(dev)
    samples_old = SampleSet.bpr(g, seed=0)
    keep = torch.ones(g.num_train, dtype=torch.bool)
    keep[g.find_edges(edges)] = False
    samples = samples_old.select(keep)
    new_graph = g.remove_edges(edges)
    new_adj = new_graph.adj(dev)
    # nodes that lose every training edge are set to 0 by every Newton method (their L2
    # optimum, influence.newly_isolated): the reference obeys the same rule
    ends = torch.unique(torch.cat([edges[0], edges[1] + g.num_users]))
    isolated = newly_isolated(new_graph, ends).to(dev)
    t = time.perf_counter()
    with torch.no_grad():
        model.embedding.copy_(minimize_rows(model, g.adj(dev), model.embedding.detach(),
                                         samples_old, args.wd, rows, args.ref_iters))
    e0 = model.embedding.detach().clone()
    start = e0.clone()
    start[isolated] = 0.0
    ref = minimize_rows(model, new_adj, start, samples, args.wd, rows[~torch.isin(rows, isolated)],
                        args.ref_iters)
    print(f"deleted {edges.shape[1]} edges, affected rows {rows.numel()} ({isolated.numel()} left "
          f"without edges: 0 in the reference), polish + reference {time.perf_counter() - t:.1f}s")
    with torch.no_grad():
        f_ref = float(objective(model, new_adj, ref, samples, args.wd))

    def measure(emb):
        with torch.no_grad():
            gap = float(objective(model, new_adj, emb, samples, args.wd)) - f_ref
        return float((emb[rows] - ref[rows]).norm()), gap

    d0, gap0 = measure(e0)
    curves = {"none": [(0.0, d0, gap0, 0)]}
    for method, steps in (("alteraser", range(1, args.rounds + 1)),
                          ("finetune", range(1, args.ft_epochs + 1))):
        curves[method] = []
        for s in steps:
            opts = ({"rounds": s, "tol": 0.0, "weight_decay": args.wd} if method == "alteraser" else
                    {"config": TrainConfig(**{**cfg.to_dict(), "lr": args.ft_lr}),
                     "max_epochs": s, "patience": None})
            res = unlearn(model, g, edges, method=method, **opts)
            d, gap = measure(res.model.embedding.detach())
            curves[method].append((res.report.seconds_total, d, gap, s))
    print(f"{'method':10s} {'steps':>5s} {'seconds':>8s} {'dist_to_ref':>12s} {'obj_gap':>10s}")
    for method, pts in curves.items():
        for sec, d, gap, s in pts:
            print(f"{method:10s} {s:5d} {sec:8.3f} {d:12.4f} {gap:10.4f}")
            writer.writerow([dataset, model_name, method, s, f"{sec:.4f}", f"{d:.6f}", f"{gap:.6f}",
                             f"{d0:.6f}", f"{gap0:.6f}"])
    for frac in (0.9, 0.75, 0.5):
        msg = []
        for method in ("alteraser", "finetune"):
            hit = [sec for sec, d, _, _ in curves[method] if d <= frac * d0]
            msg.append(f"{method} {min(hit):.3f}s" if hit else f"{method} not reached")
        print(f"time to distance <= {frac:g} x do-nothing: " + ", ".join(msg))
    return curves


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["ml100k", "gowalla-25"])
    p.add_argument("--models", nargs="+", default=["lightgcn", "mf"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--wd", type=float, default=1e-3)
    p.add_argument("--train-epochs", type=int, default=15)
    p.add_argument("--ref-iters", type=int, default=150)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--ft-epochs", type=int, default=6)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=str(DATA), help="folder holding the data sets")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_curves = {}
    with open(out / "bench_alteraser.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "model", "method", "steps", "seconds", "dist_to_ref", "obj_gap",
                    "dist_do_nothing", "gap_do_nothing"])
        for ds in args.datasets:
            for m in args.models:
                all_curves[(ds, m)] = run(ds, m, args, w)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not importable: no plot written")
        return
    fig, axes = plt.subplots(1, len(all_curves), figsize=(4.5 * len(all_curves), 3.5), squeeze=False)
    for ax, ((ds, m), curves) in zip(axes[0], all_curves.items()):
        for method in ("alteraser", "finetune"):
            pts = curves[method]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
        ax.axhline(curves["none"][0][1], ls="--", c="grey", label="do nothing")
        ax.set(title=f"{ds} {m}", xlabel="seconds", ylabel="L2 distance to reference (affected rows)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench_alteraser.png", dpi=120)


if __name__ == "__main__":
    main()
