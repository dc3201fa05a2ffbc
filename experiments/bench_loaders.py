"""Loader benchmark: the vectorised loaders against the previous implementation, same run.

What it measures, each loader call in a fresh subprocess (``OMP_NUM_THREADS=1``):

* **time**: best of ``--repeat`` calls (``time.perf_counter``), the first call included;
* **peak memory**: the rise of the process's peak resident set (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the call; ``ru_maxrss`` where that is not possible)
  over the resident set before the call — numpy, torch and Python allocations alike — and the
  ``tracemalloc`` peak (Python objects and numpy buffers, not torch's allocator) in a separate
  call;
* **identical**: a sha256 of every output tensor in order and of the raw id lists, compared
  between the two implementations.

"old" is the package as of ``--old-ref`` (default ``8b7041b``, the commit before the rewrite),
extracted with ``git archive`` into a temporary folder and put first on ``PYTHONPATH``; "new"
is the working tree. Files: the real data in ``../shared/data`` and, for the delimited formats,
synthetic 1M-row files derived from MovieLens latest-small (its 100,836 rows ten times, user
ids shifted per copy) in the Amazon, Book-Crossing (quoted, Latin-1), RecBole, ``ratings.dat``
and ``ratings.csv`` layouts, plus one LightGCN ``train.txt`` joining Gowalla's three files
(1,027,370 interactions).

Finally the resident size of an :class:`InteractionGraph` and its normalised adjacency
(``graph.adjacency``: sorted COO entries, and the cached CSR ``graph.adj()``) per training
interaction: tensor bytes counted by storage, and the measured rise of the resident set.

Rows go to ``experiments/results/bench_loaders.jsonl`` (one JSON object per case).

Usage::

    OMP_NUM_THREADS=1 python experiments/bench_loaders.py             # everything
    python experiments/bench_loaders.py --no-synthetic --repeat 1     # real files only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = (REPO / ".." / "shared" / "data").resolve()
RESULTS = HERE / "results"
OLD_REF = "8b7041b"


# ------------------------------------------------------------------ worker side
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _digest(obj) -> str:
    import hashlib

    import torch

    h = hashlib.sha256()

    def put(o):
        if o is None:
            h.update(b"<none>")
        elif isinstance(o, torch.Tensor):
            h.update(f"<t{o.dtype}{tuple(o.shape)}>".encode())
            h.update(o.contiguous().numpy().tobytes())
        elif isinstance(o, (list, tuple)):
            h.update(f"<l{len(o)}>".encode())
            h.update("\x00".join(map(str, o)).encode("utf-8", "surrogatepass"))
        else:
            h.update(repr(o).encode())

    if isinstance(obj, torch.Tensor):
        put(obj)
    elif hasattr(obj, "train_edges"):
        for o in (obj.num_users, obj.num_items, obj.train_edges, obj.valid_edges, obj.test_edges,
                  obj.user_ids, obj.item_ids):
            put(o)
    else:
        for o in (obj.num_users, obj.num_items, obj.users, obj.items, obj.ratings, obj.timestamps,
                  list(obj.user_ids), list(obj.item_ids)):
            put(o)
    return h.hexdigest()[:16]


def _count(obj) -> int:
    if hasattr(obj, "train_edges"):
        return int(obj.train_edges.shape[1] + obj.valid_edges.shape[1] + obj.test_edges.shape[1])
    if hasattr(obj, "users"):
        return len(obj)
    return int(obj.shape[1])


def _call(spec: dict):
    from graphforget.data import loaders

    fn = getattr(loaders, spec["fn"])
    return fn(*spec.get("args", []), **spec.get("kwargs", {}))


def worker(spec: dict, repeat: int) -> dict:
    import gc
    import resource
    import tracemalloc

    import torch

    torch.set_num_threads(1)
    import graphforget.data.loaders  # noqa: F401  (imports outside the measurement)

    out = {"module": str(Path(graphforget.data.loaders.__file__).parent)}
    gc.collect()
    rss0 = _rss_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        hwm = lambda: _rss_kb("VmHWM")  # noqa: E731
        out["peak_method"] = "VmHWM"
    except OSError:
        hwm = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
        out["peak_method"] = "ru_maxrss"
    t0 = time.perf_counter()
    result = _call(spec)
    times = [time.perf_counter() - t0]
    out["peak_rss_mb"] = max(0, hwm() - rss0) / 1024
    out["digest"], out["interactions"] = _digest(result), _count(result)
    del result
    for _ in range(repeat - 1):
        gc.collect()
        t0 = time.perf_counter()
        _call(spec)
        times.append(time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    _call(spec)
    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out["seconds"], out["times"] = min(times), times
    return out


def graph_memory(folder: str) -> dict:
    """Bytes of a loaded graph and of its adjacency, by tensor storage and by resident set."""
    import gc

    import torch

    torch.set_num_threads(1)
    from graphforget.data.loaders import load_lightgcn_txt

    def nbytes(*tensors) -> int:
        seen, total = set(), 0
        for t in tensors:
            if t is None:
                continue
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()
        return total

    def list_bytes(names) -> int:
        return 0 if names is None else sys.getsizeof(names) + sum(map(sys.getsizeof, names))

    gc.collect()
    r0 = _rss_kb("VmRSS")
    g = load_lightgcn_txt(folder)
    gc.collect()
    r1 = _rss_kb("VmRSS")
    adj = g.adjacency
    gc.collect()
    r2 = _rss_kb("VmRSS")
    csr = g.adj()
    gc.collect()
    r3 = _rss_kb("VmRSS")
    e = g.num_train
    edges = nbytes(g.train_edges, g.valid_edges, g.test_edges)
    ids = list_bytes(g.user_ids) + list_bytes(g.item_ids)
    coo = nbytes(adj.row, adj.col, adj.eid, adj.degree)
    csr_b = nbytes(csr.crow_indices(), csr.col_indices(), csr.values())
    per = lambda b: round(b / e, 2)  # noqa: E731
    return {
        "train": e, "valid": int(g.valid_edges.shape[1]), "test": int(g.test_edges.shape[1]),
        "nodes": g.num_nodes,
        "edge_tensors_bytes": edges, "raw_id_lists_bytes": ids, "adjacency_coo_bytes": coo,
        "adjacency_csr_bytes": csr_b,
        "bytes_per_train_interaction": {
            "edges(train+valid+test)": per(edges), "raw_id_lists": per(ids),
            "adjacency_coo(row,col,eid,degree)": per(coo), "adjacency_csr(crow,col,values)": per(csr_b),
            "total": per(edges + ids + coo + csr_b)},
        "rss_rise_mb": {"graph": (r1 - r0) / 1024, "adjacency_coo": (r2 - r1) / 1024,
                        "adjacency_csr": (r3 - r2) / 1024},
        "rss_bytes_per_train_interaction": round((r3 - r0) * 1024 / e, 2),
    }


# ------------------------------------------------------------------ driver side
def old_tree(ref: str, dest: Path) -> Path:
    """``graphforget`` as of ``ref`` under ``dest`` (by ``git archive``)."""
    proc = subprocess.run(["git", "-C", str(REPO), "archive", ref, "graphforget"],
                          capture_output=True, check=True)
    import io

    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    return dest


def run_worker(mode: str, payload: dict, pythonpath: str | None, repeat: int = 1,
               timeout: float = 900) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, json.dumps(payload),
           "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd="/")
    if proc.returncode:
        raise RuntimeError(f"worker failed ({mode} {payload}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthetic_files(data: Path, tmp: Path) -> dict[str, Path]:
    """1M-row files in the delimited layouts (MovieLens latest-small ten times) and a LightGCN
    ``train.txt`` joining Gowalla's train / validation / test."""
    import csv

    with open(data / "ml-latest-small" / "ratings.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    copies = [(int(u) + 1000 * c, i, r, t) for c in range(10) for u, i, r, t in rows]
    out = {}
    p = tmp / "ml1m-synthetic" / "ratings.csv"
    p.parent.mkdir(parents=True)
    p.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in copies))
    out["movielens-csv"] = p
    p = tmp / "ratings.dat"
    p.write_text("".join(f"{u}::{i}::{int(float(r) + 0.5)}::{t}\n" for u, i, r, t in copies))
    out["movielens-dat"] = p
    p = tmp / "ratings_Books.csv"
    p.write_text("".join(f"A{u * 7919:012X},{int(i):010d},{r},{t}\n" for u, i, r, t in copies))
    out["amazon"] = p
    p = tmp / "BX-Book-Ratings.csv"
    tail = lambda i: "\xe9" if int(i) % 7 == 0 else "X"  # noqa: E731
    p.write_bytes(('"User-ID";"ISBN";"Book-Rating"\n' + "".join(
        f'"{u}";"{int(i):09d}{tail(i)}";"{int(float(r) * 2)}"\n' for u, i, r, _ in copies)).encode("iso-8859-1"))
    out["bookcrossing"] = p
    p = tmp / "ml.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                 + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in copies))
    out["recbole"] = p
    g = data / "gowalla"
    if g.is_dir():
        p = tmp / "lightgcn-1m" / "train.txt"
        p.parent.mkdir()
        p.write_bytes(b"".join((g / f).read_bytes() for f in ("train.txt", "validation.txt", "test.txt")))
        out["lightgcn-train"] = p
    return out


