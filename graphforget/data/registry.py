r"""Named public data sets, where they live on disk, and one entry point to load any of them.

``load_dataset(spec)`` accepts

* ``"demo"`` — the small Gowalla subsample shipped inside the package
  (``graphforget/demo_data``, see ``datasets/README.md``);
* a registered name (:data:`DATASETS`: ``gowalla``, ``yelp2018``, ``amazon-book``, ``lastfm``,
  ``ml-100k``, ``ml-1m``, ``ml-latest-small``) downloaded beforehand with
  ``graphforget datasets download NAME`` (:func:`graphforget.data.download.download`) into the
  data root — ``root=``, else ``$GRAPHFORGET_DATA``, else ``~/.cache/graphforget``;
* a path: a LightGCN text folder, a RecBole ``.inter`` file, a MovieLens ``ratings.csv`` /
  ``ratings.dat`` / ``u.data`` (or a folder holding one), a Last.fm ``data1.txt`` folder, or a
  Book-Crossing ``BX-Book-Ratings.csv``.

Raw rating tables (MovieLens, ``.inter``, Book-Crossing) go through
:func:`~graphforget.data.protocols.implicit_protocol`: MovieLens ratings ``>= 4`` are positives,
``.inter`` and Book-Crossing rows are all positives (RecBole's default without a threshold),
then 5-core and a per-user 80/10/10 split seeded by ``seed``. Use
:func:`~graphforget.data.protocols.ifru_protocol` directly for the labelled IFRU setting.

Downloaded files are checked against ``checksums.json`` beside them on every load.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from .graph import InteractionGraph

CHECKSUMS = "checksums.json"
LIGHTGCN_BASE = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/{}/"
GROUPLENS_BASE = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSpec:
    """A public data set: where to fetch it and how to read it.

    Attributes:
        name: registry key (also the folder name under the data root).
        format: ``"lightgcn-txt"``, ``"movielens"`` or ``"lastfm"``.
        description: one line for listings.
        base_url: file ``f`` is fetched from ``base_url + f``.
        files: file names to fetch; ``.zip`` files are unpacked after download.
        sha256: pinned sha256 per file, checked at download; ``None`` where none is known
            (the file is then downloaded "unverified": the hash computed is printed and
            recorded in ``checksums.json``).
        homepage: where the data set is described.
    """

    name: str
    format: str
    description: str
    base_url: str
    files: tuple[str, ...]
    sha256: dict = field(default_factory=dict)
    homepage: str = ""

    def verification(self) -> str:
        """``"sha256 pinned"`` (every file), ``"unverified"`` (none) or
        ``"unverified: FILE, ..."`` naming the files without a pinned sha256."""
        missing = [f for f in self.files if not self.sha256.get(f)]
        if not missing:
            return "sha256 pinned"
        return "unverified" if len(missing) == len(self.files) else f"unverified: {', '.join(missing)}"

    def urls(self, base_url: Optional[str] = None) -> list[str]:
        base = (base_url or self.base_url).rstrip("/") + "/"
        return [base + f for f in self.files]


# Pinned sha256 of the files the registered URLs serve, only where the exact bytes could be
# hashed offline (see datasets/README.md, "Checksums"): LightGCN-PyTorch ``master`` (commit
# 947ca2b; the data files last changed in a75bbdb / ef7aae3, 2020), checked by git blob id
# against a clone of github.com/gusye1234/LightGCN-PyTorch; lastfm also matches the public copy
# in shared/data/lastfm byte for byte. ``None``: not pinned (downloaded "unverified").
# The LightGCN train.txt files are not in the offline clone; GroupLens publishes only MD5.
PINNED_SHA256: dict[str, dict[str, Optional[str]]] = {
    "gowalla": {"train.txt": None,
                "test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3"},
    "yelp2018": {"train.txt": None,
                 "test.txt": "9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe"},
    "amazon-book": {"train.txt": None,
                    "test.txt": "6250754994dd953b91b48dccdd77a73f318e0634b4757c2abfcc9d33a54ab0f5"},
    "lastfm": {"data1.txt": "c82af3228cbbda2f55a39244de09ed93292894f1d0d9f1908ebb57e27598fded",
               "test1.txt": "de4417c0e6123284ce59a0934bcf5288ec1ec8774a18a1eef453c9952dfa48f9"},
}


def _lightgcn(name: str, description: str) -> DatasetSpec:
    return DatasetSpec(name, "lightgcn-txt", description, LIGHTGCN_BASE.format(name),
                       ("train.txt", "test.txt"), dict(PINNED_SHA256[name]),
                       "https://github.com/gusye1234/LightGCN-PyTorch")


def _grouplens(name: str, description: str) -> DatasetSpec:
    return DatasetSpec(name, "movielens", description, GROUPLENS_BASE, (f"{name}.zip",),
                       {f"{name}.zip": None}, f"https://grouplens.org/datasets/movielens/")


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    _lightgcn("gowalla", "Gowalla check-ins as split by NGCF/LightGCN: 29,858 users, 40,981 items, "
                         "~1.03M interactions (train/test)"),
    _lightgcn("yelp2018", "Yelp 2018 challenge as split by NGCF/LightGCN: 31,668 users, "
                          "38,048 items, ~1.56M interactions (train/test)"),
    _lightgcn("amazon-book", "Amazon-Book as split by NGCF/LightGCN: 52,643 users, 91,599 items, "
                             "~2.98M interactions (train/test)"),
    DatasetSpec("lastfm", "lastfm", "Last.fm (HetRec 2011) listening counts as LightGCN-PyTorch "
                "ships them: 1,892 users, 4,489 artists (data1.txt train / test1.txt test)",
                LIGHTGCN_BASE.format("lastfm"), ("data1.txt", "test1.txt"),
                dict(PINNED_SHA256["lastfm"]), "https://grouplens.org/datasets/hetrec-2011/"),
    _grouplens("ml-100k", "MovieLens 100K ratings (943 users, 1,682 movies, 100,000 ratings 1-5)"),
    _grouplens("ml-1m", "MovieLens 1M ratings (6,040 users, 3,706 movies, 1,000,209 ratings 1-5)"),
    _grouplens("ml-latest-small", "MovieLens latest-small (610 users, 9,742 movies, 100,836 "
                                  "ratings 0.5-5)"),
]}


# ------------------------------------------------------------------ places on disk
def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The data root: ``root`` if given, else ``$GRAPHFORGET_DATA``, else ``~/.cache/graphforget``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("GRAPHFORGET_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graphforget"


def demo_path() -> Path:
    """Folder of the shipped demo data (gzip LightGCN text inside the installed package)."""
    return Path(str(resources.files("graphforget").joinpath("demo_data")))


def get_spec(name: str) -> DatasetSpec:
    """Registry entry of ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_dir(name: str, root: Optional[str | os.PathLike] = None) -> Path:
    return data_root(root) / get_spec(name).name


