"""Bad input to every command ends in one line, never a traceback (issue 13 item 5, issue 15).

A table of (command × bad input) run in-process through ``graphforget.cli.main([...])`` against
one tiny checkpoint (MF, dim 8, 2 epochs on the shipped demo data) trained once per module.
Every row must exit with status 2 and print exactly one non-empty line on stderr,
``graphforget: error: ...`` naming the input (argparse usage errors: usage, then a last line
``graphforget ...: error: ...``), without a traceback, and leave the state unchanged: no output
file written (every file under the fixture folder keeps its bytes, nothing is added), the
checkpoint's bytes unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import pytest
import torch

from graphforget import cli
from graphforget.data.graph import edge_keys
from graphforget.data.registry import load_dataset

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: --device cuda is valid")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fz(tmp_path_factory):
    """The fixture folder: a trained checkpoint, one forgetting of it, and bad input files."""
    d = tmp_path_factory.mktemp("fuzz")
    demo = load_dataset("demo", seed=0)
    f = SimpleNamespace(d=d, ck=d / "m.pt")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--data", "demo", "--model", "mf", "--dim", "8", "--epochs", "2",
                         "--patience", "0", "--quiet", "--out", str(f.ck)]) == 0
        edges = demo.train_edges[:, :3]
        f.good = d / "good.txt"
        f.good.write_text("".join(f"{u} {i}\n" for u, i in edges.t().tolist()))
        f.unlearned = d / "u.pt"
        assert cli.main(["unlearn", str(f.ck), "--data", "demo", "--edges", str(f.good),
                         "--method", "if", "--out", str(f.unlearned)]) == 0
    taken = set(edge_keys(demo.train_edges, demo.num_items).tolist())
    u = int(edges[0, 0])
    absent = next(i for i in range(demo.num_items) if u * demo.num_items + i not in taken)

    def write(name: str, data) -> Path:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
        return p

    # edge files (``--edges``)
    f.latin1 = write("latin1.txt", f"{u} {int(edges[1, 0])}\n1 caf\xe9\n".encode("latin-1"))
    f.bom = write("bom.txt", "\ufeff" + f"{u} {int(edges[1, 0])}\n1 2 3\n")
    f.malformed = write("malformed.txt", "0 1\nfoo\n")
    f.unknown = write("unknown.txt", f"{demo.num_users + 5} 0\n")
    f.unknown_item = write("unknown_item.txt", f"0 {demo.num_items}\n")
    f.absent = write("absent.txt", f"{u} {absent}\n")
    f.empty = write("empty.txt", "# nothing to forget\n\n")
    f.huge = write("huge.txt", "123456789012345678901234567890 0\n")
    f.huge18 = write("huge18.txt", "999999999999999999 0\n")
    f.negative = write("negative.txt", "-1 0\n")
    f.xedges = write("x.edges.txt", f.good.read_text())  # what `--out x.pt` would write beside it
    f.dupes = write("dupes.txt", f"{u} {int(edges[1, 0])}\n{u} {int(edges[1, 0])}\n")
    # data folders (``--data``): LightGCN text ``user item item ...``
    f.tiny = d / "tiny"
    write("tiny/train.txt", "0 0 1\n1 1 2\n2 0 2\n")
    write("tiny/test.txt", "0 2\n1 0\n")
    f.empty_data = d / "empty_data"
    write("empty_data/train.txt", "")
    write("empty_data/test.txt", "")
    f.latin_data = d / "latin_data"
    write("latin_data/train.txt", b"0 0 1\n1 1 \xe9\n")
    f.huge_data = d / "huge_data"
    write("huge_data/train.txt", "0 0 1\n99999999999999999999999 1\n")
    f.no_layout = d / "no_layout"
    write("no_layout/readme.md", "no data here\n")
    # checkpoints
    payload = torch.load(f.ck, map_location="cpu", weights_only=True)
    raw = f.ck.read_bytes()
    f.truncated = write("truncated.pt", raw[: len(raw) // 2])
    f.junk = write("junk.pt", b"hello, not a checkpoint\n")
    f.foreign = d / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, f.foreign)
    f.shape = d / "shape.pt"
    torch.save({**payload, "state_dict": {**payload["state_dict"], "embedding": torch.zeros(10, 8)}},
               f.shape)
    f.giant = d / "giant.pt"  # a config of 10^12 users: refused on shapes, before allocating
    torch.save({**payload, "model": {**payload["model"], "num_users": 10**12}}, f.giant)
    f.port = _closed_port()
    f.rep = d / "rep"  # never created: every reproduce row is refused
    # the deletion service: a store bound to m.pt after one request, a copy without its key
    import shutil
    import sqlite3

    f.db = d / "store.sqlite"
    f.nokey = d / "nokey"
    f.nokey.mkdir()
    shutil.copy(f.ck, f.nokey / "m.pt")
    raw = lambda pairs: "".join(f"{demo.user_ids[u]} {demo.item_ids[i]}\n" for u, i in pairs)  # noqa: E731
    f.good_raw = write("good_raw.txt", raw(edges.t().tolist()))
    f.absent_raw = write("absent_raw.txt", raw([(u, absent)]))
    forget = ["--edges", str(f.good_raw), "--method", "if", "--fallback", "none", "--no-audit", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        for db, ck in ((f.db, f.ck), (f.nokey / "store.sqlite", f.nokey / "m.pt")):
            assert cli.main(["store", "import", "demo", "--db", str(db), "--checkpoint", str(ck),
                             "--quiet"]) == 0
            assert cli.main(["forget", "--db", str(db), "--checkpoint", str(ck), *forget]) == 0
    (f.nokey / "store.sqlite.key").unlink()
    f.jsonlist = write("list.jsonl", "[1, 2]\n")
    f.twokinds = write("twokinds.jsonl", '{"user": "1", "item": "2"}\n')
    f.foreign_db = d / "other.sqlite"
    c = sqlite3.connect(f.foreign_db)
    c.execute("CREATE TABLE notes(x)")
    c.commit()
    c.close()
    return f


def _snapshot(folder: Path) -> dict:
    """sha256 of every file under ``folder`` (only files: a failed download keeps its empty
    cache folder, as tests/test_download.py expects)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Case:
    id: str
    argv: Callable[[SimpleNamespace], list]
    expect: tuple = ()  # fragments of the error line (a callable of the fixture gives more)
    usage: bool = False  # an argparse usage error (SystemExit 2)
    patch: Optional[Callable] = None  # (monkeypatch, fixture) before the call
    marks: list = field(default_factory=list)


