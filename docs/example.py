import graphforget as gf
from graphforget.audit import audit

graph = gf.load_dataset("demo")                          # shipped: 1,944 users, 2,748 items
model = gf.MF(graph.num_users, graph.num_items, dim=32, seed=0)
gf.train(model, graph, gf.TrainConfig(lr=0.01, weight_decay=0.01, eval_every=5, patience=3, progress=False))
forget = graph.user_edges([7, 42])                       # every interaction of users 7 and 42
result = gf.unlearn(model, graph, forget, method="ifru")  # new model and graph; inputs untouched
print(result.report.summary())
report = audit(model, result.model, graph, result.graph, forget, shadows=2)
print("\n".join(report.verdict_lines()))
