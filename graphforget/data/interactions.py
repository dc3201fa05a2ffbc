"""A flat table of user–item interactions with contiguous internal ids.

Loaders produce :class:`Interactions`; filters and splits map ``Interactions`` to
``Interactions``; :meth:`graphforget.data.InteractionGraph.from_splits` turns the
train / validation / test tables into a graph. Raw ids from the source file live only in
``user_ids`` / ``item_ids`` (internal id ``k`` ↔ raw id ``user_ids[k]``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass
class Interactions:
    """Interaction rows ``(users[r], items[r])`` with optional ``ratings`` and ``timestamps``.

    Args:
        users: ``LongTensor [n]`` internal user ids in ``0..num_users-1``.
        items: ``LongTensor [n]`` internal item ids in ``0..num_items-1``.
        ratings: optional ``FloatTensor [n]``: explicit rating, count, or 0/1 label.
        timestamps: optional ``LongTensor [n]``.
        user_ids / item_ids: raw ids (strings) indexed by internal id.
        num_users / num_items: size of the id spaces (defaults to ``len(user_ids)``).
    """

    users: Tensor
    items: Tensor
    ratings: Optional[Tensor] = None
    timestamps: Optional[Tensor] = None
    user_ids: Sequence[str] = field(default_factory=list)
    item_ids: Sequence[str] = field(default_factory=list)
    num_users: int = -1
    num_items: int = -1
    source: str = ""

    def __post_init__(self) -> None:
        self.users = torch.as_tensor(self.users, dtype=torch.long)
        self.items = torch.as_tensor(self.items, dtype=torch.long)
        n = self.users.numel()
        if self.items.numel() != n:
            raise ValueError(f"users ({n}) and items ({self.items.numel()}) differ in length")
        if self.ratings is not None:
            self.ratings = torch.as_tensor(self.ratings, dtype=torch.float32)
            if self.ratings.numel() != n:
                raise ValueError("ratings must have one value per interaction")
        if self.timestamps is not None:
            self.timestamps = torch.as_tensor(self.timestamps, dtype=torch.long)
            if self.timestamps.numel() != n:
                raise ValueError("timestamps must have one value per interaction")
        if self.num_users < 0:
            self.num_users = len(self.user_ids) if len(self.user_ids) else int(self.users.max()) + 1 if n else 0
        if self.num_items < 0:
            self.num_items = len(self.item_ids) if len(self.item_ids) else int(self.items.max()) + 1 if n else 0
        if n and (int(self.users.min()) < 0 or int(self.users.max()) >= self.num_users):
            raise ValueError("user ids out of range")
        if n and (int(self.items.min()) < 0 or int(self.items.max()) >= self.num_items):
            raise ValueError("item ids out of range")

    def __len__(self) -> int:
        return int(self.users.numel())

    def select(self, mask_or_index: Tensor) -> "Interactions":
        """Rows picked by a boolean mask or an index tensor; id spaces are kept."""
        pick = lambda t: None if t is None else t[mask_or_index]  # noqa: E731
        return replace(self, users=self.users[mask_or_index], items=self.items[mask_or_index],
                       ratings=pick(self.ratings), timestamps=pick(self.timestamps))

    def edge_index(self) -> Tensor:
        """``LongTensor [2, n]`` of ``(user, item)`` pairs."""
        return torch.stack([self.users, self.items])

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the rows in file order, ratings included when present."""
        h = hashlib.sha256()
        h.update(f"{self.num_users},{self.num_items};".encode())
        h.update(self.users.numpy().tobytes())
        h.update(self.items.numpy().tobytes())
        if self.ratings is not None:
            h.update(self.ratings.numpy().tobytes())
        return h.hexdigest()[:16]

    def stats(self) -> dict:
        n = len(self)
        dens = n / max(1, self.num_users * self.num_items)
        return {"users": self.num_users, "items": self.num_items, "interactions": n,
                "density": round(dens, 6), "sha256": self.fingerprint()}
