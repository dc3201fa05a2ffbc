"""Shared machinery of the delimited-text loaders: read rows, check them, map raw ids.

Two parsers with the same results. The vectorised one (:mod:`._fast`: field offsets found on
the file's bytes with numpy, numbers converted by digit position, ids by ``np.unique`` /
first-occurrence tables, raw ids decoded once per distinct id) is tried first. The reference
one reads the file with :mod:`csv` into a list of rows, converts whole columns with numpy and
maps raw ids in order of first appearance; it runs when the fast path reports
:class:`~._fast.Fallback` (quotes inside fields, NUL bytes, exotic number syntax, and every
malformed file: its errors name the file and its 1-based line number). Loaders wrapped in
:func:`vectorised` retry with the reference parser on ``Fallback``;
:func:`reference_parser` forces it (tests, benchmarks).
"""
from __future__ import annotations

import contextlib
import contextvars
import csv
import functools
import gc
import gzip
import io
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..interactions import Interactions
from ._fast import Fallback, FastTable

#: set while the reference (csv) parser is forced: by :func:`reference_parser` or a retry
_REFERENCE = contextvars.ContextVar("graphforget_reference_parser", default=False)


@contextlib.contextmanager
def reference_parser():
    """Within this block every loader uses the reference :mod:`csv` / per-token parser."""
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def use_fast_path() -> bool:
    return not _REFERENCE.get()


def vectorised(loader):
    """Run ``loader`` with the vectorised parser; on :class:`Fallback` run it again with the
    reference parser (which gives the same result, or the error with file and line)."""
    @functools.wraps(loader)
    def wrapper(*args, **kwargs):
        if not use_fast_path():
            return loader(*args, **kwargs)
        try:
            return loader(*args, **kwargs)
        except Fallback:
            with reference_parser():
                return loader(*args, **kwargs)
    return wrapper


def read_bytes(path: Path) -> bytes:
    """The bytes of a file, ``*.gz`` decompressed; :class:`Fallback` if that fails (the
    reference reader then raises its own error)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError):
        raise Fallback("unreadable") from None


def gc_paused(fn):
    """Run ``fn`` with the cyclic garbage collector paused: building 10^5–10^6 small row lists
    otherwise triggers repeated full collections that cost more than the parsing itself."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return wrapper


def check_file(path: str | os.PathLike) -> Path:
    """``Path`` of an existing regular file, else ``FileNotFoundError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    return p


def open_text(path: Path, encoding: str = "utf-8"):
    """Open a text file for reading; ``*.gz`` files are decompressed transparently."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, "r", encoding=encoding, newline="")


class Table:
    """Rows of a delimited file. ``line_of(r)`` is the 1-based line of data row ``r``."""

    def __init__(self, path: Path, header: Optional[list[str]], rows: list[list[str]],
                 lines: np.ndarray, header_line: int = 0) -> None:
        self.path, self.header, self.rows, self.lines = path, header, rows, lines
        self.header_line = header_line
        self._columns: Optional[list[tuple]] = None

    @gc_paused
    def column(self, idx: int) -> tuple:
        """Column ``idx`` (of a width-checked table) as a tuple of strings."""
        if self._columns is None:
            self._columns = list(zip(*self.rows))
        return self._columns[idx]

    @property
    def width(self) -> int:
        return len(self.header) if self.header is not None else len(self.rows[0]) if self.rows else 0

    def line_of(self, r: int) -> int:
        return int(self.lines[r])

    def error(self, r: int, what: str) -> ValueError:
        row = self.rows[r]
        return ValueError(f"{self.path}:{self.line_of(r)}: {what} (row {row[:8]!r})")


