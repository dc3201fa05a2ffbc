"""Ranking metrics and AUC against brute-force Python references."""
from __future__ import annotations

import math

import pytest
import torch

from graphforget.metrics import auc, format_metrics, ranking_metrics, topk_items


def _brute_force(scores: torch.Tensor, train: torch.Tensor, test: torch.Tensor, ks) -> dict:
    """Per-user sort by (score desc, item id asc) over non-training items; plain Python."""
    num_users, num_items = scores.shape
    train_sets = [set() for _ in range(num_users)]
    test_sets = [set() for _ in range(num_users)]
    for u, i in train.t().tolist():
        train_sets[u].add(i)
    for u, i in test.t().tolist():
        test_sets[u].add(i)
    rows = scores.tolist()
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "precision", "ndcg", "hit")}
    n = 0
    for u in range(num_users):
        if not test_sets[u]:
            continue
        n += 1
        cand = [i for i in range(num_items) if i not in train_sets[u]]
        ranked = sorted(cand, key=lambda i: (-rows[u][i], i))
        for k in ks:
            top = ranked[:k]
            hits = [1.0 if i in test_sets[u] else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(test_sets[u]))))
            sums[f"recall@{k}"] += sum(hits) / len(test_sets[u])
            sums[f"precision@{k}"] += sum(hits) / k
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"hit@{k}"] += float(sum(hits) > 0)
    out = {key: v / n for key, v in sums.items()}
    out["users"] = n
    return out


def _problem(seed: int, num_users=40, num_items=60, dim=4):
    """Embeddings with many exact score ties (integer entries), disjoint train/test pairs."""
    gen = torch.Generator().manual_seed(seed)
    uemb = torch.randint(-2, 3, (num_users, dim), generator=gen).float()
    iemb = torch.randint(-2, 3, (num_items, dim), generator=gen).float()
    iemb[5] = iemb[9]  # identical items: always tied
    keys = torch.randperm(num_users * num_items, generator=gen)[:900]
    e = torch.stack([keys // num_items, keys % num_items])
    return uemb, iemb, e[:, :700], e[:, 700:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_equal_brute_force_with_ties(seed):
    uemb, iemb, train, test = _problem(seed)
    scores = uemb @ iemb.t()
    assert (scores.unsqueeze(-1) == scores.unsqueeze(1)).sum() > scores.numel() * 5  # many ties
    ks = (1, 5, 20, 100)
    got = ranking_metrics(uemb, iemb, train, test, ks=ks)
    ref = _brute_force(scores, train, test, ks)
    assert got["users"] == ref["users"]
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, abs=1e-6), key


def test_ranking_metrics_real_valued_scores_and_user_subset():
    gen = torch.Generator().manual_seed(5)
    uemb, iemb = torch.randn(30, 8, generator=gen), torch.randn(50, 8, generator=gen)
    keys = torch.randperm(1500, generator=gen)[:500]
    e = torch.stack([keys // 50, keys % 50])
    train, test = e[:, :400], e[:, 400:]
    subset = torch.tensor([0, 3, 4, 10, 29])
    got = ranking_metrics(uemb, iemb, train, test, ks=(10,), users=subset)
    keep = torch.isin(test[0], subset)
    ref = _brute_force(uemb @ iemb.t(), train, test[:, keep], (10,))
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, abs=1e-6), key


def test_metrics_independent_of_batch_size():
    uemb, iemb, train, test = _problem(7, num_users=50)
    results = [ranking_metrics(uemb, iemb, train, test, ks=(5, 20), batch_size=b) for b in (1, 7, 1024)]
    assert results[0] == results[1] == results[2]
    tops = [topk_items(uemb, iemb, torch.arange(50), 10, train, batch_size=b) for b in (1, 7, 1024)]
    assert torch.equal(tops[0], tops[1]) and torch.equal(tops[0], tops[2])


def test_topk_never_returns_training_items():
    uemb, iemb, train, _ = _problem(3)
    top = topk_items(uemb, iemb, torch.arange(40), 15, train)
    train_set = set(map(tuple, train.t().tolist()))
    assert not any((u, i) in train_set for u in range(40) for i in top[u].tolist())


def test_negative_scores_ordering():
    # the integer sort key must order negative floats correctly too
    uemb = torch.tensor([[1.0]])
    iemb = torch.tensor([[-3.0], [-0.5], [2.0], [-1e-8], [-7.25], [0.25]])
    top = topk_items(uemb, iemb, torch.tensor([0]), 6)
    assert top[0].tolist() == sorted(range(6), key=lambda i: -float(iemb[i]))


def test_users_without_test_items_are_skipped():
    uemb, iemb = torch.ones(3, 2), torch.ones(4, 2)
    test = torch.tensor([[1], [2]])
    got = ranking_metrics(uemb, iemb, torch.zeros(2, 0, dtype=torch.long), test, ks=(2,))
    assert got["users"] == 1
    assert got["recall@2"] == 0.0  # ties → items 0, 1 first
    assert ranking_metrics(uemb, iemb, test, torch.zeros(2, 0, dtype=torch.long))["users"] == 0


def _auc_pairs(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels) if y > 0.5]
    neg = [s for s, y in zip(scores, labels) if y <= 0.5]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_equals_pairwise_count(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (200,), generator=gen).float() / 2  # many ties
    labels = torch.randint(0, 2, (200,), generator=gen).float()
    assert auc(scores, labels) == pytest.approx(_auc_pairs(scores.tolist(), labels.tolist()), abs=1e-12)
    real = torch.randn(150, generator=gen)
    lab = torch.randint(0, 2, (150,), generator=gen)
    assert auc(real, lab) == pytest.approx(_auc_pairs(real.tolist(), lab.tolist()), abs=1e-12)


def test_auc_edge_cases():
    assert auc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    assert auc(torch.tensor([0.9, 0.1]), torch.tensor([0, 1])) == 0.0
    assert auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5
    assert math.isnan(auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))


def test_format_metrics():
    s = format_metrics({"recall@20": 0.123456, "users": 5, "ndcg@20": 0.5})
    assert s == "recall@20=0.1235  ndcg@20=0.5000"


def test_signed_zero_scores_tie_by_item_id_for_every_batch_size():
    """-0.0 and +0.0 are the same score: ties go to the lower item id, whatever the batch size.

    Dimension-1 embeddings with a zero user row give exact zeros whose sign is that of the item
    value; the old key put every -0.0 below every +0.0.
    """
    from graphforget.metrics import topk_items
    user = torch.tensor([[0.0], [-0.0], [1.0], [0.0]])
    item = torch.tensor([[-1.0], [2.0], [-3.0], [0.5], [-0.25], [4.0]])
    users = torch.arange(4)
    small = topk_items(user, item, users, k=6, batch_size=1)
    large = topk_items(user, item, users, k=6, batch_size=1024)
    assert torch.equal(small, large)
    assert small[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert small[1].tolist() == [0, 1, 2, 3, 4, 5]
    assert small[2].tolist() == [5, 1, 3, 4, 0, 2]
