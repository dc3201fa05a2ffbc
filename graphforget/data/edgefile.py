"""The one reader of edge files: ``user item`` per line, for every command that takes ``--edges``.

One pair per line, separated by whitespace, a comma or a tab; blank lines and ``#`` comments
are skipped; a UTF-8 byte-order mark is ignored. :func:`read_pairs` returns the raw id strings
(the deletion service maps them through its store); :func:`read_edges` parses internal integer
ids (``graphforget unlearn`` / ``audit``, and the files ``graphforget unlearn`` writes).
Every problem is one ``ValueError`` (or ``FileNotFoundError``) naming the file and line.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Raw ``(user, item)`` id pairs of an edge file (module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected an edges file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such edges file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); "
                         "expected 'user item' per line") from None
    pairs, bad = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        parts = [p for p in re.split(r"[,\s]+", body) if p]
        if len(parts) != 2:
            bad.append(f"{path}:{lineno}: {line.strip()[:80]!r}")
            continue
        pairs.append((parts[0], parts[1]))
    if bad:
        raise ValueError(f"malformed edges file, expected 'user item' per line ({len(bad)} bad "
                         f"lines): {bad[:10]}")
    if not pairs:
        raise ValueError(f"{path}: no (user, item) pairs")
    return pairs


def read_edges(path: str | os.PathLike) -> Tensor:
    """Internal-id edges ``LongTensor [2, m]`` of an edge file (non-negative integers)."""
    pairs = read_pairs(path)
    bad = [f"{u} {i}" for u, i in pairs if not (u.isdigit() and i.isdigit())]
    if bad:
        raise ValueError(f"{path}: expected internal ids (non-negative integers), got "
                         f"{len(bad)} other pairs, first: {bad[:5]}")
    huge = [f"{u} {i}" for u, i in pairs if len(u) > 18 or len(i) > 18]
    if huge:
        raise ValueError(f"{path}: an id is too large for an internal id, first: {huge[0][:60]!r}")
    return torch.tensor([[int(u), int(i)] for u, i in pairs], dtype=torch.long).t().contiguous()


__all__ = ["read_pairs", "read_edges"]
