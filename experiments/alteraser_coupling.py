"""AltEraser on a stationary ml100k MF model (λ 0.03, 1 % random, seed 0): relative distance to
θ* (modulo rotation) after R rounds when the optimised rows are the paper's affected rows (the
endpoints) or also ``coupling`` hops of Hessian-coupled rows.

    python experiments/alteraser_coupling.py > experiments/results/alteraser_coupling_ml100k.jsonl
"""
import copy, json, sys, time, torch
from pathlib import Path
torch.set_num_threads(1)
from graphforget.reproduce.tables import load_table_dataset
from graphforget.models import build_model
from graphforget.train import TrainConfig, train, stationary_finish
from graphforget.unlearning import deletion_edges, get_unlearner
from graphforget.audit import parameter_distance
from graphforget.train.objective import split_samples
from graphforget.unlearning.influence import untouched_rows
g = load_table_dataset("ml100k", Path(__file__).resolve().parents[2] / "shared" / "data", seed=0)
cfg = TrainConfig(epochs=400, batch_size=2048, lr=5e-3, weight_decay=0.03, patience=10, negatives=8, until="stationary", gtol=1e-5, seed=0, progress=False)
m = build_model("mf", g.num_users, g.num_items, dim=64, seed=0)
train(m, g, cfg)
edges = deletion_edges(g, "random", 0.01, 0)
after = g.remove_edges(edges)
ref = copy.deepcopy(m); stationary_finish(ref, after, cfg.objective(after), gtol=1e-6, max_iter=20000)
rem = split_samples(cfg.objective(g), g, after, edges).remaining
nodes = torch.arange(g.num_nodes); keep = nodes[~torch.isin(nodes, untouched_rows(rem, g.num_users, nodes))]
for spec in [dict(rounds=10), dict(rounds=10, coupling=1), dict(rounds=30, coupling=1), dict(rounds=10, coupling=2), dict(rounds=30, coupling=2)]:
    t = time.perf_counter(); res = get_unlearner("alteraser", **spec).unlearn(m, g, edges); s = time.perf_counter() - t
    d = parameter_distance(res.model, ref, keep, m, align=True)["relative"]
    print(json.dumps({**spec, "seconds": round(s, 2), "fge": round(res.report.fge, 1), "rel_distance": round(d, 4), "rounds_done": res.report.solver_iterations, "converged": res.report.converged}), flush=True)
