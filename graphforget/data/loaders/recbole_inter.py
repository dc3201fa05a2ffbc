"""RecBole atomic ``.inter`` files.

A tab-separated file whose header names each field with its type, e.g.::

    user_id:token	item_id:token	rating:float	timestamp:float
    196	242	3	881250949

Fields are matched by the name before ``:`` (``user_id``, ``item_id``, ``rating``,
``timestamp`` by default); ``rating`` and ``timestamp`` are optional and read only when present.
Other fields (``review:token_seq`` …) are ignored. Quotes carry no meaning in atomic files.
"""
from __future__ import annotations

import csv
import os

from ..interactions import Interactions
from ._table import check_width, column_index, from_columns, read_table, vectorised


@vectorised
def load_recbole_inter(path: str | os.PathLike, user_field: str = "user_id",
                       item_field: str = "item_id", rating_field: str = "rating",
                       time_field: str = "timestamp") -> Interactions:
    """Read a RecBole ``.inter`` file into :class:`~graphforget.data.Interactions`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming file and line, for a missing user/item field, a row with the wrong
            number of fields, or a non-numeric rating / timestamp.
    """
    table = read_table(path, "\t", header=True, quoting=csv.QUOTE_NONE)
    names = table.header = [h.split(":", 1)[0] for h in table.header]  # drop the ':type'
    check_width(table)
    u = column_index(table, user_field, "user")
    i = column_index(table, item_field, "item")
    r = names.index(rating_field) if rating_field in names else None
    t = names.index(time_field) if time_field in names else None
    return from_columns(table, u, i, r, t, rating_name=rating_field, time_name=time_field)
