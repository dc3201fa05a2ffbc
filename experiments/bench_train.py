"""Training-speed benchmark: graphforget LightGCN versus PyG's LightGCN on the same batches.

What it measures (one process, ``torch.set_num_threads`` left at its default):

1. **Step time.** LightGCN (K layers, dim d) trained with BPR + the batch L2 term and Adam.
   graphforget propagates with its cached symmetric CSR (:func:`graphforget.data.sym_spmm`);
   the reference is ``torch_geometric.nn.models.LightGCN(num_nodes, d, K)`` with default
   settings, propagating by ``edge_index`` message passing (``get_embedding(edge_index)``),
   starting from the same embeddings and fed the same pre-drawn batches (positives and
   negatives). Each timed step is forward over the whole graph + loss + backward + Adam step,
   after one untimed warm-up step. The time per epoch is **extrapolated**: mean step time ×
   ``ceil(E / batch)`` steps, plus the measured negative-sampling time of one epoch.
2. **Evaluation time.** Full-ranking Recall@20 / NDCG@20 of all test users (training and
   validation items masked) with :func:`graphforget.train.evaluate`.
3. **Training curve** (``--epochs N``): an actual run of :func:`graphforget.train.train` printing
   validation Recall@20 per epoch; writes the per-epoch JSON lines to
   ``experiments/results/bench_train_<data>_curve.jsonl`` and, when matplotlib is importable,
   a plot ``bench_train_<data>_curve.png``.

Every run appends one JSON line with the summary to ``experiments/results/bench_train.jsonl``.

Usage::

    python experiments/bench_train.py --batches 10              # full Gowalla, CPU
    python experiments/bench_train.py --data ../shared/data/ml100k --batches 5 --epochs 20
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "gowalla").resolve()
RESULTS = HERE / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help=f"dataset spec for graphforget.data.registry.load_dataset (default {DEFAULT_DATA})")
    p.add_argument("--batches", type=int, default=20, help="timed graphforget steps (default 20)")
    p.add_argument("--pyg-batches", type=int, default=None,
                   help="timed PyG steps (default: same as --batches; PyG is slower)")
    p.add_argument("--epochs", type=int, default=0,
                   help="also train this many epochs and print validation Recall@20 per epoch")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--skip-pyg", action="store_true", help="time graphforget only")
    return p.parse_args(argv)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bpr_step(emb_out, ego, users, pos, neg, num_users, weight_decay):
    """The trainer's objective for one batch: mean BPR + λ/(2B) Σ‖ego rows‖² (written out)."""
    zu, zi, zj = emb_out[users], emb_out[pos + num_users], emb_out[neg + num_users]
    data = -F.logsigmoid((zu * zi).sum(-1) - (zu * zj).sum(-1)).mean()
    reg = 0.5 * (ego[users].pow(2).sum() + ego[pos + num_users].pow(2).sum()
                 + ego[neg + num_users].pow(2).sum())
    return data + weight_decay * reg / users.numel()