@gc_paused
def read_table(path: str | os.PathLike, sep: str, header: bool, encoding: str = "utf-8",
               quoting: int = csv.QUOTE_MINIMAL, replace: Optional[str] = None) -> Table | FastTable:
    """Read a delimited file into a :class:`~._fast.FastTable` (vectorised) or, where that does
    not apply or :func:`reference_parser` is active, a :class:`Table` of :mod:`csv` rows;
    blank lines are skipped.

    ``replace`` (a multi-character separator such as MovieLens-1M's ``::``) is rewritten to
    ``sep`` before parsing, since :mod:`csv` only splits on one character.
    """
    p = check_file(path)
    if use_fast_path() and quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
        try:
            return FastTable(p, read_bytes(p), sep, header, encoding,
                             quoting=quoting == csv.QUOTE_MINIMAL, replace=replace)
        except Fallback:
            pass

    def parse(track_lines: bool) -> tuple[list[list[str]], list[int]]:
        with open_text(p, encoding) as f:
            if replace is not None:
                f = io.StringIO(f.read().replace(replace, sep))
            reader = csv.reader(f, delimiter=sep, quotechar='"', quoting=quoting, strict=True)
            try:
                if not track_lines:
                    rows = list(reader)
                    # one record per line (no quoted newlines): line of row r is r + 1
                    if reader.line_num == len(rows):
                        return rows, list(range(1, len(rows) + 1))
                    return parse(True)
                rows, lines = [], []
                for row in reader:
                    rows.append(row)
                    lines.append(reader.line_num)
                return rows, lines
            except csv.Error as exc:
                raise ValueError(f"{p}:{reader.line_num}: malformed {sep!r}-separated text: "
                                 f"{exc}") from None

    try:
        rows, lines = parse(False)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                         "pass the right encoding") from None
    if not all(rows):  # blank lines parse as []
        keep = [r for r, row in enumerate(rows) if row]
        rows, lines = [rows[r] for r in keep], [lines[r] for r in keep]
    head, head_line = None, 0
    line_arr = np.asarray(lines, dtype=np.int64)
    if header:
        if not rows:
            raise ValueError(f"{p}: empty file, expected a header line")
        head, head_line = [h.strip() for h in rows[0]], int(line_arr[0])
        rows, line_arr = rows[1:], line_arr[1:]
    return Table(p, head, rows, line_arr, head_line)


def check_width(table: Table, ncols: Optional[int] = None) -> int:
    """Require every row to have ``ncols`` fields (default: the header's or the first row's)."""
    if isinstance(table, FastTable):  # rows all have table.width fields
        if ncols is not None and ncols != table.width:
            raise Fallback("width")
        return table.width
    if not table.rows:
        raise ValueError(f"{table.path}: no interaction rows")
    if ncols is None:
        ncols = len(table.header) if table.header is not None else len(table.rows[0])
    widths = np.fromiter(map(len, table.rows), dtype=np.int64, count=len(table.rows))
    bad = np.flatnonzero(widths != ncols)
    if bad.size:
        r = int(bad[0])
        raise table.error(r, f"expected {ncols} columns, found {int(widths[r])}")
    return ncols


def column_index(table: Table, name: str | int, what: str) -> int:
    """Position of a column given by header name (or by index for headerless files)."""
    if isinstance(name, int):
        width = table.width
        if not 0 <= name < max(width, 1):
            raise ValueError(f"{table.path}:1: {what} column index {name} out of range 0..{width - 1}")
        return name
    if table.header is None:
        raise ValueError(f"{table.path}: {what} column {name!r} given by name but the file has "
                         "no header; pass a column index")
    if name not in table.header:
        raise ValueError(f"{table.path}:{table.header_line}: no {what} column {name!r} in "
                         f"header {table.header}")
    return table.header.index(name)


