"""Audit: every figure against a brute-force or closed-form reference."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from conftest import random_graph
from graphforget.audit import (affected_test_rows, agreement, audit, deleted_item_ranks,
                               edge_features, fit_logistic, membership_inference_auc,
                               parameter_distance, predict_logistic, rank_summary, utility,
                               utility_report)
from graphforget.data import InteractionGraph
from graphforget.metrics import auc, topk_items
from graphforget.models import MF, LightGCN
from graphforget.train import evaluate, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small matrices on a shared 2-core machine: one intra-op thread is ~10x faster than two
    threads contending with other processes (measured); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _graph(num_users, num_items, n_train, n_valid, n_test, seed=0, labels=False):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=gen)[: n_train + n_valid + n_test]
    e = torch.stack([keys // num_items, keys % num_items])
    tr, va, te = e[:, :n_train], e[:, n_train:n_train + n_valid], e[:, n_train + n_valid:]
    lab = (lambda n: torch.randint(0, 2, (n,), generator=gen).float()) if labels else (lambda n: None)
    return InteractionGraph(num_users, num_items, tr, va, te, train_labels=lab(n_train),
                            valid_labels=lab(n_valid), test_labels=lab(n_test), name="rand")


def _deleted(graph, n, seed=0, same_user=True):
    """``n`` training edges, forced to include several edges of one user (shared-user ranks)."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(graph.num_train, generator=gen)[:n]
    if same_user:
        u0 = graph.train_edges[0, pick[0]]
        extra = torch.nonzero(graph.train_edges[0] == u0).view(-1)[:3]
        pick = torch.unique(torch.cat([pick, extra]))
    return graph.train_edges[:, pick]


def _brute_rank(scores_u, i, excluded):
    """1 + #{candidates j != i ranked before i}, ranked by (score desc, id asc)."""
    r = 1
    for j in range(len(scores_u)):
        if j == i or j in excluded:
            continue
        if scores_u[j] > scores_u[i] or (scores_u[j] == scores_u[i] and j < i):
            r += 1
    return r


# ------------------------------------------------------------------ forgetting: ranks
def test_deleted_item_ranks_equal_brute_force_with_ties():
    g = random_graph(25, 40, 300, seed=1)
    model = LightGCN(g.num_users, g.num_items, dim=8, num_layers=2, seed=0)
    mf = MF(g.num_users, g.num_items, dim=8, seed=0)
    with torch.no_grad():  # exact score ties: items 1..4 share item 0's embedding
        mf.embedding[g.num_users + 1: g.num_users + 5] = mf.embedding[g.num_users]
    dele = _deleted(g, 30)
    ga = g.remove_edges(dele)
    train_after = [set(x.tolist()) for x in ga.user_items("train")]
    for m, adj_graph in ((model, g), (mf, ga)):
        ranks = deleted_item_ranks(m, ga, dele, adj_graph=adj_graph, batch_size=7)
        out = m.propagate(adj_graph.adj()).detach()
        scores = (out[: g.num_users] @ out[g.num_users:].t()).tolist()
        expect = [_brute_rank(scores[u], i, train_after[u]) for u, i in dele.t().tolist()]
        assert ranks.tolist() == expect
        # rank <= K  iff  the item is in the served top-K list (same tie-breaking)
        uemb, iemb = m.split(out)
        top = topk_items(uemb, iemb, dele[0], 10, ga.train_edges)
        in_top = (top == dele[1][:, None]).any(1)
        assert torch.equal(in_top, ranks <= 10)
    s = rank_summary(torch.tensor([1, 5, 30, 2]), k=4)
    assert s == {"n": 4, "mean_rank": 9.5, "median_rank": 2.0, "in_top@4": 0.5}


def test_ranks_reject_bad_edges():
    g = random_graph()
    m = MF(g.num_users, g.num_items, dim=4, seed=0)
    with pytest.raises(ValueError, match="item id out of range"):
        deleted_item_ranks(m, g, torch.tensor([[0], [g.num_items]]))
    with pytest.raises(ValueError, match="no edges"):
        deleted_item_ranks(m, g, torch.zeros(2, 0, dtype=torch.long))


# ------------------------------------------------------------------ agreement
def _brute_agreement(sa, sb, excluded, users, k):
    ov, rho = [], []
    for u in users:
        cand = [j for j in range(sa.shape[1]) if j not in excluded[u]]
        oa = sorted(cand, key=lambda j: (-sa[u, j], j))
        ob = sorted(cand, key=lambda j: (-sb[u, j], j))
        kk = min(k, len(cand))
        ov.append(len(set(oa[:kk]) & set(ob[:kk])) / kk)
        ra = np.empty(sa.shape[1]); rb = np.empty(sa.shape[1])
        ra[oa] = np.arange(len(cand)); rb[ob] = np.arange(len(cand))
        rho.append(np.corrcoef(ra[cand], rb[cand])[0, 1])  # Pearson of ranks = Spearman
    return float(np.mean(ov)), float(np.mean(rho))


