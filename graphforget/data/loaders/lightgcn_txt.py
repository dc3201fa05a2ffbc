"""LightGCN / NGCF text format: one line per user, ``user item item ...`` (0-based ids).

A folder holds ``train.txt``, ``test.txt`` and optionally ``validation.txt`` (or ``valid.txt``).
Ids are already contiguous; ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``), when
present, give the raw ids. Every file may instead be gzip-compressed (``train.txt.gz`` …).
"""
from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..graph import InteractionGraph
from ._table import check_file, gc_paused, open_text


@gc_paused
def read_lightgcn_file(path: str | Path) -> Tensor:
    """Edges ``[2, m]`` of one file (plain or ``.gz``). Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` naming file and line on bad input.

    The whole file is tokenised at once and the ids converted in one pass; a line ``u`` with
    no items contributes no edge.
    """
    path = check_file(path)
    with open_text(path) as f:
        lines = f.read().splitlines()
    tokens = [line.split() for line in lines]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    try:
        ids = np.fromiter(map(int, chain.from_iterable(tokens)), dtype=np.int64, count=int(counts.sum()))
    except ValueError:  # error path only: find the offending line
        for lineno, parts in enumerate(tokens, 1):
            try:
                [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected integer ids 'user item item ...', "
                                 f"got {lines[lineno - 1].strip()[:80]!r}") from None
        raise
    if ids.size and ids.min() < 0:
        pos = int(np.flatnonzero(ids < 0)[0])
        lineno = int(np.searchsorted(np.cumsum(counts), pos, side="right")) + 1
        raise ValueError(f"{path}:{lineno}: negative id in {lines[lineno - 1].strip()[:80]!r}")
    nonblank = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonblank]
    per_line = counts[nonblank] - 1
    users = np.repeat(ids[starts], per_line)
    is_item = np.ones(ids.size, dtype=bool)
    is_item[starts] = False
    return torch.from_numpy(np.stack([users, ids[is_item]])).view(2, -1)


def _find(folder: Path, *names: str) -> Optional[Path]:
    """First of ``names`` (or its ``.gz``) present in ``folder``."""
    for n in names:
        for cand in (folder / n, folder / f"{n}.gz"):
            if cand.is_file():
                return cand
    return None


def _read_id_list(path: Optional[Path]) -> Optional[list[str]]:
    if path is None:
        return None
    ids: dict[int, str] = {}
    with open_text(path) as f:
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
    ``train.txt`` are dropped; held-out edges that repeat a training edge are dropped too).
    Each file may be plain text or gzip (``train.txt.gz`` …)."""
    folder = Path(folder)
    train_path = _find(folder, "train.txt")
    if train_path is None:
        raise FileNotFoundError(f"{folder}: no train.txt (LightGCN text format)")
    train = read_lightgcn_file(train_path)
    valid_path = _find(folder, "validation.txt", "valid.txt")
    test_path = _find(folder, "test.txt")
    empty = torch.zeros(2, 0, dtype=torch.long)
    valid = read_lightgcn_file(valid_path) if valid_path else empty
    test = read_lightgcn_file(test_path) if test_path else empty
    user_ids = _read_id_list(_find(folder, "user_list.txt"))
    item_ids = _read_id_list(_find(folder, "item_list.txt"))
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
