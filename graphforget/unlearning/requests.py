"""Building deletion requests and method specs: seeded deletion samples, ``name:key=value``."""
from __future__ import annotations

import torch

from ..data.graph import InteractionGraph

DELETION_KINDS = ("random", "flip", "users")


def parse_method(spec: str) -> tuple[str, dict]:
    """``"ifru:k=1,damping=0.01"`` → ``("ifru", {"k": 1, "damping": 0.01})``; values become
    ints, floats or booleans (``true`` / ``false``) where they parse as such. ``ValueError``
    for an option without ``=`` or an empty name."""
    name, _, rest = spec.partition(":")
    if not name.strip():
        raise ValueError(f"method spec {spec!r}: no method name")
    opts: dict = {}
    for part in filter(None, rest.split(",")):
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"method spec {spec!r}: option {part!r} is not KEY=VALUE")
        for cast in (int, float):
            try:
                opts[key.strip()] = cast(val)
                break
            except ValueError:
                continue
        else:
            opts[key.strip()] = {"true": True, "false": False}.get(val.lower(), val)
    return name.strip().lower(), opts


def deletion_edges(graph: InteractionGraph, kind: str, amount: float, seed: int) -> torch.Tensor:
    """Seeded training edges to forget: ``random`` / ``flip`` — a fraction ``0 < amount <= 1``
    of all edges; ``users`` — every edge of ``amount`` random users with edges (a count
    ``>= 1``, or a fraction of them when ``amount < 1``)."""
    gen = torch.Generator().manual_seed(seed)
    if kind not in DELETION_KINDS:
        raise ValueError(f"unknown deletion kind {kind!r}; choose from {DELETION_KINDS}")
    if not amount > 0 or (kind != "users" and amount > 1):
        raise ValueError(f"{kind} deletion: amount must be in (0, 1]{' or a count' if kind == 'users' else ''}, got {amount}")
    if kind in ("random", "flip"):
        m = max(1, int(round(amount * graph.num_train)))
        return graph.train_edges[:, torch.randperm(graph.num_train, generator=gen)[:m]]
    active = torch.unique(graph.train_edges[0])
    n = int(amount) if amount >= 1 else max(1, int(round(amount * active.numel())))
    if n > active.numel():
        raise ValueError(f"users deletion: {n} users asked, the graph has {active.numel()} with edges")
    users = active[torch.randperm(active.numel(), generator=gen)[:n]]
    return graph.user_edges(users)


__all__ = ["parse_method", "deletion_edges", "DELETION_KINDS"]
