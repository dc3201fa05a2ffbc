"""CPU and CUDA give the same results: kernels, training, evaluation, IF / IFRU / AltEraser and
the audit, on a 200-user subgraph of the shipped demo data (``load_dataset("demo")``).

Every comparison is a function of two devices, ``compare_<stage>(device_a, device_b, ...)``, and
:func:`compare` runs them all. The CUDA tests call them with ``("cpu", "cuda")`` and skip with a
reason where ``torch.cuda.is_available()`` is false; :func:`test_compare_cpu_vs_cpu` runs the
same code with ``("cpu", "cpu")`` and other evaluation / ranking / audit batch sizes on every
machine, so the comparison code cannot rot while no GPU is there, and
:func:`test_compare_detects_a_difference` shows that the tolerances bite. Each test stores what
it measured as the junit property ``measured`` (JSON; ``pytest --junitxml=... -o
junit_family=xunit1``), so the first GPU run reports the real CPU/GPU differences.

How each API takes a device: ``TrainConfig(device=...)`` (the trainer moves the model there);
``evaluate(..., device=None)`` propagates on the model's device; the unlearners
(``get_unlearner(name).unlearn(model, graph, edges)``), ``audit(...)`` and the retrains it
trains run where the model's parameters are. Graph structure, samples and negatives stay on
the CPU (seeded CPU generators), so both devices see the same samples and the same negatives.

Tolerances (float32; ``rel(x, y) = ‖x − y‖ / ‖y‖``; "top-20 overlap": mean over users of
``|top20_a ∩ top20_b| / 20``; "metrics": Recall / NDCG / Precision / Hit @10, @20):

* kernels, same inputs (propagation, the closed-form score gradient and Hessian product with
  their unsorted-column incidence CSR, ``addmm(beta=0)`` into a NaN buffer): ``rel ≤ 1e-5``
  between the devices and against a float64 autograd reference;
* evaluation of the same parameters: representations ``rel ≤ 1e-5``, top-20 overlap ``≥ 0.99``,
  metrics within ``0.005`` (one user of the 200 whose only test item crosses rank 20);
* training, 3 epochs of Adam from the same initialisation: per-epoch loss ``rel ≤ 1e-4``,
  validation metrics within ``0.005``, the same best epoch, score matrix ``rel ≤ 1e-3`` (a 1e-6
  relative perturbation of the initialisation moved it by 7.8e-7 on the CPU), top-20 overlap
  ``≥ 0.98``; then the stationary finish (L-BFGS to ``gtol = 1e-4``) from one model on both:
  both converge, score matrix ``rel ≤ 0.05``, top-20 overlap ``≥ 0.9``, test metrics within
  ``0.02`` (the same perturbation moved the finished scores by 1.1e-2 relative and Recall@20 by
  0.0025: points within ``gtol`` of a stationary point differ by that much);
* IF / IFRU / AltEraser from the same stationary model, one user's edges (39) and 1 % random
  edges (58): the updates ``E' − E`` agree to ``rel ≤ 1e-2`` (a 1e-6 relative perturbation of
  the model moved them by 5e-5 to 2e-3 on the CPU: CG stops at relative residual 1e-4), score
  matrices ``rel ≤ 1e-4``, top-20 overlap on the affected users ``≥ 0.99``, test metrics within
  ``0.005``; the same convergence flag, damping, affected rows and new graph, solver iterations
  within 3;
* audit (``shadows=2``: four retrains trained by the audit on each device, from the
  early-stopped recipe): every figure within 0.02, or 2 % where larger than 1 (ranks), counts
  equal, and the same verdict wherever the value is more than that tolerance away from its
  band's edge.
"""
from __future__ import annotations

import copy
import functools
import json
import math
import time

import pytest
import torch

import graphforget
from graphforget.audit import audit
from graphforget.data import InteractionGraph
from graphforget.metrics import topk_items
from graphforget.models import LightGCN
from graphforget.train import TrainConfig, evaluate, train
from graphforget.train.objective import Objective, ScoreCurvature
from graphforget.unlearning import deletion_edges, get_unlearner

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="no CUDA device (torch.cuda.is_available() is False): the CPU-vs-CPU test "
                     "runs the same comparison code")

