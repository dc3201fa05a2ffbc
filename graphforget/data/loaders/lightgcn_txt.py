"""LightGCN / NGCF text format: one line per user, ``user item item ...`` (0-based ids).

A folder holds ``train.txt``, ``test.txt`` and optionally ``validation.txt`` (or ``valid.txt``).
Ids are already contiguous; ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``), when
present, give the raw ids. Every file may instead be gzip-compressed (``train.txt.gz`` …).
"""
from __future__ import annotations

import gzip
from itertools import chain
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..graph import InteractionGraph
from ._fast import Fallback, id_list, lightgcn_pairs
from ._table import check_file, gc_paused, use_fast_path


#: largest id accepted (an embedding table past it could not be built); larger ids are refused
MAX_ID = 2**31 - 1


def _read_bytes(path: Path) -> bytes:
    """Bytes of a plain or ``.gz`` file; ``ValueError`` naming the file if unreadable."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # a damaged .gz
        raise ValueError(f"{path}: unreadable ({exc})") from None


def _read_text(path: Path) -> str:
    """Text of a plain or ``.gz`` file: UTF-8, a byte-order mark ignored; ``ValueError``
    naming the file and line of the first byte that is not UTF-8."""
    return _decode(path, _read_bytes(path))


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); expected "
                         "integer ids 'user item item ...'") from None


@gc_paused
def read_lightgcn_file(path: str | Path) -> Tensor:
    """Edges ``[2, m]`` of one file (plain or ``.gz``; UTF-8, a byte-order mark ignored).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming file and line on
    bad input (not UTF-8, not integers, negative ids, ids above :data:`MAX_ID`).

    A line ``u`` with no items contributes no edge. Parsed with numpy on the file's bytes
    (:func:`._fast.lightgcn_pairs`); a file with anything but ASCII digits and white space, or
    an id above :data:`MAX_ID`, goes through the reference tokeniser below (same result, or the
    error with its line).
    """
    path = check_file(path)
    data = _read_bytes(path)
    if use_fast_path():
        try:
            return torch.from_numpy(lightgcn_pairs(data, MAX_ID))
        except Fallback:
            pass
    lines = _decode(path, data).splitlines()
    tokens = [line.split() for line in lines]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    try:
        ids = np.fromiter(map(int, chain.from_iterable(tokens)), dtype=np.int64, count=int(counts.sum()))
    except (ValueError, OverflowError):  # error path only: find the offending line
        for lineno, parts in enumerate(tokens, 1):
            try:
                values = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected integer ids 'user item item ...', "
                                 f"got {lines[lineno - 1].strip()[:80]!r}") from None
            if any(abs(v) > MAX_ID for v in values):
                raise ValueError(f"{path}:{lineno}: id too large (at most {MAX_ID}) in "
                                 f"{lines[lineno - 1].strip()[:80]!r}") from None
        raise
    for bad, what in ((ids < 0, "negative id"), (ids > MAX_ID, f"id too large (at most {MAX_ID})")):
        if ids.size and bad.any():
            pos = int(np.flatnonzero(bad)[0])
            lineno = int(np.searchsorted(np.cumsum(counts), pos, side="right")) + 1
            raise ValueError(f"{path}:{lineno}: {what} in {lines[lineno - 1].strip()[:80]!r}")
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
    data = _read_bytes(path)
    if use_fast_path():
        try:
            return id_list(data, MAX_ID)
        except Fallback:
            pass
    ids: dict[int, str] = {}
    for lineno, line in enumerate(_decode(path, data).splitlines(), 1):
        parts = line.split()
        if lineno == 1 and parts[:1] == ["org_id"]:
            continue
        if len(parts) < 2:
            continue
        try:
            remap = int(parts[-1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'org_id remap_id', got "
                             f"{line.strip()[:80]!r}") from None
        if not 0 <= remap <= MAX_ID:
            raise ValueError(f"{path}:{lineno}: remap_id out of range 0..{MAX_ID} in "
                             f"{line.strip()[:80]!r}")
        ids[remap] = parts[0]
    return [ids.get(k, str(k)) for k in range(max(ids) + 1)] if ids else None


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` by one in-place sort (numpy >= 2.3's hash-based ``np.unique`` is
    several times slower on a million int64 keys)."""
    keys.sort()
    if keys.size < 2:
        return keys
    keep = np.empty(keys.size, dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def load_lightgcn_txt(folder: str | Path, name: Optional[str] = None) -> InteractionGraph:
    """Load a LightGCN-format folder into an :class:`InteractionGraph` (duplicates in
    ``train.txt`` are dropped; held-out edges that repeat a training edge are dropped too).
    Each file may be plain text or gzip (``train.txt.gz`` …)."""
    folder = Path(folder)
    train_path = _find(folder, "train.txt")
    if train_path is None:
        raise FileNotFoundError(f"{folder}: no train.txt (LightGCN text format)")
    train = read_lightgcn_file(train_path)
    if train.shape[1] == 0:
        raise ValueError(f"{train_path}: no training interactions (expected lines "
                         "'user item item ...')")
    valid_path = _find(folder, "validation.txt", "valid.txt")
    test_path = _find(folder, "test.txt")
    empty = torch.zeros(2, 0, dtype=torch.long)
    valid = read_lightgcn_file(valid_path) if valid_path else empty
    test = read_lightgcn_file(test_path) if test_path else empty
    user_ids = _read_id_list(_find(folder, "user_list.txt"))
    item_ids = _read_id_list(_find(folder, "item_list.txt"))
    parts = [e.numpy() for e in (train, valid, test) if e.numel()]
    num_users = max(max(int(e[0].max()) for e in parts) + 1, len(user_ids or []))
    num_items = max(max(int(e[1].max()) for e in parts) + 1, len(item_ids or []))
    # sorted distinct (user, item) keys, in numpy on the tensors' memory (no extra copies)
    uniq = _sorted_unique(train.numpy()[0] * num_items + train.numpy()[1])
    del train, parts

    def edges_of(keys: np.ndarray) -> Tensor:
        return torch.from_numpy(np.stack([keys // num_items, keys % num_items]))

    def held_out(e: Tensor) -> Tensor:
        k = e.numpy()[0] * num_items + e.numpy()[1]
        if uniq.size and k.size:  # drop pairs that are training edges (binary search)
            at = np.minimum(np.searchsorted(uniq, k), uniq.size - 1)
            k = k[uniq[at] != k]
        return edges_of(_sorted_unique(k))

    return InteractionGraph(num_users, num_items, edges_of(uniq), held_out(valid), held_out(test),
                            user_ids=user_ids, item_ids=item_ids, name=name or folder.name)
