"""Loaders on real files from ../shared/data and on small synthetic / malformed files."""
from __future__ import annotations

import csv
import gzip
import time

import pytest
import torch

from conftest import shared
from graphforget.data.loaders import (align, load_amazon_ratings, load_bookcrossing, load_csv,
                                      load_lastfm, load_lightgcn_txt, load_movielens,
                                      load_recbole_inter, read_lightgcn_file)


def _reference_rows(path, sep=",", header=True, encoding="utf-8"):
    with open(path, newline="", encoding=encoding) as f:
        rows = [r for r in csv.reader(f, delimiter=sep) if r]
    return rows[1:] if header else rows


def _raw(inter):
    """Rows as raw-id tuples, to compare with an independent parse."""
    u = [inter.user_ids[k] for k in inter.users.tolist()]
    i = [inter.item_ids[k] for k in inter.items.tolist()]
    return list(zip(u, i))


# ------------------------------------------------------------------ real data
def test_movielens_latest_small_matches_csv_and_is_fast():
    p = shared("ml-latest-small") / "ratings.csv"
    t0 = time.perf_counter()
    x = load_movielens(p)
    elapsed = time.perf_counter() - t0
    rows = _reference_rows(p)
    assert len(x) == len(rows) == 100836
    assert x.num_users == len({r[0] for r in rows}) == 610
    assert x.num_items == len({r[1] for r in rows})
    assert _raw(x) == [(r[0], r[1]) for r in rows]
    assert torch.equal(x.ratings, torch.tensor([float(r[2]) for r in rows]))
    assert torch.equal(x.timestamps, torch.tensor([int(r[3]) for r in rows]))
    assert x.source == str(p)
    assert elapsed < 3.0, f"loading 100k rows took {elapsed:.2f}s"
    assert load_movielens(p.parent).fingerprint() == x.fingerprint()  # folder form


def test_lastfm_data1_matches_reference():
    p = shared("lastfm") / "data1.txt"
    x = load_lastfm(p)
    rows = _reference_rows(p, sep="\t", header=False)
    assert len(x) == len(rows)
    assert _raw(x) == [(r[0], r[1]) for r in rows]
    assert torch.equal(x.ratings, torch.tensor([float(r[2]) for r in rows]))
    test = load_lastfm(shared("lastfm") / "test1.txt")
    a, b = align([x, test])
    assert a.user_ids == b.user_ids and a.num_items == b.num_items
    assert _raw(a) == _raw(x) and _raw(b) == _raw(test)


def test_lightgcn_folders_and_gzip(tmp_path):
    for name in ("ml100k", "gowalla-25"):
        folder = shared(name)
        g = load_lightgcn_txt(folder)
        ref = set()
        for line in (folder / "train.txt").read_text().splitlines():
            ids = [int(t) for t in line.split()]
            ref.update((ids[0], i) for i in ids[1:])
        got = set(map(tuple, g.train_edges.t().tolist()))
        assert got == ref
        (tmp_path / name).mkdir()
        for f in folder.iterdir():
            with gzip.open(tmp_path / name / (f.name + ".gz"), "wb") as out:
                out.write(f.read_bytes())
        gz = load_lightgcn_txt(tmp_path / name, name=name)
        assert gz.fingerprint() == g.fingerprint()
        assert torch.equal(gz.test_edges, g.test_edges)
        assert gz.user_ids == g.user_ids


