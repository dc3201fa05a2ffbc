"""Propagation benchmark: graphforget's cached CSR product against PyG's ``EdgeIndex``.

Issue 16 asks to use PyG where it offers what the code writes by hand and is as fast. The hand
written piece is the normalised adjacency product ``Â X`` (``graphforget.data.sym_spmm`` over
the CSR cached by :class:`~graphforget.data.sparse.NormalizedAdjacency`). The peer is
``torch_geometric.EdgeIndex`` (row-sorted, values given as ``input_value``), PyG's cached
sparse index whose ``matmul`` builds and caches its own CSR. Both are timed in the same process
on the same graph and ``X`` (``[N, d]``, float32): forward alone, and forward + backward of
``(Â X).square().sum()`` (what training and every Hessian-vector product pay). The results are
checked equal before timing. One JSON line per run is appended to
``experiments/results/bench_propagation.jsonl``.

Usage::

    OMP_NUM_THREADS=1 python experiments/bench_propagation.py --data ../shared/data/gowalla-25
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _rows import append_row, stamp  # noqa: E402
from graphforget.data import load_dataset  # noqa: E402
from graphforget.data.sparse import sym_spmm  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (PyG builds its CSR cache here)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "gowalla-25"))
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_propagation.jsonl"))
    args = ap.parse_args(argv)
    from torch_geometric import EdgeIndex

    g = load_dataset(args.data)
    adj = g.adjacency
    csr = adj.csr()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(adj.num_nodes, args.dim, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ei = EdgeIndex(torch.stack([adj.row.long(), adj.col.long()]),
                       sparse_size=(adj.num_nodes, adj.num_nodes), sort_order="row")
        values = adj.values
        ours = sym_spmm(csr, x)
        theirs = ei.matmul(x, input_value=values)
        assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())

        def fwd_ours():
            sym_spmm(csr, x)

        def fwd_pyg():
            ei.matmul(x, input_value=values)

        def bwd_ours():
            xx = x.clone().requires_grad_(True)
            sym_spmm(csr, xx).square().sum().backward()

        def bwd_pyg():
            xx = x.clone().requires_grad_(True)
            ei.matmul(xx, input_value=values).square().sum().backward()

        t = {name: timed(fn, args.repeat) for name, fn in
             (("ours_forward", fwd_ours), ("pyg_forward", fwd_pyg),
              ("ours_forward_backward", bwd_ours), ("pyg_forward_backward", bwd_pyg))}
    row = {"bench": "propagation", "data": Path(args.data).name, "nodes": adj.num_nodes,
           "entries": int(adj.row.numel()), "dim": args.dim, "threads": torch.get_num_threads(),
           **{k: round(v, 5) for k, v in t.items()},
           "pyg_over_ours_forward": round(t["pyg_forward"] / t["ours_forward"], 2),
           "pyg_over_ours_forward_backward": round(t["pyg_forward_backward"] / t["ours_forward_backward"], 2),
           **stamp(HERE.parent)}
    append_row(args.out, row)


if __name__ == "__main__":
    main()