def time_steps(step, batches, device: str) -> list[float]:
    """Run ``step(b)`` for batch ``0`` untimed (warm-up), then time batches ``1..len``."""
    step(batches[0])
    _sync(device)
    times = []
    for b in batches[1:]:
        t = time.perf_counter()
        step(b)
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    args = parse_args(argv)
    from graphforget.data.registry import load_dataset
    from graphforget.models import LightGCN
    from graphforget.train import TrainConfig, Trainer, evaluate, sample_negatives, train

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    dev = args.device
    t0 = time.perf_counter()
    graph = load_dataset(args.data, seed=args.seed)
    load_s = time.perf_counter() - t0
    name = graph.name or Path(args.data).name
    print(f"data {name}: users={graph.num_users} items={graph.num_items} train={graph.num_train} "
          f"valid={graph.valid_edges.shape[1]} test={graph.test_edges.shape[1]} "
          f"fingerprint={graph.fingerprint()} (loaded in {load_s:.1f}s)")
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, device={dev}, "
          f"{platform.processor() or platform.machine()}")
    steps_per_epoch = math.ceil(graph.num_train / args.batch_size)

    # the same batches for both implementations: one epoch's permutation and negatives
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(graph.num_train, generator=gen)
    t = time.perf_counter()
    negs = sample_negatives(graph.train_edges[0][perm], graph.train_edges, graph.num_items, gen)
    sample_s = time.perf_counter() - t
    n_fg = max(2, args.batches + 1)
    n_pyg = max(2, (args.pyg_batches if args.pyg_batches is not None else args.batches) + 1)
    rows_all = [perm[s * args.batch_size:(s + 1) * args.batch_size] for s in range(max(n_fg, n_pyg))]
    neg_all = [negs[s * args.batch_size:(s + 1) * args.batch_size] for s in range(max(n_fg, n_pyg))]
    batches = list(zip(rows_all, neg_all))

    # ---------------------------------------------------------------- graphforget
    model = LightGCN(graph.num_users, graph.num_items, dim=args.dim, num_layers=args.layers,
                     seed=args.seed).to(dev)
    init = model.embedding.detach().cpu().clone()
    trainer = Trainer(TrainConfig(lr=args.lr, weight_decay=args.weight_decay, device=dev,
                                  progress=False))
    t = time.perf_counter()
    adj = graph.adj(dev)
    adj_s = time.perf_counter() - t
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def fg_step(batch):
        rows, neg = batch
        loss = trainer.batch_loss(model, graph, adj, rows, neg, "bpr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fg_times = time_steps(fg_step, batches[:n_fg], dev)
    fg_step_s = sum(fg_times) / len(fg_times)
    fg_epoch_s = fg_step_s * steps_per_epoch + sample_s
    print(f"graphforget LightGCN-{args.layers}: {fg_step_s * 1e3:.1f} ms/step over {len(fg_times)} "
          f"timed steps (adjacency built once in {adj_s:.2f}s)")

    # ---------------------------------------------------------------- PyG reference
    pyg_step_s = pyg_epoch_s = None
    pyg_times: list[float] = []
    if not args.skip_pyg:
        from torch_geometric.nn.models import LightGCN as PygLightGCN

        ref = PygLightGCN(graph.num_nodes, args.dim, args.layers).to(dev)
        with torch.no_grad():
            ref.embedding.weight.copy_(init.to(dev))
        edge_index = graph.edge_index.to(dev)
        ref_opt = torch.optim.Adam(ref.parameters(), lr=args.lr)
        tr_u, tr_i = graph.train_edges[0].to(dev), graph.train_edges[1].to(dev)

        def pyg_step(batch):
            rows, neg = batch
            rows = rows.to(dev)
            out = ref.get_embedding(edge_index)
            loss = bpr_step(out, ref.embedding.weight, tr_u[rows], tr_i[rows], neg.to(dev),
                            graph.num_users, args.weight_decay)
            ref_opt.zero_grad(set_to_none=True)
            loss.backward()
            ref_opt.step()

        pyg_times = time_steps(pyg_step, batches[:n_pyg], dev)
        pyg_step_s = sum(pyg_times) / len(pyg_times)
        pyg_epoch_s = pyg_step_s * steps_per_epoch + sample_s
        print(f"PyG LightGCN-{args.layers} (edge_index): {pyg_step_s * 1e3:.1f} ms/step over "
              f"{len(pyg_times)} timed steps")

    # ---------------------------------------------------------------- evaluation
    t = time.perf_counter()
    metrics = evaluate(model, graph, "test", ks=(20,), device=dev)
    eval_s = time.perf_counter() - t
    print(f"full-ranking test evaluation of {metrics['users']} users: {eval_s:.2f}s "
          f"(recall@20={metrics['recall@20']:.4f} ndcg@20={metrics['ndcg@20']:.4f}, model after "
          f"{len(fg_times) + 1} steps)")

    # ---------------------------------------------------------------- training curve
    curve = None
    if args.epochs > 0:
        RESULTS.mkdir(parents=True, exist_ok=True)
        log_path = RESULTS / f"bench_train_{name}_curve.jsonl"
        log_path.unlink(missing_ok=True)
        run_model = LightGCN(graph.num_users, graph.num_items, dim=args.dim,
                             num_layers=args.layers, seed=args.seed)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, patience=None, seed=args.seed,
                          device=dev, progress=sys.stderr.isatty(), log_path=str(log_path))
        res = train(run_model, graph, cfg)
        print(f"\ntraining curve ({args.epochs} epochs, {res.seconds_per_epoch:.1f}s/epoch measured, "
              "validation excluded):")
        print(f"{'epoch':>5} {'loss':>8} {'valid recall@20':>16} {'valid ndcg@20':>14}")
        for h in res.history:
            print(f"{h['epoch']:>5} {h['loss']:>8.4f} {h.get('valid_recall@20', float('nan')):>16.4f} "
                  f"{h.get('valid_ndcg@20', float('nan')):>14.4f}")
        test_m = evaluate(res.model, graph, "test", ks=(20,), device=dev)
        print(f"best epoch {res.best_epoch}: test recall@20={test_m['recall@20']:.4f} "
              f"ndcg@20={test_m['ndcg@20']:.4f}; log {log_path.relative_to(REPO)}")
        curve = {"epochs": res.epochs_run, "seconds_per_epoch": res.seconds_per_epoch,
                 "best_epoch": res.best_epoch, "test_recall@20": test_m["recall@20"],
                 "test_ndcg@20": test_m["ndcg@20"], "log": str(log_path.relative_to(REPO))}
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not importable: no plot")
        else:
            ep = [h["epoch"] for h in res.history]
            fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
            ax[0].plot(ep, [h["loss"] for h in res.history])
            ax[0].set(xlabel="epoch", ylabel="training loss (BPR + L2)")
            ax[1].plot(ep, [h.get("valid_recall@20", float("nan")) for h in res.history])
            ax[1].set(xlabel="epoch", ylabel="validation Recall@20")
            fig.suptitle(f"graphforget LightGCN-{args.layers} on {name}")
            fig.tight_layout()
            png = RESULTS / f"bench_train_{name}_curve.png"
            fig.savefig(png, dpi=120)
            curve["plot"] = str(png.relative_to(REPO))
            print(f"plot {curve['plot']}")

    # ---------------------------------------------------------------- summary
    print("\nsummary (epoch times extrapolated: mean step time x "
          f"{steps_per_epoch} steps/epoch + {sample_s:.2f}s negative sampling)")
    rows = [("graphforget LightGCN (CSR sym_spmm)", fg_step_s, len(fg_times), fg_epoch_s)]
    if pyg_step_s is not None:
        rows.append(("PyG LightGCN (edge_index)", pyg_step_s, len(pyg_times), pyg_epoch_s))
    print(f"{'implementation':<38} {'ms/step':>9} {'timed steps':>12} {'s/epoch (extrap.)':>18}")
    for label, step_s, n, ep_s in rows:
        print(f"{label:<38} {step_s * 1e3:>9.1f} {n:>12} {ep_s:>18.1f}")
    if pyg_step_s is not None:
        print(f"speed-up of graphforget over PyG: {pyg_step_s / fg_step_s:.2f}x per step")
    print(f"full-ranking evaluation ({metrics['users']} test users, Recall@20/NDCG@20): {eval_s:.2f}s")

    summary = {"data": name, "fingerprint": graph.fingerprint(), "device": dev,
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "dim": args.dim, "layers": args.layers, "batch_size": args.batch_size,
               "steps_per_epoch": steps_per_epoch, "negative_sampling_s": sample_s,
               "graphforget_ms_per_step": fg_step_s * 1e3, "graphforget_steps": len(fg_times),
               "graphforget_s_per_epoch_extrapolated": fg_epoch_s,
               "pyg_ms_per_step": None if pyg_step_s is None else pyg_step_s * 1e3,
               "pyg_steps": len(pyg_times),
               "pyg_s_per_epoch_extrapolated": pyg_epoch_s,
               "speedup": None if pyg_step_s is None else pyg_step_s / fg_step_s,
               "eval_seconds": eval_s, "eval_users": metrics["users"], "curve": curve,
               "command": " ".join(["python", "experiments/bench_train.py", *(argv or sys.argv[1:])])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "bench_train.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