def s(p) -> str:
    return str(p)


TRAIN = ["--model", "mf", "--dim", "8", "--epochs", "1", "--patience", "0", "--quiet"]


def _unlearn(f, *extra, ck=None, data="demo"):
    return ["unlearn", s(ck or f.ck), "--data", data, "--method", "if", *map(s, extra)]


def _audit(f, *extra, original=None, unlearned=None, edges=None):
    return ["audit", s(original or f.ck), s(unlearned or f.unlearned), "--data", "demo",
            "--edges", s(edges or f.good), "--retrains", s(f.unlearned), *map(s, extra)]


def _reproduce(f, *extra, root=None):
    return ["reproduce", "alteraser", "--preset", "smoke", "--no-progress", "--data-root",
            s(root or f.d), "--out", s(f.rep), *map(s, extra)]


def _nan_unlearn(monkeypatch, f):
    """The influence step produces NaN parameters: the method fails numerically."""
    from graphforget.unlearning.influence import InfluenceFunction

    def broken(self, model, graph, edges, report, timer):
        with torch.no_grad():
            model.embedding.fill_(float("nan"))
        return graph.remove_edges(edges)

    monkeypatch.setattr(InfluenceFunction, "_unlearn", broken)


def _failing_forgetter(monkeypatch, f):
    """The deletion service's method and fallback fail: ``UnlearningFailed``."""
    import graphforget.service as service

    class Failing:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def forget_user(self, *args, **kwargs):
            raise service.UnlearningFailed("unlearning failed, the model is unchanged: ifru: "
                                           "non-finite parameters; finetune: non-finite parameters")

    monkeypatch.setattr(service, "Forgetter", Failing)


