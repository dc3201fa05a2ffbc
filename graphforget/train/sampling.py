r"""Vectorised negative sampling that never returns a user's training positive.

Two samplers:

* :func:`sample_negatives` — fresh uniform draws from a ``torch.Generator`` stream, one per
  entry (the per-epoch negatives of mini-batch training).
* :func:`fixed_negatives` — the *fixed* negatives of the training objective that unlearning
  differentiates and the stationary finish minimises. Draw ``t`` for replica ``r`` of the
  positive ``(u, i)`` is a counter-based hash :math:`h(\text{seed}, u, i, r, t) \bmod I`; the
  negative is the first draw that is not a positive of ``u``. So a sample's negative depends
  only on its own ids and on ``u``'s positives — not on the order of the edges or on any other
  user — and deleting edges changes the negatives of the deleting users alone (exactly those
  whose earlier draws hit an item they no longer hold). A retrain on the remaining data draws
  precisely the samples that unlearning keeps (:func:`graphforget.train.objective.split_samples`).
"""
from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


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
    _raise_full(train_edges, num_items, int(users.max()) + 1)


def _raise_full(train_edges: Tensor, num_items: int, num_users: int):
    deg = torch.bincount(train_edges[0], minlength=num_users)
    full = torch.nonzero(deg >= num_items).view(-1)
    raise ValueError(f"could not draw negatives; users with every item as positive: {full[:10].tolist()}")


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer finaliser (two multiply–xorshift rounds) on int64 values in
    ``[0, 2^32)``; products stay below ``2^59``, so nothing overflows."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def counter_hash(seed: int, *keys: Tensor) -> Tensor:
    """A deterministic 32-bit hash of ``(seed, keys...)`` per element (keys: int64 tensors of
    one shape with values in ``[0, 2^32)``)."""
    h = _mix32(torch.full_like(keys[0], int(seed) & _M32))
    for k in keys:
        h = _mix32(h ^ (k & _M32))
    return h


def fixed_negatives(users: Tensor, items: Tensor, replicas: Tensor, positives: Tensor,
                    num_items: int, seed: int, max_rounds: int = 1000) -> Tensor:
    """The fixed negative of each ``(users[s], items[s], replicas[s])`` (module docstring).

    Args:
        users, items, replicas: ``LongTensor [n]`` each.
        positives: ``[2, E]`` the training edges whose items are rejected per user.
        num_items: ``I``.
        seed: the objective's negative seed.
    """
    keys = torch.sort(positives[0] * num_items + positives[1]).values
    n = users.numel()
    neg = torch.empty(n, dtype=torch.long)
    todo = torch.arange(n)
    for t in range(max_rounds):
        u = users[todo]
        draw = counter_hash(seed, u, items[todo], replicas[todo],
                            torch.full_like(u, t)) % num_items
        q = u * num_items + draw
        bad = torch.zeros(todo.numel(), dtype=torch.bool)
        if keys.numel():
            pos = torch.searchsorted(keys, q).clamp(max=keys.numel() - 1)
            bad = keys[pos] == q
        neg[todo[~bad]] = draw[~bad]
        todo = todo[bad]
        if todo.numel() == 0:
            return neg
    _raise_full(positives, num_items, int(users.max()) + 1)
