"""Influence-function unlearning (IF, and the shared machinery): exactness, signs, bad input."""
import copy
import math

import pytest
import torch

from conftest import random_graph
from graphforget.models import MF, LightGCN
from graphforget.train.objective import Objective, sample_losses, split_samples, summed_loss, total_loss
from graphforget.unlearning import get_unlearner
from graphforget.unlearning.linalg import dense_hessian


class FrozenItemMF(MF):
    """MF whose item vectors are fixed buffers and whose "BCE" term is the squared error, so
    ``L`` is quadratic in the user rows: ``Σ ½(e_u·q_i − y)² + ½λ(‖e_u‖² + ‖e_i‖²)``."""

    def __init__(self, num_users, num_items, dim, seed):
        super().__init__(num_users, num_items, dim, seed=seed)
        gen = torch.Generator().manual_seed(seed + 100)
        self.register_buffer("q", torch.randn(num_items, dim, generator=gen))

    def propagate(self, adj, embedding=None):
        x = self.embedding if embedding is None else embedding
        return torch.cat([x[: self.num_users], self.q.to(x.dtype)])

    def bce_terms(self, out, users, items, labels):
        return 0.5 * (self.score(users, items, out) - labels) ** 2


def quadratic_optimum(model, graph, labels, wd):
    """Closed form per user: ``e_u = (Q_uᵀQ_u + λ n_u I)⁻¹ Q_uᵀ y_u``; item ego rows are 0."""
    e = torch.zeros_like(model.embedding)
    q = model.q.double()
    u_all, i_all = graph.train_edges
    for u in range(graph.num_users):  # reference implementation: a loop is fine here
        sel = u_all == u
        if not bool(sel.any()):
            continue
        qu, y = q[i_all[sel]], labels[sel].double()
        a = qu.t() @ qu + wd * int(sel.sum()) * torch.eye(q.shape[1], dtype=torch.float64)
        e[u] = torch.linalg.solve(a, qu.t() @ y)
    return e


