"""LightGCN / NGCF text format: one line per user, ``user item item ...`` (0-based ids).

A folder holds ``train.txt``, ``test.txt`` and optionally ``validation.txt`` (or ``valid.txt``).
Ids are already contiguous; ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``), when
present, give the raw ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ..graph import InteractionGraph


def read_lightgcn_file(path: str | Path) -> Tensor:
    """Edges ``[2, m]`` of one file. Raises ``ValueError`` naming file and line on bad input."""
    path = Path(path)
    users: list[int] = []
    items: list[int] = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected integer ids 'user item item ...', "
                                 f"got {line.strip()[:80]!r}") from None
            if min(ids) < 0:
                raise ValueError(f"{path}:{lineno}: negative id in {line.strip()[:80]!r}")
            users.extend([ids[0]] * (len(ids) - 1))
            items.extend(ids[1:])
    return torch.tensor([users, items], dtype=torch.long).view(2, -1)


def _read_id_list(path: Path) -> Optional[list[str]]:
    if not path.exists():
        return None
    ids: dict[int, str] = {}
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if lineno == 1 and parts[:1] == ["org_id"]:
                continue
            if len(parts) < 2:
                continue
            ids[int(parts[-1])] = parts[0]
    return [ids.get(k, str(k)) for k in range(max(ids) + 1)] if ids else None


def load_lightgcn_txt(folder: str | Path, name: Optional[str] = None) -> InteractionGraph:
    """Load a LightGCN-format folder into an :class:`InteractionGraph` (duplicates in
    ``train.txt`` are dropped; held-out edges that repeat a training edge are dropped too)."""
    folder = Path(folder)
    train_path = folder / "train.txt"
    if not train_path.exists():
        raise FileNotFoundError(f"{folder}: no train.txt (LightGCN text format)")
    train = read_lightgcn_file(train_path)
    valid_path = next((folder / n for n in ("validation.txt", "valid.txt") if (folder / n).exists()), None)
    valid = read_lightgcn_file(valid_path) if valid_path else torch.zeros(2, 0, dtype=torch.long)
    test = read_lightgcn_file(folder / "test.txt") if (folder / "test.txt").exists() else torch.zeros(2, 0, dtype=torch.long)
    user_ids = _read_id_list(folder / "user_list.txt")
    item_ids = _read_id_list(folder / "item_list.txt")
    all_e = torch.cat([train, valid, test], 1)
    num_users = max(int(all_e[0].max()) + 1, len(user_ids or []))
    num_items = max(int(all_e[1].max()) + 1, len(item_ids or []))
    keys = train[0] * num_items + train[1]
    uniq = torch.unique(keys)
    train = torch.stack([uniq // num_items, uniq % num_items])

    def held_out(e: Tensor) -> Tensor:
        k = e[0] * num_items + e[1]
        k = torch.unique(k[~torch.isin(k, uniq)])
        return torch.stack([k // num_items, k % num_items])

    return InteractionGraph(num_users, num_items, train, held_out(valid), held_out(test),
                            user_ids=user_ids, item_ids=item_ids, name=name or folder.name)
