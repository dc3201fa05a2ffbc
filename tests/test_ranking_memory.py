"""Full ranking under a memory budget: chunked top-K over the items equals the single-chunk one."""
from __future__ import annotations

import pytest
import torch

from graphforget.metrics import (BYTES_PER_SCORE, RANKING_MEMORY_BUDGET, item_chunk_size, key_items,
                                 order_key, ranking_metrics, topk_items)


def _problem(seed: int, num_users=37, num_items=53, dim=3, lo=-2, hi=3, train_edges=600):
    """Integer-valued embeddings (exact scores, many exact ties), identical item columns, and
    disjoint train / test pairs."""
    gen = torch.Generator().manual_seed(seed)
    uemb = torch.randint(lo, hi, (num_users, dim), generator=gen).float()
    iemb = torch.randint(lo, hi, (num_items, dim), generator=gen).float()
    iemb[7] = iemb[40]  # identical items in different chunks: always tied
    iemb[3] = 0.0  # scores of exactly zero
    keys = torch.randperm(num_users * num_items, generator=gen)[:train_edges + 300]
    e = torch.stack([keys // num_items, keys % num_items])
    return uemb, iemb, e[:, :train_edges], e[:, train_edges:]


def _chunks(num_items):
    return [1, 2, 3, 5, 7, 8, 16, num_items - 1, num_items, num_items + 9]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_topk_equals_unchunked_with_ties_and_exclusion(seed):
    uemb, iemb, train, _ = _problem(seed)
    num_users, num_items = uemb.shape[0], iemb.shape[0]
    scores = uemb @ iemb.t()
    assert (scores.unsqueeze(-1) == scores.unsqueeze(1)).sum() > scores.numel() * 4  # many ties
    users = torch.arange(num_users)
    for k in (1, 4, 10, num_items):
        ref = topk_items(uemb, iemb, users, k, train)  # default budget: one chunk here
        assert ref.shape == (num_users, k)
        for chunk in _chunks(num_items):
            for batch in (1, 6, 1024):
                got = topk_items(uemb, iemb, users, k, train, batch_size=batch, item_chunk=chunk)
                assert torch.equal(got, ref), (k, chunk, batch)


def test_reference_order_is_score_then_item_id():
    uemb, iemb, train, _ = _problem(4)
    scores = uemb @ iemb.t()
    masked = set(map(tuple, train.t().tolist()))
    for chunk in (1, 4, 11):
        top = topk_items(uemb, iemb, torch.arange(uemb.shape[0]), 12, train, item_chunk=chunk)
        for u in range(uemb.shape[0]):
            cand = [i for i in range(iemb.shape[0]) if (u, i) not in masked]
            want = sorted(cand, key=lambda i: (-float(scores[u, i]), i))[:12]  # -0.0 == +0.0 in Python
            assert top[u].tolist() == want


def test_memory_budget_picks_the_chunk_and_changes_nothing():
    uemb, iemb, train, test = _problem(5)
    users = torch.arange(uemb.shape[0])
    ref = topk_items(uemb, iemb, users, 9, train)
    for budget in (1, BYTES_PER_SCORE * 37 * 4, BYTES_PER_SCORE * 37 * 17, 10**12):
        assert torch.equal(topk_items(uemb, iemb, users, 9, train, memory_budget=budget), ref)
    m_ref = ranking_metrics(uemb, iemb, train, test, ks=(1, 5, 20))
    for chunk in (1, 6, 52, 53):
        assert ranking_metrics(uemb, iemb, train, test, ks=(1, 5, 20), item_chunk=chunk) == m_ref
    assert ranking_metrics(uemb, iemb, train, test, ks=(1, 5, 20), memory_budget=1, batch_size=5) == m_ref


def test_default_chunking_keeps_small_catalogues_in_one_chunk():
    assert RANKING_MEMORY_BUDGET == 2**30
    assert item_chunk_size(1024, 40_981) == 40_981  # Gowalla: unchanged, one chunk
    assert item_chunk_size(1024, 52_428) == 52_428
    assert item_chunk_size(1024, 10**6) == 2**30 // (1024 * BYTES_PER_SCORE) < 10**6
    assert item_chunk_size(1, 10**6) == 10**6
    assert item_chunk_size(1024, 10**6, item_chunk=5000) == 5000
    assert item_chunk_size(8, 10, item_chunk=50) == 10
    assert item_chunk_size(10**9, 10**6) == 1
    with pytest.raises(ValueError, match="item_chunk"):
        item_chunk_size(8, 10, item_chunk=0)


def test_merging_chunk_keys_is_exact_for_signed_zeros_and_infinities():
    """The merge itself on scores a matmul rarely yields (BLAS sums from +0.0): -0.0 / +0.0
    ties, -inf (masked), NaN, equal values across chunk borders."""
    gen = torch.Generator().manual_seed(3)
    vals = torch.tensor([0.0, -0.0, 1.0, -1.0, float("-inf"), float("inf"), float("nan"), 2.5])
    scores = vals[torch.randint(0, vals.numel(), (9, 61), generator=gen)]
    for k in (1, 5, 17, 61):
        ref = torch.topk(order_key(scores), k, dim=1).indices
        for chunk in (1, 2, 7, 16, 60, 61):
            best = None
            for c0 in range(0, 61, chunk):
                top = torch.topk(order_key(scores[:, c0:c0 + chunk], c0), min(k, scores[:, c0:c0 + chunk].shape[1]), dim=1).values
                if best is not None:
                    top = torch.cat([best, top], 1)
                    top = torch.topk(top, min(k, top.shape[1]), dim=1).values
                best = top
            assert torch.equal(key_items(best), ref), (k, chunk)


def test_keys_recover_item_ids_for_any_sign():
    scores = torch.tensor([[-3.5, -0.0, 0.0, 2.0, float("-inf"), -1e-30, 7.0]])
    for start in (0, 5, 2**31 - 8):
        key = order_key(scores, start)
        assert torch.equal(key_items(key), torch.arange(start, start + 7).view(1, -1))
        assert key[0, 1] > key[0, 2]  # -0.0 ties +0.0, the smaller item id first


def test_chunked_ranking_of_real_valued_scores_matches_exactly_computed_scores():
    """Real-valued embeddings: the chunked lists equal a ranking of the same matmul's scores
    (each chunk's scores are the matching columns of the full product on this BLAS; if not,
    only a rounding-level reorder could differ, which this test would show)."""
    gen = torch.Generator().manual_seed(11)
    uemb, iemb = torch.randn(30, 16, generator=gen), torch.randn(501, 16, generator=gen)
    users = torch.arange(30)
    ref = topk_items(uemb, iemb, users, 25)
    for chunk in (64, 100, 500):
        assert torch.equal(topk_items(uemb, iemb, users, 25, item_chunk=chunk), ref)


def test_k_larger_than_items_still_raises_and_empty_users():
    uemb, iemb, _, _ = _problem(6)
    with pytest.raises(RuntimeError):
        topk_items(uemb, iemb, torch.arange(3), iemb.shape[0] + 1, item_chunk=4)
    assert topk_items(uemb, iemb, torch.zeros(0, dtype=torch.long), 5, item_chunk=4).shape == (0, 5)