def test_agreement_matches_brute_force_self_and_permuted():
    g = random_graph(30, 60, 400, seed=2)
    a = LightGCN(g.num_users, g.num_items, dim=8, num_layers=2, seed=0)
    b = LightGCN(g.num_users, g.num_items, dim=8, num_layers=2, seed=1)
    users = torch.tensor([0, 3, 3, 7, 11, 29])
    res = agreement(a, b, g, users, k=10, batch_size=4)
    excluded = [set(x.tolist()) for x in g.user_items("train")]
    to_np = lambda m: (lambda o: (o[:30] @ o[30:].t()).numpy())(m.propagate(g.adj()).detach())  # noqa: E731
    ov, rho = _brute_agreement(to_np(a), to_np(b), excluded, [0, 3, 7, 11, 29], 10)
    assert res["users"] == 5
    assert res["overlap@10"] == pytest.approx(ov, abs=1e-12)
    assert res["spearman"] == pytest.approx(rho, abs=1e-9)
    n_cand = [60 - len(excluded[u]) for u in (0, 3, 7, 11, 29)]
    k_big = max(n_cand)  # lists longer than some users' candidate sets: K_u = min(K, n_u)
    assert min(n_cand) < k_big
    res = agreement(a, b, g, users, k=k_big)
    ov, rho = _brute_agreement(to_np(a), to_np(b), excluded, [0, 3, 7, 11, 29], k_big)
    assert res[f"overlap@{k_big}"] == pytest.approx(ov, abs=1e-12)

    mf = MF(200, 500, dim=16, seed=0)
    gm = random_graph(200, 500, 2000, seed=3)
    all_users = torch.arange(200)
    same = agreement(mf, copy.deepcopy(mf), gm, all_users, k=20)
    assert same["overlap@20"] == 1.0 and same["spearman"] == pytest.approx(1.0, abs=1e-12)
    perm = copy.deepcopy(mf)
    with torch.no_grad():
        items = perm.embedding[200:]
        perm.embedding[200:] = items[torch.randperm(500, generator=torch.Generator().manual_seed(0))]
    low = agreement(mf, perm, gm, all_users, k=20)
    assert low["overlap@20"] < 0.15 and abs(low["spearman"]) < 0.1
    with pytest.raises(ValueError, match="out of range"):
        agreement(mf, perm, gm, [200])


# ------------------------------------------------------------------ membership inference
def test_fit_logistic_is_stationary():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=gen) * torch.tensor([1.0, 10.0, 0.1]) + 5
    y = (torch.rand(400, generator=gen) < torch.sigmoid(x[:, 0] - 5 + 0.3 * (x[:, 2] - 5) * 10)).float()
    params = fit_logistic(x, y, l2=1e-2)
    w, mu, sd = (p.numpy() for p in params)
    z = (x.double().numpy() - mu) / sd
    p = 1 / (1 + np.exp(-(z @ w[:-1] + w[-1])))
    grad_w = z.T @ (p - y.numpy()) / len(p) + 1e-2 * w[:-1]
    grad_b = float(np.mean(p - y.numpy()))
    assert np.abs(grad_w).max() < 1e-7 and abs(grad_b) < 1e-7
    assert torch.allclose(predict_logistic(params, x), torch.from_numpy(z @ w[:-1] + w[-1]))