METHODS = ("if", "ifru", "alteraser")
REQUESTS = ("user", "random")
K = 20
#: the training recipe of every model here (3 epochs, no early stop, 2 fixed negatives)
RECIPE = dict(epochs=3, batch_size=512, lr=5e-3, weight_decay=1e-4, patience=None,
              negatives=2, seed=0, progress=False, ks=(10, 20))
TOL = {
    "kernel_rel": 1e-5,
    "repr_rel": 1e-5, "eval_overlap": 0.99, "eval_metric": 0.005,
    "train_loss_rel": 1e-4, "train_metric": 0.005, "train_score_rel": 1e-3, "train_overlap": 0.98,
    "finish_score_rel": 0.05, "finish_overlap": 0.9, "finish_metric": 0.02,
    "update_rel": 1e-2, "unlearn_score_rel": 1e-4, "unlearn_overlap": 0.99,
    "unlearn_metric": 0.005, "unlearn_iterations": 3,
    "audit": 0.02,
}
METRIC_KEYS = [f"{m}@{k}" for k in (10, 20) for m in ("recall", "ndcg", "precision", "hit")]


# ---------------------------------------------------------------------------- data and helpers
@functools.lru_cache(maxsize=None)
def demo_subgraph(num_users: int = 200) -> InteractionGraph:
    """The demo data's first ``num_users`` users with every split, items renumbered to those
    they use (200 users: 2,236 items, 5,800 training edges)."""
    g = graphforget.load_dataset("demo")
    parts = [e[:, e[0] < num_users] for e in (g.train_edges, g.valid_edges, g.test_edges)]
    items = torch.unique(torch.cat([p[1] for p in parts]))
    remap = torch.full((g.num_items,), -1, dtype=torch.long)
    remap[items] = torch.arange(items.numel())
    tr, va, te = (torch.stack([p[0], remap[p[1]]]) for p in parts)
    return InteractionGraph(num_users, int(items.numel()), tr, va, te, name=f"demo-{num_users}")


def fresh_model(graph: InteractionGraph) -> LightGCN:
    return LightGCN(graph.num_users, graph.num_items, dim=16, num_layers=2, seed=0)


@functools.lru_cache(maxsize=None)
def _original_cpu(stationary: bool = True) -> LightGCN:
    """The model the comparisons start from, trained once on the CPU with :data:`RECIPE`;
    ``stationary``: then finished to ``gtol = 1e-4`` (72 L-BFGS iterations), the point the
    influence methods assume (from a non-stationary model IF raises its damping, a discrete
    decision that float rounding could tip). The audit uses the early-stopped one: its four
    retrains copy the recipe, and 3 epochs are cheap."""
    g = demo_subgraph()
    m = fresh_model(g)
    extra = dict(until="stationary", gtol=1e-4, finish_max_iter=300) if stationary else {}
    train(m, g, TrainConfig(**RECIPE, device="cpu", **extra))
    return m


def original_on(device: str, stationary: bool = True) -> LightGCN:
    return copy.deepcopy(_original_cpu(stationary)).to(device)


def on_device(t: torch.Tensor, device: str) -> bool:
    return t.device.type == torch.device(device).type


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-300))


@torch.no_grad()
def score_matrix(model, graph: InteractionGraph) -> torch.Tensor:
    """User × item scores ``[U, I]`` (float64, CPU) from the model propagated on its device."""
    out = model.propagate(graph.adj(model.embedding.device, model.embedding.dtype))
    u, i = model.split(out.double().cpu())
    return u @ i.t()


@torch.no_grad()
def top_lists(model, graph: InteractionGraph, users=None, batch_size: int = 1024) -> torch.Tensor:
    """Top-``K`` items ``[n, K]`` per user (training and validation items masked), ranked on
    the model's device (:func:`graphforget.metrics.topk_items`)."""
    out = model.propagate(graph.adj(model.embedding.device, model.embedding.dtype)).float()
    uemb, iemb = model.split(out)
    users = torch.arange(graph.num_users) if users is None else users
    exclude = torch.cat([graph.train_edges, graph.valid_edges], 1)
    return topk_items(uemb, iemb, users, K, exclude, batch_size)