def is_downloaded(name: str, root: Optional[str | os.PathLike] = None) -> bool:
    """Whether a complete download (``checksums.json`` written last) is present."""
    return (dataset_dir(name, root) / CHECKSUMS).is_file()


# ------------------------------------------------------------------ checksums
def sha256_file(path: str | os.PathLike) -> str:
    """Full hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(folder: Path, extra: Optional[dict] = None) -> dict:
    """Record the sha256 of every regular file under ``folder`` in ``folder/checksums.json``."""
    sums = {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKSUMS
            and not p.name.startswith(".")}
    record = {"files": sums, **(extra or {})}
    tmp = folder / f".{CHECKSUMS}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / CHECKSUMS)
    return sums


def verify_checksums(folder: Path) -> None:
    """Check every file recorded in ``folder/checksums.json``.

    Raises:
        FileNotFoundError: a recorded file is missing.
        ValueError: a file's sha256 differs from the recorded one.
    """
    record = json.loads((folder / CHECKSUMS).read_text())
    for rel, expected in record["files"].items():
        p = folder / rel
        if not p.is_file():
            raise FileNotFoundError(f"{p}: recorded in {folder / CHECKSUMS} but missing; "
                                    "download again with force=True")
        got = sha256_file(p)
        if got != expected:
            raise ValueError(f"{p}: sha256 {got} differs from {expected} recorded at download; "
                             "the file changed — download again with force=True")


# ------------------------------------------------------------------ listing and loading
def list_datasets(root: Optional[str | os.PathLike] = None) -> list[dict]:
    """The shipped demo and every registered data set: ``name``, ``format``, ``description``,
    ``urls``, ``on_disk`` (downloaded under the data root), ``path`` and ``sha256``
    (:meth:`DatasetSpec.verification`: whether downloads are checked against pinned hashes)."""
    out = [{"name": "demo", "format": "lightgcn-txt",
            "description": "Gowalla subsample shipped with the package: 1,944 users, 2,748 items, 38,708 train / 4,977 validation / 4,661 test interactions",
            "urls": [], "on_disk": (demo_path() / "train.txt.gz").is_file(), "path": str(demo_path()),
            "sha256": "shipped"}]
    for name, spec in DATASETS.items():
        out.append({"name": name, "format": spec.format, "description": spec.description,
                    "urls": spec.urls(), "on_disk": is_downloaded(name, root),
                    "path": str(dataset_dir(name, root)), "sha256": spec.verification()})
    return out


def _load_lastfm_folder(folder: Path, name: str) -> InteractionGraph:
    from dataclasses import replace

    from .loaders import align, load_lastfm
    from .splits import to_graph

    train, test = align([load_lastfm(folder / "data1.txt"), load_lastfm(folder / "test1.txt")])
    return to_graph(replace(train, ratings=None), None, replace(test, ratings=None), name=name)


def _path_loader(p: Path) -> Optional[Callable[[int], InteractionGraph]]:
    """How to load a user-given path, or ``None`` if its layout is not recognised."""
    from .loaders import load_bookcrossing, load_lightgcn_txt, load_movielens, load_recbole_inter
    from .loaders.movielens import MOVIELENS_FILES
    from .protocols import implicit_protocol

    name = p.stem if p.is_file() else p.name
    if p.is_dir():
        if any((p / f).is_file() for f in ("train.txt", "train.txt.gz")):
            return lambda seed: load_lightgcn_txt(p, name=name)
        if (p / "data1.txt").is_file():
            return lambda seed: _load_lastfm_folder(p, name)
        if any((p / f).is_file() or any(p.glob(f"*/{f}")) for f in MOVIELENS_FILES):
            return lambda seed: implicit_protocol(load_movielens(p), 4.0, seed=seed, name=name)
        return None
    if p.suffix == ".inter":
        return lambda seed: implicit_protocol(load_recbole_inter(p), None, seed=seed, name=name)
    if p.name in MOVIELENS_FILES:
        return lambda seed: implicit_protocol(load_movielens(p), 4.0, seed=seed, name=p.parent.name)
    if p.name == "BX-Book-Ratings.csv":
        return lambda seed: implicit_protocol(load_bookcrossing(p), None, seed=seed, name=name)
    return None


def load_dataset(spec: str | os.PathLike, root: Optional[str | os.PathLike] = None,
                 seed: int = 0, verbose: bool = False,
                 validation: Optional[float] = 0.1) -> InteractionGraph:
    """Load ``"demo"``, a registered (downloaded) data set, or a path — see the module docstring.

    ``seed`` drives the split of raw rating tables (LightGCN folders come split) and, for data
    that ships without a validation split (``train.txt`` + ``test.txt``), the validation split
    carved from the training edges (:meth:`InteractionGraph.carve_validation` with fraction
    ``validation``; ``None`` carves nothing). Early stopping needs it; the carving is printed
    with ``verbose`` and recorded in ``graph.notes``.
    With ``verbose`` one line of statistics and the graph's sha256 fingerprint is printed.

    Raises:
        FileNotFoundError: a registered data set that is not downloaded (the message says to
            run ``graphforget datasets download NAME``), or a missing file.
        ValueError: an unknown name / unrecognised layout, or files whose checksum changed.
    """
    from .loaders import load_lightgcn_txt
    from .protocols import implicit_protocol

    key = os.fspath(spec)
    if key == "demo":
        graph = load_lightgcn_txt(demo_path(), name="demo")
    elif key in DATASETS:
        ds = DATASETS[key]
        folder = dataset_dir(key, root)
        if not is_downloaded(key, root):
            raise FileNotFoundError(
                f"dataset {key!r} is not downloaded under {data_root(root)}; run "
                f"`graphforget datasets download {key}` (or pass root= / set $GRAPHFORGET_DATA)")
        verify_checksums(folder)
        if ds.format == "lightgcn-txt":
            graph = load_lightgcn_txt(folder, name=key)
        elif ds.format == "lastfm":
            graph = _load_lastfm_folder(folder, key)
        else:
            from .loaders import load_movielens

            graph = implicit_protocol(load_movielens(folder), 4.0, seed=seed, name=key)
    else:
        p = Path(key).expanduser()
        if not p.exists():
            raise ValueError(f"unknown dataset {key!r}: not 'demo', a registered name "
                             f"({', '.join(DATASETS)}) or an existing path")
        loader = _path_loader(p)
        if loader is None:
            raise ValueError(f"{p}: unrecognised layout; expected a LightGCN folder (train.txt), a "
                             "RecBole .inter file, MovieLens ratings.csv / ratings.dat / u.data, "
                             "a Last.fm data1.txt folder or BX-Book-Ratings.csv")
        graph = loader(seed)
    if validation is not None and graph.valid_edges.shape[1] == 0 and graph.num_train:
        try:
            carved = graph.carve_validation(validation, seed)
        except ValueError as exc:  # too few edges per user: keep the graph as it is
            graph.notes.append(f"no validation split in the data and none carved: {exc}")
        else:
            carved.notes.append(f"no validation split in the data: carved {validation:g} of each "
                                f"user's training edges (seed {seed}): {carved.valid_edges.shape[1]:,} edges")
            graph = carved
    if verbose:
        for note in graph.notes:
            print(f"{graph.name or key}: {note}")
        s = graph.stats()
        print(f"{s['name']}: users={s['users']:,} items={s['items']:,} train={s['train']:,} "
              f"valid={s['valid']:,} test={s['test']:,} density={s['density']:.6f} "
              f"sha256={s['sha256']}")
    return graph


def dataset_stats(spec: str | os.PathLike, root: Optional[str | os.PathLike] = None,
                  seed: int = 0) -> dict:
    """``graph.stats()`` of :func:`load_dataset` (name, sizes, density, sha256 fingerprint),
    plus whether the graph carries labels."""
    graph = load_dataset(spec, root=root, seed=seed)
    return {**graph.stats(), "labels": graph.has_labels}
