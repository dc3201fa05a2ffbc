"""Vectorised negative sampling that never returns a user's training positive."""
from __future__ import annotations

import torch
from torch import Tensor


def sample_negatives(users: Tensor, train_edges: Tensor, num_items: int,
                     generator: torch.Generator, max_rounds: int = 100) -> Tensor:
    """One uniform negative item per entry of ``users``, rejecting training positives.

    Rejection sampling done for the whole batch at once: draw, test membership with a binary
    search over the sorted edge keys ``u * I + i``, redraw only the rejected entries. A user who
    has interacted with every item raises ``ValueError``.
    """
    keys = torch.sort(train_edges[0] * num_items + train_edges[1]).values
    neg = torch.randint(num_items, users.shape, generator=generator)
    todo = torch.arange(users.numel())
    for _ in range(max_rounds):
        q = users[todo] * num_items + neg[todo]
        pos = torch.searchsorted(keys, q).clamp(max=keys.numel() - 1)
        bad = keys[pos] == q
        if not bool(bad.any()):
            return neg
        todo = todo[bad]
        neg[todo] = torch.randint(num_items, (todo.numel(),), generator=generator)
    deg = torch.bincount(train_edges[0], minlength=int(users.max()) + 1)
    full = torch.nonzero(deg >= num_items).view(-1)
    raise ValueError(f"could not draw negatives; users with every item as positive: {full[:10].tolist()}")
