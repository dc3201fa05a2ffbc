"""Issue 13 items 2 and 8: imports that would make a store unusable are refused before anything
is written; a replaced or lost bound checkpoint is recovered with ``store rebind`` /
``store retrain`` (rows of the hash chain); a stopped process holding the lock times out; NaN /
inf and oversized crafted checkpoints are refused at bind; ``verify`` warns about leftover
superseded checkpoints."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import random_graph

import graphforget.cli as cli
from graphforget.models import build_model
from graphforget.service import (Forgetter, InteractionStore, Ledger, LockTimeout,
                                 rebind_checkpoint, verified, verify_store)
from graphforget.train import save_checkpoint
from test_service import GradientSteps, make_service, raw_pairs


def write_data(d, g):
    d.mkdir()
    for split in ("train", "test"):
        e = getattr(g, f"{split}_edges")
        (d / f"{split}.txt").write_text("\n".join(
            " ".join(map(str, [u] + e[1][e[0] == u].tolist())) for u in range(g.num_users)
            if (e[0] == u).any()) + "\n")
    return d


def files_bytes(*paths):
    return {str(p): p.read_bytes() for p in paths}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("graphforget: error: "), err
    return lines[0]


def cli_store(tmp_path, capsys):
    data = write_data(tmp_path / "data", random_graph(20, 25, 90, seed=1))
    db, ckpt = tmp_path / "s.sqlite", tmp_path / "m.pt"
    assert cli.main(["store", "import", str(data), "--db", str(db), "--model", "mf", "--dim", "8",
                     "--epochs", "1", "--checkpoint", str(ckpt), "--quiet"]) == 0
    capsys.readouterr()
    return data, db, ckpt


def opens(db, ckpt) -> None:
    Forgetter(db, ckpt, unlearner=GradientSteps(), fallback=None, audit=None).close()


# ---------------------------------------------------------------------- item 2: imports
@pytest.mark.parametrize("extra", [
    ["--model", "mf", "--dim", "8", "--epochs", "1", "--seed", "1"],  # re-run, another seed
    ["--seed", "1"],                                                    # another split, no model
    ["--model", "mf", "--dim", "8", "--epochs", "1"],                   # same data, retrain over
])
def test_reimport_refused_store_and_checkpoint_unchanged(tmp_path, capsys, extra):
    data, db, ckpt = cli_store(tmp_path, capsys)
    before = files_bytes(db, ckpt)
    assert cli.main(["store", "import", str(data), "--db", str(db), "--checkpoint", str(ckpt),
                     "--quiet", *extra]) == 2
    one_line_error(capsys)
    assert files_bytes(db, ckpt) == before
    opens(db, ckpt)  # still usable
    # training onto a new path of a bound store is refused too
    if "--model" in extra:
        other = tmp_path / "other.pt"
        argv = ["store", "import", str(data), "--db", str(db), "--checkpoint", str(other), "--quiet", *extra]
        assert cli.main(argv) == 2
        one_line_error(capsys)
        assert not other.exists()


def test_same_data_reimport_is_still_a_reload(tmp_path, capsys):
    data, db, ckpt = cli_store(tmp_path, capsys)
    assert cli.main(["store", "import", str(data), "--db", str(db), "--quiet"]) == 0
    assert "+0 rows" in capsys.readouterr().out
    opens(db, ckpt)


def test_second_dataset_refused_no_merge(tmp_path, capsys):
    data, db, ckpt = cli_store(tmp_path, capsys)
    other = write_data(tmp_path / "other", random_graph(20, 25, 90, seed=2))
    with InteractionStore(db, readonly=True) as s:
        rows_before = s.counts()
    before = files_bytes(db, ckpt)
    assert cli.main(["store", "import", str(other), "--db", str(db), "--quiet"]) == 2
    line = one_line_error(capsys)
    assert "would gain rows" in line and "nothing written" in line
    assert files_bytes(db, ckpt) == before
    with InteractionStore(db, readonly=True) as s:
        assert s.counts() == rows_before
    opens(db, ckpt)


def test_model_onto_existing_file_refused(tmp_path, capsys):
    data, db, ckpt = cli_store(tmp_path, capsys)
    before = files_bytes(db, ckpt)
    fresh = tmp_path / "fresh.sqlite"  # another store would overwrite the first one's checkpoint
    assert cli.main(["store", "import", str(data), "--db", str(fresh), "--model", "mf", "--dim", "8",
                     "--epochs", "1", "--checkpoint", str(ckpt), "--quiet"]) == 2
    assert "already exists" in one_line_error(capsys)
    assert files_bytes(db, ckpt) == before and not fresh.exists()


# ---------------------------------------------------------------------- item 2: recovery
def test_replaced_base_checkpoint_is_detected_and_rebound(tmp_path, capsys):
    f, g = make_service(tmp_path)
    f.close()
    db, ckpt = tmp_path / "store.sqlite", tmp_path / "model.pt"
    # `graphforget train --out model.pt` onto the bound base checkpoint
    save_checkpoint(ckpt, build_model("mf", g.num_users, g.num_items, dim=8, layers=2, seed=5), g,
                    {"epochs": 2})
    with pytest.raises(ValueError, match="replaced.*store rebind --db"):
        opens(db, ckpt)
    # a checkpoint of another graph is refused by rebind, nothing written
    h = random_graph(20, 25, 90, seed=2)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, build_model("mf", h.num_users, h.num_items, dim=8, layers=2), h)
    before = files_bytes(db)
    assert cli.main(["store", "rebind", "--db", str(db), "--checkpoint", str(wrong)]) == 2
    assert "another training graph" in one_line_error(capsys)
    assert files_bytes(db) == before
    assert cli.main(["store", "rebind", "--db", str(db), "--checkpoint", str(ckpt)]) == 0
    assert "bound model.pt" in capsys.readouterr().out
    f = Forgetter(db, ckpt, unlearner=GradientSteps(), fallback=None, audit=None)
    f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="after-rebind")
    rows = f.history()
    assert [r.kind for r in rows] == ["import", "bind", "bind", "edges"]
    assert rows[2].request["rebind"] is True and rows[2].request["recipe"]["model"]["model"] == "mf"
    f.close()
    assert verified(verify_store(db, ckpt))
    # rebinding the current checkpoint again is refused
    assert cli.main(["store", "rebind", "--db", str(db), "--checkpoint",
                     str(tmp_path / rows[-1].checkpoint)]) == 0
    capsys.readouterr()
    assert cli.main(["store", "rebind", "--db", str(db), "--checkpoint",
                     str(tmp_path / rows[-1].checkpoint)]) == 2
    assert "already the store's current checkpoint" in one_line_error(capsys)


def test_lost_checkpoint_is_recovered_by_retrain(tmp_path, capsys):
    f, g = make_service(tmp_path)
    res = f.forget(raw_pairs(g, g.train_edges[:, :3]), request_id="r1")
    f.close()
    db, ckpt = tmp_path / "store.sqlite", tmp_path / "model.pt"
    (tmp_path / res.checkpoint).unlink()  # the bound (current) checkpoint is lost
    with pytest.raises(ValueError, match="missing.*store retrain --db"):
        opens(db, ckpt)
    new = tmp_path / "model-2.pt"
    assert cli.main(["store", "retrain", "--db", str(db), "--checkpoint", str(ckpt)]) == 2
    assert "already exists" in one_line_error(capsys)  # never overwrites a file
    assert cli.main(["store", "retrain", "--db", str(db), "--checkpoint", str(new),
                     "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "retrained mf" in out and "bound model-2.pt" in out
    with InteractionStore(db, readonly=True) as s:
        row = Ledger(s.conn).history()[-1]
        assert row.kind == "retrain" and row.checkpoint == "model-2.pt"
        assert row.options["epochs"] == 1 and row.options["lr"] == 0.05  # recorded recipe + override
        assert s.get_meta("checkpoint_series") == "model-2.pt"
    f = Forgetter(db, new, unlearner=GradientSteps(), fallback=None, audit=None)
    assert f.graph.fingerprint() == g.remove_edges(g.train_edges[:, :3]).fingerprint()
    f.forget(raw_pairs(g, g.train_edges[:, 3:5]), request_id="r2")
    f.close()
    assert verified(verify_store(db, new))


def test_retrain_options_override_the_recorded_recipe(tmp_path, capsys):
    f, g = make_service(tmp_path)
    f.close()
    db = tmp_path / "store.sqlite"
    assert cli.main(["store", "retrain", "--db", str(db), "--checkpoint", str(tmp_path / "n.pt"),
                     "--epochs", "1", "--model", "mf", "--dim", "4"]) == 0
    capsys.readouterr()
    with InteractionStore(db, readonly=True) as s:
        recipe = Ledger(s.conn).history()[-1].request["recipe"]
    assert recipe["model"]["dim"] == 4 and recipe["train_config"]["epochs"] == 1
    opens(db, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="unknown training options"):
        from graphforget.service import retrain_checkpoint
        retrain_checkpoint(db, tmp_path / "m.pt", config={"bogus": 1})


# ---------------------------------------------------------------------- item 8
def test_lock_held_by_stopped_process_times_out(tmp_path, capsys):
    f, g = make_service(tmp_path)
    f.close()
    lock = tmp_path / "model.pt.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGSTOP)  # a stopped process keeps its flock
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match=f"lock file {lock}.*pid {holder.pid}"):
            Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(),
                      fallback=None, lock_timeout=0.3)
        assert time.monotonic() - t0 < 10
        base = ["forget", "--db", str(tmp_path / "store.sqlite"), "--checkpoint",
                str(tmp_path / "model.pt"), "--user", "0", "--quiet", "--lock-timeout", "0.2"]
        assert cli.main(base) == 2
        line = one_line_error(capsys)
        assert str(lock) in line and "timed out" in line
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    opens(tmp_path / "store.sqlite", tmp_path / "model.pt")  # released by the kill


def _fresh_store(tmp_path, g):
    with InteractionStore(tmp_path / "store.sqlite") as s:
        s.import_graph(g)
    return tmp_path / "store.sqlite"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_checkpoint_refused_at_bind(tmp_path, bad):
    g = random_graph(20, 25, 90, seed=1)
    db = _fresh_store(tmp_path, g)
    m = build_model("mf", g.num_users, g.num_items, dim=8, layers=2, seed=0)
    with torch.no_grad():
        next(m.parameters())[0, 0] = bad
    save_checkpoint(tmp_path / "model.pt", m, g)
    with pytest.raises(ValueError, match="non-finite"):
        opens(db, tmp_path / "model.pt")
    with InteractionStore(db, readonly=True) as s:
        assert s.current_checkpoint() is None
        assert [r.kind for r in Ledger(s.conn).history()] == ["import"]
    with pytest.raises(ValueError, match="non-finite"):
        rebind_checkpoint(db, tmp_path / "model.pt")


def _crafted(tmp_path, g, num_users, dim):
    """A weights-only checkpoint of the store's graph fingerprint whose config claims
    ``num_users`` users and ``dim`` dims, with stride-0 tensors of the claimed shapes (tiny file)."""
    from graphforget.train.checkpoint import _expected_shapes

    m = build_model("mf", g.num_users, g.num_items, dim=8, layers=2, seed=0)
    cfg = {**m.config(), "num_users": num_users, "dim": dim}
    state = {k: torch.zeros(1).expand(*shape) for k, shape in _expected_shapes(cfg).items()}
    payload = {"format": "graphforget-checkpoint-v1", "model": cfg, "state_dict": state,
               "graph_fingerprint": g.fingerprint(), "graph_stats": g.stats(),
               "train_config": {}, "extra": {}}
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    assert path.stat().st_size < 100_000
    return path


@pytest.mark.parametrize("claim", ["users", "dim"])
def test_oversized_crafted_checkpoint_refused_before_allocating(tmp_path, monkeypatch, claim):
    import importlib
    ck = importlib.import_module("graphforget.train.checkpoint")

    g = random_graph(20, 25, 90, seed=1)
    db = _fresh_store(tmp_path, g)
    path = _crafted(tmp_path, g, 10**9 if claim == "users" else g.num_users,
                    8 if claim == "users" else 10**8)

    def no_build(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(ck, "_rebuild", no_build)
    match = "claims 1000000000 users" if claim == "users" else "claims shape"
    with pytest.raises(ValueError, match=match):
        opens(db, path)
    with pytest.raises(ValueError, match=match):
        rebind_checkpoint(db, path)
    with InteractionStore(db, readonly=True) as s:
        assert s.current_checkpoint() is None


def test_verify_warns_about_leftover_superseded_checkpoint(tmp_path, capsys):
    f, g = make_service(tmp_path)
    r1 = f.forget(raw_pairs(g, g.train_edges[:, :2]), request_id="r1")
    f._remove_orphans = lambda: []  # killed between the commit and the clean-up
    r2 = f.forget(raw_pairs(g, g.train_edges[:, 2:4]), request_id="r2")
    f.close()
    assert (tmp_path / r1.checkpoint).exists()
    run = ["verify", "--db", str(tmp_path / "store.sqlite"), "--checkpoint", str(tmp_path / "model.pt")]
    assert cli.main(run) == 0  # a warning, not a failure
    lines = capsys.readouterr().out.splitlines()
    warn = [line for line in lines if line.startswith("warn  leftover files:")]
    assert len(warn) == 1 and r1.checkpoint in warn[0] and r2.checkpoint not in warn[0]
    assert lines[-1] == "verified"
    opens(tmp_path / "store.sqlite", tmp_path / "model.pt")  # the next start removes it
    assert not (tmp_path / r1.checkpoint).exists()
    assert cli.main(run) == 0
    assert "leftover" not in capsys.readouterr().out


def test_library_import_into_a_bound_store_refuses_new_rows(tmp_path):
    """``InteractionStore.import_graph`` (not only the CLI) refuses rows a bound store's
    checkpoint was not trained on, before writing; a reload of the same rows still works."""
    from test_service import make_service

    f, g = make_service(tmp_path)
    f.close()
    other = random_graph(20, 25, 90, seed=9)
    with InteractionStore(tmp_path / "store.sqlite") as store:
        before = store.counts()
        with pytest.raises(ValueError, match="is bound to checkpoint .* refused, nothing written"):
            store.import_graph(other)
        assert store.counts() == before
        assert store.import_graph(g)["rows_added"] == 0  # a reload
    Forgetter(tmp_path / "store.sqlite", tmp_path / "model.pt", unlearner=GradientSteps(),
              fallback=None, audit=None).close()  # still serviceable
