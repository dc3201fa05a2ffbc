"""``graphforget reproduce ifru|alteraser`` — one command per paper table."""
from __future__ import annotations

import os
from pathlib import Path


def register(subparsers) -> None:
    from . import _seed, add_command

    p = add_command(subparsers, "reproduce", help="reproduce a paper table (ifru | alteraser)",
                              description="Run a paper table and write CSV, Markdown, JSON "
                                          "metadata and a plot under --out.")
    p.add_argument("table", choices=["ifru", "alteraser"], help="the paper whose table to run")
    p.add_argument("--data-root", default=os.environ.get("GRAPHFORGET_DATA"),
                   help="folder holding the data sets (e.g. ../shared/data); default $GRAPHFORGET_DATA")
    p.add_argument("--out", default="experiments/results", help="output folder")
    p.add_argument("--preset", default="full", choices=["full", "smoke"],
                   help="full: the paper's settings; smoke: a minutes-long check")
    p.add_argument("--seeds", type=_seed, nargs="+", help="seeds to run (default: the preset's)")
    p.add_argument("--epochs", type=int, help="most epochs of early stopping (default: the preset's)")
    p.add_argument("--until", default="early_stop", choices=["early_stop", "stationary"],
                   help="training recipe of the original and of every retrain (default early_stop)")
    p.add_argument("--l2", type=float, default=None,
                   help="λ of the L2 term (default: the preset's; the stationary recipe needs λ > 0)")
    p.add_argument("--shadows", type=int, default=None,
                   help="U-MIA shadow retrains per setting (default: 16, smoke preset 2)")
    p.add_argument("--methods", nargs="+", help="method specs, e.g. ifru:k=1 alteraser:rounds=3")
    p.add_argument("--datasets", nargs="+", help="subset of the preset's data sets (default: all)")
    p.add_argument("--models", nargs="+", help="subset of the preset's models: mf, lightgcn, lightgcn-<layers>")
    p.add_argument("--deletions", nargs="+",
                   help="subset of the alteraser preset's deletions: random:0.01 random:0.05 users:10")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true",
                   help="reuse the settings already finished in OUT/<table>.rows.jsonl (same data, "
                        "model, deletion, seed, methods and training config) instead of recomputing them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (as -q)")
    p.set_defaults(func=_run)


def _check_methods(specs) -> None:
    """Every ``--methods`` spec names a method and options it takes (checked before any
    training: a typo would otherwise surface after hours)."""
    from ..reproduce.runner import parse_method
    from ..unlearning import get_unlearner

    for spec in specs or []:
        name, opts = parse_method(spec)
        if name in ("original", "retrain"):  # the original itself; the audit's first retrain
            continue
        if "seed" in opts:
            raise ValueError(f"--methods {spec}: the seed of a method is the run's (--seeds)")
        if name in ("sisa", "receraser"):
            opts.pop("shards", None)  # used to fit the sharded model
        try:
            get_unlearner(name, **opts)
        except ValueError as exc:
            raise ValueError(f"--methods {spec}: {exc}") from None


def _run(args) -> int:
    from . import _device
    from ..reproduce import reproduce

    if not args.data_root:
        raise ValueError("--data-root (or $GRAPHFORGET_DATA) must name the folder with the data sets")
    if not Path(args.data_root).is_dir():
        raise ValueError(f"--data-root {args.data_root}: "
                         + ("not a directory" if Path(args.data_root).exists() else "no such directory"))
    found = Path(args.out)  # the folder, or its nearest existing ancestor, must be a folder
    while not found.exists() and found != found.parent:
        found = found.parent
    if not found.is_dir():
        raise ValueError(f"--out {args.out}: {found} is not a directory (a folder for the results)")
    for flag, value in (("--epochs", args.epochs), ("--shadows", args.shadows)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    _device(args.device)
    _check_methods(args.methods)
    reproduce(args.table, Path(args.data_root), Path(args.out), preset=args.preset, seeds=args.seeds,
              epochs=args.epochs, methods=args.methods, datasets=args.datasets, models=args.models,
              deletions=args.deletions, resume=args.resume, until=args.until, l2=args.l2,
              shadows=args.shadows,
              device=args.device, progress=not (args.no_progress or args.quiet))
    return 0
