"""Filters (k-core, thresholds, dedupe), splits and protocols against brute-force references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import shared
from graphforget.data import (Interactions, binarize, dedupe, ifru_protocol, implicit,
                              implicit_protocol, k_core, leave_one_out, per_user_split,
                              random_split, temporal_split, to_graph)


def random_inter(n=400, users=40, items=50, seed=0, ratings=True, times=True):
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, users, (n,), generator=g)
    i = torch.randint(0, items, (n,), generator=g)
    r = torch.randint(1, 6, (n,), generator=g).float() if ratings else None
    t = torch.randint(0, 50, (n,), generator=g) if times else None
    return Interactions(u, i, r, t, user_ids=[f"u{k}" for k in range(users)],
                        item_ids=[f"i{k}" for k in range(items)])


def rows(x):
    """Multiset of rows as raw-id tuples (with rating and time)."""
    r = x.ratings.tolist() if x.ratings is not None else [None] * len(x)
    t = x.timestamps.tolist() if x.timestamps is not None else [None] * len(x)
    return sorted((x.user_ids[u], x.item_ids[i], a, b)
                  for u, i, a, b in zip(x.users.tolist(), x.items.tolist(), r, t))


def brute_k_core(pairs, uk, ik):
    """Pandas-style loop: drop users below uk, then items below ik, until stable."""
    pairs = list(pairs)
    while True:
        before = len(pairs)
        cu = {}
        for u, _ in pairs:
            cu[u] = cu.get(u, 0) + 1
        pairs = [p for p in pairs if cu[p[0]] >= uk]
        ci = {}
        for _, i in pairs:
            ci[i] = ci.get(i, 0) + 1
        pairs = [p for p in pairs if ci[p[1]] >= ik]
        if len(pairs) == before:
            return pairs


# ------------------------------------------------------------------ filters
@pytest.mark.parametrize("seed,uk,ik", [(0, 5, 5), (1, 3, 7), (2, 8, 2), (3, 12, 12)])
def test_k_core_matches_brute_force(seed, uk, ik):
    x = random_inter(n=600, users=50, items=40, seed=seed)
    c = k_core(x, user_k=uk, item_k=ik)
    pairs = list(zip([x.user_ids[u] for u in x.users.tolist()], [x.item_ids[i] for i in x.items.tolist()]))
    ref = brute_k_core(pairs, uk, ik)
    got = list(zip([c.user_ids[u] for u in c.users.tolist()], [c.item_ids[i] for i in c.items.tolist()]))
    assert got == ref  # same rows, same order
    if len(c):
        assert int(torch.bincount(c.users).min()) >= uk and int(torch.bincount(c.items).min()) >= ik
        assert c.num_users == len(set(c.users.tolist())) and c.num_items == len(set(c.items.tolist()))
    assert len(x) == 600  # input untouched


def test_k_core_rejects_bad_k():
    with pytest.raises(ValueError, match=">= 1"):
        k_core(random_inter(), k=0)


def test_binarize_implicit_dedupe():
    x = random_inter(seed=4)
    b = binarize(x, 4)
    assert len(b) == len(x) and torch.equal(b.ratings, (x.ratings >= 4).float())
    assert torch.equal(binarize(x, 4, "gt").ratings, (x.ratings > 4).float())
    im = implicit(x, 3, "gt")
    assert im.ratings is None and len(im) == int((x.ratings > 3).sum())
    assert torch.equal(im.users, x.users[x.ratings > 3])
    with pytest.raises(ValueError, match="mode"):
        binarize(x, 4, "le")
    with pytest.raises(ValueError, match="no ratings"):
        implicit(im, 3)
    for keep in ("first", "last"):
        d = dedupe(x, keep)
        ref = {}
        for r, (u, i) in enumerate(zip(x.users.tolist(), x.items.tolist())):
            if keep == "last" or (u, i) not in ref:
                ref[(u, i)] = r
        idx = torch.tensor(sorted(ref.values()))
        assert torch.equal(d.users, x.users[idx]) and torch.equal(d.ratings, x.ratings[idx])


# ------------------------------------------------------------------ splits
SPLITTERS = [
    lambda x, s: random_split(x, (0.7, 0.1, 0.2), seed=s),
    lambda x, s: per_user_split(x, (0.6, 0.2, 0.2), seed=s),
    lambda x, s: leave_one_out(x, seed=s),
    lambda x, s: leave_one_out(x, seed=s, by_time=False),
]


@pytest.mark.parametrize("split", SPLITTERS)
def test_split_partitions_rows_and_is_seeded(split):
    x = random_inter(n=500, seed=5)
    tr, va, te = split(x, 0)
    assert sorted(rows(tr) + rows(va) + rows(te)) == rows(x)  # disjoint cover of the rows
    for part in (tr, va, te):
        assert (part.num_users, part.num_items) == (x.num_users, x.num_items)
    again = split(x, 0)
    other = split(x, 1)
    assert all(torch.equal(a.users, b.users) and torch.equal(a.items, b.items) for a, b in zip((tr, va, te), again))
    assert any(not torch.equal(a.items, b.items) for a, b in zip((tr, va, te), other))


def test_random_split_sizes():
    x = random_inter(n=1000)
    tr, va, te = random_split(x, (0.8, 0.1, 0.1), seed=3)
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(x, (0.8, 0.3, 0.1))


def test_per_user_ratios():
    x = random_inter(n=2000, users=60, seed=6)
    ratios = (0.6, 0.2, 0.2)
    tr, va, te = per_user_split(x, ratios, seed=2)
    c = torch.bincount(x.users, minlength=x.num_users).double()
    parts = [torch.bincount(p.users, minlength=x.num_users) for p in (tr, va, te)]
    cut1 = torch.floor(c * 0.6 + 0.5)
    cut2 = torch.floor(c * 0.8 + 0.5)
    assert torch.equal(parts[0].double(), cut1)
    assert torch.equal(parts[1].double(), cut2 - cut1)
    for p, r in zip(parts, ratios):
        assert bool(((p.double() - c * r).abs() <= 1.0).all())


def test_leave_one_out_takes_latest():
    x = random_inter(n=600, users=30, seed=7)
    # make timestamps distinct so "latest" is unique
    x.timestamps = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, va, te = leave_one_out(x, seed=0)
    for u in range(x.num_users):
        mine = x.timestamps[x.users == u].sort(descending=True).values
        assert te.timestamps[te.users == u].tolist() == mine[:1].tolist()
        assert va.timestamps[va.users == u].tolist() == mine[1:2].tolist()
    with pytest.raises(ValueError, match="timestamps"):
        leave_one_out(random_inter(times=False))


def test_temporal_split():
    x = random_inter(n=100, seed=8)
    tr, va, te = temporal_split(x, (0.8, 0.1, 0.1))
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    assert int(tr.timestamps.max()) <= int(va.timestamps.min()) <= int(va.timestamps.max()) <= int(te.timestamps.min())


def test_to_graph_drops_unseen_and_duplicates():
    x = random_inter(n=300, users=30, items=30, seed=9)
    tr, va, te = random_split(x, seed=0)
    g = to_graph(tr, va, te, labels=True)
    train_pairs = set(zip(tr.users.tolist(), tr.items.tolist()))
    assert set(map(tuple, g.train_edges.t().tolist())) == train_pairs
    assert g.num_train == len(train_pairs)
    seen_u, seen_i = {p[0] for p in train_pairs}, {p[1] for p in train_pairs}
    expect_test = {(u, i) for u, i in zip(te.users.tolist(), te.items.tolist())
                   if u in seen_u and i in seen_i and (u, i) not in train_pairs}
    assert set(map(tuple, g.test_edges.t().tolist())) == expect_test
    assert g.test_labels.numel() == g.test_edges.shape[1]


# ------------------------------------------------------------------ protocols
def test_ifru_protocol_on_ml_latest_small():
    from graphforget.data.loaders import load_movielens

    x = load_movielens(shared("ml-latest-small") / "ratings.csv")
    g = ifru_protocol(x, threshold=4.0, seed=0, name="ml")
    # reference pipeline with numpy only
    core = k_core(x, 5)
    n = len(core)
    idx = np.arange(n)
    np.random.seed(0)
    np.random.shuffle(idx)
    n1 = int(n * 0.6)
    train_raw = [(core.user_ids[u], core.item_ids[i]) for u, i in
                 zip(core.users[idx[:n1]].tolist(), core.items[idx[:n1]].tolist())]
    got = [(g.user_ids[u], g.item_ids[i]) for u, i in g.train_edges.t().tolist()]
    assert got == train_raw  # same rows, shuffled order
    assert g.user_ids == list(dict.fromkeys(p[0] for p in train_raw))  # first-appearance ids
    lab = core.ratings[idx[:n1]] >= 4
    assert torch.equal(g.train_labels, lab.float())
    assert 0.3 < float(g.train_labels.mean()) < 0.7
    for split in ("valid", "test"):
        assert getattr(g, f"{split}_labels").numel() == getattr(g, f"{split}_edges").shape[1]
        assert getattr(g, f"{split}_edges").shape[1] > 0.19 * n
    deg_all = torch.bincount(core.users)
    assert int(deg_all.min()) >= 5


def test_implicit_protocol():
    x = random_inter(n=3000, users=60, items=50, seed=10)
    g = implicit_protocol(x, threshold=3, core=5, seed=1)
    pos = dedupe(implicit(x, 3), "last")
    core = k_core(pos, 5)
    assert g.num_train + g.valid_edges.shape[1] + g.test_edges.shape[1] <= len(core)
    assert g.num_users == core.num_users and not g.has_labels
