"""Registry: the shipped demo, listing, data-root resolution, path specs."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from conftest import shared
from graphforget.data import DATASETS, data_root, dataset_stats, list_datasets, load_dataset
from graphforget.data.loaders import load_lightgcn_txt
from graphforget.data.registry import demo_path, sha256_file

README = Path(__file__).resolve().parents[1] / "datasets" / "README.md"


def test_demo_loads_and_prints_stats(capsys):
    g = load_dataset("demo", verbose=True)
    out = capsys.readouterr().out
    assert g.fingerprint() in out and f"users={g.num_users:,}" in out
    assert 1000 <= g.num_users <= 2000 and 2000 <= g.num_items <= 3000
    assert 30_000 <= g.num_train <= 60_000 and g.valid_edges.shape[1] > 0 and g.test_edges.shape[1] > 0
    # every user and item has training edges (k-core + per-user split)
    assert int(g.degree.min()) >= 1
    assert g.user_ids is not None and len(g.user_ids) == g.num_users
    total = sum(p.stat().st_size for p in demo_path().iterdir() if p.suffix == ".gz")
    assert total < 1_000_000


def test_demo_matches_readme_checksums():
    text = README.read_text()
    for p in sorted(demo_path().glob("*.gz")):
        assert sha256_file(p) in text, f"{p.name} sha256 not quoted in datasets/README.md"
    assert load_dataset("demo").fingerprint() in text


def test_demo_is_a_subgraph_of_gowalla():
    demo = load_dataset("demo")
    gow = load_lightgcn_txt(shared("gowalla"))
    raw = set()
    for e in (gow.train_edges, gow.valid_edges, gow.test_edges):
        raw.update((gow.user_ids[u], gow.item_ids[i]) for u, i in e.t().tolist())
    for e in (demo.train_edges, demo.test_edges):
        pairs = {(demo.user_ids[u], demo.item_ids[i]) for u, i in e.t().tolist()}
        assert pairs <= raw


def test_list_and_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFORGET_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("GRAPHFORGET_DATA")
    assert data_root() == Path.home() / ".cache" / "graphforget"
    listing = list_datasets(root=tmp_path)
    names = [d["name"] for d in listing]
    assert names[0] == "demo" and set(names[1:]) == set(DATASETS)
    assert listing[0]["on_disk"] and not any(d["on_disk"] for d in listing[1:])
    gow = next(d for d in listing if d["name"] == "gowalla")
    assert gow["urls"] == ["https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/train.txt",
                           "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/test.txt"]
    assert {"name", "format", "description", "urls", "on_disk", "path"} <= set(gow)


def test_missing_registered_and_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match="graphforget datasets download ml-1m"):
        load_dataset("ml-1m", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no-such-thing", root=tmp_path)
    (tmp_path / "odd").mkdir()
    with pytest.raises(ValueError, match="unrecognised layout"):
        load_dataset(tmp_path / "odd")


def test_path_specs(tmp_path):
    g = load_dataset(shared("ml100k"))
    assert g.fingerprint() == load_lightgcn_txt(shared("ml100k")).fingerprint()
    ml = shared("ml-latest-small")
    a = load_dataset(ml / "ratings.csv", seed=0)
    b = load_dataset(ml, seed=0)
    c = load_dataset(ml, seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert int(a.degree[: a.num_users].min()) >= 4  # 5-core, 80% of each user in train
    lf = load_dataset(shared("lastfm"))
    assert lf.test_edges.shape[1] > 0 and lf.valid_edges.shape[1] > 0  # carved from train
    assert "carved 0.1" in lf.notes[0]
    raw = load_dataset(shared("lastfm"), validation=None)
    assert raw.valid_edges.shape[1] == 0 and raw.num_train == lf.num_train + lf.valid_edges.shape[1]
    stats = dataset_stats(shared("ml100k"))
    assert stats["train"] == g.num_train and stats["sha256"] == g.fingerprint()
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u in range(8) for i in range(8)))
    gi = load_dataset(inter)
    assert gi.num_users == 8 and gi.num_train + gi.valid_edges.shape[1] + gi.test_edges.shape[1] == 64


def test_pinned_hashes_and_verification_listing(capsys):
    from graphforget import cli

    for spec in DATASETS.values():
        assert set(spec.sha256) <= set(spec.files)
        for h in spec.sha256.values():
            assert h is None or (len(h) == 64 and h == h.lower() and int(h, 16) >= 0)
    assert DATASETS["lastfm"].verification() == "sha256 pinned"
    assert DATASETS["gowalla"].verification() == "unverified: train.txt"
    for name in ("ml-100k", "ml-1m", "ml-latest-small"):
        assert DATASETS[name].verification() == "unverified"
    listing = {d["name"]: d["sha256"] for d in list_datasets()}
    assert listing["ml-1m"] == "unverified" and listing["demo"] == "shipped"
    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "sha256" in out.splitlines()[0]
    ml = next(line for line in out.splitlines() if line.startswith("ml-1m "))
    assert "unverified" in ml


def test_lastfm_pins_match_the_public_copy():
    folder = shared("lastfm")
    for fname, expected in DATASETS["lastfm"].sha256.items():
        assert sha256_file(folder / fname) == expected