def cases(data: Path, synth: dict[str, Path]) -> list[dict]:
    c = []
    for name in ("gowalla", "gowalla-25", "ml100k"):
        if (data / name).is_dir():
            c.append({"case": f"{name} folder", "format": "lightgcn-txt", "fn": "load_lightgcn_txt",
                      "args": [str(data / name)]})
    if (data / "gowalla").is_dir():
        c.append({"case": "gowalla train.txt", "format": "lightgcn-txt", "fn": "read_lightgcn_file",
                  "args": [str(data / "gowalla" / "train.txt")]})
    ml = data / "ml-latest-small" / "ratings.csv"
    if ml.is_file():
        c.append({"case": "ml-latest-small ratings.csv", "format": "movielens", "fn": "load_movielens",
                  "args": [str(ml)]})
        c.append({"case": "ml-latest-small load_csv", "format": "csv", "fn": "load_csv",
                  "args": [str(ml), "userId", "movieId"], "kwargs": {"rating_col": "rating", "time_col": "timestamp"}})
    lf = data / "lastfm" / "data1.txt"
    if lf.is_file():
        c.append({"case": "lastfm data1.txt", "format": "lastfm", "fn": "load_lastfm", "args": [str(lf)]})
    fns = {"movielens-csv": "load_movielens", "movielens-dat": "load_movielens", "amazon": "load_amazon_ratings",
           "bookcrossing": "load_bookcrossing", "recbole": "load_recbole_inter", "lightgcn-train": "read_lightgcn_file"}
    for key, path in synth.items():
        c.append({"case": f"synthetic 1M {path.name}", "format": key, "fn": fns[key], "args": [str(path)],
                  "synthetic": True})
    return c


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "graphforget"],
                               capture_output=True, text=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"shared data folder (default {DEFAULT_DATA})")
    p.add_argument("--old-ref", default=OLD_REF, help=f"git ref of the previous implementation (default {OLD_REF})")
    p.add_argument("--repeat", type=int, default=3, help="timed calls of the new loaders (best is kept)")
    p.add_argument("--old-repeat", type=int, default=2, help="timed calls of the old loaders")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic 1M-row files")
    p.add_argument("--memory-only", action="store_true",
                   help="only the resident-memory rows of the Gowalla graphs (no loader timings)")
    p.add_argument("--out", default=str(RESULTS / "bench_loaders.jsonl"))
    p.add_argument("--worker", nargs=2, metavar=("MODE", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        mode, payload = args.worker[0], json.loads(args.worker[1])
        res = worker(payload, args.repeat) if mode == "load" else graph_memory(payload["folder"])
        print(json.dumps(res))
        return

    data = Path(args.data)
    if not data.is_dir():
        sys.exit(f"no data folder {data}")
    stamp = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": git_commit(), "old_ref": args.old_ref,
             "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
             "python": platform.python_version(), "load_average": os.getloadavg()[0]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = None if args.memory_only else old_tree(args.old_ref, tmp / "old")
        synth = {} if args.no_synthetic or args.memory_only else synthetic_files(data, tmp / "synthetic")
        print(f"{'case':36s} {'rows':>9s} {'old s':>7s} {'new s':>7s} {'ratio':>6s} "
              f"{'old MB':>7s} {'new MB':>7s} {'ns/row':>7s} same")
        for spec in ([] if args.memory_only else cases(data, synth)):
            o = run_worker("load", spec, str(old), args.old_repeat)
            n = run_worker("load", spec, None, args.repeat)
            assert o["module"].startswith(str(old)) and not n["module"].startswith(str(old))
            row = {"bench": "loaders", **{k: spec[k] for k in ("case", "format", "fn")},
                   "file": spec["args"][0].replace(str(tmp), "<tmp>"), "synthetic": spec.get("synthetic", False),
                   "interactions": n["interactions"], "identical": o["digest"] == n["digest"],
                   "old_s": round(o["seconds"], 4), "new_s": round(n["seconds"], 4),
                   "speedup": round(o["seconds"] / n["seconds"], 2),
                   "old_peak_rss_mb": round(o["peak_rss_mb"], 1), "new_peak_rss_mb": round(n["peak_rss_mb"], 1),
                   "old_tracemalloc_peak_mb": round(o["tracemalloc_peak_mb"], 1),
                   "new_tracemalloc_peak_mb": round(n["tracemalloc_peak_mb"], 1),
                   "new_ns_per_interaction": round(1e9 * n["seconds"] / max(1, n["interactions"]), 1),
                   "new_s_per_1m": round(1e6 * n["seconds"] / max(1, n["interactions"]), 3),
                   "peak_method": n["peak_method"], "old_times": o["times"], "new_times": n["times"], **stamp}
            rows.append(row)
            print(f"{spec['case']:36s} {row['interactions']:9d} {row['old_s']:7.3f} {row['new_s']:7.3f} "
                  f"{row['speedup']:5.1f}x {row['old_peak_rss_mb']:7.1f} {row['new_peak_rss_mb']:7.1f} "
                  f"{row['new_ns_per_interaction']:7.1f} {row['identical']}", flush=True)
    for name in ("gowalla", "gowalla-25"):
        if (data / name).is_dir():
            m = run_worker("graph", {"folder": str(data / name)}, None)
            rows.append({"bench": "graph_memory", "case": f"{name} InteractionGraph + adjacency", **m, **stamp})
            print(f"{name}: {m['train']:,} train edges, bytes per train interaction "
                  f"{m['bytes_per_train_interaction']}, resident {m['rss_bytes_per_train_interaction']} B "
                  f"(rise MB {m['rss_rise_mb']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{len(rows)} rows appended to {out}")


if __name__ == "__main__":
    main()
