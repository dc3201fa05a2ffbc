"""Deletion-service benchmark: many sequential single-edge forget requests, utility drift,
agreement with a retrain, and how ``Forgetter.retrain()`` resets the drift.

What it does (one process, CPU by default):

1. Loads a LightGCN-format data set (default ``../shared/data/ml100k``), imports it into a fresh
   :class:`~graphforget.service.InteractionStore` and trains the base LightGCN (early stopping on
   validation Recall@20), which is bound as the base checkpoint of a
   :class:`~graphforget.service.Forgetter`.
2. Sends ``--requests`` single-edge forget requests, one after another, for random training
   edges (seeded), each through the full service path: validation, unlearning (``--method``,
   default ``ifru``), checkpoint write + fsync + rename, one SQLite transaction (tombstone,
   ledger row, pointer). Test Recall@20 of the served model is measured every ``--eval-every``
   requests (the drift curve).
3. At the end retrains two models from scratch on the remaining interactions (seeds 0 and 1,
   same config as the base) and reports Recall@20 of each, the agreement (top-20 overlap and
   Spearman over all candidates, :func:`graphforget.audit.agreement.agreement`, all users) of
   the served model with retrain 0, and the retrain-vs-retrain noise floor.
4. Calls ``Forgetter.retrain(seed=2)`` (the periodic full refresh from the store) and reports the
   same figures for the refreshed model.

Writes ``experiments/results/bench_service.json`` (summary + per-request times + curve).

Usage::

    python experiments/bench_service.py                      # 1,000 requests on ml100k
    python experiments/bench_service.py --requests 200 --method if
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "ml100k"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="LightGCN text folder")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--method", default="ifru")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="method option, repeatable")
    p.add_argument("--fallback", default=None, help="fallback method (default none)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where store and checkpoints go (default: temp)")
    p.add_argument("--out", default=str(HERE / "results" / "bench_service.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from graphforget.audit.agreement import agreement
    from graphforget.data.loaders import load_lightgcn_txt
    from graphforget.models import build_model
    from graphforget.service import Forgetter, InteractionStore
    from graphforget.train import TrainConfig, evaluate, train

    args = parse_args(argv)
    options = {"weight_decay": args.weight_decay}
    for kv in args.option:
        k, _, v = kv.partition("=")
        options[k] = json.loads(v)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_service_"))
    work.mkdir(parents=True, exist_ok=True)
    graph = load_lightgcn_txt(args.data)
    print(graph, flush=True)

    t0 = time.perf_counter()
    with InteractionStore(work / "store.sqlite") as store:
        store.import_graph(graph, source=args.data)
        graph = store.to_graph()
    t_import = time.perf_counter() - t0
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, patience=args.patience, seed=args.seed,
                      progress=False)

    def fit(g, seed):
        m = build_model("lightgcn", g.num_users, g.num_items, dim=args.dim, layers=args.layers, seed=seed)
        c = TrainConfig(**{**cfg.to_dict(), "seed": seed})
        r = train(m, g, c)
        return r.model, r

    def recall(m, g):
        return evaluate(m, g, "test", (20,))["recall@20"]

    t0 = time.perf_counter()
    base, res = fit(graph, args.seed)
    t_train = time.perf_counter() - t0
    from graphforget.train import save_checkpoint

    save_checkpoint(work / "model.pt", base, graph, cfg.to_dict())
    base_recall = recall(base, graph)
    print(f"base LightGCN: {res.epochs_run} epochs in {t_train:.1f}s, test recall@20={base_recall:.4f}",
          flush=True)

    f = Forgetter(work / "store.sqlite", work / "model.pt", method=args.method, options=options,
                  fallback=args.fallback, audit=None)
    gen = torch.Generator().manual_seed(args.seed)
    n = min(args.requests, graph.num_train)
    pick = graph.train_edges[:, torch.randperm(graph.num_train, generator=gen)[:n]]
    pairs = [(graph.user_ids[u], graph.item_ids[i]) for u, i in pick.t().tolist()]

    curve = [{"requests": 0, "recall@20": base_recall}]
    wall, unlearn_s, iters, methods, not_conv = [], [], [], {}, 0
    t_all = time.perf_counter()
    for k, pair in enumerate(pairs, 1):
        t = time.perf_counter()
        r = f.forget([pair], request_id=f"bench-{k}")
        wall.append(time.perf_counter() - t)
        unlearn_s.append(r.report.get("seconds_total") or 0.0)
        iters.append(r.report.get("solver_iterations") or 0)
        methods[r.method] = methods.get(r.method, 0) + 1
        not_conv += r.report.get("converged") is False
        if k % args.eval_every == 0 or k == n:
            curve.append({"requests": k, "recall@20": recall(f.model, f.graph),
                          "mean_request_s": sum(wall[-args.eval_every:]) / len(wall[-args.eval_every:])})
            print(f"  {k:5d} requests  recall@20={curve[-1]['recall@20']:.4f}  "
                  f"mean {curve[-1]['mean_request_s'] * 1000:.0f} ms/request", flush=True)
    t_requests = time.perf_counter() - t_all
    g_end = f.graph
    assert g_end.fingerprint() == f.store.to_graph().fingerprint()

    t0 = time.perf_counter()
    retrain_a, ra = fit(g_end, 0)
    t_retrain = time.perf_counter() - t0
    retrain_b, _ = fit(g_end, 1)
    users = torch.arange(g_end.num_users)
    agree = agreement(f.model, retrain_a, g_end, users, k=20)
    floor = agreement(retrain_a, retrain_b, g_end, users, k=20)
    orig_vs_retrain = agreement(base, retrain_a, g_end, users, k=20, graph_b=None)
    served_recall = recall(f.model, g_end)

    t0 = time.perf_counter()
    rr = f.retrain(seed=2)
    t_service_retrain = time.perf_counter() - t0
    agree_after = agreement(f.model, retrain_a, g_end, users, k=20)

    wall_t = torch.tensor(wall)
    summary = {
        "data": str(args.data), "graph": graph.stats(), "requests": n, "method": args.method,
        "options": options, "methods_used": methods, "not_converged": not_conv,
        "model": {"name": "lightgcn", "dim": args.dim, "layers": args.layers},
        "train": {"epochs_run": res.epochs_run, "seconds": t_train, "config": cfg.to_dict()},
        "import_seconds": t_import,
        "per_request_s": {"mean": float(wall_t.mean()), "median": float(wall_t.median()),
                          "p95": float(wall_t.quantile(0.95)), "max": float(wall_t.max()),
                          "unlearn_mean": sum(unlearn_s) / n,
                          "service_overhead_mean": float(wall_t.mean()) - sum(unlearn_s) / n},
        "solver_iterations_mean": sum(iters) / n,
        "requests_seconds_total": t_requests,
        "recall@20": {"base": base_recall, "served_after_requests": served_recall,
                      "retrain_seed0": recall(retrain_a, g_end), "retrain_seed1": recall(retrain_b, g_end),
                      "service_retrain": recall(f.model, g_end)},
        "agreement_with_retrain": {"served_after_requests": agree, "noise_floor_retrain_vs_retrain": floor,
                                   "base_model_unmodified": orig_vs_retrain,
                                   "after_service_retrain": agree_after},
        "retrain_seconds": t_retrain, "service_retrain_seconds": t_service_retrain,
        "service_retrain_checkpoint": rr.checkpoint,
        "ledger_rows": len(f.history()),
        "curve": curve,
        "platform": {"python": platform.python_version(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "machine": platform.machine()},
        "command": " ".join([Path(sys.executable).name] + sys.argv),
    }
    f.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    r = summary["recall@20"]
    print(f"\n{n} requests in {t_requests:.1f}s: {summary['per_request_s']['mean'] * 1000:.0f} ms/request "
          f"(unlearning {summary['per_request_s']['unlearn_mean'] * 1000:.0f} ms, service overhead "
          f"{summary['per_request_s']['service_overhead_mean'] * 1000:.0f} ms); methods {methods}")
    print(f"recall@20: base {r['base']:.4f} -> after requests {r['served_after_requests']:.4f}; "
          f"retrain {r['retrain_seed0']:.4f} / {r['retrain_seed1']:.4f}; after service retrain "
          f"{r['service_retrain']:.4f}")
    a = summary["agreement_with_retrain"]
    for label, key in (("served vs retrain", "served_after_requests"), ("noise floor", "noise_floor_retrain_vs_retrain"),
                       ("base vs retrain", "base_model_unmodified"), ("service retrain vs retrain", "after_service_retrain")):
        print(f"  {label:28s} overlap@20={a[key]['overlap@20']:.4f} spearman={a[key]['spearman']:.4f}")
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
