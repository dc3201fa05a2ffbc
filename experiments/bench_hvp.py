"""Hessian-vector products of the influence solve: closed form vs double backward, same process.

Builds the Hessian objective of an IF request (one user's interactions of the cached
checkpoint) and times ``LocalObjective.hessian_operator`` (closed form through the propagation
matrix, ``graphforget.unlearning.curvature``) against ``linalg.HessianOperator`` (double backward)
on the same vectors; prints both, their ratio and the largest difference.

    python experiments/bench_hvp.py --data ../shared/data/gowalla-25 --checkpoint runs/bench/gowalla-25-lightgcn3-e20.pt
"""
from __future__ import annotations

import argparse
import time

import torch

from graphforget.data.loaders import load_lightgcn_txt
from graphforget.train import load_checkpoint
from graphforget.unlearning import get_unlearner
from graphforget.unlearning.linalg import HessianOperator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    graph = load_lightgcn_txt(args.data)
    model, _ = load_checkpoint(args.checkpoint, graph)
    print(graph, f"threads={torch.get_num_threads()}")
    deg = torch.bincount(graph.train_edges[0], minlength=graph.num_users)
    user = int(torch.nonzero((deg >= 20) & (deg <= 60)).view(-1)[0])
    un = get_unlearner("if", seed=args.seed)
    prob = un.problem(model, graph, graph.user_edges([user]))
    f = un.hessian_objective(prob)
    theta = prob.embedding[prob.rows]
    gen = torch.Generator().manual_seed(args.seed)
    vs = [torch.randn(theta.shape, generator=gen) for _ in range(args.repeats)]
    print(f"user {user}: {prob.rows.numel()} rows, Hessian objective: {f.describe()}")
    results = {}
    for name, make in [("closed form", lambda: f.hessian_operator(theta)),
                       ("double backward", lambda: HessianOperator(f, theta))]:
        t = time.perf_counter()
        op = make()
        build = time.perf_counter() - t
        t = time.perf_counter()
        out = [op(v).clone() for v in vs]
        per = (time.perf_counter() - t) / len(vs)
        results[name] = (per, out)
        print(f"{name:16s} setup {build:6.3f} s   {per:6.3f} s per HVP")
    (fast, a), (slow, b) = results["closed form"], results["double backward"]
    err = max(float((x - y).norm() / y.norm()) for x, y in zip(a, b))
    print(f"double backward / closed form = {slow / fast:.2f}x; max relative difference {err:.2e}")


if __name__ == "__main__":
    main()