def overlap(ta: torch.Tensor, tb: torch.Tensor) -> float:
    """Mean over rows of ``|a ∩ b| / K``."""
    return float((ta.unsqueeze(2) == tb.unsqueeze(1)).any(2).double().mean())


def metric_gap(ma: dict, mb: dict) -> float:
    return max(abs(ma[k] - mb[k]) for k in METRIC_KEYS if k in ma)


def check(measured: dict, key: str, ok: bool, what: str) -> None:
    assert ok, f"{what}: {key} = {measured[key]!r} (tolerances {TOL}; all measured: {measured})"


def request_edges(graph: InteractionGraph, kind: str) -> torch.Tensor:
    """One user's training edges (user 5: 39 edges) or 1 % random training edges (58, seed 0)."""
    if kind == "user":
        return graph.user_edges([5])
    return deletion_edges(graph, "random", 0.01, seed=0)


# ---------------------------------------------------------------------------- stages
def compare_kernels(device_a: str, device_b: str) -> dict:
    """Propagation, the closed-form score gradient / Hessian product (incidence CSR with
    unsorted columns inside rows) and ``addmm(beta=0)`` into a NaN-filled buffer, on the same
    inputs, against each other and a float64 autograd reference on the CPU."""
    g = demo_subgraph()
    model = fresh_model(g)
    samples = Objective(negatives=2).samples(g)
    with torch.no_grad():
        out = model.propagate(g.adj())
    dz = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))

    # float64 reference: Φ(Z) = Σ softplus(−z_uᵀ(z_i − z_j)) by autograd
    z = out.double().requires_grad_(True)
    nu = g.num_users
    phi = torch.nn.functional.softplus(
        -(z[samples.users] * (z[samples.items + nu] - z[samples.negatives + nu])).sum(-1)).sum()
    (grad_ref,) = torch.autograd.grad(phi, z, create_graph=True)
    (hvp_ref,) = torch.autograd.grad(grad_ref, z, grad_outputs=dz.double())

    res = {}
    for name, dev in (("a", device_a), ("b", device_b)):
        m = copy.deepcopy(model).to(dev)
        with torch.no_grad():
            prop = m.propagate(g.adj(dev))
        curv = ScoreCurvature(m, out.to(dev), samples)
        grad = curv.gradient().clone()
        hv = curv(dz.to(dev)).clone()
        csr = curv.B  # [n, R] sparse CSR, columns (item, negative) unsorted within rows
        buf = torch.full((csr.shape[0], out.shape[1]), float("nan"), device=dev)
        torch.addmm(buf, csr, out.to(dev), beta=0, out=buf)
        assert on_device(grad, dev) and on_device(prop, dev)
        res[name] = {"prop": prop.cpu(), "grad": grad.cpu(), "hvp": hv.cpu(), "addmm": buf.cpu()}
    dense_b = curv.B.to("cpu").to_dense().double() @ out.double()
    cols = curv.B.to("cpu").col_indices().view(-1, 2)  # two entries per row: item, negative
    unsorted = int((cols[:, 0] > cols[:, 1]).sum())
    assert unsorted > 0, "the incidence CSR was meant to have unsorted rows"
    measured = {
        "prop_rel": rel(res["a"]["prop"], res["b"]["prop"]),
        "grad_rel": rel(res["a"]["grad"], res["b"]["grad"]),
        "hvp_rel": rel(res["a"]["hvp"], res["b"]["hvp"]),
        "addmm_rel": rel(res["a"]["addmm"], res["b"]["addmm"]),
        "grad_ref_rel": max(rel(res[x]["grad"], grad_ref) for x in "ab"),
        "hvp_ref_rel": max(rel(res[x]["hvp"], hvp_ref) for x in "ab"),
        "addmm_ref_rel": max(rel(res[x]["addmm"], dense_b) for x in "ab"),
    }
    for key, v in measured.items():
        check(measured, key, math.isfinite(v) and v <= TOL["kernel_rel"], "kernels")
    measured["unsorted_csr_rows"] = unsorted
    return measured


