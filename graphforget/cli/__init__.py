"""Command line: ``graphforget train | evaluate | datasets`` (more subcommands plug in).

Only argument parsing and printing live here; every command calls the library
(:func:`graphforget.data.registry.load_dataset`, :func:`graphforget.data.download.download`,
:func:`graphforget.train.train`,
:func:`graphforget.train.evaluate`, :func:`graphforget.train.load_checkpoint`).

Other modules add subcommands through :data:`COMMAND_MODULES`: each listed module exposes
``register(subparsers)``, which adds its parsers with ``parser.set_defaults(func=handler)``;
``handler(args)`` returns an exit code (``None`` means 0).

Bad input (``ValueError`` / ``OSError`` such as ``FileNotFoundError`` or a failed download from
the library, a method's ``FloatingPointError``, the service's ``UnlearningFailed``) prints
``graphforget: error: <message>`` on one line to stderr and exits with status 2, without a
traceback; commands check their output paths and ``--device`` before any work, so a refused
command writes nothing.

Examples::

    graphforget datasets list
    graphforget train --data ml100k --model lightgcn --epochs 50 --out runs/lgcn.pt
    graphforget evaluate runs/lgcn.pt --data ml100k --ks 10 20
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence

#: Modules adding subcommands: each has ``register(subparsers)`` setting ``func`` defaults.
COMMAND_MODULES: list[str] = ["graphforget.cli.unlearn", "graphforget.cli.audit",
                              "graphforget.cli.service", "graphforget.cli.reproduce"]


# ---------------------------------------------------------------------------- helpers
def _registry():
    from ..data import registry

    return registry


def _device(name: str) -> str:
    """``name`` if it is a device this machine has, else a ``ValueError`` saying why."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name}: not a device name; expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"--device {name}: expected cpu, cuda or cuda:N")
    return name


def _output_file(flag: str, path) -> Path:
    """``Path`` of a file a command will write, checked before any work: not a directory, and
    its parent a directory or creatable (no file in the way); ``ValueError`` naming ``flag``."""
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {path}: is a directory, expected a file path")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is not a directory")
    return out


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _load_graph(args):
    graph = _registry().load_dataset(args.data, root=args.root, seed=args.seed, verbose=False)
    s = graph.stats()
    print(f"dataset {s['name'] or args.data}: users={s['users']} items={s['items']} "
          f"train={s['train']} valid={s['valid']} test={s['test']} density={s['density']:.6f} "
          f"fingerprint={s['sha256']}")
    return graph


def _print_metrics(label: str, metrics: dict) -> None:
    from ..metrics import format_metrics

    users = f"  (users={metrics['users']})" if "users" in metrics else ""
    print(f"{label}: {format_metrics(metrics) or 'no held-out edges'}{users}")


def _metric_name(args) -> str:
    if args.metric is not None:
        kind, _, k = args.metric.partition("@")
        if kind not in ("recall", "precision", "ndcg", "hit") or not k.isdigit() or int(k) not in args.ks:
            raise ValueError(f"--metric {args.metric!r}: expected recall|precision|ndcg|hit@K "
                             f"with K among --ks {args.ks}")
        return args.metric
    return f"recall@{max(args.ks)}"


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _seed(text: str) -> int:
    """A seed: an integer in the signed 64-bit range the random generators take."""
    value = int(text)
    if not -2**63 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be a 64-bit integer, got {text}")
    return value


# ---------------------------------------------------------------------------- commands
def _l2(text: str):
    if text == "auto":
        return text
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'auto', got {text}")
    return value


def _print_stationarity(recipe: dict) -> None:
    rel = recipe.get("grad_norm_rel")
    if rel is None:
        print("stationarity: not recorded (a checkpoint of an older graphforget)")
        return
    print(f"stationarity: |grad L|/|theta| = {rel:.3g} ({recipe.get('until', 'early_stop')}, gtol "
          f"{recipe.get('gtol', float('nan')):g}, l2 {recipe.get('weight_decay', float('nan')):g}, "
          f"{recipe.get('negatives', '?')} fixed negatives, negative seed {recipe.get('negative_seed', '?')})")