def test_membership_auc_random_model_near_half_and_overfit_model_high():
    g = _graph(150, 150, 4000, 0, 3000, seed=4)
    dele = _deleted(g, 800, seed=1, same_user=False)  # still members of the models below
    keep = torch.ones(g.num_train, dtype=torch.bool)
    keep[g.find_edges(dele)] = False
    members = g.train_edges[:, keep]
    rand = MF(g.num_users, g.num_items, dim=16, seed=0)
    r = membership_inference_auc(rand, g, members, g.test_edges, dele, seed=0)
    assert abs(r.auc - 0.5) < 0.05 and abs(r.member_auc - 0.5) < 0.05
    assert r.n_train == 2 * 1500 and r.n_deleted == dele.shape[1]
    assert membership_inference_auc(rand, g, members, g.test_edges, dele, seed=0) == r
    feats = edge_features(rand, g, dele[:, :5], seed=0)
    out = rand.propagate(None).detach()
    assert torch.allclose(feats[:, 0], rand.score(dele[0, :5], dele[1, :5], out))
    assert feats.shape == (5, 3)  # model-derived features only: no degree to give a user away
    scores = (out[: g.num_users] @ out[g.num_users:].t()).tolist()
    train_sets = [set(x.tolist()) for x in g.user_items("train")]
    for row, (u, i) in enumerate(dele[:, :5].t().tolist()):
        n_cand = g.num_items - len(train_sets[u] - {i})
        pct = (_brute_rank(scores[u], i, train_sets[u]) - 1) / (n_cand - 1)
        assert feats[row, 2].item() == pytest.approx(pct, abs=1e-6)
        # BPR loss against some item j the user never trained on
        losses = -torch.nn.functional.logsigmoid(torch.tensor(scores[u][i]) - torch.tensor(scores[u]))
        hit = torch.nonzero((losses - feats[row, 1]).abs() < 1e-5).view(-1).tolist()
        assert any(j not in train_sets[u] and j != i for j in hit)

    fit = MF(g.num_users, g.num_items, dim=32, seed=0)
    train(fit, g, epochs=150, batch_size=4000, lr=0.05, weight_decay=0.0, patience=None,
          progress=False, negatives=1)
    f = membership_inference_auc(fit, g, members, g.test_edges, dele, seed=0)
    assert f.member_auc > 0.75 and f.auc > 0.75


def test_membership_labelled_needs_labels():
    g = _graph(40, 40, 400, 0, 200, seed=5, labels=True)
    m = MF(40, 40, dim=4, seed=0)
    with pytest.raises(ValueError, match="member_labels is required"):
        membership_inference_auc(m, g, g.train_edges, g.test_edges, g.train_edges[:, :5])
    r = membership_inference_auc(m, g, g.train_edges, g.test_edges, g.train_edges[:, :50],
                                 member_labels=g.train_labels, non_member_labels=g.test_labels,
                                 deleted_labels=g.train_labels[:50])
    assert 0.0 <= r.auc <= 1.0


# ------------------------------------------------------------------ utility
def _brute_recall(scores, masked, truth, users, k):
    vals = []
    for u in users:
        if not truth[u]:
            continue
        order = sorted((j for j in range(scores.shape[1]) if j not in masked[u]), key=lambda j: (-scores[u, j], j))
        vals.append(len(set(order[:k]) & truth[u]) / len(truth[u]))
    return float(np.mean(vals)), len(vals)


def test_utility_subsets_equal_brute_force():
    g = _graph(40, 60, 600, 100, 300, seed=6)
    dele = _deleted(g, 25, seed=2)
    ga = g.remove_edges(dele)
    du, di = set(dele[0].tolist()), set(dele[1].tolist())
    masks = affected_test_rows(ga, dele)
    rows = ga.test_edges.t().tolist()
    assert masks["user"].tolist() == [u in du for u, i in rows]
    assert masks["or"].tolist() == [u in du or i in di for u, i in rows]
    assert masks["and"].tolist() == [u in du and i in di for u, i in rows]
    assert masks["and"].any() and (~masks["or"]).any()

    m = LightGCN(g.num_users, g.num_items, dim=8, num_layers=2, seed=0)
    rep = utility_report(m, ga, dele, ks=(5, 10))
    assert rep["overall"] == utility(m, ga, ks=(5, 10))
    ev = evaluate(m, ga, "test", ks=(5, 10))
    for key in ("recall@10", "ndcg@5", "users"):
        assert rep["overall"][key] == ev[key]
    ev_user = evaluate(m, ga, "test", ks=(5, 10), users=torch.tensor(sorted(du)))
    assert rep["user"]["recall@10"] == ev_user["recall@10"]
    out = m.propagate(ga.adj()).detach()
    scores = (out[:40] @ out[40:].t()).numpy()
    masked = [set(a.tolist()) | set(b.tolist()) for a, b in zip(ga.user_items("train"), ga.user_items("valid"))]
    for name in ("or", "and"):
        truth = [set() for _ in range(40)]
        for (u, i), keep in zip(rows, masks[name].tolist()):
            if keep:
                truth[u].add(i)
        rec, n = _brute_recall(scores, masked, truth, range(40), 10)
        assert rep[name]["users"] == n and rep[name]["rows"] == int(masks[name].sum())
        assert rep[name]["recall@10"] == pytest.approx(rec, abs=1e-6)