def numeric(table: Table, values: Sequence[str], name: str, integer: bool = False) -> np.ndarray:
    """Parse a string column as finite float64 (int64 with ``integer``), naming the bad line."""
    n = len(values)
    if integer:
        try:  # exact: timestamps must not pass through float64
            return np.fromiter(map(int, values), dtype=np.int64, count=n)
        except (ValueError, OverflowError):
            pass  # '1.5e9', '12.0' or garbage: parse as float below, then check integrality
    try:
        out = np.fromiter(map(float, values), dtype=np.float64, count=n)
    except ValueError:  # error path only: find the first unparsable value
        for r, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise table.error(r, f"non-numeric {name} {v!r}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise table.error(int(bad[0]), f"{name} {values[bad[0]]!r} is not a finite number")
    if integer:
        frac = np.flatnonzero((out != np.floor(out)) | (np.abs(out) >= 2.0 ** 63))
        if frac.size:
            raise table.error(int(frac[0]), f"{name} {values[frac[0]]!r} is not an integer")
        return out.astype(np.int64)
    return out


@gc_paused
def factorize(raw: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """Contiguous ids in order of first appearance: ``raw[r] == names[ids[r]]`` (ids stripped
    of surrounding white space)."""
    vocab: dict[str, int] = {}
    ids = np.fromiter(map(lambda x: vocab.setdefault(x, len(vocab)), map(str.strip, raw)),
                      dtype=np.int64)
    return ids, list(vocab)


def build(table: Table, users: Sequence[str], items: Sequence[str], ratings: Optional[np.ndarray] = None,
          timestamps: Optional[np.ndarray] = None) -> Interactions:
    """Check ids are non-empty, factorize them and wrap the columns in :class:`Interactions`."""
    import torch

    u, user_ids = factorize(users)
    i, item_ids = factorize(items)
    for name, ids, names in (("user id", u, user_ids), ("item id", i, item_ids)):
        if "" in names:
            raise table.error(int(np.flatnonzero(ids == names.index(""))[0]), f"empty {name}")
    return Interactions(
        users=torch.from_numpy(u), items=torch.from_numpy(i),
        ratings=None if ratings is None else torch.from_numpy(ratings.astype(np.float32)),
        timestamps=None if timestamps is None else torch.from_numpy(timestamps.astype(np.int64)),
        user_ids=user_ids, item_ids=item_ids, source=str(table.path))


def from_columns(table: Table, user: int, item: int, rating: Optional[int] = None,
                 timestamp: Optional[int] = None, rating_name: str = "rating",
                 time_name: str = "timestamp") -> Interactions:
    """:class:`Interactions` from column positions of a width-checked table."""
    if isinstance(table, FastTable):
        import torch

        r = None if rating is None else table.numeric(rating)
        t = None if timestamp is None else table.numeric(timestamp, integer=True)
        u, user_ids = table.ids(user)
        i, item_ids = table.ids(item)
        return Interactions(
            users=torch.from_numpy(u), items=torch.from_numpy(i),
            ratings=None if r is None else torch.from_numpy(r.astype(np.float32)),
            timestamps=None if t is None else torch.from_numpy(t),
            user_ids=user_ids, item_ids=item_ids, source=str(table.path))
    r = None if rating is None else numeric(table, table.column(rating), rating_name)
    t = None if timestamp is None else numeric(table, table.column(timestamp), time_name, integer=True)
    return build(table, table.column(user), table.column(item), r, t)


def align(tables: Sequence[Interactions]) -> list[Interactions]:
    """Put several tables (e.g. a train and a test file) into one shared raw-id space.

    Ids of the first table come first, in its order; ids first seen in later tables follow.
    """
    import torch

    def joint(names: Iterable[Sequence[str]]) -> tuple[list[str], list[np.ndarray]]:
        vocab: dict[str, int] = {}
        maps = []
        for ids in names:  # one entry per distinct id, not per row
            maps.append(np.asarray([vocab.setdefault(x, len(vocab)) for x in ids], dtype=np.int64))
        return list(vocab), maps

    user_ids, umaps = joint(t.user_ids for t in tables)
    item_ids, imaps = joint(t.item_ids for t in tables)
    out = []
    for t, um, im in zip(tables, umaps, imaps):
        out.append(Interactions(users=torch.from_numpy(um)[t.users], items=torch.from_numpy(im)[t.items],
                                ratings=t.ratings, timestamps=t.timestamps, user_ids=user_ids,
                                item_ids=item_ids, source=t.source))
    return out