def cmd_train(args) -> int:
    from ..models import build_model
    from ..train import TrainConfig, evaluate, file_sha256, save_checkpoint, search_l2, train

    device = _device(args.device)
    if args.layers < 0:
        raise ValueError(f"--layers must be >= 0, got {args.layers}")
    _output_file("--out", args.out)
    if args.log:
        _output_file("--log", args.log)
    metric = _metric_name(args)
    graph = _load_graph(args)

    def make_model():
        return build_model(args.model, graph.num_users, graph.num_items, dim=args.dim,
                           layers=args.layers, seed=args.seed, init_std=args.init_std)

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=0.0 if args.l2 == "auto" else args.l2, loss=args.loss,
                         eval_every=args.eval_every,
                         patience=args.patience if args.patience > 0 else None,
                         metric=metric, ks=tuple(args.ks), seed=args.seed,
                         device=device, progress=not args.quiet, log_path=args.log,
                         until=args.until, gtol=args.gtol, negatives=args.negatives,
                         negative_seed=args.negative_seed)
    model = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model}: dim={args.dim} layers={model.num_layers} parameters={n_params}")
    if args.l2 == "auto":
        l2, result, rows = search_l2(make_model, graph, config)
        for row in rows:
            print(f"  l2 {row['l2']:g}: valid {row['valid']:.4f} (|grad|/|theta| "
                  f"{row['grad_norm_rel']:.2e}, {row['epochs']} epochs)")
        print(f"l2 auto: chose {l2:g} on validation")
        save_checkpoint(args.out, result.model.cpu(), graph,
                        extra={"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                               "stationarity": result.stationarity, "finish": result.finish,
                               "l2_search": rows})
    else:
        result = train(model, graph, config, checkpoint=args.out)
    print(f"trained {result.epochs_run} epochs in {result.seconds:.1f}s "
          f"({result.seconds_per_epoch:.2f}s/epoch); best epoch {result.best_epoch}")
    if result.finish:
        f = result.finish
        print(f"stationary finish: {f['iterations']} L-BFGS iterations in {f['seconds']:.1f}s, "
              f"|grad|/|theta| {f['grad_norm_rel_start']:.3g} -> {f['grad_norm_rel']:.3g}"
              + ("" if f["converged"] else f" (not converged: {f['note']})"))
    _print_stationarity(result.model.recipe)
    for note in result.notes:
        print(f"note: {note}")
    model = result.model.to(device)
    for split in ("valid", "test"):
        if getattr(graph, f"{split}_edges").shape[1]:
            _print_metrics(split, evaluate(model, graph, split, args.ks, device=device))
    print(f"checkpoint {args.out} sha256={file_sha256(args.out)}")
    if args.log:
        print(f"log {args.log}")
    return 0


def cmd_evaluate(args) -> int:
    from ..train import evaluate, load_checkpoint

    device = _device(args.device)
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint file")
    if args.json:
        _output_file("--json", args.json)
        if _same_file(args.json, args.checkpoint):
            raise ValueError(f"--json {args.json}: would overwrite the checkpoint being evaluated")
    graph = _load_graph(args)
    model, payload = load_checkpoint(args.checkpoint, graph)
    cfg = payload["model"]
    print(f"checkpoint {args.checkpoint}: model {cfg['model']} dim={cfg['dim']} layers={cfg['layers']}")
    recipe = model.recipe or {}
    _print_stationarity(recipe)
    if getattr(graph, f"{args.split}_edges").shape[1] == 0:
        raise ValueError(f"dataset {args.data!r} has no {args.split} edges")
    model.to(device)
    metrics = evaluate(model, graph, args.split, args.ks, batch_size=args.batch_size, device=device)
    _print_metrics(args.split, metrics)
    if args.json:
        import json

        doc = {"checkpoint": args.checkpoint, "split": args.split, "metrics": metrics,
               "grad_norm_rel": recipe.get("grad_norm_rel"), "gtol": recipe.get("gtol"),
               "l2": recipe.get("weight_decay"), "until": recipe.get("until"),
               "negatives": recipe.get("negatives"), "negative_seed": recipe.get("negative_seed")}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _print_table(rows: list[dict]) -> None:
    if not rows:
        print("(none)")
        return
    # scalar columns only (a list such as download URLs does not fit a table row)
    cols = [c for c in dict.fromkeys(k for r in rows for k in r)
            if not any(isinstance(r.get(c), (list, tuple, dict)) for r in rows)]
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_datasets(args) -> int:
    registry = _registry()
    if args.action == "list":
        _print_table(registry.list_datasets())
    elif args.action == "stats":
        for key, value in registry.dataset_stats(args.name, root=args.root).items():
            print(f"{key}: {value}")
    else:
        from ..data.download import download

        path = download(args.name, root=args.root, url=args.url, force=args.force,
                                 progress=not args.quiet)
        print(f"{args.name}: {path}")
    return 0


