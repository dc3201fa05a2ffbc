"""Why influence steps fail on a model trained for a fixed budget: the new objective along the step.

Trains the AltEraser-table model (ml100k, 40 epochs, Adam lr 5e-3, λ 1e-4, seed 0), deletes the
table's request, runs IF / IFRU, and prints — all from the training objective, plus test Recall@20:

* the new objective ``L(θ; D', A')`` at θ, after the step, and along ``θ + t·Δθ``;
* the same objective minimised over the step's rows from θ by L-BFGS (the warm-started
  retrain an influence step approximates), and that model's Recall@20;
* that minimisation again with a *fitted ridge* :math:`\tfrac{\rho}{2}\lVert\theta_S\rVert^2`,
  :math:`\rho = -\langle \nabla L(\theta; D, A), \theta\rangle / \lVert\theta\rVert^2` over all
  rows: the L2 strength that best explains the trained model's non-zero gradient as the
  implicit regularisation of its training budget (how much of the gradient it explains is
  printed) — a candidate fix, not used by the methods.

    python experiments/diag_fixed_budget.py --model mf --deletion users --amount 10
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from graphforget.models import build_model
from graphforget.reproduce.runner import deletion_edges
from graphforget.reproduce.tables import load_table_dataset
from graphforget.train import TrainConfig, evaluate, train
from graphforget.unlearn import SampleSet, get_unlearner, total_loss
from graphforget.unlearn.objective import fitted_ridge, minimize_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--model", default="mf")
    ap.add_argument("--layers", type=int, default=0)
    ap.add_argument("--deletion", default="users")
    ap.add_argument("--amount", type=float, default=10)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    wd = 1e-4
    g = load_table_dataset("ml100k", Path(args.data_root), seed=0)
    cfg = TrainConfig(epochs=args.epochs, batch_size=2048, lr=5e-3, weight_decay=wd, patience=None,
                      progress=False, seed=args.seed)
    model = train(build_model(args.model, g.num_users, g.num_items, 64, args.layers, seed=args.seed), g, cfg).model
    edges = deletion_edges(g, args.deletion, args.amount, args.seed)
    recall = lambda m, graph: evaluate(m, graph, ks=[20])["recall@20"]  # noqa: E731
    print(f"{g}\n{args.model}-{args.layers} {args.deletion}:{args.amount:g}: {edges.shape[1]} edges; "
          f"Recall@20 before {recall(model, g):.4f}")
    samples = SampleSet.bpr(g, seed=args.seed)
    keep = torch.ones(g.num_train, dtype=torch.bool)
    keep[g.find_edges(edges)] = False
    remaining = samples.select(torch.nonzero(keep).view(-1))
    e0 = model.embedding.detach()
    x = e0.clone().requires_grad_(True)
    (g_old,) = torch.autograd.grad(total_loss(model, g.adj() if args.layers else None, x, samples, wd), x)
    ridge = fitted_ridge(g_old, e0)
    print(f"fitted ridge ρ = {ridge:.4g}: |∇L + ρθ| / |∇L| = "
          f"{float((g_old + ridge * e0).norm() / g_old.norm()):.3f} on the trained model")

    def with_rows(e):
        m = copy.deepcopy(model)
        with torch.no_grad():
            m.embedding.copy_(e)
        return m

    for method in ("if", "ifru"):
        res = get_unlearner(method, weight_decay=wd, seed=args.seed).unlearn(model, g, edges)
        adj = res.graph.adj() if args.layers else None
        objective = lambda e: float(total_loss(model, adj, e, remaining, wd))  # noqa: E731
        step = res.model.embedding.detach() - e0
        rows = torch.nonzero(step.norm(dim=1) > 0).view(-1)
        print(f"\n{res.report.summary()}")
        print(f"  |Δθ| / |θ| on its {rows.numel()} rows: {float(step[rows].norm() / e0[rows].norm()):.3g}")
        for t in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0):
            e = e0 + t * step
            print(f"  θ + {t:<6} Δθ: new objective {objective(e):10.4f}   Recall@20 {recall(with_rows(e), res.graph):.4f}")
        warm = minimize_rows(model, adj, e0, remaining, wd, rows, 200)
        print(f"  L-BFGS minimum over those rows: new objective {objective(warm):10.4f}   "
              f"Recall@20 {recall(with_rows(warm), res.graph):.4f}   "
              f"|θ* − θ| / |θ| {float((warm - e0)[rows].norm() / e0[rows].norm()):.3g}")
        fitted = minimize_rows(model, adj, e0, remaining, wd, rows, 200, ridge=ridge)
        print(f"  ... with the fitted ridge:          new objective {objective(fitted):10.4f}   "
              f"Recall@20 {recall(with_rows(fitted), res.graph):.4f}   "
              f"|θ* − θ| / |θ| {float((fitted - e0)[rows].norm() / e0[rows].norm()):.3g}")


if __name__ == "__main__":
    main()
