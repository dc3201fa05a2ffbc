"""Readers for interaction files; each returns :class:`Interactions` or a split graph.

==========================  =====================================================
:func:`load_lightgcn_txt`   LightGCN / NGCF text folder → :class:`InteractionGraph`
:func:`load_recbole_inter`  RecBole atomic ``.inter``
:func:`load_movielens`      ``ratings.csv`` / ``ratings.dat`` / ``u.data``
:func:`load_csv`            any delimited file, columns by name or index
:func:`load_bookcrossing`   ``BX-Book-Ratings.csv``
:func:`load_amazon_ratings` headerless ``user,item,rating,timestamp``
:func:`load_lastfm`         ``user item count`` (LightGCN-PyTorch's lastfm)
==========================  =====================================================

All raise ``FileNotFoundError`` for a missing path and ``ValueError`` naming file and line for
malformed input; ``*.gz`` files are read transparently.

Parsing is vectorised (numpy on the file's bytes, :mod:`._fast`; about 0.1–0.5 s and under
150 MB for a million interactions); input it cannot reproduce exactly — quoted separators,
unusual number syntax, any malformed row — goes through the reference :mod:`csv` / per-token
parser, with the same result or the same error.
"""
from ._table import align
from .amazon import load_amazon_ratings
from .bookcrossing import load_bookcrossing
from .delimited import load_csv, sniff_separator
from .lastfm import load_lastfm
from .lightgcn_txt import load_lightgcn_txt, read_lightgcn_file
from .movielens import load_movielens
from .recbole_inter import load_recbole_inter

__all__ = ["load_lightgcn_txt", "read_lightgcn_file", "load_recbole_inter", "load_movielens",
           "load_csv", "sniff_separator", "load_bookcrossing", "load_amazon_ratings",
           "load_lastfm", "align"]
