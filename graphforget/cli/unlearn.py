"""``graphforget unlearn CKPT --data SPEC (--edges FILE | --user U | --random-fraction F) --method M``.

The method and its ``--option`` values, ``--device`` and the output paths (``--out``, the edges
file beside it, ``--json``: none may be a directory or one of the inputs) are checked before the
data are loaded; the request is checked against the graph before anything runs. The model is
moved to ``--device`` and unlearned and evaluated there; the checkpoint is written on the CPU.
"""
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
    from . import _seed, add_command
    from ..unlearning import METHODS, SUMMARIES

    methods = "\n".join(f"  {name:<10} {SUMMARIES[name]}" for name in METHODS)
    p = add_command(
        subparsers, "unlearn", help="forget edges from a trained checkpoint",
        description="Apply an unlearning method; writes the new checkpoint, the forgotten edges "
                    "beside it, and prints the report and test metrics before/after.",
        epilog=f"methods (--method):\n{methods}\n\noptions of a method: --option KEY=VALUE, "
               "repeated (e.g. --option steps=3 --option k=2); see docs/methods.md")
    p.add_argument("checkpoint", metavar="CKPT", help="the trained checkpoint")
    p.add_argument("--data", required=True, help="dataset spec the checkpoint was trained on")
    p.add_argument("--root", default=None, metavar="DIR", help="dataset cache directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--edges", help="file of 'user item' internal-id pairs, one per line")
    src.add_argument("--user", type=int, nargs="+", help="forget every edge of these users")
    src.add_argument("--random-fraction", type=_fraction, metavar="F",
                     help="forget a seeded random fraction 0 < F <= 1 of the training edges")
    p.add_argument("--method", default="ifru", choices=list(METHODS), metavar="METHOD",
                   help="unlearning method, listed below (default: ifru)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method, repeated (default: none; see below)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the data split (as in `graphforget train`) and of the method "
                        "(default 0)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N: where the model is unlearned and evaluated (default cpu)")
    p.add_argument("--out", default=None, help="new checkpoint (default: CKPT with .forgot.pt)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the report (seconds, fge, hvps, damping, grad_norm_rel...) "
                        "and the test metrics before/after as JSON")
    p.set_defaults(func=_run)


def _options(texts: list[str]) -> dict:
    """``--option KEY=VALUE`` strings as method options (values parsed as in method specs)."""
    from ..unlearning import parse_method

    opts: dict = {}
    for text in texts:
        for part in text.split(","):
            if "=" not in part or not part.partition("=")[0].strip():
                raise ValueError(f"--option {text}: expected KEY=VALUE (repeat --option for more)")
        opts.update(parse_method("x:" + text)[1])
    return opts


def _run(args) -> int:
    from . import _device, _output_file, _same_file
    from ..data.registry import load_dataset
    from ..data import read_edges
    from ..unlearning import deletion_edges, get_unlearner
    from ..train import distributed, evaluate, load_checkpoint, save_checkpoint
    from ..unlearning import UnlearningRequest

    # everything checkable without the data first: nothing is loaded or written for bad input
    device = _device(args.device)
    opts = _options(args.option)
    try:
        unlearner = get_unlearner(args.method, **{"seed": args.seed, **opts})
    except ValueError as exc:
        raise ValueError(f"--method {args.method} --option {' --option '.join(args.option)}: {exc}"
                         if args.option else str(exc)) from None
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint file")
    out = args.out or str(Path(args.checkpoint).with_suffix("")) + ".forgot.pt"
    edges_file = str(Path(out).with_suffix("")) + ".edges.txt"
    for flag, path in (("--out", out), ("--out (its edges file)", edges_file)) + (
            (("--json", args.json),) if args.json else ()):
        _output_file(flag, path)
        for given, what in ((args.checkpoint, "the checkpoint being unlearned"),
                            (args.edges, "the --edges file")):
            if given and _same_file(path, given):
                raise ValueError(f"{flag} {path}: would overwrite {what}")
    edges = read_edges(args.edges) if args.edges else None

    graph = load_dataset(args.data, root=args.root, seed=args.seed, verbose=not args.quiet)
    model, payload = load_checkpoint(args.checkpoint, graph)
    if edges is not None:
        try:
            request = UnlearningRequest(edges=edges)
            request.resolve(graph)
        except ValueError as exc:
            raise ValueError(f"--edges {args.edges}: {exc}") from None
    elif args.user:
        bad = [u for u in args.user if not 0 <= u < graph.num_users]
        if bad:
            raise ValueError(f"--user: unknown user ids {bad[:10]} (the graph has users "
                             f"0..{graph.num_users - 1})")
        request = UnlearningRequest(users=torch.tensor(args.user))
    else:
        request = UnlearningRequest(edges=deletion_edges(graph, "random", args.random_fraction, args.seed))
    model = model.to(device)
    before = evaluate(model, graph, "test", device=device)
    result = unlearner.unlearn(model, graph, request)
    after = evaluate(result.model, result.graph, "test", device=device)
    if result.model.recipe:  # the unlearned model's own distance from stationarity, on its graph
        from ..train import TrainConfig, stationarity

        cfg = TrainConfig.from_dict(result.model.recipe)
        result.model.recipe = {**result.model.recipe, "grad_norm_rel": stationarity(
            result.model, result.graph, cfg.objective(result.graph))["grad_norm_rel"]}
    digest = None
    if distributed.rank() == 0:  # under torchrun every rank solved the same problem: one writes
        digest = save_checkpoint(out, result.model, result.graph,
                                 extra={"unlearned_from": args.checkpoint, "report": result.report.to_dict()})
        Path(edges_file).write_text("".join(f"{u} {i}\n" for u, i in result.deleted_edges.t().tolist()))
    distributed.barrier()
    print(result.report.summary())
    for note in result.report.notes:
        print(f"  note: {note}")
    keys = [k for k in before if "@" in k or k == "auc"]
    print("test before: " + "  ".join(f"{k}={before[k]:.4f}" for k in keys))
    print("test after:  " + "  ".join(f"{k}={after[k]:.4f}" for k in keys))
    print(f"wrote {out} (sha256 {digest}) and the forgotten edges to {edges_file} "
          "(internal ids, for `graphforget audit --edges`)")
    if args.json and distributed.rank() == 0:
        Path(args.json).write_text(json.dumps({
            "report": result.report.to_dict(), "test_before": before, "test_after": after,
            "checkpoint": out, "sha256": digest, "edges": edges_file,
            "grad_norm_rel": (result.model.recipe or {}).get("grad_norm_rel")}, indent=2, default=str))
    return 0