def test_utility_labelled_auc_on_rows():
    g = _graph(40, 50, 500, 50, 400, seed=7, labels=True)
    dele = _deleted(g, 30, seed=3)
    ga = g.remove_edges(dele)
    m = LightGCN(40, 50, dim=8, num_layers=1, seed=1)
    rep = utility_report(m, ga, dele)
    out = m.propagate(ga.adj()).detach()
    s = m.score(ga.test_edges[0], ga.test_edges[1], out)
    du, di = set(dele[0].tolist()), set(dele[1].tolist())
    sel = torch.tensor([u in du or i in di for u, i in ga.test_edges.t().tolist()])
    pos, neg = s[sel][ga.test_labels[sel] > 0.5], s[sel][ga.test_labels[sel] < 0.5]
    mw = float(((pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()).mean())
    assert rep["or"]["auc"] == pytest.approx(mw, abs=1e-9)
    assert rep["or"]["rows"] == int(sel.sum())
    assert rep["overall"]["auc"] == pytest.approx(auc(s, ga.test_labels), abs=1e-12)


# ------------------------------------------------------------------ parameter distance
def test_parameter_distance_relative():
    orig = MF(10, 20, dim=4, seed=0)
    ref = MF(10, 20, dim=4, seed=1)
    mid = copy.deepcopy(orig)
    with torch.no_grad():
        mid.embedding.copy_(0.25 * orig.embedding + 0.75 * ref.embedding)
    rows = torch.tensor([0, 3, 12, 12, 29])
    assert parameter_distance(orig, ref, rows, orig)["relative"] == pytest.approx(1.0)
    assert parameter_distance(ref, ref, rows, orig)["relative"] == 0.0
    d = parameter_distance(mid, ref, rows, orig)
    r = torch.tensor([0, 3, 12, 29])
    assert d["rows"] == 4
    expect = float((mid.embedding[r] - ref.embedding[r]).detach().norm())
    assert d["distance"] == pytest.approx(expect, rel=1e-6)
    assert d["relative"] == pytest.approx(0.25, rel=1e-6)
    assert math.isnan(parameter_distance(mid, orig, rows, orig)["relative"])
    with pytest.raises(ValueError, match="out of range"):
        parameter_distance(mid, ref, [30])


# ------------------------------------------------------------------ end to end on ml100k
@pytest.mark.slow
def test_audit_end_to_end_ml100k(ml100k):
    g = ml100k
    cfg = dict(batch_size=16384, lr=0.05, patience=None, progress=False, eval_every=10 ** 6, negatives=1)
    mk = lambda seed: LightGCN(g.num_users, g.num_items, dim=16, num_layers=2, seed=seed)  # noqa: E731
    original = mk(0)
    train(original, g, epochs=15, **cfg)
    dele = _deleted(g, 60, seed=0)
    ga = g.remove_edges(dele)
    unlearned = copy.deepcopy(original)  # "forgot" by briefly retraining on the remaining graph
    train(unlearned, ga, epochs=2, seed=5, **cfg)
    retrains = [mk(s) for s in (1, 2)]
    for s, r in zip((1, 2), retrains):
        train(r, ga, epochs=15, seed=s, **cfg)
    reference = copy.deepcopy(original)  # warm-started retrain
    train(reference, ga, epochs=5, seed=6, **cfg)

    with pytest.raises(ValueError, match="still training edges"):
        audit(original, unlearned, g, g, dele, retrains)
    rep = audit(original, unlearned, g, ga, dele, retrains, reference, ks=(10, 20), seed=0,
                max_members=5000)
    print(rep.summary())
    d = json.loads(json.dumps(rep.to_dict()))
    assert set(d["models"]) == {"original", "unlearned", "retrain", "control"}
    assert set(d["verdicts"]) == {"original", "unlearned", "control"}
    m = rep.models
    assert m["unlearned"]["utility"]["overall"]["recall@20"] == pytest.approx(
        evaluate(unlearned, ga, "test", ks=(20,))["recall@20"], abs=1e-12)
    assert m["original"]["utility"]["overall"]["ndcg@10"] == pytest.approx(
        evaluate(original, g, "test", ks=(10,))["ndcg@10"], abs=1e-12)
    nodes = g.khop_nodes(dele, 2)
    assert rep.affected_users == int((nodes < g.num_users).sum())
    # the original still ranks its memorised items higher than a retrain that never saw them
    assert m["original"]["forgetting"]["mean_rank"] < m["retrain"]["forgetting"]["mean_rank"]
    assert m["original"]["membership"]["auc"] > m["retrain"]["membership"]["auc"]
    assert m["retrain"]["agreement"]["overlap@10"] == 1.0  # itself
    assert 0 <= m["control"]["agreement"]["overlap@10"] < 1
    assert "U-MIA skipped" in " ".join(rep.notes)  # 2 retrains: no shadows
    assert rep.parameters["affected"]["rows"] == nodes.numel()
    text = rep.summary()
    for part in ("Utility", "Forgetting", "Membership", "Agreement", "relative", "Verdicts", "MIA"):
        assert part in text
