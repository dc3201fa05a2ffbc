"""Amazon review ratings-only CSV (McAuley et al.), e.g. ``ratings_Books.csv`` /
``Electronics.csv``: headerless ``user,item,rating,timestamp``."""
from __future__ import annotations

import os

from ..interactions import Interactions
from ._table import check_width, from_columns, read_table, vectorised


@vectorised
def load_amazon_ratings(path: str | os.PathLike) -> Interactions:
    """Read a headerless ``user,item,rating,timestamp`` CSV (ratings 1–5, unix seconds).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming file and line, for rows without exactly 4 fields or a non-numeric
            rating / timestamp.
    """
    table = read_table(path, ",", header=False)
    check_width(table, 4)
    return from_columns(table, 0, 1, 2, 3)
