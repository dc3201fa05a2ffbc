"""Last.fm (HetRec 2011) listening counts as LightGCN-PyTorch ships them: ``data1.txt`` (train)
and ``test1.txt``, tab-separated ``user item count`` lines without header."""
from __future__ import annotations

import os

from ..interactions import Interactions
from ._table import check_width, from_columns, read_table, vectorised


@vectorised
def load_lastfm(path: str | os.PathLike) -> Interactions:
    """Read one ``user<TAB>item<TAB>count`` file; the play count becomes ``ratings``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming file and line, for rows without exactly 3 fields or a non-numeric
            count.
    """
    table = read_table(path, "\t", header=False)
    check_width(table, 3)
    return from_columns(table, 0, 1, 2, rating_name="count")