def compare_evaluation(device_a: str, device_b: str, batch_size_b: int = 1024,
                       perturb_b: float = 0.0) -> dict:
    """``evaluate`` and the top-20 lists of the same (CPU-trained) parameters on both devices;
    ``perturb_b`` scales device b's embedding by ``1 + perturb_b · N(0, 1)`` (to show that the
    check fails on a real difference)."""
    g = demo_subgraph()
    ma, mb = original_on(device_a), original_on(device_b)
    if perturb_b:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            noise = torch.randn(mb.embedding.shape, generator=gen).to(mb.embedding.device)
            mb.embedding.mul_(1 + perturb_b * noise)
    ev = {}
    for name, m, dev, bs in (("a", ma, device_a, 1024), ("b", mb, device_b, batch_size_b)):
        ev[name] = {split: evaluate(m, g, split, (10, 20), batch_size=bs, device=dev)
                    for split in ("valid", "test")}
        default = evaluate(m, g, "test", (10, 20), batch_size=bs)  # device=None: the model's
        assert metric_gap(default, ev[name]["test"]) <= TOL["eval_metric"], \
            f"evaluate(device=None) on {dev}: {default} against device={dev!r}: {ev[name]['test']}"
    with torch.no_grad():
        ra = ma.propagate(g.adj(device_a))
        rb = mb.propagate(g.adj(device_b))
    assert on_device(ra, device_a) and on_device(rb, device_b)
    measured = {
        "repr_rel": rel(ra, rb),
        "top20_overlap": overlap(top_lists(ma, g), top_lists(mb, g, batch_size=batch_size_b)),
        "metric_gap": max(metric_gap(ev["a"][s], ev["b"][s]) for s in ("valid", "test")),
        "recall@20_a": ev["a"]["test"]["recall@20"], "recall@20_b": ev["b"]["test"]["recall@20"],
    }
    check(measured, "repr_rel", measured["repr_rel"] <= TOL["repr_rel"], "evaluation")
    check(measured, "top20_overlap", measured["top20_overlap"] >= TOL["eval_overlap"], "evaluation")
    check(measured, "metric_gap", measured["metric_gap"] <= TOL["eval_metric"], "evaluation")
    return measured


