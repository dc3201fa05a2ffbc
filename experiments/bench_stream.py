"""Request-stream benchmark: K forget requests one by one against ``Forgetter.forget_many`` in
batches, through the whole service path, in one process.

Trains a model (stationary recipe by default, ``--until early_stop`` for the early-stopped one) on a LightGCN-format data set (default ml100k, MF),
imports it into two fresh stores bound to the same checkpoint, draws ``--requests`` single-user
requests (seeded; users with at least ``--min-degree`` training interactions), and applies them

* one by one (``forget_user`` per request), and
* coalesced: ``forget_many`` on consecutive batches of ``--batch`` requests.

For each arm it reports the wall time of the requests (validation, unlearning, checkpoint,
commit) and the same in full-gradient-equivalents (seconds over one full-graph gradient of the
training objective, measured in this process: ``UnlearnReport.full_gradient_seconds``), per
request; and, between the arms, the relative gap of the final score matrices (how far the
coalesced result is from the one-by-one result, relative to the one-by-one change). Appends one
JSON line to ``experiments/results/bench_stream.jsonl``.

Usage::

    OMP_NUM_THREADS=1 python experiments/bench_stream.py --data ../shared/data/ml100k --requests 20 --batch 10
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _rows import append_row, stamp  # noqa: E402
from graphforget.data import load_dataset  # noqa: E402
from graphforget.models import build_model  # noqa: E402
from graphforget.service import Forgetter, InteractionStore  # noqa: E402
from graphforget.train import TrainConfig, save_checkpoint, train  # noqa: E402


def scores(model, num_users: int) -> torch.Tensor:
    e = model.embedding.detach().double()
    return e[:num_users] @ e[num_users:].T


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "ml100k"))
    ap.add_argument("--model", default="mf")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--l2", type=float, default=0.1)
    ap.add_argument("--until", default="stationary", choices=["stationary", "early_stop"],
                    help="training recipe of the served model")
    ap.add_argument("--method", default="ifru")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--min-degree", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_stream.jsonl"))
    args = ap.parse_args(argv)

    graph = load_dataset(args.data)
    name, _, layers = args.model.partition("-")
    model = build_model(name, graph.num_users, graph.num_items, dim=args.dim,
                        layers=int(layers or 0), seed=args.seed)
    cfg = TrainConfig(lr=5e-3, weight_decay=args.l2, until=args.until, progress=False, seed=args.seed)
    t = time.perf_counter()
    train(model, graph, cfg)
    train_seconds = time.perf_counter() - t
    deg = torch.bincount(graph.train_edges[0], minlength=graph.num_users)
    users = torch.nonzero(deg >= args.min_degree).view(-1)
    gen = torch.Generator().manual_seed(args.seed)
    picked = users[torch.randperm(users.numel(), generator=gen)[:args.requests]].tolist()
    raw = [graph.user_ids[u] if graph.user_ids else str(u) for u in picked]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        finals = {}
        for arm in ("one_by_one", "coalesced"):
            folder = Path(tmp) / arm
            folder.mkdir()
            with InteractionStore(folder / "s.sqlite") as store:
                store.import_graph(graph)
            save_checkpoint(folder / "m.pt", model, graph)
            f = Forgetter(folder / "s.sqlite", folder / "m.pt", method=args.method, fallback=None, audit=None)
            t = time.perf_counter()
            if arm == "one_by_one":
                results = [f.forget_user(u, request_id=f"r{k}") for k, u in enumerate(raw)]
            else:
                results = []
                for s in range(0, len(raw), args.batch):
                    results += f.forget_many([{"user": u, "request_id": f"r{s + k}"}
                                              for k, u in enumerate(raw[s:s + args.batch])])
            seconds = time.perf_counter() - t
            fg = results[0].report.get("full_gradient_seconds")
            out[arm] = {"seconds": round(seconds, 3), "seconds_per_request": round(seconds / len(raw), 4),
                        "fge_per_request": round(seconds / len(raw) / fg, 2) if fg else None,
                        "solves": len({r.checkpoint for r in results}),
                        "hvps": sum(r.report.get("hvps", 0) for r in {r.checkpoint: r for r in results}.values())}
            finals[arm] = scores(f.model, graph.num_users)
            f.close()
        start = scores(model, graph.num_users)
        change = float((finals["one_by_one"] - start).norm())
        out["score_gap_relative"] = round(float((finals["coalesced"] - finals["one_by_one"]).norm()) / change, 4)
    row = {"bench": "stream", "data": Path(args.data).name, "model": args.model, "method": args.method,
           "until": args.until, "l2": args.l2, "requests": len(raw), "batch": args.batch, "train_seconds": round(train_seconds, 1),
           **out, "speedup_coalesced": round(out["one_by_one"]["seconds"] / out["coalesced"]["seconds"], 2),
           **stamp(HERE.parent)}
    append_row(args.out, row)


if __name__ == "__main__":
    main()