CASES = [
    # ------------------------------------------------------------------ train
    Case("train-out-is-dir", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d)],
         ("--out", "is a directory")),
    Case("train-out-under-a-file", lambda f: ["train", "--data", "demo", *TRAIN, "--out",
                                              s(f.good / "x.pt")], ("--out", "is not a directory")),
    Case("train-log-is-dir", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d / "n.pt"),
                                        "--log", s(f.d)], ("--log", "is a directory")),
    Case("train-layers-negative", lambda f: ["train", "--data", "demo", "--model", "lightgcn",
                                             "--layers", "-1", "--out", s(f.d / "n.pt")], ("--layers",)),
    Case("train-ks-0", lambda f: ["train", "--data", "demo", "--ks", "0", "--out", s(f.d / "n.pt")],
         ("--ks", "positive"), usage=True),
    Case("train-device-cuda", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d / "n.pt"),
                                         "--device", "cuda"], ("--device cuda", "CUDA is not available"),
         marks=[NO_CUDA]),
    Case("train-device-bogus", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d / "n.pt"),
                                          "--device", "gpu0"], ("--device gpu0",)),
    Case("train-empty-train-txt", lambda f: ["train", "--data", s(f.empty_data), *TRAIN, "--out",
                                             s(f.d / "n.pt")], ("train.txt", "no training interactions")),
    Case("train-latin1-train-txt", lambda f: ["train", "--data", s(f.latin_data), *TRAIN, "--out",
                                              s(f.d / "n.pt")],
         lambda f: (f"{f.latin_data / 'train.txt'}:2", "not UTF-8")),
    Case("train-huge-id-train-txt", lambda f: ["train", "--data", s(f.huge_data), *TRAIN, "--out",
                                               s(f.d / "n.pt")],
         lambda f: (f"{f.huge_data / 'train.txt'}:2", "too large")),
    Case("train-data-missing", lambda f: ["train", "--data", s(f.d / "nope"), *TRAIN, "--out",
                                          s(f.d / "n.pt")], ("unknown dataset",)),
    Case("train-data-unknown-layout", lambda f: ["train", "--data", s(f.no_layout), *TRAIN, "--out",
                                                 s(f.d / "n.pt")], ("unrecognised layout",)),
    Case("train-metric-bad", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d / "n.pt"),
                                        "--metric", "recall@7"], ("--metric",)),
    Case("train-seed-huge", lambda f: ["train", "--data", "demo", *TRAIN, "--out", s(f.d / "n.pt"),
                                       "--seed", str(10**30)], ("--seed", "64-bit"), usage=True),
    # ------------------------------------------------------------------ evaluate
    Case("evaluate-checkpoint-is-dir", lambda f: ["evaluate", s(f.d), "--data", "demo"],
         ("is a directory",)),
    Case("evaluate-checkpoint-missing", lambda f: ["evaluate", s(f.d / "nope.pt"), "--data", "demo"],
         ("nope.pt", "no such checkpoint")),
    Case("evaluate-checkpoint-truncated", lambda f: ["evaluate", s(f.truncated), "--data", "demo"],
         ("truncated.pt", "not a readable graphforget checkpoint")),
    Case("evaluate-checkpoint-not-torch", lambda f: ["evaluate", s(f.junk), "--data", "demo"],
         ("junk.pt", "not a readable graphforget checkpoint")),
    Case("evaluate-checkpoint-foreign", lambda f: ["evaluate", s(f.foreign), "--data", "demo"],
         ("foreign.pt", "not a graphforget checkpoint")),
    Case("evaluate-checkpoint-wrong-shape", lambda f: ["evaluate", s(f.shape), "--data", "demo"],
         ("shape.pt", "does not match its config", "'embedding'", "[10, 8]")),
    Case("evaluate-checkpoint-giant-config", lambda f: ["evaluate", s(f.giant), "--data", "demo"],
         ("giant.pt", "does not match its config", "'embedding'")),
    Case("evaluate-checkpoint-other-dataset", lambda f: ["evaluate", s(f.ck), "--data", s(f.tiny)],
         ("m.pt", "another training graph")),
    Case("evaluate-ks-0", lambda f: ["evaluate", s(f.ck), "--data", "demo", "--ks", "0"],
         ("--ks",), usage=True),
    Case("evaluate-device-cuda", lambda f: ["evaluate", s(f.ck), "--data", "demo", "--device", "cuda"],
         ("CUDA is not available",), marks=[NO_CUDA]),
    Case("evaluate-json-is-the-checkpoint", lambda f: ["evaluate", s(f.ck), "--data", "demo", "--json",
                                                       s(f.ck)], ("--json", "would overwrite")),
    Case("evaluate-json-is-dir", lambda f: ["evaluate", s(f.ck), "--data", "demo", "--json", s(f.d)],
         ("--json", "is a directory")),
    # ------------------------------------------------------------------ datasets
    Case("datasets-stats-unknown", lambda f: ["datasets", "stats", "nosuch"], ("unknown dataset 'nosuch'",)),
    Case("datasets-stats-empty-train-txt", lambda f: ["datasets", "stats", s(f.empty_data)],
         ("no training interactions",)),
    Case("datasets-stats-latin1", lambda f: ["datasets", "stats", s(f.latin_data)],
         lambda f: (f"{f.latin_data / 'train.txt'}:2",)),
    Case("datasets-download-unknown", lambda f: ["datasets", "download", "nosuch", "--root",
                                                 s(f.d / "dl"), "--quiet"], ("unknown dataset 'nosuch'",)),
    Case("datasets-download-demo", lambda f: ["datasets", "download", "demo", "--quiet"],
         ("ships with the package",)),
    Case("datasets-download-closed-port", lambda f: [
        "datasets", "download", "ml-100k", "--root", s(f.d / "dl"), "--url",
        f"http://127.0.0.1:{f.port}/", "--quiet"], lambda f: (f"127.0.0.1:{f.port}", "cannot download")),
    Case("datasets-no-action", lambda f: ["datasets"], ("ACTION",), usage=True),
    # ------------------------------------------------------------------ unlearn
    Case("unlearn-checkpoint-is-dir", lambda f: _unlearn(f, "--edges", f.good, ck=f.d),
         ("is a directory",)),
    Case("unlearn-checkpoint-missing", lambda f: _unlearn(f, "--edges", f.good, ck=f.d / "nope.pt"),
         ("nope.pt", "no such checkpoint")),
    Case("unlearn-checkpoint-truncated", lambda f: _unlearn(f, "--edges", f.good, ck=f.truncated),
         ("truncated.pt", "not a readable")),
    Case("unlearn-checkpoint-wrong-shape", lambda f: _unlearn(f, "--edges", f.good, ck=f.shape),
         ("shape.pt", "does not match its config")),
    Case("unlearn-checkpoint-other-dataset", lambda f: _unlearn(f, "--user", "0", data=s(f.tiny)),
         ("m.pt", "another training graph")),
    Case("unlearn-edges-is-dir", lambda f: _unlearn(f, "--edges", f.d), ("is a directory",)),
    Case("unlearn-edges-missing", lambda f: _unlearn(f, "--edges", f.d / "nope.txt"),
         ("nope.txt", "no such edges file")),
    Case("unlearn-edges-latin1", lambda f: _unlearn(f, "--edges", f.latin1),
         lambda f: (f"{f.latin1}:2", "not UTF-8")),
    Case("unlearn-edges-bom-then-bad-line", lambda f: _unlearn(f, "--edges", f.bom),
         lambda f: (f"{f.bom}:2",)),
    Case("unlearn-edges-malformed", lambda f: _unlearn(f, "--edges", f.malformed),
         lambda f: (f"{f.malformed}:2", "malformed")),
    Case("unlearn-edges-unknown-user", lambda f: _unlearn(f, "--edges", f.unknown),
         ("unknown.txt", "unknown user/item ids")),
    Case("unlearn-edges-unknown-item", lambda f: _unlearn(f, "--edges", f.unknown_item),
         ("unknown_item.txt", "unknown user/item ids")),
    Case("unlearn-edges-absent", lambda f: _unlearn(f, "--edges", f.absent),
         ("absent.txt", "not training edges")),
    Case("unlearn-edges-empty-request", lambda f: _unlearn(f, "--edges", f.empty),
         ("empty.txt", "no (user, item) pairs")),
    Case("unlearn-edges-huge-id", lambda f: _unlearn(f, "--edges", f.huge), ("huge.txt", "too large")),
    Case("unlearn-edges-huge-18-digit-id", lambda f: _unlearn(f, "--edges", f.huge18),
         ("huge18.txt", "unknown user/item ids")),
    Case("unlearn-edges-negative-id", lambda f: _unlearn(f, "--edges", f.negative),
         ("negative.txt", "internal ids")),
    Case("unlearn-edges-duplicates", lambda f: _unlearn(f, "--edges", f.dupes),
         ("dupes.txt", "duplicate edges")),
    Case("unlearn-user-unknown", lambda f: _unlearn(f, "--user", "99999"), ("--user", "unknown user ids")),
    Case("unlearn-user-negative", lambda f: _unlearn(f, "--user", "-1"), ("--user", "unknown user ids")),
    Case("unlearn-user-huge", lambda f: _unlearn(f, "--user", str(10**30)), ("--user", "unknown user ids")),
    Case("unlearn-option-unknown", lambda f: _unlearn(f, "--user", "0", "--option", "nosuch=1"),
         ("no option 'nosuch'", "damping", "steps")),
    Case("unlearn-option-not-key-value", lambda f: _unlearn(f, "--user", "0", "--option", "k"),
         ("--option k", "KEY=VALUE")),
    Case("unlearn-option-wrong-type", lambda f: _unlearn(f, "--user", "0", "--method", "ifru",
                                                         "--option", "prune_ratio=abc"),
         ("'ifru'", "prune_ratio")),
    Case("unlearn-option-bad-value", lambda f: _unlearn(f, "--user", "0", "--method", "ifru",
                                                        "--option", "k=-1"), ("k must be >= 0",)),
    Case("unlearn-method-unknown", lambda f: _unlearn(f, "--user", "0", "--method", "nosuch"),
         ("--method",), usage=True),
    Case("unlearn-no-request", lambda f: _unlearn(f), ("--edges",), usage=True),
    Case("unlearn-random-fraction-0", lambda f: _unlearn(f, "--random-fraction", "0"),
         ("--random-fraction",), usage=True),
    Case("unlearn-device-cuda", lambda f: _unlearn(f, "--user", "0", "--device", "cuda"),
         ("--device cuda", "CUDA is not available"), marks=[NO_CUDA]),
    Case("unlearn-out-is-dir", lambda f: _unlearn(f, "--user", "0", "--out", f.d),
         ("--out", "is a directory")),
    Case("unlearn-out-is-the-checkpoint", lambda f: _unlearn(f, "--user", "0", "--out", f.ck),
         ("--out", "would overwrite the checkpoint")),
    Case("unlearn-out-edges-file-is-the-edges-input", lambda f: _unlearn(
        f, "--edges", f.xedges, "--out", f.d / "x.pt"), ("x.edges.txt", "would overwrite the --edges file")),
    Case("unlearn-json-is-dir", lambda f: _unlearn(f, "--user", "0", "--json", f.d),
         ("--json", "is a directory")),
    Case("unlearn-method-fails-numerically", lambda f: _unlearn(f, "--edges", f.good),
         ("non-finite parameters",), patch=_nan_unlearn),
    # ------------------------------------------------------------------ audit
    Case("audit-original-is-dir", lambda f: _audit(f, original=f.d), ("ORIGINAL_CKPT", "is a directory")),
    Case("audit-unlearned-missing", lambda f: _audit(f, unlearned=f.d / "nope.pt"),
         ("UNLEARNED_CKPT", "no such checkpoint")),
    Case("audit-unlearned-truncated", lambda f: _audit(f, unlearned=f.truncated),
         ("UNLEARNED_CKPT", "truncated.pt", "not a readable")),
    Case("audit-original-wrong-shape", lambda f: _audit(f, original=f.shape),
         ("ORIGINAL_CKPT", "does not match its config")),
    Case("audit-unlearned-of-the-graph-before", lambda f: _audit(f, unlearned=f.ck),
         ("UNLEARNED_CKPT", "after deletion", "another training graph")),
    Case("audit-retrains-missing", lambda f: ["audit", s(f.ck), s(f.unlearned), "--data", "demo", "--edges",
                                              s(f.good), "--retrains", s(f.d / "nope.pt")],
         ("--retrains", "no such checkpoint")),
    Case("audit-reference-not-torch", lambda f: _audit(f, "--reference", f.junk),
         ("--reference", "not a readable")),
    Case("audit-edges-is-dir", lambda f: _audit(f, edges=f.d), ("is a directory",)),
    Case("audit-edges-latin1", lambda f: _audit(f, edges=f.latin1), lambda f: (f"{f.latin1}:2",)),
    Case("audit-edges-bom-then-bad-line", lambda f: _audit(f, edges=f.bom), lambda f: (f"{f.bom}:2",)),
    Case("audit-edges-unknown", lambda f: _audit(f, edges=f.unknown), ("unknown.txt", "unknown user/item ids")),
    Case("audit-edges-absent", lambda f: _audit(f, edges=f.absent), ("absent.txt", "not training edges")),
    Case("audit-edges-empty-request", lambda f: _audit(f, edges=f.empty), ("empty.txt", "no (user, item)")),
    Case("audit-edges-huge-id", lambda f: _audit(f, edges=f.huge), ("huge.txt", "too large")),
    Case("audit-ks-0", lambda f: _audit(f, "--ks", "0"), ("--ks",), usage=True),
    Case("audit-shadows-negative", lambda f: ["audit", s(f.ck), s(f.unlearned), "--data", "demo",
                                              "--edges", s(f.good), "--shadows", "-1"], ("--shadows",)),
    Case("audit-device-cuda", lambda f: _audit(f, "--device", "cuda"),
         ("--device cuda", "CUDA is not available"), marks=[NO_CUDA]),
    Case("audit-json-is-the-edges-file", lambda f: _audit(f, "--json", f.good), ("--json", "would overwrite")),
    Case("audit-json-is-dir", lambda f: _audit(f, "--json", f.d), ("--json", "is a directory")),
    # ------------------------------------------------------------------ reproduce
    Case("reproduce-data-root-missing", lambda f: _reproduce(f, root=f.d / "nope"),
         ("--data-root", "no such directory")),
    Case("reproduce-data-root-is-file", lambda f: _reproduce(f, root=f.good),
         ("--data-root", "not a directory")),
    Case("reproduce-data-root-without-the-data", lambda f: _reproduce(f, "--datasets", "ml100k"),
         ("ml100k", "no train.txt")),
    Case("reproduce-models-unknown", lambda f: _reproduce(f, "--models", "nosuch"), ("models", "nosuch")),
    Case("reproduce-methods-unknown", lambda f: _reproduce(f, "--methods", "nosuch"),
         ("unknown unlearning method 'nosuch'",)),
    Case("reproduce-methods-unknown-option", lambda f: _reproduce(f, "--methods", "ifru:nosuch=1"),
         ("--methods ifru:nosuch=1", "no option 'nosuch'")),
    Case("reproduce-deletions-unknown", lambda f: _reproduce(f, "--deletions", "random:0.5"),
         ("deletions",)),
    Case("reproduce-shadows-1", lambda f: _reproduce(f, "--shadows", "1"), ("shadows",)),
    Case("reproduce-epochs-0", lambda f: _reproduce(f, "--epochs", "0"), ("--epochs",)),
    Case("reproduce-out-is-file", lambda f: ["reproduce", "alteraser", "--preset", "smoke",
                                             "--data-root", s(f.d), "--out", s(f.good)],
         ("--out", "not a directory")),
    Case("reproduce-device-cuda", lambda f: _reproduce(f, "--device", "cuda"),
         ("CUDA is not available",), marks=[NO_CUDA]),
    Case("reproduce-table-unknown", lambda f: ["reproduce", "nosuch", "--data-root", s(f.d)],
         ("table",), usage=True),
    # ------------------------------------------------------------------ deletion service
    Case("store-import-db-is-dir", lambda f: ["store", "import", "demo", "--db", s(f.d), "--quiet"],
         ("not a file",)),
    Case("store-import-foreign-db", lambda f: ["store", "import", "demo", "--db", s(f.foreign_db), "--quiet"],
         ("other.sqlite", "not a graphforget store")),
    Case("store-import-other-dataset", lambda f: ["store", "import", s(f.tiny), "--db", s(f.db), "--quiet"],
         ("store.sqlite",)),
    Case("store-import-model-onto-a-bound-store",
         lambda f: ["store", "import", "demo", "--db", s(f.db), "--model", "mf", "--checkpoint",
                    s(f.d / "new.pt"), "--quiet"], ("bound checkpoint",)),
    Case("store-rebind-checkpoint-of-another-graph",
         lambda f: ["store", "rebind", "--db", s(f.db), "--checkpoint", s(f.ck)], ("m.pt",)),
    Case("store-rebind-another-series-of-another-graph",
         lambda f: ["store", "rebind", "--db", s(f.db), "--checkpoint", s(f.shape)], ("shape.pt",)),
    Case("store-retrain-onto-an-existing-file",
         lambda f: ["store", "retrain", "--db", s(f.db), "--checkpoint", s(f.ck)], ("already exists",)),
    Case("store-migrate-missing", lambda f: ["store", "migrate", "--db", s(f.d / "nope.sqlite")],
         ("nope.sqlite",)),
    Case("store-migrate-foreign-db", lambda f: ["store", "migrate", "--db", s(f.foreign_db)],
         ("not a graphforget store",)),
    Case("forget-db-missing", lambda f: _forget(f, "--user", "0", db=f.d / "nope.sqlite"), ("nope.sqlite",)),
    Case("forget-db-is-dir", lambda f: _forget(f, "--user", "0", db=f.d), ("not a file",)),
    Case("forget-db-not-sqlite", lambda f: _forget(f, "--user", "0", db=f.junk), ("not a readable SQLite",)),
    Case("forget-db-foreign", lambda f: _forget(f, "--user", "0", db=f.foreign_db), ("not a graphforget store",)),
    Case("forget-user-unknown", lambda f: _forget(f, "--user", "nobody"), ("unknown user ids", "nobody")),
    Case("forget-item-unknown", lambda f: _forget(f, "--item", "nothing"), ("unknown item ids",)),
    Case("forget-edges-already-forgotten", lambda f: _forget(f, "--edges", f.good_raw), ("already forgotten",)),
    Case("forget-edges-absent", lambda f: _forget(f, "--edges", f.absent_raw), ("not training interactions",)),
    Case("forget-edges-empty", lambda f: _forget(f, "--edges", f.empty), ("empty.txt",)),
    Case("forget-edges-latin1", lambda f: _forget(f, "--edges", f.latin1), ("latin1.txt",)),
    Case("forget-edges-is-dir", lambda f: _forget(f, "--edges", f.d), ("is a directory",)),
    Case("forget-option-unknown", lambda f: _forget(f, "--user", "0", "--option", "nosuch=1"), ("nosuch",)),
    Case("forget-method-unknown", lambda f: _forget(f, "--user", "0", "--method", "nosuch"), ("nosuch",)),
    Case("forget-request-id-control-chars", lambda f: _forget(f, "--user", "0", "--request-id", "a\x1b[2Jb"),
         ("request id",)),
    Case("forget-checkpoint-of-another-series", lambda f: _forget(f, "--user", "0", ck=f.unlearned),
         ("series",)),
    Case("forget-key-file-missing",
         lambda f: _forget(f, "--user", "0", db=f.nokey / "store.sqlite", ck=f.nokey / "m.pt"),
         ("key file is missing",)),
    Case("forget-batch-not-json", lambda f: _forget(f, "--batch", f.good), ("--batch", ":1: not JSON")),
    Case("forget-batch-empty", lambda f: _forget(f, "--batch", f.empty), ("--batch", "no requests")),
    Case("forget-batch-is-dir", lambda f: _forget(f, "--batch", f.d), ("--batch", "is a directory")),
    Case("forget-batch-latin1", lambda f: _forget(f, "--batch", f.latin1), ("--batch", "not UTF-8")),
    Case("forget-batch-not-an-object", lambda f: _forget(f, "--batch", f.jsonlist), (":1: expected a JSON object",)),
    Case("forget-batch-two-kinds", lambda f: _forget(f, "--batch", f.twokinds), ("exactly one of",)),
    Case("forget-batch-with-request-id",
         lambda f: _forget(f, "--batch", f.twokinds, "--request-id", "x"), ("its own",)),
    Case("forget-key-is-dir", lambda f: _forget(f, "--user", "0", "--key", f.d), ("a directory",)),
    Case("forget-key-not-a-key", lambda f: _forget(f, "--user", "0", "--key", f.good), ("not a graphforget store key",)),
    Case("forget-key-of-another-store",
         lambda f: _forget(f, "--user", "0", "--key", f.d / "store.sqlite.key",
                           db=f.nokey / "store.sqlite", ck=f.nokey / "m.pt"), ("is not the key of",)),
    Case("forget-device-cuda", lambda f: _forget(f, "--user", "0", "--device", "cuda"),
         ("CUDA is not available",), marks=[NO_CUDA]),
    Case("history-db-missing", lambda f: ["history", "--db", s(f.d / "nope.sqlite")], ("nope.sqlite",)),
    Case("history-db-is-dir", lambda f: ["history", "--db", s(f.d)], ("not a file",)),
    Case("history-db-foreign", lambda f: ["history", "--db", s(f.foreign_db)], ("not a graphforget store",)),
    Case("history-db-truncated", lambda f: ["history", "--db", s(f.truncated)], ("truncated.pt",)),
    Case("verify-db-missing", lambda f: ["verify", "--db", s(f.d / "nope.sqlite")], ("nope.sqlite",)),
    Case("verify-db-foreign", lambda f: ["verify", "--db", s(f.foreign_db)], ("not a graphforget store",)),
    Case("verify-checkpoint-of-another-series",
         lambda f: ["verify", "--db", s(f.db), "--checkpoint", s(f.unlearned)], ("series",)),
    Case("verify-checkpoint-folder-missing",
         lambda f: ["verify", "--db", s(f.db), "--checkpoint", s(f.d / "nope" / "m.pt")], ("no such",)),
    Case("forget-unlearning-failed", lambda f: ["forget", "--db", s(f.good), "--checkpoint", s(f.ck),
                                                "--user", "7", "--quiet"],
         ("unlearning failed", "model is unchanged"), patch=_failing_forgetter),
]