def compare_training(device_a: str, device_b: str, eval_batch_size_b: int = 1024) -> dict:
    """3 epochs of ``train`` from the same initialisation on both devices, then the stationary
    finish (``train`` with ``epochs=0, until="stationary"``) from device a's model on both."""
    g = demo_subgraph()
    m0 = fresh_model(g)
    runs = {}
    for name, dev, eb in (("a", device_a, 1024), ("b", device_b, eval_batch_size_b)):
        m = copy.deepcopy(m0)
        r = train(m, g, TrainConfig(**RECIPE, device=dev, eval_batch_size=eb))
        assert on_device(r.model.embedding, dev)
        runs[name] = r
    ha, hb = runs["a"].history, runs["b"].history
    ma, mb = runs["a"].model, runs["b"].model
    measured = {
        "epochs": [len(ha), len(hb)],
        "loss_rel": max(abs(x["loss"] - y["loss"]) / abs(y["loss"]) for x, y in zip(ha, hb)),
        "valid_metric_gap": max(abs(x[f"valid_{k}"] - y[f"valid_{k}"])
                                for x, y in zip(ha, hb) for k in METRIC_KEYS),
        "best_epoch": [runs["a"].best_epoch, runs["b"].best_epoch],
        "score_rel": rel(score_matrix(ma, g), score_matrix(mb, g)),
        "top20_overlap": overlap(top_lists(ma, g), top_lists(mb, g)),
        "grad_norm_rel": [runs["a"].stationarity["grad_norm_rel"], runs["b"].stationarity["grad_norm_rel"]],
    }
    gn = measured["grad_norm_rel"]
    measured["grad_norm_rel_rel"] = abs(gn[0] - gn[1]) / abs(gn[1])
    check(measured, "epochs", len(ha) == len(hb) == RECIPE["epochs"], "training")
    check(measured, "loss_rel", measured["loss_rel"] <= TOL["train_loss_rel"], "training")
    check(measured, "valid_metric_gap", measured["valid_metric_gap"] <= TOL["train_metric"], "training")
    check(measured, "best_epoch", runs["a"].best_epoch == runs["b"].best_epoch, "training")
    check(measured, "score_rel", measured["score_rel"] <= TOL["train_score_rel"], "training")
    check(measured, "top20_overlap", measured["top20_overlap"] >= TOL["train_overlap"], "training")
    check(measured, "grad_norm_rel_rel", measured["grad_norm_rel_rel"] <= TOL["train_score_rel"], "training")

    # stationary finish from the same point (device a's model) on both devices
    fin = {}
    for name, dev, eb in (("a", device_a, 1024), ("b", device_b, eval_batch_size_b)):
        m = copy.deepcopy(ma).to(dev)
        cfg = TrainConfig(**{**RECIPE, "epochs": 0}, device=dev, until="stationary", gtol=1e-4,
                          finish_max_iter=300)
        r = train(m, g, cfg)
        assert on_device(r.model.embedding, dev)
        fin[name] = (r, evaluate(r.model, g, "test", (10, 20), batch_size=eb))
    (ra, ea), (rb, eb_) = fin["a"], fin["b"]
    measured.update({
        "finish_converged": [ra.finish["converged"], rb.finish["converged"]],
        "finish_iterations": [ra.finish["iterations"], rb.finish["iterations"]],
        "finish_grad_norm_rel": [ra.finish["grad_norm_rel"], rb.finish["grad_norm_rel"]],
        "finish_score_rel": rel(score_matrix(ra.model, g), score_matrix(rb.model, g)),
        "finish_top20_overlap": overlap(top_lists(ra.model, g), top_lists(rb.model, g)),
        "finish_metric_gap": metric_gap(ea, eb_),
    })
    check(measured, "finish_converged", ra.finish["converged"] and rb.finish["converged"], "finish")
    check(measured, "finish_score_rel", measured["finish_score_rel"] <= TOL["finish_score_rel"], "finish")
    check(measured, "finish_top20_overlap", measured["finish_top20_overlap"] >= TOL["finish_overlap"], "finish")
    check(measured, "finish_metric_gap", measured["finish_metric_gap"] <= TOL["finish_metric"], "finish")
    return measured