# ---------------------------------------------------------------------------- parser
def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="registered dataset name or a path to a data folder/file")
    p.add_argument("--root", default=None, metavar="DIR", help="dataset cache directory")
    p.add_argument("--seed", type=_seed, default=0, help="seed for splits and training (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--ks", type=_positive(int), nargs="+", default=[20], metavar="K",
                   help="cut-offs of the ranking metrics (default 20)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphforget",
        description="Train graph recommenders and make them forget interactions.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"graphforget {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a recommender and write a checkpoint")
    _data_args(p)
    p.add_argument("--model", choices=["lightgcn", "ngcf", "mf"], default="lightgcn")
    p.add_argument("--layers", type=int, default=3, help="propagation layers (default 3)")
    p.add_argument("--dim", type=_positive(int), default=64, help="embedding size (default 64)")
    p.add_argument("--init-std", type=_positive(float), default=0.1,
                   help="std of the Gaussian initialisation (default 0.1)")
    p.add_argument("--epochs", type=_positive(int), default=100, help="epoch cap (default 100)")
    p.add_argument("--batch-size", type=_positive(int), default=2048, help="default 2048")
    p.add_argument("--lr", type=_positive(float), default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--l2", "--weight-decay", dest="l2", type=_l2, default=1e-4, metavar="L2|auto",
                   help="λ of the L2 term (default 1e-4); 'auto': the best of a log grid on "
                        "validation, for the recipe as given (with --until)")
    p.add_argument("--until", choices=["early_stop", "stationary"], default="early_stop",
                   help="early_stop: the early-stopped model; stationary: then minimise the same "
                        "objective to |grad L| <= gtol |theta|, the point unlearning assumes "
                        "(default early_stop)")
    p.add_argument("--gtol", type=_positive(float), default=1e-5,
                   help="relative gradient tolerance of the stationary finish (default 1e-5)")
    p.add_argument("--negatives", type=_positive(int), default=8,
                   help="fixed negatives per positive of the objective (default 8)")
    p.add_argument("--negative-seed", type=_seed, default=0, help="seed of the fixed negatives (default 0)")
    p.add_argument("--loss", choices=["auto", "bpr", "bce"], default="auto",
                   help="auto: BCE on labelled data, else BPR")
    p.add_argument("--patience", type=int, default=10,
                   help="evaluations without improvement before stopping; 0 disables (default 10)")
    p.add_argument("--eval-every", type=_positive(int), default=1)
    p.add_argument("--metric", default=None,
                   help="validation metric for early stopping (default recall@max(ks))")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--log", default=None, metavar="JSONL", help="append one JSON line per epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset split")
    p.add_argument("checkpoint", metavar="CKPT")
    _data_args(p)
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--batch-size", type=_positive(int), default=1024, help="users per ranking batch")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the metrics and the recipe's stationarity as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("datasets", help="list, describe or download datasets")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    dsub.add_parser("list", help="registered datasets")
    q = dsub.add_parser("stats", help="size and fingerprint of a dataset")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--root", default=None, metavar="DIR")
    q = dsub.add_parser("download", help="fetch a dataset into the cache")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--root", default=None, metavar="DIR")
    q.add_argument("--url", default=None, help="download from this URL instead")
    q.add_argument("--force", action="store_true", help="download again even if cached")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_datasets)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class _StderrHandler(__import__("logging").Handler):
    """Log records as plain lines on the *current* ``sys.stderr`` (progress lines, warnings)."""

    def emit(self, record) -> None:
        try:
            print(record.getMessage(), file=sys.stderr, flush=True)
        except (BrokenPipeError, ValueError):
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (argparse usage errors exit with 2)."""
    import logging

    args = build_parser().parse_args(argv)
    logger = logging.getLogger("graphforget")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    try:
        code = args.func(args)
    except (ValueError, OSError, FloatingPointError) as exc:  # OSError: FileNotFoundError too
        print(f"graphforget: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not _is_unlearning_failure(exc):
            raise
        print(f"graphforget: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type's name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _is_unlearning_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the deletion service's ``UnlearningFailed`` (nothing was changed)."""
    forgetter = sys.modules.get("graphforget.service.forgetter")
    return forgetter is not None and isinstance(exc, getattr(forgetter, "UnlearningFailed", ()))


if __name__ == "__main__":
    sys.exit(main())
