"""MovieLens ratings in the three GroupLens layouts.

* ``ratings.csv`` (ml-latest, ml-latest-small, ml-25m …): header ``userId,movieId,rating,timestamp``;
* ``ratings.dat`` (ml-1m, ml-10m): ``UserID::MovieID::Rating::Timestamp``, no header;
* ``u.data`` (ml-100k): tab-separated ``user item rating timestamp``, no header.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..interactions import Interactions
from ._table import (check_file, check_width, column_index, from_columns, open_text, read_table,
                     vectorised)

MOVIELENS_FILES = ("ratings.csv", "ratings.dat", "u.data")


def _locate(path: Path) -> Path:
    if path.is_dir():
        for name in MOVIELENS_FILES:
            if (path / name).is_file():
                return path / name
        nested = sorted(p for name in MOVIELENS_FILES for p in path.glob(f"*/{name}"))
        if nested:
            return nested[0]
        raise FileNotFoundError(f"{path}: no MovieLens ratings file ({', '.join(MOVIELENS_FILES)})")
    return check_file(path)


def _layout(path: Path) -> str:
    if path.name in MOVIELENS_FILES:
        return path.name
    with open_text(path, "latin-1") as f:  # sniff the first line of a renamed file
        first = f.readline()
    if "::" in first:
        return "ratings.dat"
    if first.startswith("userId"):
        return "ratings.csv"
    if "\t" in first:
        return "u.data"
    raise ValueError(f"{path}:1: not a MovieLens ratings file (expected a ratings.csv header, "
                     f"'::' or tab separators), got {first.strip()[:80]!r}")


@vectorised
def load_movielens(path: str | os.PathLike) -> Interactions:
    """Read MovieLens ratings (``ratings.csv`` / ``ratings.dat`` / ``u.data``, detected by name,
    or by the first line for a renamed file). ``path`` may be the file or a folder holding it
    (directly or one level down, as the GroupLens zips unpack). Ratings and timestamps are kept.

    Raises:
        FileNotFoundError: no such file / no ratings file in the folder.
        ValueError: naming file and line, for a row with the wrong number of fields or a
            non-numeric rating / timestamp.
    """
    p = _locate(Path(path))
    layout = _layout(p)
    if layout == "ratings.csv":
        table = read_table(p, ",", header=True)
        check_width(table)
        cols = [column_index(table, c, w) for c, w in
                (("userId", "user"), ("movieId", "item"), ("rating", "rating"), ("timestamp", "timestamp"))]
        return from_columns(table, *cols)
    if layout == "ratings.dat":
        table = read_table(p, "\t", header=False, encoding="latin-1", replace="::")
    else:
        table = read_table(p, "\t", header=False, encoding="latin-1")
    check_width(table, 4)
    return from_columns(table, 0, 1, 2, 3)