def compare_unlearning(method: str, device_a: str, device_b: str, request: str = "user",
                       batch_size_b: int = 1024) -> dict:
    """``get_unlearner(method).unlearn(model, graph, edges)`` with the same model on both
    devices."""
    g = demo_subgraph()
    edges = request_edges(g, request)
    e0 = _original_cpu(True).embedding.detach()
    out = {}
    for name, dev, bs in (("a", device_a, 1024), ("b", device_b, batch_size_b)):
        res = get_unlearner(method).unlearn(original_on(dev), g, edges)
        assert on_device(res.model.embedding, dev), f"{method}: result not on {dev}"
        out[name] = (res, evaluate(res.model, res.graph, "test", (10, 20), batch_size=bs))
    (xa, eva), (xb, evb) = out["a"], out["b"]
    ra, rb = xa.report, xb.report
    ea, eb = xa.model.embedding.detach().cpu(), xb.model.embedding.detach().cpu()
    users = affected_users(g, edges)
    update = float((ea - e0).double().norm())
    measured = {
        "request_edges": int(edges.shape[1]),
        "update_norm": update,
        # device b's result against device a's, relative to device a's update E' − E
        "update_rel": float((ea - eb).double().norm()) / max(update, 1e-300),
        "score_rel": rel(score_matrix(xa.model, xa.graph), score_matrix(xb.model, xb.graph)),
        "top20_overlap_affected": overlap(top_lists(xa.model, xa.graph, users),
                                          top_lists(xb.model, xb.graph, users, batch_size_b)),
        "affected_users": int(users.numel()),
        "metric_gap": metric_gap(eva, evb),
        "converged": [ra.converged, rb.converged],
        "damping": [ra.damping, rb.damping],
        "solver_iterations": [ra.solver_iterations, rb.solver_iterations],
        "affected_nodes": [ra.affected_nodes, rb.affected_nodes],
        "seconds": [ra.seconds_total, rb.seconds_total],
    }
    what = f"{method} ({request})"
    check(measured, "update_rel", measured["update_rel"] <= TOL["update_rel"], what)
    check(measured, "score_rel", measured["score_rel"] <= TOL["unlearn_score_rel"], what)
    check(measured, "top20_overlap_affected",
          measured["top20_overlap_affected"] >= TOL["unlearn_overlap"], what)
    check(measured, "metric_gap", measured["metric_gap"] <= TOL["unlearn_metric"], what)
    check(measured, "converged", ra.converged == rb.converged, what)
    check(measured, "damping", ra.damping == rb.damping, what)
    check(measured, "affected_nodes", ra.affected_nodes == rb.affected_nodes, what)
    check(measured, "solver_iterations",
          abs(ra.solver_iterations - rb.solver_iterations) <= TOL["unlearn_iterations"], what)
    assert xa.graph.fingerprint() == xb.graph.fingerprint()
    assert torch.equal(xa.deleted_edges, xb.deleted_edges)
    return measured


def affected_users(graph: InteractionGraph, edges: torch.Tensor) -> torch.Tensor:
    """Users whose representation the deletion changes (2 hops: the models' layers)."""
    nodes = graph.khop_nodes(edges, 2)
    return nodes[nodes < graph.num_users]


def _flatten(prefix: str, x, into: dict) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, into)
    elif isinstance(x, (list, tuple)):
        for j, v in enumerate(x):
            _flatten(f"{prefix}[{j}]", v, into)
    else:
        into[prefix] = x


