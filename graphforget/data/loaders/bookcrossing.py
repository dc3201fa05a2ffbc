"""Book-Crossing (Ziegler et al. 2005) ``BX-Book-Ratings.csv``.

Semicolon-separated, every field quoted, ISO-8859-1 encoded, header
``"User-ID";"ISBN";"Book-Rating"``. Ratings are 1–10 (explicit) or 0 (implicit interaction);
they are kept as given — filter with :func:`graphforget.data.filters.implicit` /
:func:`~graphforget.data.filters.binarize`.
"""
from __future__ import annotations

import os

from ..interactions import Interactions
from ._table import check_width, column_index, from_columns, read_table, vectorised


@vectorised
def load_bookcrossing(path: str | os.PathLike, encoding: str = "iso-8859-1") -> Interactions:
    """Read ``BX-Book-Ratings.csv`` (users, ISBNs as raw item ids, ratings; no timestamps).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming file and line, for missing columns, wrong field counts or a
            non-numeric rating.
    """
    table = read_table(path, ";", header=True, encoding=encoding)
    check_width(table)
    cols = [column_index(table, c, w) for c, w in
            (("User-ID", "user"), ("ISBN", "item"), ("Book-Rating", "rating"))]
    return from_columns(table, *cols, rating_name="Book-Rating")
