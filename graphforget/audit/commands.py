"""``graphforget audit ORIGINAL_CKPT UNLEARNED_CKPT --data SPEC --edges FILE [...]``.

Plugged into :mod:`graphforget.cli` through ``COMMAND_MODULES``. Loads the data set (the graph
*before* deletion), builds the graph *after* deletion as ``graph.remove_edges(edges)``, loads
every checkpoint against its graph (``ORIGINAL_CKPT`` against the graph before; the unlearned,
``--retrained``, ``--retrained-alt`` and ``--reference`` checkpoints against the graph after:
a checkpoint of another graph is an error) and calls :func:`graphforget.audit.audit`. Prints
:meth:`AuditReport.summary`; ``--json`` writes :meth:`AuditReport.to_dict` (non-finite numbers
as ``null`` so the file is strict JSON).

Example::

    graphforget unlearn runs/demo.pt --data demo --edges forget.txt --out runs/forgot.pt
    graphforget audit runs/demo.pt runs/forgot.pt --data demo --edges forget.txt \\
        --retrained runs/retrain0.pt --retrained-alt runs/retrain1.pt --json audit.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def register(subparsers) -> None:
    from ..cli import _positive

    p = subparsers.add_parser("audit", help="audit that an unlearned checkpoint forgot",
                              description="Utility, rank of deleted items, membership inference, "
                                          "agreement with retraining beside the retrain-vs-retrain "
                                          "noise floor, and parameter distance.")
    p.add_argument("original", metavar="ORIGINAL_CKPT", help="checkpoint trained before deletion")
    p.add_argument("unlearned", metavar="UNLEARNED_CKPT", help="checkpoint after forgetting --edges")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="dataset spec the original was trained on (name or path)")
    p.add_argument("--root", default=None, metavar="DIR", help="dataset cache directory")
    p.add_argument("--edges", required=True, metavar="FILE",
                   help="the forgotten edges: 'user item' internal-id pairs, one per line")
    p.add_argument("--retrained", default=None, metavar="CKPT", help="retrain from scratch after deletion")
    p.add_argument("--retrained-alt", default=None, metavar="CKPT",
                   help="a second retrain (another seed): the noise floor of agreement")
    p.add_argument("--reference", default=None, metavar="CKPT",
                   help="retrain warm-started from the original: parameter distance")
    p.add_argument("--ks", type=_positive(int), nargs="+", default=[20], metavar="K",
                   help="cut-offs; the first is used for ranks and agreement (default 20)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data set's splits and of the membership attack (default 0)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    p.set_defaults(func=_run)


def _load(path: str, graph, role: str, when: str):
    """Model of checkpoint ``path``; errors name ``role`` and the graph it must match."""
    from ..train import load_checkpoint

    if not Path(path).is_file():
        raise FileNotFoundError(f"{role} {path}: no such checkpoint file")
    try:
        model, _ = load_checkpoint(path, graph)
    except ValueError as exc:
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
    from ..data.registry import load_dataset
    from ..unlearn.commands import _read_edges
    from .report import audit

    edges = _read_edges(args.edges)
    graph_before = load_dataset(args.data, root=args.root, seed=args.seed, verbose=False)
    try:
        graph_after = graph_before.remove_edges(edges)
    except ValueError as exc:
        raise ValueError(f"--edges {args.edges}: {exc}") from exc
    print(f"dataset {args.data}: {edges.shape[1]} deleted edges; graph before "
          f"{graph_before.fingerprint()}, after {graph_after.fingerprint()}")
    original = _load(args.original, graph_before, "ORIGINAL_CKPT", "before")
    after = {"unlearned": (args.unlearned, "UNLEARNED_CKPT"), "retrained": (args.retrained, "--retrained"),
             "retrained_alt": (args.retrained_alt, "--retrained-alt"),
             "reference": (args.reference, "--reference")}
    models = {name: _load(path, graph_after, role, "after")
              for name, (path, role) in after.items() if path is not None}
    report = audit(original, models.pop("unlearned"), graph_before, graph_after, edges,
                   ks=args.ks, seed=args.seed, **models)
    print(report.summary())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_strict(report.to_dict()), indent=2, allow_nan=False) + "\n")
        print(f"wrote {out}")
    return 0