def _forget(f, *extra, db=None, ck=None) -> list:
    return ["forget", "--db", s(db or f.db), "--checkpoint", s(ck or f.ck), "--method", "if",
            "--fallback", "none", "--no-audit", "--quiet", *[s(x) for x in extra]]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(fz, case, capsys, monkeypatch):
    if case.patch is not None:
        case.patch(monkeypatch, fz)
    argv = case.argv(fz)
    before = _snapshot(fz.d)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - the traceback is the failure being tested for
        pytest.fail(f"{argv} ended in a traceback:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err
    if case.usage:
        assert lines and lines[-1].startswith("graphforget") and "error" in lines[-1], err
        assert lines[0].startswith("usage: graphforget"), err
    else:
        assert len(lines) == 1 and lines[0].startswith("graphforget: error: "), err
    expect = case.expect(fz) if callable(case.expect) else case.expect
    for fragment in expect:
        assert fragment in lines[-1], (fragment, lines[-1])
    assert _snapshot(fz.d) == before  # nothing written, nothing changed (the checkpoint included)
    assert not fz.rep.exists()  # reproduce made no results folder


def test_corpus_covers_every_command():
    commands = {c.id.split("-")[0] for c in CASES}
    assert {"train", "evaluate", "datasets", "unlearn", "audit", "reproduce", "store", "forget",
            "history", "verify"} <= commands
    from graphforget.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) <= commands, set(sub.choices) - commands
    assert len({c.id for c in CASES}) == len(CASES)


