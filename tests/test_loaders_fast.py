"""The vectorised loaders give exactly what the previous implementation gave.

Three checks:

1. **Fingerprints** (sha256 of every output tensor in order, raw id lists, sizes) computed with
   the previous implementation (commit 8b7041b: :mod:`csv` rows and per-token Python) *before*
   the rewrite, on the real files in ``../shared/data`` and on files derived from them in other
   formats (Amazon, RecBole, Book-Crossing, ``ratings.dat``, ``u.data``, CRLF, gzip), including
   the splits and protocols built on the loaded tables. They live in ``EXPECTED``.
2. **Side by side with the previous parser**, which the loaders keep unchanged as their
   fallback (``reference_parser()`` forces it), on edge cases: quotes, blank lines, CR / CRLF,
   white space around ids, non-ASCII ids, signs, exponents, long integers, malformed rows (the
   error must be the same, naming the same file and line).
3. **A copy of the previous LightGCN tokeniser** (``_old_read_lightgcn``) on random files.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import time
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared
from graphforget.data import (leave_one_out, per_user_split, random_split, temporal_split,
                              to_graph)
from graphforget.data.loaders import (align, load_amazon_ratings, load_bookcrossing, load_csv,
                                      load_lastfm, load_lightgcn_txt, load_movielens,
                                      load_recbole_inter, read_lightgcn_file)
from graphforget.data.loaders.lightgcn_txt import _read_id_list
from graphforget.data.registry import load_dataset


# ------------------------------------------------------------------ digests
def _digest(*objs) -> str:
    h = hashlib.sha256()
    for o in objs:
        if o is None:
            h.update(b"<none>")
        elif isinstance(o, torch.Tensor):
            h.update(f"<t{o.dtype}{tuple(o.shape)}>".encode())
            h.update(o.contiguous().numpy().tobytes())
        elif isinstance(o, (list, tuple)):
            h.update(f"<l{len(o)}>".encode())
            h.update("\x00".join(map(str, o)).encode("utf-8", "surrogatepass"))
        else:
            h.update(f"<{o!r}>".encode())
    return h.hexdigest()[:16]


def fp_inter(x) -> str:
    return _digest(x.num_users, x.num_items, x.users, x.items, x.ratings, x.timestamps,
                   list(x.user_ids), list(x.item_ids))


def fp_graph(g) -> str:
    return _digest(g.num_users, g.num_items, g.train_edges, g.valid_edges, g.test_edges,
                   g.train_labels, g.valid_labels, g.test_labels, g.train_timestamps,
                   g.user_ids, g.item_ids, g.name)


# ------------------------------------------------------------------ derived files
def _ml_rows():
    with open(shared("ml-latest-small") / "ratings.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def derive(tmp: Path, name: str) -> Path:
    """Write the derived file ``name`` (from the real data) under ``tmp``; return its path."""
    tmp.mkdir(parents=True, exist_ok=True)
    if name == "amazon":
        p = tmp / "ratings_Books.csv"
        p.write_text("".join(f"A{int(u) * 7919:012X},{int(i):010d},{r},{t}\n"
                             for u, i, r, t in _ml_rows()))
    elif name == "dat":
        p = tmp / "dat" / "ratings.dat"
        p.parent.mkdir(exist_ok=True)
        p.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in _ml_rows()), encoding="latin-1")
    elif name == "udata":
        p = tmp / "ml-100k" / "u.data"
        p.parent.mkdir(exist_ok=True)
        p.write_text("".join(f"{u}\t{i}\t{int(float(r) + 0.5)}\t{t}\n" for u, i, r, t in _ml_rows()),
                     encoding="latin-1")
    elif name == "inter":
        p = tmp / "ml.inter"
        rows = _ml_rows()
        body = "".join(f"{u}\t{i}\t{r}\t{t}\tw{k % 13} \"q{k % 5}\"\n"
                       for k, (u, i, r, t) in enumerate(rows))
        p.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq\n" + body)
    elif name == "bx":
        p = tmp / "BX-Book-Ratings.csv"
        rows = _ml_rows()
        tail = lambda i: "\xe9" if int(i) % 7 == 0 else "X"  # noqa: E731
        body = "".join(f'"{u}";"{int(i):09d}{tail(i)}";"{int(float(r) * 2)}"\n' for u, i, r, _ in rows)
        p.write_bytes(('"User-ID";"ISBN";"Book-Rating"\n' + body).encode("iso-8859-1"))
    elif name == "crlf_gz":
        p = tmp / "crlf" / "ratings.csv.gz"
        p.parent.mkdir(exist_ok=True)
        lines = ["userId,movieId,rating,timestamp"] + [",".join(r) for r in _ml_rows()]
        text = "\r\n".join(line if k % 1000 else line + "\r\n" for k, line in enumerate(lines)) + "\r\n"
        with gzip.open(p, "wb") as f:
            f.write(text.encode())
    elif name == "gowalla25_crlf_gz":
        p = tmp / "g25"
        p.mkdir(exist_ok=True)
        src = shared("gowalla-25")
        for f in ("train.txt", "test.txt"):
            text = (src / f).read_text().replace("\n", "\r\n")
            with gzip.open(p / f"{f}.gz", "wb") as out:
                out.write(text.encode())
    else:
        raise KeyError(name)
    return p


def _split_digests(x) -> list[str]:
    out = []
    for parts in (random_split(x, seed=3), per_user_split(x, seed=0), per_user_split(x, (0.7, 0.0, 0.3), seed=5),
                  leave_one_out(x, seed=1), leave_one_out(x, seed=2, by_time=False), temporal_split(x)):
        out.extend(fp_inter(p) for p in parts)
    out.append(fp_graph(to_graph(*per_user_split(x, seed=0), name="t")))
    return out


def _case_lightgcn(name):
    def run(tmp):
        folder = shared(name)
        files = sorted(f.name for f in folder.iterdir() if f.name in ("train.txt", "test.txt", "validation.txt"))
        return [fp_graph(load_lightgcn_txt(folder))] + [_digest(read_lightgcn_file(folder / f)) for f in files]
    return run


def _case_ml_latest(tmp):
    p = shared("ml-latest-small") / "ratings.csv"
    x = load_movielens(p)
    return [fp_inter(x), fp_inter(load_movielens(p.parent)),
            fp_inter(load_csv(p, "userId", "movieId", "rating", "timestamp")),
            fp_inter(load_csv(p, 1, 0, rating_col=3)),
            fp_inter(load_csv(p, "movieId", "userId", time_col="timestamp"))] + _split_digests(x)


def _case_lastfm(tmp):
    folder = shared("lastfm")
    a, b = load_lastfm(folder / "data1.txt"), load_lastfm(folder / "test1.txt")
    aa, bb = align([a, b])
    return [fp_inter(a), fp_inter(b), fp_inter(aa), fp_inter(bb),
            fp_inter(load_csv(folder / "test1.txt", 1, 0, rating_col=2, header=False)),
            fp_graph(load_dataset(str(folder)))]


def _case_datasets(tmp):
    return [fp_graph(load_dataset(str(shared(n)), seed=s)) for n, s in
            (("ml-latest-small", 0), ("ml-latest-small", 1), ("gowalla-25", 0), ("ml100k", 0))]


def _case_derived(tmp):
    out = []
    out.append(fp_inter(load_amazon_ratings(derive(tmp, "amazon"))))
    out.append(fp_inter(load_movielens(derive(tmp, "dat"))))
    out.append(fp_inter(load_movielens(derive(tmp, "udata").parent.parent)))
    x = load_recbole_inter(derive(tmp, "inter"))
    out.append(fp_inter(x))
    out.append(fp_graph(load_dataset(str(tmp / "ml.inter"))))
    bx = derive(tmp, "bx")
    out.append(fp_inter(load_bookcrossing(bx)))
    out.append(fp_graph(load_dataset(str(bx))))
    out.append(fp_inter(load_csv(derive(tmp, "crlf_gz"), "userId", "movieId", "rating", "timestamp")))
    g = load_lightgcn_txt(derive(tmp, "gowalla25_crlf_gz"), name="g25")
    out.append(fp_graph(g))
    return out


def _case_id_lists(tmp):
    return [_digest(_read_id_list(shared(n) / f)) for n in ("gowalla", "ml100k")
            for f in ("user_list.txt", "item_list.txt")]


CASES = {
    "lightgcn-gowalla": _case_lightgcn("gowalla"),
    "lightgcn-gowalla-25": _case_lightgcn("gowalla-25"),
    "lightgcn-ml100k": _case_lightgcn("ml100k"),
    "id-lists": _case_id_lists,
    "ml-latest-small": _case_ml_latest,
    "lastfm": _case_lastfm,
    "datasets": _case_datasets,
    "derived": _case_derived,
}

# recorded with the previous implementation (commit 8b7041b) before the vectorised rewrite
EXPECTED: dict[str, list[str]] = {
    "lightgcn-gowalla": [
        "2a374c1a714f73e8", "773e8064b196eb57", "80a02aba7b160149", "41cadb0e3efbfd9d",
    ],
    "lightgcn-gowalla-25": [
        "e102c3c510277685", "29afafc03fccb5b3", "48d2f58d1b9536d7",
    ],
    "lightgcn-ml100k": [
        "458c0f854b0e3b93", "a44ca58e49369ffd", "0b1d3a1165d3d24c", "ef551ce5254f0a4b",
    ],
    "id-lists": [
        "79383c84d03125f9", "4e01d41a06771912", "934c91db0596be89", "8ee10e7b4f0b9b81",
    ],
    "ml-latest-small": [
        "a8ce176f875dd222", "a8ce176f875dd222", "a8ce176f875dd222", "879e880ba5fd744e",
        "7d5391fdc3aa692b", "fdb6cdc73f125dae", "165d5a9c6db71917", "b3f2576c55d694f3",
        "ec76adac9f5cb14b", "80d0ebfa1e062bcd", "a684878f674c4619", "761445cb5cf600b0",
        "f89eb5ee87dbb3bc", "f698705937dc419a", "cba5e6512af6b9d4", "6de818566f3e0122",
        "6b103e6146a666a0", "4305539cbe0947d2", "86df1c5a2823b94b", "0f1cd6d7c3730ef0",
        "5c852c58050b2f06", "9d29f7ea8d8a9e66", "e653597d57091ab0", "09fa9fd169c732a7",
    ],
    "lastfm": [
        "f6a146369d05a6d1", "129a3f78d7a1d37d", "aeef9baa8aefcb1e", "fcc585f7f83dd852",
        "3b8e8f157690e84f", "bcbd2e96b9423258",
    ],
    "datasets": [
        "bba4e63f7b3fa787", "d98fdd80de0ba718", "91e52ad9b819ec20", "458c0f854b0e3b93",
    ],
    "derived": [
        "11884ae997995338", "a8ce176f875dd222", "a8ce176f875dd222", "a8ce176f875dd222",
        "79fdbf6f30b84381", "e8ef70b5a5a9a6c1", "dc10d6d90bbf08ef", "a8ce176f875dd222",
        "5fc3a64e5625a843",
    ],
}


def compute_all(tmp: Path) -> dict[str, list[str]]:
    """Every case's digests (run once on the old code to fill ``EXPECTED``)."""
    return {name: run(tmp / name) for name, run in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fingerprints_unchanged(case, tmp_path):
    assert CASES[case](tmp_path) == EXPECTED[case]


# ------------------------------------------------------------------ fast path taken, budget
def _no_reference(monkeypatch):
    """Make any use of the reference parser fail the test."""
    import graphforget.data.loaders._table as table
    import graphforget.data.loaders.lightgcn_txt as lgcn

    def refuse(*a, **k):
        raise AssertionError("the reference parser ran")

    monkeypatch.setattr(table, "reference_parser", refuse)
    monkeypatch.setattr(table.FastTable, "__init__", _strict(table.FastTable.__init__))
    monkeypatch.setattr(lgcn, "_decode", refuse)


def _strict(init):
    from graphforget.data.loaders._fast import Fallback

    def wrapped(self, *a, **k):
        try:
            init(self, *a, **k)
        except Fallback as exc:
            raise AssertionError(f"fast path refused: {exc}") from None
    return wrapped


def test_real_files_take_the_vectorised_path(monkeypatch, tmp_path):
    _no_reference(monkeypatch)
    for name in ("gowalla-25", "ml100k"):
        load_lightgcn_txt(shared(name))
    load_movielens(shared("ml-latest-small"))
    load_lastfm(shared("lastfm") / "data1.txt")
    load_bookcrossing(derive(tmp_path, "bx"))
    load_amazon_ratings(derive(tmp_path, "amazon"))
    load_recbole_inter(derive(tmp_path, "inter"))
    load_movielens(derive(tmp_path, "dat"))
    load_csv(derive(tmp_path, "crlf_gz"), "userId", "movieId", "rating", "timestamp")


def _peak_mb(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_one_million_interactions_time_and_memory(tmp_path):
    """Gowalla (1,027,370 interactions in three files) and a 1M-row ratings.csv (MovieLens
    latest-small ten times): well under 200 MB of Python / numpy peak; time bounds are loose
    (shared 2-core CI machines), the benchmark has the figures."""
    g, peak = _peak_mb(lambda: load_lightgcn_txt(shared("gowalla")))
    assert g.num_train + g.valid_edges.shape[1] + g.test_edges.shape[1] > 1_000_000
    assert peak < 200, f"peak {peak:.0f} MB"
    src = (shared("ml-latest-small") / "ratings.csv").read_bytes()
    head, body = src.split(b"\n", 1)
    p = tmp_path / "ratings.csv"
    p.write_bytes(head + b"\n" + body * 10)
    t0 = time.perf_counter()
    x = load_movielens(p)
    elapsed = time.perf_counter() - t0
    assert len(x) == 1_008_360
    assert elapsed < 3.0, f"1M rows took {elapsed:.2f}s"
    _, peak = _peak_mb(lambda: load_movielens(p))
    assert peak < 200, f"peak {peak:.0f} MB"


# ------------------------------------------------------------------ side by side on edge cases
def _outcome(fn):
    try:
        r = fn()
    except (ValueError, OverflowError) as exc:
        return ("error", type(exc).__name__, str(exc))
    if isinstance(r, torch.Tensor):
        return ("tensor", r.dtype, r.tolist())
    if r is None or isinstance(r, list):
        return ("list", r)
    return ("inter", fp_inter(r), r.users.tolist(), r.items.tolist(), list(r.user_ids), list(r.item_ids),
            None if r.ratings is None else r.ratings.tolist(),
            None if r.timestamps is None else r.timestamps.tolist())


def _same_as_reference(fn):
    from graphforget.data.loaders._table import reference_parser

    got = _outcome(fn)
    with reference_parser():
        want = _outcome(fn)
    assert got == want
    return got


DELIMITED = [
    # (loader name, file name, bytes)
    ("csv", "a.csv", b"user,item,rating,ts\na,x,4,1\n b ,y,3.5,2\nb,x, 2 ,3\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,4,1\n b ,y,3.5,2\nb,x,2,3\n  c\t,\tx ,1,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\n\n\na,x,4,1\r\nb,y,.5,+2\r\n\r\nc,x,-0,-3\rd,z,1e3,12.0"),
    ("csv", "a.csv", b"user,item,rating,ts\n007,7,1,1\n7,07,2,2\n0,0,3,3\n"),
    ("csv", "a.csv", b"user,item,rating,ts\nabcdefghijklmnopqrstu,ABCDEFGHIJKLMNOPQRSTUV,1,1\n"
                     b"abcdefghijklmnopqrstv,ABCDEFGHIJKLMNOPQRSTUV,1,1\nabcdefghijklmnopqrstu,x,1,1\n"),
    ("csv", "a.csv", b'user,item,rating,ts\n"a","x","4","1"\n"b",y,"3",2\n'),
    ("csv", "a.csv", b'user,item,rating,ts\n"a,b",x,4,1\nc,"y""z",3,2\n'),
    ("csv", "a.csv", b'user,item,rating,ts\na"b,x,4,1\n'),
    ("csv", "a.csv", b'user,item,rating,ts\n"a"b,x,4,1\n'),
    ("csv", "a.csv", b'user,item,rating,ts\n"a\nb",x,4,1\n'),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,1_0,1\nb,y,2,1_000\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,4,1234567890123456789\nb,y,2,-922337203685477580\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,4,12345678901234567890\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,4,1.5\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,1e400,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,nan,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\n  ,x,1,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,1,1\nb,y,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\n"),
    ("csv", "a.csv", b""),
    ("csv", "a.csv", b"user,item,rating,ts\na\x00,x,1,1\n"),
    ("csv", "a.csv", "user,item,rating,ts\n\xfcber,x,1,1\nb\u00a0,y,2,2\nb,y,3,3\n\u2003c,z,1,1\n".encode()),
    ("csv", "a.csv", b"user,item,rating,ts\n\xff,x,1,1\n"),
    ("csv", "a.csv", "\ufeffuser,item,rating,ts\na,x,1,1\n".encode()),
    ("csv", "a.csv", b"user,item,rating,ts\na\x0b,x,1,1\na,x\x1f,2,2\n\ta,x,3,3\n"),
    ("csv", "a.csv", b"user,item,rating,ts\n" + b"a" * 140000 + b",x,1,1\n"),
    ("csv", "a.csv", b"user,item,rating,ts\na,x,3.2466e+05,1\nb,y,1.4641E-05,2\nc,z,12345678901234567,3\n"),
    ("lastfm", "l.txt", b"1\t2\t3\r\n1\t3\t4\r\n2\t2\t10\r\n"),
    ("lastfm", "l.txt", b"1\t2\t3\n1\t2\n"),
    ("amazon", "a.csv", b"AH2L9G3DQHHAJ,0000000116,4.0,1019865600\nA2IIIDRK3PRRZY,0000000116,1.0,1395619200\n"),
    ("bx", "BX-Book-Ratings.csv", '"User-ID";"ISBN";"Book-Rating"\n"1";"03\xe9";"0"\n"2";"x\xe9";"5"\n'.encode("latin-1")),
    ("bx", "BX-Book-Ratings.csv", b'"User-ID";"ISBN";"Book-Rating"\n"1";"a;b";"0"\n"2";"x";"5"\n'),
    ("movielens", "ratings.dat", b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"),
    ("movielens", "ratings.dat", b"1::1193::5::978300760\r\n1::661::3::978302109\r\n"),
    ("movielens", "ratings.dat", b"1::1193::5::978300760\r1::661::3::978302109\n"),
    ("movielens", "ratings.dat", b"1::1193::5::978300760\r\r\n1::661::3::978302109\r"),
    ("movielens", "ratings.dat", b"1:::1193::5::978300760\n"),
    ("movielens", "u.data", b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"),
    ("recbole", "x.inter", b'user_id:token\titem_id:token\trating:float\treview:token_seq\n'
                           b'u1\ti"1\t4\t"a b"\nu2\ti2\t3.5\tc "d\n'),
]
LOADERS = {
    "csv": lambda p: load_csv(p, "user", "item", rating_col="rating", time_col="ts"),
    "lastfm": load_lastfm, "amazon": load_amazon_ratings, "bx": load_bookcrossing,
    "movielens": load_movielens, "recbole": load_recbole_inter,
}


@pytest.mark.parametrize("case", range(len(DELIMITED)))
def test_delimited_edge_cases_match_reference(case, tmp_path):
    loader, name, content = DELIMITED[case]
    p = tmp_path / name
    p.write_bytes(content)
    _same_as_reference(lambda: LOADERS[loader](p))
    if loader == "csv":
        gz = tmp_path / (name + ".gz")
        gz.write_bytes(gzip.compress(content))
        _same_as_reference(lambda: load_csv(gz, "user", "item", rating_col="rating", time_col="ts"))
        _same_as_reference(lambda: load_csv(p, 1, 0, header=True, encoding="latin-1"))
        _same_as_reference(lambda: load_csv(p, 0, 1, rating_col=2, header=False))


LIGHTGCN = [
    b"0 1 2\n1 3\n", b"0 1 2\r\n1 3\r\n", b"0 1 2\r1 3", b"\n\n0 1 2\n\n\n1\n2 5 5 5\n",
    b"0\t1  2 \n 1 3\t\n", b"007 0010 3\n", b"\xef\xbb\xbf0 1 2\n", b"", b"   \n\n",
    b"0 +1 2\n", b"0 -1\n", b"0 1x\n", b"0 2147483647\n", b"0 2147483648\n",
    b"0 123456789012345678901\n", b"0 1\x0b1 2\n", b"0 1\x0c1 2\n", b"0 1\x1c1 2\n",
    "0 \u0663\n".encode(), b"0 1\xa02\n", b"0 1_0\n", b"0 1\x002\n",
]


@pytest.mark.parametrize("case", range(len(LIGHTGCN)))
def test_lightgcn_edge_cases_match_reference(case, tmp_path):
    p = tmp_path / "train.txt"
    p.write_bytes(LIGHTGCN[case])
    _same_as_reference(lambda: read_lightgcn_file(p))
    gz = tmp_path / "train.txt.gz"
    gz.write_bytes(gzip.compress(LIGHTGCN[case]))
    _same_as_reference(lambda: read_lightgcn_file(gz))


ID_LISTS = [
    b"org_id remap_id\n343 0\n5258 1\n", b"343 0\n5258 1\n", b"org_id remap_id\r\n343 2\r\n5 0\r\n\r\n",
    b"org_id remap_id\na 0\nb 0\nc 3\n", b"org_id remap_id\nx\n\na b c 1\n", b"\norg_id remap_id\n1 0\n",
    b"org_id remap_id\n", b"", b"org_id remap_id\nx -1\n", b"org_id remap_id\nx +1\n", b"org_id remap_id\nx y\n",
    "org_id remap_id\n\u00e9t\u00e9 0\n".encode(), b"\xef\xbb\xbforg_id remap_id\nA 0\n", b"org_id remap_id\nA 2147483648\n",
    b"org_id remap_id\nA\x0b0\nB 1\n",
]


@pytest.mark.parametrize("case", range(len(ID_LISTS)))
def test_id_list_edge_cases_match_reference(case, tmp_path):
    p = tmp_path / "item_list.txt"
    p.write_bytes(ID_LISTS[case])
    _same_as_reference(lambda: _read_id_list(p))


# a copy of the previous per-token reader (8b7041b), for random files
def _old_read_lightgcn(text: str) -> list[list[int]]:
    tokens = [line.split() for line in text.splitlines()]
    counts = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    ids = np.fromiter(map(int, chain.from_iterable(tokens)), dtype=np.int64, count=int(counts.sum()))
    nonblank = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonblank]
    users = np.repeat(ids[starts], counts[nonblank] - 1)
    is_item = np.ones(ids.size, dtype=bool)
    is_item[starts] = False
    return np.stack([users, ids[is_item]]).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_lightgcn_random_files_match_previous_reader(seed, tmp_path):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(300):
        n = int(rng.integers(0, 12))
        ids = [str(int(x)).zfill(int(rng.integers(1, 4))) for x in rng.integers(0, 10**int(rng.integers(1, 8)), n)]
        seps = rng.choice([" ", "  ", "\t", " \t "], max(n - 1, 0))
        line = "".join(a + b for a, b in zip(ids, list(seps) + [""]))
        lines.append(rng.choice(["", " ", "\t"]) + line + rng.choice(["", " "]))
    ends = rng.choice(["\n", "\r\n", "\r"], len(lines))
    text = "".join(a + b for a, b in zip(lines, ends))
    p = tmp_path / "train.txt"
    p.write_text(text, newline="")
    assert read_lightgcn_file(p).tolist() == _old_read_lightgcn(text)


@pytest.mark.parametrize("seed", range(8))
def test_delimited_random_files_match_reference(seed, tmp_path):
    """Random well-formed (mostly) files over ids / numbers that hit every fast-path branch:
    white space around ids, quoted fields, leading zeros, long ids, non-ASCII, exponents."""
    rng = np.random.default_rng(seed)
    ids = ["a", "b", "007", "7", "0", " a", "a ", "\ta", '"x"', '"a"', "\u00e9", "x\u00a0",
           "abcdefghij1", "abcdefghij2", "abcdefghijklmnopq1", "abcdefghijklmnopq2", "123456789012"]
    ratings = ["4", "4.0", ".5", "-0", "1e3", "+2", "3.2466e+05", "10", "0.25"]
    times = ["1", "-2", "+3", "12.0", "1e3", "978300760", "007"]
    rows = []
    for _ in range(int(rng.integers(1, 60))):
        rows.append(",".join([rng.choice(ids), rng.choice(ids), rng.choice(ratings), rng.choice(times)]))
        if rng.random() < 0.1:
            rows.append("")
    ends = rng.choice(["\n", "\r\n", "\r"], len(rows) + 1)
    text = "user,item,rating,ts" + ends[0] + "".join(r + e for r, e in zip(rows, ends[1:]))
    p = tmp_path / "r.csv"
    p.write_bytes(text.encode("utf-8"))
    _same_as_reference(lambda: load_csv(p, "user", "item", rating_col="rating", time_col="ts"))
    _same_as_reference(lambda: load_csv(p, "item", "user", rating_col="ts"))
    q = tmp_path / "r.tsv"
    q.write_bytes(text.replace("\t", "\x0b").replace(",", "\t").encode("utf-8"))
    _same_as_reference(lambda: load_recbole_inter(q, "user", "item", "rating", "ts"))
