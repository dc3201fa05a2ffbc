"""``graphforget audit ORIGINAL_CKPT UNLEARNED_CKPT --data SPEC --edges FILE [...]``.

Plugged into :mod:`graphforget.cli` through ``COMMAND_MODULES``. Loads the data set (the graph
*before* deletion), builds the graph *after* deletion as ``graph.remove_edges(edges)``, loads
every checkpoint against its graph (``ORIGINAL_CKPT`` against the graph before; the unlearned,
``--retrains`` and ``--reference`` checkpoints against the graph after: a checkpoint of another
graph is an error). Without ``--retrains`` it trains ``--shadows`` + 2 retrains from the recipe
stored in the original checkpoint, with independent seeds and a line of progress each. Then
:func:`graphforget.audit.audit`; prints :meth:`AuditReport.summary` with one verdict line per
measure; ``--json`` writes :meth:`AuditReport.to_dict` (non-finite numbers as ``null``, strict
JSON) plus ``umia_auc``, ``mia_auc``, ``forgotten`` and the same for the original and the
retrains at the top level. ``--device`` moves every model there before auditing (retrains it
trains are trained there too). Bad input (``--device``, ``--json``, ``--edges``, checkpoints) is
refused in one line before anything is written.

Example::

    graphforget unlearn runs/demo.pt --data demo --random-fraction 0.01 --out runs/forgot.pt
    graphforget audit runs/demo.pt runs/forgot.pt --data demo --edges runs/forgot.edges.txt \\
        --shadows 16 --json audit.json
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def register(subparsers) -> None:
    from . import _positive, _seed, add_command

    p = add_command(subparsers, "audit", help="audit that an unlearned checkpoint forgot",
                              description="Compares the unlearned model with the original (do "
                                          "nothing), an independent retrain and a control retrain: "
                                          "utility (overall and on test pairs of the deletion's "
                                          "users: 'user'; of its users or items: 'or'; between both: "
                                          "'and'), rank of deleted items, population membership "
                                          "inference, per-edge U-MIA with shadow retrains, "
                                          "agreement of rankings, parameter distance; one verdict "
                                          "line per measure.")
    p.add_argument("original", metavar="ORIGINAL_CKPT", help="checkpoint trained before deletion")
    p.add_argument("unlearned", metavar="UNLEARNED_CKPT", help="checkpoint after forgetting --edges")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="dataset spec the original was trained on (name or path)")
    p.add_argument("--root", default=None, metavar="DIR", help="dataset cache directory")
    p.add_argument("--edges", required=True, metavar="FILE",
                   help="the forgotten edges: 'user item' internal-id pairs, one per line")
    p.add_argument("--retrains", nargs="+", default=None, metavar="CKPT",
                   help="independent retrains after deletion (first: the held-out retrain, second: "
                        "the control, the rest: U-MIA shadows); default: train --shadows + 2")
    p.add_argument("--shadows", type=int, default=16,
                   help="shadow retrains to train when --retrains is not given (default 16)")
    p.add_argument("--reference", default=None, metavar="CKPT",
                   help="the new objective's minimiser nearest the original: parameter distance")
    p.add_argument("--ks", type=_positive(int), nargs="+", default=[20], metavar="K",
                   help="cut-offs; the first is used for ranks and agreement (default 20)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the data set's splits and of the membership attack (default 0)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N: where every model is audited and the retrains are "
                        "trained (default cpu)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    p.set_defaults(func=_run)


def _load(path: str, graph, role: str, when: str):
    """Model of checkpoint ``path``; errors name ``role`` and the graph it must match."""
    from ..train import load_checkpoint

    if not Path(path).exists():
        raise FileNotFoundError(f"{role} {path}: no such checkpoint file")
    try:
        model, _ = load_checkpoint(path, graph)
    except ValueError as exc:
        if "another training graph" not in str(exc):
            raise ValueError(f"{role} {exc}") from exc
        raise ValueError(f"{role} must be a checkpoint of the graph {when} deletion: {exc}") from exc
    return model


def _strict(value):
    """``value`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _run(args) -> int:
    from . import _device, _output_file, _same_file
    from ..data.registry import load_dataset
    from ..audit import audit
    from ..data import read_edges

    device = _device(args.device)
    if args.json:
        _output_file("--json", args.json)
        inputs = [args.original, args.unlearned, args.edges, args.reference, *(args.retrains or [])]
        if any(path and _same_file(args.json, path) for path in inputs):
            raise ValueError(f"--json {args.json}: would overwrite one of the audit's inputs")
    if not args.retrains and args.shadows < 0:
        raise ValueError(f"--shadows must be >= 0, got {args.shadows}")
    edges = read_edges(args.edges)
    graph_before = load_dataset(args.data, root=args.root, seed=args.seed, verbose=False)
    try:
        graph_after = graph_before.remove_edges(edges)
    except ValueError as exc:
        raise ValueError(f"--edges {args.edges}: {exc}") from exc
    print(f"dataset {args.data}: {edges.shape[1]} deleted edges; graph before "
          f"{graph_before.fingerprint()}, after {graph_after.fingerprint()}")
    original = _load(args.original, graph_before, "ORIGINAL_CKPT", "before")
    unlearned = _load(args.unlearned, graph_after, "UNLEARNED_CKPT", "after")
    reference = _load(args.reference, graph_after, "--reference", "after") if args.reference else None
    retrains = None
    if args.retrains:
        retrains = [_load(p, graph_after, "--retrains", "after") for p in args.retrains]
    original, unlearned = original.to(device), unlearned.to(device)
    reference = reference.to(device) if reference is not None else None
    retrains = [m.to(device) for m in retrains] if retrains else retrains
    report = audit(original, unlearned, graph_before, graph_after, edges, retrains=retrains,
                   reference=reference, shadows=args.shadows, ks=args.ks, seed=args.seed,
                   log=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True))
    print(report.summary())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_strict(flat_summary(report) | report.to_dict()), indent=2,
                                  allow_nan=False) + "\n")
        print(f"wrote {out}")
    return 0


def flat_summary(report) -> dict:
    """The headline figures at the top level: ``umia_auc``, ``mia_auc``, ``score_error``,
    ``forgotten`` for the unlearned model, and ``original_*``, ``retrain_*``, ``control_*``."""
    out = {}
    for name, fig in report.models.items():
        prefix = "" if name == "unlearned" else f"{name}_"
        out[f"{prefix}umia_auc"] = fig.get("umia", {}).get("auc", float("nan"))
        out[f"{prefix}score_error"] = fig.get("umia", {}).get("score_error", float("nan"))
        out[f"{prefix}mia_auc"] = fig.get("membership", {}).get("auc", float("nan"))
        if name in report.verdicts:
            out[f"{prefix}forgotten"] = report.verdicts[name]["forgotten"]
    return out
