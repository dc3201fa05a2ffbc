"""Wall time of AltEraser rounds on one deletion request, phase by phase (no retrain, no audit).

For before/after comparisons of the AltEraser code: run the same command on two commits, on
the same checkpoint and box (the unlearning itself is deterministic; only the time differs).

    python experiments/time_alteraser_round.py --data ../shared/data/gowalla-25 \\
        --checkpoint runs/bench/gowalla-25-lightgcn3-e2.pt --fraction 0.01 --rounds 1
"""
from __future__ import annotations

import argparse

import torch

from graphforget.data.loaders import load_lightgcn_txt
from graphforget.unlearning import deletion_edges
from graphforget.train import load_checkpoint
from graphforget.unlearning import get_unlearner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--fraction", type=float, default=0.01, help="random fraction of training edges")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    graph = load_lightgcn_txt(args.data)
    model, _ = load_checkpoint(args.checkpoint, graph)
    edges = deletion_edges(graph, "random", args.fraction, args.seed)
    print(f"{graph} threads={torch.get_num_threads()}")
    for r in range(args.repeats):  # the first call also pays one-off costs (imports, caches)
        report = get_unlearner("alteraser", rounds=args.rounds, seed=args.seed).unlearn(model, graph, edges).report
        print(f"run {r}: {report.summary()}")


if __name__ == "__main__":
    main()