def test_bom_in_a_data_file_is_accepted(fz, tmp_path, capsys):
    """A UTF-8 byte-order mark is not an error: the LightGCN reader skips it like the edge reader."""
    folder = tmp_path / "bom_data"
    folder.mkdir()
    (folder / "train.txt").write_text("\ufeff" + "0 0 1\n1 1 2\n2 0 2\n")
    (folder / "test.txt").write_text("0 2\n1 0\n")
    plain = load_dataset(fz.tiny)
    assert load_dataset(folder).fingerprint() == plain.fingerprint()


def test_valid_options_and_device_cpu_still_work(fz, tmp_path):
    """The checks refuse only bad input: repeated --option, several in one with commas, an
    explicit seed, and --device cpu on unlearn and audit."""
    out = tmp_path / "o.pt"
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(_unlearn(fz, "--edges", fz.good, "--option", "steps=1,damping=0.05",
                                 "--option", "seed=3", "--device", "cpu", "--out", out))
    assert code == 0 and out.is_file() and (tmp_path / "o.edges.txt").is_file()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["audit", s(fz.ck), s(out), "--data", "demo", "--edges", s(fz.good),
                         "--retrains", s(fz.unlearned), s(out), "--device", "cpu",
                         "--json", s(tmp_path / "a.json")])
    assert code == 0 and "Verdicts" in stdout.getvalue() and (tmp_path / "a.json").is_file()


def test_preset_method_specs_pass_the_reproduce_check():
    from graphforget.cli.reproduce import _check_methods
    from graphforget.reproduce.tables import PRESETS

    for table in PRESETS.values():
        for preset in table.values():
            _check_methods(preset["methods"])
    _check_methods(["sisa:shards=3", "receraser:shards=2", "finetune:max_epochs=1"])
    with pytest.raises(ValueError, match="--seeds"):
        _check_methods(["ifru:seed=1"])


def test_unknown_option_is_a_value_error_and_a_type_error():
    from graphforget.unlearning import get_unlearner

    for kind in (ValueError, TypeError):
        with pytest.raises(kind, match="no option 'nosuch'.*damping"):
            get_unlearner("ifru", nosuch=1)
    with pytest.raises(ValueError, match="'sisa' has no option 'k'; its options: seed, processes"):
        get_unlearner("sisa", k=1)
