"""GPU benchmark of one short run: train LightGCN briefly, then time IFRU / IF / AltEraser per
request (one user's edges, a random 1 % of all edges), each beside the training epoch time
measured in the same process.

Every figure printed or written is measured in this run. ``epochs_equivalent`` is a measured
ratio (the request's wall time over the mean training epoch of this run, epoch 1 — which
carries the start-up — left out when there are more); the script never extrapolates a retrain:
a retrain of ``E`` epochs would cost about ``E × epoch_seconds`` plus its evaluations, and ``E``
is not measured here. The model is trained for ``--epochs`` epochs only (and, with
``--finish-seconds``, a time-capped stationary finish), so it is not the converged model of a
paper: the reports' ``grad_norm_rel`` says how far from stationary it is (influence methods raise
their damping on non-stationary models, which costs iterations).

On CUDA every timed call is bracketed by ``torch.cuda.synchronize()`` and each method first
forgets two edges of the demo data untimed (CUDA context, cuSPARSE / cuSOLVER handles, kernel
caches). The unlearners' CPU parts (the objective's fixed negatives, the graph update) are inside
the timings, as they are in every call. Rows go to ``--out``
as JSON lines, one per step, flushed as they are written, so a run stopped by its time limit
keeps what it measured; ``--budget-seconds`` skips (and records as skipped) the requests that
would start after that many seconds.

    python experiments/bench_gpu.py --data shared/data/gowalla --out bench_gpu.jsonl
    python experiments/bench_gpu.py --data demo --device cpu --dim 16 --epochs 1   # a dry run
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing it

import graphforget  # noqa: E402
from graphforget.models import build_model  # noqa: E402
from graphforget.train import TrainConfig, evaluate, train  # noqa: E402
from graphforget.train.stationary import stationary_finish  # noqa: E402
from graphforget.unlearning import deletion_edges, get_unlearner, load_methods, parse_method  # noqa: E402

METHODS = ["ifru", "if", "alteraser"]


def default_data() -> str:
    for p in (ROOT / "shared" / "data" / "gowalla", ROOT.parent / "shared" / "data" / "gowalla"):
        if (p / "train.txt").exists():
            return str(p)
    return "demo"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "threads": torch.get_num_threads(), "graphforget": graphforget.__version__,
           "device": device}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count, capability=f"{p.major}.{p.minor}")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="LightGCN text folder or 'demo' "
                    "(default: shared/data/gowalla in the checkout or beside it, else demo)")
    ap.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs (each one timed)")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--finish-seconds", type=float, default=0.0,
                    help="time cap of a stationary finish after the epochs (0: none)")
    ap.add_argument("--fraction", type=float, default=0.01, help="random request: this fraction of edges")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", action="append", default=None,
                    help="NAME[:key=value,...], repeatable; default: " + ", ".join(METHODS))
    ap.add_argument("--warmup", choices=["auto", "on", "off"], default="auto",
                    help="untimed warm-up request per method on the demo data (auto: on CUDA)")
    ap.add_argument("--no-eval", action="store_true", help="skip the test Recall@20 of the trained model")
    ap.add_argument("--budget-seconds", type=float, default=None,
                    help="skip requests that would start after this many seconds")
    ap.add_argument("--out", default="runs/bench/bench_gpu.jsonl")
    args = ap.parse_args()
    t_start = time.perf_counter()
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    if dev == "cuda":
        dev = "cuda:0"  # one spelling: the adjacency cache compares devices with their index
    methods = [parse_method(m) for m in (args.method or METHODS)]
    load_methods([name for name, _ in methods])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    f = open(out, "a")

    def write(row: dict) -> None:
        row = {"elapsed_seconds": round(time.perf_counter() - t_start, 3), **row}
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()

    data = args.data or default_data()
    t = time.perf_counter()
    graph = graphforget.load_dataset(data)
    load_s = time.perf_counter() - t
    print(f"data {data}: {graph.stats()} (loaded in {load_s:.1f}s)", flush=True)
    env = environment(dev)
    print("environment:", json.dumps(env), flush=True)
    write({"kind": "environment", **env, "data": data, "data_stats": graph.stats(),
           "load_seconds": load_s, "argv": sys.argv[1:]})

    # ------------------------------------------------------------ training, every epoch timed
    model = build_model("lightgcn", graph.num_users, graph.num_items, dim=args.dim,
                        layers=args.layers, seed=args.seed)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, patience=None, eval_every=10 ** 9,
                         progress=False, seed=args.seed, device=dev)
    sync(dev)
    t = time.perf_counter()
    res = train(model, graph, config)
    sync(dev)
    train_wall = time.perf_counter() - t
    epoch_times = [h["seconds"] for h in res.history]
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    epoch_s = statistics.mean(steady) if steady else float("nan")
    row = {"kind": "train", "model": model.config(), "config": config.to_dict(),
           "epoch_seconds_each": epoch_times, "epoch_seconds": epoch_s,
           "epoch_seconds_basis": ("mean of epochs 2.." if len(epoch_times) > 1 else
                                   "epoch 1 only (includes start-up)"),
           "steps_per_epoch": -(-graph.num_train // args.batch_size),
           "train_wall_seconds": train_wall,
           "train_wall_note": "the epochs plus train()'s end-of-run stationarity check (the "
                              "objective's fixed negatives and one full gradient)",
           "loss": [h["loss"] for h in res.history],
           "grad_norm_rel": res.stationarity["grad_norm_rel"]}
    print(f"trained {len(epoch_times)} epochs: {', '.join(f'{s:.3f}s' for s in epoch_times)} "
          f"(epoch_seconds {epoch_s:.3f}, {row['epoch_seconds_basis']}); wall {train_wall:.2f}s incl. "
          f"the stationarity check; |grad|/|theta| {row['grad_norm_rel']:.3g}", flush=True)
    write(row)
    if args.finish_seconds > 0:
        objective = config.objective(graph)
        sync(dev)
        t = time.perf_counter()
        fin = stationary_finish(model, graph, objective, gtol=1e-5, max_seconds=args.finish_seconds)
        sync(dev)
        model.recipe = {**model.recipe, "grad_norm_rel": fin.grad_norm_rel}
        write({"kind": "finish", **fin.to_dict(), "wall_seconds": time.perf_counter() - t})
        print(f"stationary finish: {fin.iterations} L-BFGS iterations in {fin.seconds:.1f}s, "
              f"|grad|/|theta| {fin.grad_norm_rel_start:.3g} -> {fin.grad_norm_rel:.3g} "
              f"({fin.note or 'converged'})", flush=True)
    before = None
    if not args.no_eval:
        t = time.perf_counter()
        before = evaluate(model, graph, "test", (20,))
        ev_s = time.perf_counter() - t
        write({"kind": "evaluate", "split": "test", **before, "seconds": ev_s})
        print(f"test recall@20 {before['recall@20']:.4f} ndcg@20 {before['ndcg@20']:.4f} "
              f"({ev_s:.1f}s; ranking on the CPU)", flush=True)

    # ------------------------------------------------------------ requests
    gen = torch.Generator().manual_seed(args.seed)
    deg = torch.bincount(graph.train_edges[0], minlength=graph.num_users)
    typical = torch.nonzero((deg >= 20) & (deg <= 60)).view(-1)
    if typical.numel() == 0:
        typical = torch.nonzero(deg > 0).view(-1)
    user = int(typical[torch.randint(typical.numel(), (1,), generator=gen)])
    random_edges = deletion_edges(graph, "random", args.fraction, args.seed)
    scenarios = {f"user {user} ({int(deg[user])} edges)": graph.user_edges([user]),
                 f"random {args.fraction:g} ({random_edges.shape[1]} edges)": random_edges}
    if args.warmup == "on" or (args.warmup == "auto" and dev.startswith("cuda")):
        # untimed warm-up of every method on the small demo graph (same kernels and library
        # handles; on the big graph one warm-up would cost as much as a request)
        wg = graphforget.load_dataset("demo") if data != "demo" else graph
        wm = build_model("lightgcn", wg.num_users, wg.num_items, dim=args.dim, layers=args.layers,
                         seed=args.seed).to(dev)
        for name, opts in methods:
            t = time.perf_counter()
            get_unlearner(name, seed=args.seed, **opts).unlearn(wm, wg, wg.train_edges[:, :2])
            sync(dev)
            write({"kind": "warmup", "method": name, "graph": wg.name, "seconds": time.perf_counter() - t})
    for scen, edges in scenarios.items():
        for name, opts in methods:
            if args.budget_seconds is not None and time.perf_counter() - t_start > args.budget_seconds:
                write({"kind": "skipped", "scenario": scen, "method": name,
                       "why": f"budget of {args.budget_seconds:g}s spent"})
                print(f"[{scen}] {name}: skipped (budget {args.budget_seconds:g}s spent)", flush=True)
                continue
            un = get_unlearner(name, seed=args.seed, **opts)
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            sync(dev)
            t = time.perf_counter()
            r = un.unlearn(model, graph, edges)
            sync(dev)
            wall = time.perf_counter() - t
            rep = r.report
            row = {"kind": "unlearn", "scenario": scen, "method": name, "options": opts,
                   "edges": int(edges.shape[1]), "wall_seconds": wall,
                   "epoch_seconds": epoch_s, "epochs_equivalent": wall / epoch_s,
                   "fge": rep.fge, "full_gradient_seconds": rep.full_gradient_seconds,
                   "report": rep.to_dict()}
            write(row)
            print(f"[{scen}] {name}: {wall:.3f}s = {wall / epoch_s:.2f} training epochs of this run "
                  f"(epoch {epoch_s:.3f}s) = {rep.fge:.1f} full gradients; hvps={rep.hvps} "
                  f"iters={rep.solver_iterations} converged={rep.converged} damping={rep.damping:g} "
                  f"peak {rep.peak_memory_mb:.0f} MiB", flush=True)
            for note in rep.notes:
                print(f"    {note}", flush=True)
    total = time.perf_counter() - t_start
    write({"kind": "done", "seconds": total})
    print(f"done in {total:.1f}s; rows in {out}", flush=True)
    f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
