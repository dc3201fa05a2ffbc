"""Data-parallel training epochs and sharded Hessian-vector products: 1 vs 2 processes.

On the demo data (1 944 users, 2 748 items, 38 708 training edges) times, for MF and
LightGCN:

* ``train``: seconds per training epoch (the loop only, no validation) of
  ``DistributedTrainer`` — world 1 is the plain ``Trainer`` path;
* ``hvp``: seconds per Hessian-vector product of the whole training objective
  (``ShardedObjective.hessian_operator``, 8 fixed negatives per positive = 309 664 samples,
  float64), and per gradient;
* ``allreduce``: one all-reduce of the ``(U+I)·d`` table alone (what each step and each product
  adds in communication).

Configurations: ``world=1, threads=1`` (one process, one core), ``world=1, threads=2`` (one
process using both cores: the honest single-machine baseline) and ``world=2, threads=1`` (two
gloo processes on 127.0.0.1, one core each). Every configuration runs in freshly spawned
processes; the figure of a 2-process run is the slower rank's. Speed-ups are against both
single-process baselines, whatever they are; the machine's load average is recorded because
other jobs may share the cores.

    OMP_NUM_THREADS=1 python experiments/bench_distributed.py            # writes experiments/results/bench_distributed.jsonl
    OMP_NUM_THREADS=1 python experiments/bench_distributed.py --epochs 2 --hvps 5 --out /tmp/b.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MODELS = {"mf": dict(layers=0), "lightgcn": dict(layers=3)}


def _max_over_ranks(x: float) -> float:
    if not dist.is_initialized():
        return x
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def _work(rank: int, world: int, threads: int, port: int, out: str, args: dict) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
    import graphforget
    from graphforget.models import build_model
    from graphforget.train import TrainConfig
    from graphforget.train import distributed as gfd
    from graphforget.train.objective import Objective

    rows = []
    try:
        graph = graphforget.load_dataset("demo")
        n = graph.num_users + graph.num_items
        for name, kw in MODELS.items():
            make = lambda: build_model(name, graph.num_users, graph.num_items, dim=args["dim"],  # noqa: E731
                                       seed=0, **kw)
            cfg = TrainConfig(epochs=args["epochs"], batch_size=args["batch_size"], lr=1e-3,
                              patience=None, eval_every=10 ** 6, progress=False, negatives=1)
            res = gfd.DistributedTrainer(cfg).fit(make(), graph)
            per_epoch = [h["seconds"] for h in res.history]
            # first epoch pays warm-ups (allocator, first sparse products): report the rest
            steady = per_epoch[1:] or per_epoch
            rows.append({"bench": "train", "model": name, "seconds_per_epoch":
                         _max_over_ranks(sum(steady) / len(steady)),
                         "epochs_timed": len(steady), "batch_size": args["batch_size"],
                         "final_loss": res.history[-1]["loss"]})
            model = make()
            samples = Objective(loss="bpr", weight_decay=1e-4, negatives=8).samples(graph)
            ego = model.embedding.detach().double()
            f = gfd.ShardedObjective(model, graph, samples, 1e-4)
            f(ego)  # warm-up
            t = time.perf_counter()
            for _ in range(args["hvps"]):
                f(ego)
            grad_s = (time.perf_counter() - t) / args["hvps"]
            op = f.hessian_operator(ego, damping=0.1)
            v = torch.randn(n, args["dim"], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            op(v)  # warm-up
            t = time.perf_counter()
            for _ in range(args["hvps"]):
                op(v)
            hvp_s = (time.perf_counter() - t) / args["hvps"]
            rows.append({"bench": "hvp", "model": name, "seconds_per_hvp": _max_over_ranks(hvp_s),
                         "seconds_per_gradient": _max_over_ranks(grad_s), "samples": len(samples),
                         "samples_per_rank": len(f.samples)})
        table = torch.randn(n, args["dim"])
        reps = 20
        gfd.all_reduce_sum(table)
        t = time.perf_counter()
        for _ in range(reps):
            gfd.all_reduce_sum(table)
        rows.append({"bench": "allreduce", "model": "-", "floats": table.numel(),
                     "seconds_per_allreduce": _max_over_ranks((time.perf_counter() - t) / reps)})
        if rank == 0:
            Path(out).write_text(json.dumps(rows))
    finally:
        if world > 1:
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, threads: int, args: dict) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        mp.spawn(_work, args=(world, threads, _free_port(), out, args), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (the first is not timed)")
    ap.add_argument("--hvps", type=int, default=5, help="timed products (and gradients) per model")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_distributed.jsonl"))
    a = ap.parse_args()
    args = {"epochs": a.epochs, "hvps": a.hvps, "dim": a.dim, "batch_size": a.batch_size}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    meta = {"data": "demo", "dim": a.dim, "torch": torch.__version__, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "commit": commit + "+dirty"}
    results = {}
    for world, threads in [(1, 1), (1, 2), (2, 1)]:
        load = os.getloadavg()[0]
        t = time.perf_counter()
        rows = run(world, threads, args)
        for r in rows:
            r.update(world=world, threads=threads, loadavg_1min=round(load, 2))
        results[(world, threads)] = rows
        print(f"world {world} threads {threads}: {time.perf_counter() - t:.1f}s wall (load {load:.1f})")
    key = {"train": "seconds_per_epoch", "hvp": "seconds_per_hvp", "allreduce": "seconds_per_allreduce"}
    lines = []
    for cfg, rows in results.items():
        for r in rows:
            k = key[r["bench"]]
            for base, name in [((1, 1), "speedup_vs_1proc_1thread"), ((1, 2), "speedup_vs_1proc_2threads")]:
                ref = next(x for x in results[base] if x["bench"] == r["bench"] and x["model"] == r["model"])
                r[name] = round(ref[k] / r[k], 3) if r["bench"] != "allreduce" else None
            lines.append({**meta, **r})
            print(f"{r['bench']:9s} {r['model']:8s} world {r['world']} threads {r['threads']}: "
                  f"{r[k]:.4f} s ({k})" + (f"  speed-up {r['speedup_vs_1proc_1thread']:.2f}x vs 1 proc/1 thread, "
                                           f"{r['speedup_vs_1proc_2threads']:.2f}x vs 1 proc/2 threads"
                                           if r["bench"] != "allreduce" else ""))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
