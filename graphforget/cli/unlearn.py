"""``graphforget unlearn CKPT --data SPEC (--edges FILE | --user U | --random-fraction F) --method M``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def register(subparsers) -> None:
    from ..unlearn import METHODS, SUMMARIES

    methods = "\n".join(f"  {name:<10} {SUMMARIES[name]}" for name in METHODS)
    p = subparsers.add_parser(
        "unlearn", help="forget edges from a trained checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Apply an unlearning method; writes the new checkpoint, the forgotten edges "
                    "beside it, and prints the report and test metrics before/after.",
        epilog=f"methods (--method):\n{methods}\n\noptions of a method: --option KEY=VALUE, "
               "repeated (e.g. --option steps=3 --option k=2); see docs/methods.md")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="dataset spec the checkpoint was trained on")
    p.add_argument("--root", default=None)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--edges", help="file of 'user item' internal-id pairs, one per line")
    src.add_argument("--user", type=int, nargs="+", help="forget every edge of these users")
    src.add_argument("--random-fraction", type=_fraction, metavar="F",
                     help="forget a seeded random fraction 0 < F <= 1 of the training edges")
    p.add_argument("--method", default="ifru", choices=list(METHODS), metavar="METHOD",
                   help="unlearning method, listed below (default: ifru)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split (as in `graphforget train`) and of the method")
    p.add_argument("--out", default=None, help="new checkpoint (default: CKPT with .forgot.pt)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the report (seconds, fge, hvps, damping, grad_norm_rel...) "
                        "and the test metrics before/after as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..data.registry import load_dataset
    from ..data import read_edges
    from ..unlearn import deletion_edges, parse_method
    from ..train import evaluate, load_checkpoint, save_checkpoint
    from ..unlearn import UnlearningRequest, unlearn

    graph = load_dataset(args.data, root=args.root, seed=args.seed, verbose=True)
    model, payload = load_checkpoint(args.checkpoint, graph)
    if args.edges:
        request = UnlearningRequest(edges=read_edges(args.edges))
    elif args.user:
        request = UnlearningRequest(users=torch.tensor(args.user))
    else:
        request = UnlearningRequest(edges=deletion_edges(graph, "random", args.random_fraction, args.seed))
    _, opts = parse_method("x:" + ",".join(args.option))
    before = evaluate(model, graph, "test")
    result = unlearn(model, graph, request, method=args.method, seed=args.seed, **opts)
    after = evaluate(result.model, result.graph, "test")
    out = args.out or str(Path(args.checkpoint).with_suffix("")) + ".forgot.pt"
    if result.model.recipe:  # the unlearned model's own distance from stationarity, on its graph
        from ..train import TrainConfig, stationarity

        cfg = TrainConfig.from_dict(result.model.recipe)
        result.model.recipe = {**result.model.recipe, "grad_norm_rel": stationarity(
            result.model, result.graph, cfg.objective(result.graph))["grad_norm_rel"]}
    digest = save_checkpoint(out, result.model, result.graph,
                             extra={"unlearned_from": args.checkpoint, "report": result.report.to_dict()})
    edges_file = str(Path(out).with_suffix("")) + ".edges.txt"
    Path(edges_file).write_text("".join(f"{u} {i}\n" for u, i in result.deleted_edges.t().tolist()))
    print(result.report.summary())
    for note in result.report.notes:
        print(f"  note: {note}")
    keys = [k for k in before if "@" in k or k == "auc"]
    print("test before: " + "  ".join(f"{k}={before[k]:.4f}" for k in keys))
    print("test after:  " + "  ".join(f"{k}={after[k]:.4f}" for k in keys))
    print(f"wrote {out} (sha256 {digest}) and the forgotten edges to {edges_file} "
          "(internal ids, for `graphforget audit --edges`)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "report": result.report.to_dict(), "test_before": before, "test_after": after,
            "checkpoint": out, "sha256": digest, "edges": edges_file,
            "grad_norm_rel": (result.model.recipe or {}).get("grad_norm_rel")}, indent=2, default=str))
    return 0
