"""Crash safety of the deletion service: SIGKILL a process running forget requests at random
points, restart, reconcile, and check that store, model and ledger agree and that every request
is applied fully or not at all.

To keep 20 trials well under a minute, one "zygote" subprocess imports torch once and forks a
fresh child per trial; the test SIGKILLs the child after a random delay drawn uniformly over
the (measured) duration of the whole request sequence.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import random_graph

from graphforget.models import build_model
from graphforget.service import Forgetter, InteractionStore
from graphforget.train import file_sha256, save_checkpoint

TESTS = Path(__file__).resolve().parent
TRIALS = 20


def build_base(d: Path) -> None:
    """Store + bound base checkpoint (tiny LightGCN) in ``d``."""
    d.mkdir(parents=True)
    g = base_graph()
    with InteractionStore(d / "store.sqlite") as s:
        s.import_graph(g)
    save_checkpoint(d / "model.pt", build_model("lightgcn", 30, 40, dim=8, layers=2, seed=0), g)
    open_forgetter(d).close()


def open_forgetter(d: Path) -> Forgetter:
    from test_service import GradientSteps

    return Forgetter(d / "store.sqlite", d / "model.pt", unlearner=GradientSteps(), fallback=None,
                     audit=None)


def base_graph():
    return random_graph(30, 40, 150, seed=5)


def requests() -> list[tuple[str, object, str]]:
    """Three requests on the base graph: some edges, a whole user, more edges (disjoint)."""
    e = base_graph().train_edges
    user = int(e[0, 40])
    rest = e[:, e[0] != user]
    pairs = [(str(u), str(i)) for u, i in rest.t().tolist()]
    return [("edges", pairs[:3], "crash-1"), ("user", str(user), "crash-2"),
            ("edges", pairs[3:5], "crash-3")]


def submit(f: Forgetter, req):
    kind, arg, rid = req
    return f.forget_user(arg, request_id=rid) if kind == "user" else f.forget(arg, request_id=rid)


def run_worker(d: str) -> None:
    """What the killed child does: open (reconcile) and apply the request sequence."""
    f = open_forgetter(Path(d))
    for req in requests():
        submit(f, req)
    f.close()


ZYGOTE = r"""
import os, sys, time, traceback
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import test_service_crash as T
T.run_worker(sys.argv[2])          # warm-up: lazy imports, first-call costs
t = time.perf_counter()
T.run_worker(sys.argv[3])
print("ready", time.perf_counter() - t, flush=True)
for line in sys.stdin:
    d = line.strip()
    if not d:
        break
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            T.run_worker(d)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    print("pid", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("exit", status, flush=True)
"""


def reference(template: Path, tmp: Path) -> list[tuple[str, torch.Tensor]]:
    """(graph fingerprint, embedding) after 0, 1, 2, 3 requests, from an uninterrupted run."""
    d = tmp / "reference"
    shutil.copytree(template, d)
    torch.set_num_threads(1)
    f = open_forgetter(d)
    states = [(f.graph.fingerprint(), f.model.embedding.detach().clone())]
    for req in requests():
        submit(f, req)
        states.append((f.graph.fingerprint(), f.model.embedding.detach().clone()))
    f.close()
    return states


def check_consistent(d: Path, ref, base_sha: str) -> tuple[int, bool]:
    """Reconcile after the crash, check all-or-nothing, then finish the sequence by retrying
    every request id. Returns (requests applied before the crash, orphan file seen)."""
    with InteractionStore(d / "store.sqlite") as s:
        pointer = s.current_checkpoint()["name"]
    orphan = any((p.name.startswith("model.r-") and p.name != pointer) or p.name.endswith(".tmp")
                 for p in d.iterdir())
    f = open_forgetter(d)
    reqs = requests()
    rows = [e for e in f.history() if e.kind in ("edges", "user", "item")]
    assert all(e.status == "applied" for e in rows)
    k = len(rows)
    assert [e.request_id for e in rows] == [r[2] for r in reqs[:k]]  # a prefix, in order
    # store, served graph and model are the state after exactly k requests
    assert f.store.to_graph().fingerprint() == f.graph.fingerprint() == ref[k][0]
    assert torch.allclose(f.model.embedding, ref[k][1], atol=1e-6)
    name = rows[-1].checkpoint if k else "model.pt"
    sha = rows[-1].checkpoint_sha256 if k else base_sha
    assert f.current == {"name": name, "sha256": sha, "fingerprint": f.store.graph_digest(f.graph)}
    assert file_sha256(d / name) == sha
    assert sorted(p.name for p in d.iterdir() if ".pt" in p.name and not p.name.endswith(".lock")) \
        == sorted({"model.pt", name})
    # tombstones are exactly the pairs of the applied requests
    n_dead = f.store.conn.execute("SELECT COUNT(*) FROM deleted").fetchone()[0]
    assert n_dead == sum(e.num_edges + e.num_heldout for e in rows)
    for i, req in enumerate(reqs):
        assert submit(f, req).replayed == (i < k)
    assert f.graph.fingerprint() == f.store.to_graph().fingerprint() == ref[-1][0]
    assert torch.allclose(f.model.embedding, ref[-1][1], atol=1e-6)
    f.close()
    return k, orphan


def test_sigkill_at_random_points_is_all_or_nothing(tmp_path):
    template = tmp_path / "template"
    build_base(template)
    base_sha = file_sha256(template / "model.pt")
    ref = reference(template, tmp_path)
    for name in ("warm1", "warm2"):
        shutil.copytree(template, tmp_path / name)
    proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(TESTS), str(tmp_path / "warm1"),
                             str(tmp_path / "warm2")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "ready", f"zygote failed: {line}"
        duration = float(line[1])
        rng = random.Random(0)
        outcomes = []
        for trial in range(TRIALS):
            d = tmp_path / f"trial{trial}"
            shutil.copytree(template, d)
            proc.stdin.write(f"{d}\n")
            proc.stdin.flush()
            pid = int(proc.stdout.readline().split()[1])
            time.sleep(rng.uniform(0.0, 1.1 * duration))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = int(proc.stdout.readline().split()[1])
            killed = os.WIFSIGNALED(status)
            assert killed or os.WEXITSTATUS(status) == 0, f"trial {trial}: worker failed"
            k, orphan = check_consistent(d, ref, base_sha)
            assert killed or k == 3
            outcomes.append((k, killed, orphan))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    print("outcomes (applied, killed, orphan):", outcomes, "duration", duration)
    # the kills landed at different points of the sequence
    assert len({k for k, _, _ in outcomes}) >= 2, outcomes
    assert any(killed for _, killed, _ in outcomes), outcomes