def _close(a, b, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def compare_audit(device_a: str, device_b: str, batch_size_b: int = 512) -> dict:
    """``audit(original, ifru_result, ...)`` with ``shadows=2`` on both devices: the retrains
    (held-out, control, two shadows) are trained by the audit where the original lives."""
    g = demo_subgraph()
    edges = request_edges(g, "user")
    reps = {}
    for name, dev, bs in (("a", device_a, 512), ("b", device_b, batch_size_b)):
        orig = original_on(dev, stationary=False)
        res = get_unlearner("ifru").unlearn(orig, g, edges)
        reps[name] = audit(orig, res.model, g, res.graph, edges, shadows=2, ks=(20,), seed=0,
                           batch_size=bs)
    fa, fb = {}, {}
    _flatten("", reps["a"].models, fa)
    _flatten("", reps["b"].models, fb)
    assert fa.keys() == fb.keys()
    tol = TOL["audit"]
    bad = {k: (fa[k], fb[k]) for k in fa if not _close(fa[k], fb[k], tol)}
    verdicts = {}
    for model_name, va in reps["a"].verdicts.items():
        vb = reps["b"].verdicts[model_name]
        for key, x in va.items():
            if key == "forgotten":
                continue
            y = vb[key]
            margin = abs(abs(x["value"] - x["centre"]) - x["band"])  # distance to the band edge
            verdicts[f"{model_name}.{key}"] = [x["verdict"], y["verdict"]]
            if x["verdict"] != y["verdict"] and margin > tol * max(1.0, abs(x["value"])):
                bad[f"verdict {model_name}.{key}"] = (x["line"], y["line"])
    gaps = [abs(float(fa[k]) - float(fb[k])) / max(1.0, abs(float(fa[k])), abs(float(fb[k])))
            for k in fa if isinstance(fa[k], float) and isinstance(fb[k], float)
            and math.isfinite(fa[k]) and math.isfinite(fb[k])]
    measured = {"figures": len(fa), "max_scaled_gap": max(gaps) if gaps else 0.0,
                "verdicts": verdicts, "forgotten": [reps["a"].forgotten, reps["b"].forgotten],
                "retrains": [reps["a"].retrains, reps["b"].retrains], "mismatches": bad}
    assert not bad, f"audit figures differ beyond {tol}: {bad} (measured: {measured})"
    return measured


def compare(device_a: str, device_b: str, *, batch_size_b: int = 1024,
            audit_batch_size_b: int = 512) -> dict:
    """Every stage on ``device_a`` against ``device_b``; ``batch_size_b`` / ``audit_batch_size_b``
    are device b's evaluation, ranking and audit batch sizes. Returns what was measured
    (raises ``AssertionError`` naming the stage and the figure beyond its tolerance)."""
    stages = {"kernels": lambda: compare_kernels(device_a, device_b),
              "evaluation": lambda: compare_evaluation(device_a, device_b, batch_size_b),
              "training": lambda: compare_training(device_a, device_b, batch_size_b)}
    for method in METHODS:
        for request in REQUESTS:
            stages[f"{method}/{request}"] = functools.partial(
                compare_unlearning, method, device_a, device_b, request, batch_size_b)
    stages["audit"] = lambda: compare_audit(device_a, device_b, audit_batch_size_b)
    out = {}
    for name, run in stages.items():
        t = time.perf_counter()
        out[name] = run()
        out[name]["stage_seconds"] = round(time.perf_counter() - t, 3)
    return out


def record(record_property, measured: dict) -> None:
    record_property("measured", json.dumps(measured, default=str, sort_keys=True))


# ---------------------------------------------------------------------------- tests
def test_compare_cpu_vs_cpu(record_property):
    """The whole comparison, CPU against CPU with other batch sizes (runs everywhere)."""
    measured = compare("cpu", "cpu", batch_size_b=37, audit_batch_size_b=61)
    record(record_property, measured)
    # one device: the same kernels, so everything but the batching agrees exactly
    assert measured["kernels"]["grad_rel"] == 0.0
    assert measured["training"]["loss_rel"] == 0.0
    assert measured["evaluation"]["top20_overlap"] == 1.0


def test_compare_detects_a_difference():
    """The tolerances bite: a 1 % perturbation of device b's parameters fails the evaluation
    comparison."""
    with pytest.raises(AssertionError, match="evaluation"):
        compare_evaluation("cpu", "cpu", perturb_b=1e-2)


def test_demo_subgraph_is_small_and_complete():
    g = demo_subgraph()
    assert (g.num_users, g.num_train) == (200, 5800)
    assert g.valid_edges.shape[1] > 0 and g.test_edges.shape[1] > 0
    assert int(g.train_edges[1].max()) < g.num_items
    assert request_edges(g, "user").shape[1] >= 10


@needs_cuda
def test_kernels_cuda(record_property):
    record(record_property, compare_kernels("cpu", "cuda"))


@needs_cuda
def test_evaluation_cuda(record_property):
    record(record_property, compare_evaluation("cpu", "cuda"))


@needs_cuda
def test_training_cuda(record_property):
    record(record_property, compare_training("cpu", "cuda"))


@needs_cuda
@pytest.mark.parametrize("request_kind", REQUESTS)
@pytest.mark.parametrize("method", METHODS)
def test_unlearning_cuda(method, request_kind, record_property):
    record(record_property, compare_unlearning(method, "cpu", "cuda", request_kind))


@needs_cuda
def test_audit_cuda(record_property):
    record(record_property, compare_audit("cpu", "cuda"))


@needs_cuda
def test_cuda_model_stays_on_cuda():
    """Nothing on the path moves the model back: after unlearning the input model is still
    on CUDA and unchanged, the result too."""
    g = demo_subgraph()
    m = original_on("cuda")
    before = m.embedding.detach().clone()
    for method in METHODS:
        res = get_unlearner(method).unlearn(m, g, request_edges(g, "user"))
        assert res.model.embedding.is_cuda and m.embedding.is_cuda
        assert torch.equal(m.embedding.detach(), before)
