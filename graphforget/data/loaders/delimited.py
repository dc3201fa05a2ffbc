"""Generic delimited text (CSV / TSV / semicolon-separated) with named or numbered columns."""
from __future__ import annotations

import os
from typing import Optional

from ..interactions import Interactions
from ._table import (check_file, check_width, column_index, from_columns, open_text, read_table,
                     vectorised)

SNIFF_SEPARATORS = (",", "\t", ";")


def sniff_separator(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The separator among ``, \\t ;`` that occurs most often in the first line."""
    p = check_file(path)
    with open_text(p, encoding) as f:
        first = f.readline()
    counts = [first.count(s) for s in SNIFF_SEPARATORS]
    if max(counts) == 0:
        raise ValueError(f"{p}:1: cannot tell the separator (none of ',', '\\t', ';' in "
                         f"{first.strip()[:80]!r}); pass sep=")
    return SNIFF_SEPARATORS[counts.index(max(counts))]


@vectorised
def load_csv(path: str | os.PathLike, user_col: str | int, item_col: str | int,
             rating_col: Optional[str | int] = None, time_col: Optional[str | int] = None,
             sep: Optional[str] = None, encoding: str = "utf-8", header: bool = True) -> Interactions:
    """Read a delimited file whose columns are given by header name (or 0-based index).

    Args:
        path: the file (``.gz`` is decompressed).
        user_col, item_col: user and item id columns.
        rating_col, time_col: optional rating (float) and timestamp (integer) columns.
        sep: one-character separator; ``None`` sniffs ``,`` / ``\\t`` / ``;`` from the first line.
        encoding: text encoding.
        header: whether the first line names the columns; without one, columns are indices.

    Fields may be quoted (``"a;b"``). Every row must have as many fields as the header (or,
    headerless, as the first row).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming file and line, for an unknown column name, a row with the wrong
            number of fields, or a non-numeric rating / timestamp.
    """
    p = check_file(path)
    sep = sniff_separator(p, encoding) if sep is None else sep
    if len(sep) != 1:
        raise ValueError(f"sep must be one character, got {sep!r}")
    table = read_table(p, sep, header=header, encoding=encoding)
    check_width(table)
    cols = [None if c is None else column_index(table, c, what)
            for c, what in ((user_col, "user"), (item_col, "item"), (rating_col, "rating"),
                            (time_col, "timestamp"))]
    return from_columns(table, *cols,
                        rating_name=str(rating_col), time_name=str(time_col))