def test_read_lightgcn_file_errors(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("0 1 2\n\n1 x 3\n")
    with pytest.raises(ValueError, match=r"train.txt:3:"):
        read_lightgcn_file(p)
    p.write_text("0 1 2\n1 -3\n")
    with pytest.raises(ValueError, match=r"train.txt:2: negative"):
        read_lightgcn_file(p)
    p.write_text("0 1 2\n3\n\n1 4\n")
    assert read_lightgcn_file(p).t().tolist() == [[0, 1], [0, 2], [1, 4]]
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_lightgcn_file(tmp_path / "nope.txt")


# ------------------------------------------------------------------ synthetic formats
def test_recbole_inter(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                 "u1\ti\"1\t4\t100\nu2\ti2\t3.5\t101\n\nu1\ti2\t1\t99.0\n")
    x = load_recbole_inter(p)
    assert _raw(x) == [("u1", 'i"1'), ("u2", "i2"), ("u1", "i2")]
    assert x.ratings.tolist() == [4.0, 3.5, 1.0] and x.timestamps.tolist() == [100, 101, 99]
    q = tmp_path / "y.inter"
    q.write_text("item_id:token\tuser_id:token\n7\t1\n8\t1\n")
    y = load_recbole_inter(q)
    assert _raw(y) == [("1", "7"), ("1", "8")] and y.ratings is None and y.timestamps is None


def test_movielens_dat_and_udata(tmp_path):
    dat = tmp_path / "ratings.dat"
    dat.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    x = load_movielens(dat)
    assert _raw(x) == [("1", "1193"), ("1", "661"), ("2", "1193")]
    assert x.ratings.tolist() == [5, 3, 4] and x.timestamps.tolist()[0] == 978300760
    d = tmp_path / "dl" / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    y = load_movielens(tmp_path / "dl")  # found one level down, as the zip unpacks
    assert _raw(y) == [("196", "242"), ("186", "302")]
    renamed = tmp_path / "mine.txt"
    renamed.write_text(dat.read_text())
    assert load_movielens(renamed).fingerprint() == x.fingerprint()


def test_csv_generic(tmp_path):
    p = tmp_path / "r.tsv"
    p.write_text("ts\tuser\titem\tscore\n5\ta\tb\t1.5\n6\tc\tb\t2\n")
    x = load_csv(p, "user", "item", rating_col="score", time_col="ts")
    assert _raw(x) == [("a", "b"), ("c", "b")] and x.ratings.tolist() == [1.5, 2.0]
    q = tmp_path / "r.csv"
    q.write_text('a;"x;y";3\nb;z;4\n')
    y = load_csv(q, 0, 1, rating_col=2, header=False)
    assert _raw(y) == [("a", "x;y"), ("b", "z")]


def test_bookcrossing_latin1(tmp_path):
    p = tmp_path / "BX-Book-Ratings.csv"
    text = '"User-ID";"ISBN";"Book-Rating"\n"276725";"034545104X";"0"\n"276726";"01550612\xe94";"5"\n'
    p.write_bytes(text.encode("iso-8859-1"))
    x = load_bookcrossing(p)
    assert _raw(x) == [("276725", "034545104X"), ("276726", "01550612\xe94")]
    assert x.ratings.tolist() == [0.0, 5.0]


def test_amazon(tmp_path):
    p = tmp_path / "ratings_Books.csv"
    p.write_text("AH2L9G3DQHHAJ,0000000116,4.0,1019865600\nA2IIIDRK3PRRZY,0000000116,1.0,1395619200\n")
    x = load_amazon_ratings(p)
    assert x.num_users == 2 and x.num_items == 1 and x.timestamps.tolist() == [1019865600, 1395619200]


# ------------------------------------------------------------------ malformed input
@pytest.mark.parametrize("loader,content,line,what", [
    (load_amazon_ratings, "a,b,4,1\nc,d,4\n", 2, "expected 4 columns"),
    (load_amazon_ratings, "a,b,4,1\nc,d,x,2\n", 2, "non-numeric rating"),
    (load_amazon_ratings, "a,b,4,1\n\nc,d,4,1.5\n", 3, "not an integer"),
    (load_amazon_ratings, "a,b,4,1\nc,d,nan,1\n", 2, "finite"),
    (load_amazon_ratings, "a,b,4,1\n,d,4,1\n", 2, "empty user id"),
    (load_lastfm, "1\t2\t3\n1\t2\n", 2, "expected 3 columns"),
    (load_lastfm, "1\t2\t3\n1\t2\tmany\n", 2, "non-numeric count"),
    (load_movielens, "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", 3, "expected 4 columns"),
    (load_movielens, "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3,tomorrow\n", 3, "non-numeric timestamp"),
    (load_recbole_inter, "user_id:token\titem_id:token\n1\t2\n1\t2\t3\n", 3, "expected 2 columns"),
    (load_recbole_inter, "uid:token\titem_id:token\n1\t2\n", 1, "no user column 'user_id'"),
])
def test_malformed_rows_name_file_and_line(tmp_path, loader, content, line, what):
    name = "ratings.csv" if loader is load_movielens else "bad.txt"
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ValueError) as err:
        loader(p)
    msg = str(err.value)
    assert f"{p}:{line}:" in msg and what in msg, msg


def test_csv_missing_column_and_missing_file(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("user,item\n1,2\n")
    with pytest.raises(ValueError, match=r"r.csv:1: no rating column 'stars'"):
        load_csv(p, "user", "item", rating_col="stars")
    for loader in (load_movielens, load_lastfm, load_amazon_ratings, load_bookcrossing,
                   load_recbole_inter):
        with pytest.raises(FileNotFoundError, match="missing.csv"):
            loader(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_csv(tmp_path / "missing.csv", "user", "item")


def test_wrong_encoding_is_reported(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes("user,item\n\xe9,2\n".encode("iso-8859-1"))
    with pytest.raises(ValueError, match="utf-8"):
        load_csv(p, "user", "item")
    assert load_csv(p, "user", "item", encoding="iso-8859-1").user_ids == ["\xe9"]