def quadratic_setup(seed=0, wd=0.1):
    g = random_graph(20, 25, 160, seed=seed, labels=True)
    g.train_labels = torch.rand(g.num_train, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    model = FrozenItemMF(g.num_users, g.num_items, 4, seed).double()
    with torch.no_grad():
        model.embedding.copy_(quadratic_optimum(model, g, g.train_labels, wd))
    # delete 12 edges, never a user's last one (their retrained row would be undetermined)
    deg = torch.bincount(g.train_edges[0], minlength=g.num_users)
    first = torch.ones(g.num_train, dtype=torch.bool)
    order = torch.argsort(g.train_edges[0], stable=True)
    starts = torch.cumsum(deg, 0) - deg
    first[order[starts[deg > 0]]] = False  # keep each user's first edge
    pos = torch.nonzero(first).view(-1)[torch.randperm(int(first.sum()), generator=torch.Generator().manual_seed(1))[:12]]
    return g, model, g.train_edges[:, pos], wd


@pytest.mark.parametrize("method,opts", [("if", {}), ("ifru", {}), ("if", {"coupling": 0}),
                                         ("if", {"solver": "lissa", "max_iter": 5000, "tol": 1e-9})])
def test_newton_step_is_exact_on_quadratic_objective(method, opts):
    """At an exact optimum the step lands on the retrained optimum."""
    g, model, edges, wd = quadratic_setup()
    # the test model reads item rows by global position: no relabelled regions
    opts = {"damping": 0.0, "tol": 1e-10, "max_iter": 200, "fallback_fraction": 0.0, **opts}
    res = get_unlearner(method, weight_decay=wd, **opts).unlearn(model, g, edges)
    new = res.graph
    assert new.num_train == g.num_train - edges.shape[1]
    ref = quadratic_optimum(model, new, new.train_labels, wd)
    got = res.model.embedding.detach()
    assert float((model.embedding.detach() - ref).norm()) > 1e-2  # deletion actually moves the optimum
    rel = float((got - ref).norm() / ref.norm())
    assert rel < 1e-4, rel
    rep = res.report
    assert rep.converged and rep.hvps >= rep.solver_iterations > 0
    assert rep.solver_residual <= opts["tol"] and rep.damping == 0.0
    assert rep.affected_parameters == rep.affected_nodes * 4
    # at an exact optimum g is the new objective's gradient, and the exact Newton step lowers a
    # quadratic by ½ gᵀH⁻¹g = ½ gᵀp: f(θ) − f(θ') computed from the two optima in closed form
    assert rep.gradient_mismatch < 1e-6
    samples = Objective.for_graph(new).samples(new)
    f = lambda e: float(total_loss(res.model, None, e, samples, wd))  # noqa: E731
    torch.testing.assert_close(rep.objective_change, f(ref) - f(model.embedding.detach()), rtol=1e-6, atol=1e-9)
    assert rep.objective_change < 0 and not any("raises the new training objective" in n for n in rep.notes)


def test_step_check_flags_a_model_far_from_stationary():
    g, model = _lightgcn(layers=2)  # random embeddings: nowhere near an optimum
    res = get_unlearner("ifru", weight_decay=1e-2, damping=1.0).unlearn(model, g, g.train_edges[:, [3, 17]])
    rep = res.report
    assert rep.gradient_mismatch > 1.0
    raised = any("raises the new training objective" in n for n in rep.notes)
    assert raised == (rep.objective_change > 0)
    paper = get_unlearner("ifru", weight_decay=1e-2, paper_mode=True).unlearn(model, g, g.train_edges[:, [3, 17]])
    assert math.isnan(paper.report.objective_change)  # no propagated objective to check against


def test_scif_is_exact_for_label_replacement_on_quadratic_objective():
    g, model, edges, wd = quadratic_setup(seed=2)
    res = get_unlearner("scif", weight_decay=wd, damping=0.0, tol=1e-10, max_iter=200,
                        fallback_fraction=0.0).unlearn(model, g, edges)
    pos = g.find_edges(edges)
    keep = torch.ones(g.num_train, dtype=torch.bool)
    keep[pos] = False
    lab = g.train_labels.clone().double()
    u = g.train_edges[0]
    for p in pos.tolist():  # the user's mean remaining label
        lab[p] = g.train_labels[keep & (u == u[p])].double().mean()
    ref = quadratic_optimum(model, g, lab, wd)
    assert float((res.model.embedding.detach() - ref).norm() / ref.norm()) < 1e-4
    assert res.graph.num_train == g.num_train - edges.shape[1]


def test_scif_rejects_bpr_data():
    g = random_graph(10, 12, 40)
    model = MF(g.num_users, g.num_items, dim=4, seed=0)
    with pytest.raises(ValueError, match="labelled"):
        get_unlearner("scif").unlearn(model, g, g.train_edges[:, :2])


def _lightgcn(seed=0, layers=2):
    g = random_graph(25, 30, 90, seed=seed)
    model = LightGCN(g.num_users, g.num_items, dim=4, num_layers=layers, seed=seed).double()
    with torch.no_grad():
        model.embedding.mul_(4.0)
    return g, model


def test_if_gradient_and_hessian_match_brute_force_through_propagation():
    g, model = _lightgcn()
    wd = 1e-2
    edges = g.train_edges[:, [3, 17, 40]]
    un = get_unlearner("if", weight_decay=wd, fallback_fraction=1.0, coupling=0)
    prob = un.problem(model, g, edges)
    rows = prob.rows
    assert torch.equal(rows, torch.unique(torch.cat([edges[0], edges[1] + g.num_users])))
    split = split_samples(Objective(weight_decay=wd), g, prob.new_graph, edges)
    a_old = g.adj().to(torch.float64)
    a_new = prob.new_graph.adj().to(torch.float64)
    e = model.embedding.detach()

    def direct(theta):  # −Σ_removed ℓ_s(θ; A) + Σ_added ℓ_s(θ; A') on the full graph
        ego = e.index_put((rows,), theta)
        return (-total_loss(model, a_old, ego, split.removed, wd)
                + total_loss(model, a_new, ego, split.added, wd))

    def new_objective(theta):
        return total_loss(model, a_new, e.index_put((rows,), theta), split.remaining, wd)

    theta = e[rows].clone().requires_grad_(True)
    ref_g = torch.autograd.grad(direct(theta), theta)[0]
    torch.testing.assert_close(un.gradient(prob), ref_g)
    h = dense_hessian(new_objective, e[rows])
    h_loc = dense_hessian(un.hessian_objective(prob), e[rows])
    torch.testing.assert_close(h_loc, h)
    # and the update is −(H + δI)⁻¹ g
    res = get_unlearner("if", weight_decay=wd, damping=5.0, tol=1e-12, max_iter=500,
                        coupling=0).unlearn(model, g, edges)
    n = rows.numel() * 4
    step = torch.linalg.solve(h + 5.0 * torch.eye(n, dtype=h.dtype), ref_g.reshape(-1)).view(-1, 4)
    assert res.report.damping == 5.0
    torch.testing.assert_close(res.model.embedding.detach()[rows], e[rows] - step)
    other = torch.ones(g.num_nodes, dtype=torch.bool)
    other[rows] = False
    assert torch.equal(res.model.embedding.detach()[other], e[other])  # untouched rows stay put


@pytest.mark.parametrize("method", ["if", "ifru"])
@pytest.mark.parametrize("bad", [[[0, 999]], [[999, 0]], "absent", "duplicate"])
def test_bad_requests_raise_and_leave_inputs_untouched(method, bad):
    g, model = _lightgcn(seed=3)
    before = copy.deepcopy(model.state_dict())
    fp, n = g.fingerprint(), g.num_train
    if bad == "absent":
        present = set(map(tuple, g.train_edges.t().tolist()))
        bad = [next([u, i] for u in range(g.num_users) for i in range(g.num_items) if (u, i) not in present)]
    elif bad == "duplicate":
        bad = [g.train_edges[:, 0].tolist()] * 2
    with pytest.raises(ValueError):
        get_unlearner(method).unlearn(model, g, torch.tensor(bad))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert g.fingerprint() == fp and g.num_train == n


def test_unknown_options_are_rejected():
    with pytest.raises(TypeError):
        get_unlearner("if", k=2)
    with pytest.raises(ValueError):
        get_unlearner("ifru", solver="newton")
    with pytest.raises(ValueError):
        get_unlearner("ifru", prune_ratio=0.0)
    for bad in (dict(steps=0), dict(coupling=-1), dict(newton_tol=-1.0),
                dict(steps=2, paper_mode=True), dict(weight_decay=-1.0)):
        with pytest.raises(ValueError):
            get_unlearner("ifru", **bad)


def test_summed_loss_equals_sum_of_sample_losses_and_bpr_equals_score_difference():
    from graphforget.models import build_model

    g = random_graph(seed=5, labels=True)
    for model_name, layers in (("mf", 0), ("lightgcn", 2), ("ngcf", 2)):
        model = build_model(model_name, g.num_users, g.num_items, dim=6, layers=layers, seed=1).double()
        ego = model.embedding.detach()
        out = model.propagate(g.adj().double() if layers else None, ego)
        for samples in (Objective("bpr", negatives=3, negative_seed=2).samples(g),
                        Objective("bce").samples(g)):
            ref = sample_losses(model, out, ego, samples, 0.3).sum()
            torch.testing.assert_close(summed_loss(model, out, ego, samples, 0.3), ref, rtol=1e-12, atol=1e-12)
        s = Objective("bpr", negatives=3, negative_seed=2).samples(g)
        margin = model.score(s.users, s.items, out) - model.score(s.users, s.negatives, out)
        torch.testing.assert_close(model.bpr_terms(out, s.users, s.items, s.negatives),
                                   -torch.nn.functional.logsigmoid(margin))
