"""Shared fixtures. Real data lives in ``../shared/data`` beside the repository; tests that need
it skip with a reason where it is absent (a user's clone). CI always has it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphforget.data import InteractionGraph

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(name: str) -> Path:
    """Path of a data set under ``../shared/data``; skip the test if it is missing."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data {p} not available (../shared/data is only beside CI checkouts)")
    return p


def random_graph(num_users: int = 30, num_items: int = 40, num_edges: int = 150, seed: int = 0,
                 labels: bool = False) -> InteractionGraph:
    """A random bipartite graph with distinct edges, a validation and a test split."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=gen)[: num_edges + 40]
    e = torch.stack([keys // num_items, keys % num_items])
    tr, va, te = e[:, :num_edges], e[:, num_edges:num_edges + 20], e[:, num_edges + 20:]
    lab = (lambda n: torch.randint(0, 2, (n,), generator=gen).float()) if labels else (lambda n: None)
    return InteractionGraph(num_users, num_items, tr, va, te, train_labels=lab(tr.shape[1]),
                            valid_labels=lab(va.shape[1]), test_labels=lab(te.shape[1]), name="random")


def samples_of(graph: InteractionGraph, loss: str = "auto", seed: int = 0, negatives: int = 2):
    """The objective's samples of ``graph`` (BPR with ``negatives`` fixed negatives per
    positive drawn with ``seed``, or BCE on labelled graphs / ``loss="bce"``)."""
    from graphforget.train.objective import Objective

    return Objective.for_graph(graph, loss, negatives=negatives, negative_seed=seed).samples(graph)


@pytest.fixture
def small_graph() -> InteractionGraph:
    return random_graph()


@pytest.fixture(scope="session")
def ml100k():
    from graphforget.data.loaders import load_lightgcn_txt

    return load_lightgcn_txt(shared("ml100k"))


# Small tensors dominate the suite; one intra-op thread avoids oversubscription on shared
# 2-core CI machines (measured 20-30x slowdowns with 2 threads under load).
torch.set_num_threads(1)
