"""Derive the shipped demo data set (``graphforget/demo_data``) from full Gowalla.

Deterministic given ``--seed``; run from the repository root::

    python datasets/make_demo.py                     # reads ../shared/data/gowalla
    python datasets/make_demo.py --source PATH --out graphforget/demo_data --seed 0

Steps (all interactions of the LightGCN train/validation/test files are pooled first):

1. 10-core of the whole of Gowalla (users and items with >= 10 interactions);
2. keep the ``--items`` (3,000) most popular items of that core;
3. users with >= 10 interactions among them are eligible; ``--users`` (2,000) of them are drawn
   uniformly at random with ``torch.Generator().manual_seed(seed)``;
4. the sample is pruned to a (10, 5)-core: users >= 10, items >= 5 interactions;
5. per-user random 80/10/10 split seeded by ``seed``
   (:func:`graphforget.data.splits.per_user_split`); held-out rows of users / items without
   training rows are dropped (:func:`graphforget.data.splits.to_graph`);
6. written as gzip LightGCN text (``train.txt.gz``, ``validation.txt.gz``, ``test.txt.gz``)
   plus ``user_list.txt.gz`` / ``item_list.txt.gz`` mapping to the original Gowalla ids.
   Gzip headers carry no time stamp, so the bytes (and their sha256) are reproducible.

Prints the statistics and the sha256 of every file (quoted in ``datasets/README.md``).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import torch

from graphforget.data import Interactions, InteractionGraph, k_core, load_dataset
from graphforget.data.loaders import load_lightgcn_txt
from graphforget.data.splits import per_user_split, to_graph

REPO = Path(__file__).resolve().parents[1]


def subsample(source: Path, n_items: int, n_users: int, seed: int) -> InteractionGraph:
    g = load_lightgcn_txt(source, name="gowalla")
    e = torch.cat([g.train_edges, g.valid_edges, g.test_edges], 1)
    inter = Interactions(e[0], e[1], user_ids=g.user_ids or [], item_ids=g.item_ids or [],
                         num_users=g.num_users, num_items=g.num_items, source=str(source))
    core = k_core(inter, k=10)
    deg = torch.bincount(core.items, minlength=core.num_items)
    top = torch.argsort(deg, descending=True, stable=True)[:n_items]
    popular = core.select(torch.isin(core.items, top))
    eligible = torch.nonzero(torch.bincount(popular.users, minlength=core.num_users) >= 10).view(-1)
    pick = eligible[torch.randperm(eligible.numel(), generator=torch.Generator().manual_seed(seed))[:n_users]]
    sample = k_core(popular.select(torch.isin(popular.users, pick)), user_k=10, item_k=5)
    return to_graph(*per_user_split(sample, (0.8, 0.1, 0.1), seed=seed), name="demo")


def lightgcn_lines(edges: torch.Tensor, num_items: int) -> str:
    """``user item item ...`` lines, users and items ascending; users without edges omitted."""
    keys = torch.sort(edges[0] * num_items + edges[1]).values
    users, items = (keys // num_items).tolist(), (keys % num_items).tolist()
    lines, cur = [], None
    for u, i in zip(users, items):  # one-off export script; ~50k edges
        if u != cur:
            lines.append([str(u)])
            cur = u
        lines[-1].append(str(i))
    return "".join(" ".join(parts) + "\n" for parts in lines)


def write_gz(path: Path, text: str) -> str:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                               compresslevel=9) as f:
        f.write(text.encode("utf-8"))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "gowalla")
    ap.add_argument("--out", type=Path, default=REPO / "graphforget" / "demo_data")
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    g = subsample(args.source, args.items, args.users, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    files = {f"{split}.txt.gz": lightgcn_lines(getattr(g, f"{key}_edges"), g.num_items)
             for split, key in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    files["user_list.txt.gz"] = "org_id remap_id\n" + "".join(f"{r} {k}\n" for k, r in enumerate(g.user_ids))
    files["item_list.txt.gz"] = "org_id remap_id\n" + "".join(f"{r} {k}\n" for k, r in enumerate(g.item_ids))
    sums = {name: write_gz(args.out / name, text) for name, text in files.items()}

    loaded = load_dataset(args.out, verbose=True)
    assert loaded.fingerprint() == g.fingerprint(), "written files do not reload to the same graph"
    total = sum((args.out / n).stat().st_size for n in files)
    print(f"total {total / 1024:.1f} KiB compressed")
    for name, digest in sums.items():
        print(f"{digest}  {name}")


if __name__ == "__main__":
    main()
