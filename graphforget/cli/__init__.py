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

``-v/--verbose`` (DEBUG logging) and ``-q/--quiet`` (WARNING, no progress bars) go before any
command, or after the commands added through :func:`add_command`. ``train``, ``unlearn`` and
``reproduce`` take ``--config FILE.toml``: its keys are the command's long option names (dashes
or underscores), applied as defaults that flags on the command line override; an unknown key, a
bad value, a directory or malformed TOML is refused in one line (status 2). ``--help`` shows
every option's default. A closed stdout (``graphforget datasets list | head -1``) ends the
command quietly with status 141 (128 + SIGPIPE, as a shell reports for coreutils and git).

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
    if args.action in ("list", "stats"):
        rows = (registry.list_datasets() if args.action == "list"
                else registry.dataset_stats(args.name, root=args.root))
        if args.json:
            import json

            print(json.dumps(rows, indent=2, default=str))
        elif args.action == "list":
            _print_table(rows)
        else:
            for key, value in rows.items():
                print(f"{key}: {value}")
    else:
        from ..data.download import download

        extra = {"sha256": args.sha256} if args.sha256 else {}
        path = download(args.name, root=args.root, url=args.url, force=args.force,
                        progress=not args.quiet, **extra)
        print(f"{args.name}: {path}")
    return 0


# ---------------------------------------------------------------------------- parser
class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with each option's default (``(default: X)``) unless its text already names one;
    descriptions and epilogs keep their line breaks. Flags (``store_true``) and options whose
    default is ``None`` (their help says what happens then) get no suffix."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or action.nargs == 0
                or (not action.option_strings and action.nargs not in ("?", "*"))):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".strip()


#: Subcommands that take ``--config FILE.toml`` (see :func:`_apply_config`).
CONFIG_COMMANDS = ("train", "unlearn", "reproduce")


def _common_parent() -> argparse.ArgumentParser:
    """``-v/--verbose`` and ``-q/--quiet`` as given after a subcommand (``graphforget train -q``);
    defaults ``SUPPRESS`` so they never overwrite the same options given before the command."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="log warnings only and show no progress bars")
    return parent


def add_command(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
    """``subparsers.add_parser(name, ...)`` with the shared ``-v``/``-q`` options and the help
    formatter showing defaults; commands in :data:`CONFIG_COMMANDS` also get ``--config``."""
    kwargs.setdefault("formatter_class", _Formatter)
    p = subparsers.add_parser(name, parents=[_common_parent(), *kwargs.pop("parents", [])], **kwargs)
    if name in CONFIG_COMMANDS:
        p.add_argument("--config", default=None, metavar="FILE.toml",
                       help="TOML file of defaults for this command's options (keys: the long "
                            "option names, dashes or underscores); flags given here override it")
    return p


def _config_values(path: str, parser: argparse.ArgumentParser, command: str) -> dict:
    """The ``dest -> value`` defaults in TOML file ``path`` for subcommand ``parser``; a
    ``ValueError`` naming the file (and the key) for a missing file, a directory, malformed
    TOML, an unknown key or a bad value."""
    import tomllib

    where = f"--config {path}"
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{where}: is a directory, expected a TOML file")
    try:
        with open(file, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read: {exc}") from None
    actions = {opt: a for a in parser._actions for opt in a.option_strings if opt.startswith("--")}
    values: dict = {}
    for key, value in doc.items():
        action = actions.get("--" + key.replace("_", "-"))
        if action is None or action.dest in ("help", "config") or isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)):
            raise ValueError(f"{where}: unknown key {key!r} (not an option of "
                             f"`graphforget {command}`)")
        if isinstance(value, dict):
            raise ValueError(f"{where}: key {key!r}: expected a value, not a table")
        if action.nargs == 0:  # store_true / store_false flags
            if not isinstance(value, bool):
                raise ValueError(f"{where}: key {key!r}: expected true or false, got {value!r}")
            values[action.dest] = action.const if value else (
                not action.const if isinstance(action.const, bool) else None)
            continue
        many = action.nargs in ("+", "*") or isinstance(action.nargs, int) or isinstance(
            action, argparse._AppendAction)
        items = value if isinstance(value, list) else [value]
        if not many and isinstance(value, list):
            raise ValueError(f"{where}: key {key!r}: expected one value, got a list")
        if action.nargs == "+" and not items:
            raise ValueError(f"{where}: key {key!r}: expected at least one value")
        converted = []
        for item in items:
            if isinstance(item, (dict, list)) or (isinstance(item, bool) and action.type is not None):
                raise ValueError(f"{where}: key {key!r}: invalid value {item!r}")
            try:
                v = parser._get_value(action, str(item))
                parser._check_value(action, v)
            except argparse.ArgumentError as exc:
                raise ValueError(f"{where}: key {key!r}: {exc.message}") from None
            converted.append(v)
        values[action.dest] = converted if many else converted[0]
    return values


def _given(argv: Sequence[str], action) -> bool:
    """Whether one of ``action``'s option strings appears in ``argv`` (as ``--x`` or ``--x=v``)."""
    return any(tok.split("=", 1)[0] in action.option_strings for tok in argv if tok.startswith("-"))


def _parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]):
    """``parser.parse_args(argv)``, with ``--config FILE.toml`` of a command in
    :data:`CONFIG_COMMANDS` read first and applied with ``set_defaults`` (so flags on the command
    line override it); options required on the command line may come from the file instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    pos = next((i for i, tok in enumerate(argv) if not tok.startswith("-")), None)
    if sub is None or pos is None or argv[pos] not in CONFIG_COMMANDS or "--" in argv[:pos]:
        return parser.parse_args(argv)
    command, rest = argv[pos], argv[pos + 1:]
    cmd = sub.choices[command]
    rest = rest[:rest.index("--")] if "--" in rest else rest
    path = None
    for i, tok in enumerate(rest):  # --config X, --config=X, or an unambiguous prefix of it
        name, eq, value = tok.partition("=")
        if len(name) > 2 and "--config".startswith(name) and not any(
                o.startswith(name) and o != "--config" for o in cmd._option_string_actions):
            path = value if eq else (rest[i + 1] if i + 1 < len(rest) else None)
    if path is None:
        return parser.parse_args(argv)
    values = _config_values(path, cmd, command)
    for group in cmd._mutually_exclusive_groups:  # a member given here replaces the file's
        if any(_given(rest, a) for a in group._group_actions):
            for a in group._group_actions:
                if not _given(rest, a):
                    values.pop(a.dest, None)
        present = [a for a in group._group_actions if a.dest in values]
        if len(present) > 1:
            raise ValueError(f"--config {path}: keys {', '.join(a.dest for a in present)} are "
                             "mutually exclusive")
        if present:
            group.required = False
    for action in cmd._actions:
        if action.dest in values and action.option_strings:
            action.required = False
    cmd.set_defaults(**values)
    return parser.parse_args(argv)


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
        description="Train graph recommenders and make them forget interactions.",
        epilog="-v/--verbose and -q/--quiet go before any command or after it (`graphforget "
               "train -q`, `graphforget datasets list -q`, `graphforget store import -q`).")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"graphforget {__version__}")
    parser.add_argument("-v", "--verbose", dest="global_verbose", action="store_true",
                        help="debug logging")
    parser.add_argument("-q", "--quiet", dest="global_quiet", action="store_true",
                        help="log warnings only and show no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = add_command(sub, "train", help="train a recommender and write a checkpoint")
    _data_args(p)
    p.add_argument("--model", choices=["lightgcn", "ngcf", "mf"], default="lightgcn",
                   help="architecture")
    p.add_argument("--layers", type=int, default=3, help="propagation layers (default 3)")
    p.add_argument("--dim", type=_positive(int), default=64, help="embedding size (default 64)")
    p.add_argument("--init-std", type=_positive(float), default=0.1,
                   help="std of the Gaussian initialisation (default 0.1)")
    p.add_argument("--epochs", type=_positive(int), default=100, help="epoch cap (default 100)")
    p.add_argument("--batch-size", type=_positive(int), default=2048,
                   help="training pairs per step (default 2048)")
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
                   help="auto: BCE on labelled data, else BPR (default auto)")
    p.add_argument("--patience", type=int, default=10,
                   help="evaluations without improvement before stopping; 0 disables (default 10)")
    p.add_argument("--eval-every", type=_positive(int), default=1,
                   help="epochs between validation evaluations")
    p.add_argument("--metric", default=None,
                   help="validation metric for early stopping (default recall@max(ks))")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write")
    p.add_argument("--log", default=None, metavar="JSONL", help="append one JSON line per epoch")
    p.set_defaults(func=cmd_train)  # -q/--quiet (no progress bar) comes with add_command

    p = add_command(sub, "evaluate", help="evaluate a checkpoint on a dataset split")
    p.add_argument("checkpoint", metavar="CKPT")
    _data_args(p)
    p.add_argument("--split", choices=["valid", "test"], default="test", help="split to rank")
    p.add_argument("--batch-size", type=_positive(int), default=1024, help="users per ranking batch")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="also write the metrics and the recipe's stationarity as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("datasets", help="list, describe or download datasets")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = add_command(dsub, "list", help="registered datasets")
    q.add_argument("--json", action="store_true", help="print the list as JSON")
    q = add_command(dsub, "stats", help="size and fingerprint of a dataset")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--root", default=None, metavar="DIR")
    q.add_argument("--json", action="store_true", help="print the figures as JSON")
    q = add_command(dsub, "download", help="fetch a dataset into the cache")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--root", default=None, metavar="DIR")
    q.add_argument("--url", default=None, metavar="URL",
                   help="base URL of a mirror (https:// or http:// only); files without a "
                        "pinned or --sha256 hash are reported unverified")
    q.add_argument("--sha256", action="append", default=None, metavar="HEX|FILE=HEX",
                   help="expected sha256 (repeat FILE=HEX for data sets of several files); "
                        "a mismatch is refused")
    q.add_argument("--force", action="store_true", help="download again even if cached")
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
    """Run the command line; returns the exit status (argparse usage errors exit with 2).

    ``-q``/``-v`` (before or after the command) set the ``graphforget`` logger to WARNING /
    DEBUG (INFO otherwise); ``-q`` also sets ``args.quiet`` (no progress bars). A closed stdout
    (``graphforget ... | head -1``) ends the command quietly with status 141 (128 + SIGPIPE,
    what a shell reports for coreutils killed by the signal), without a traceback."""
    import logging

    parser = build_parser()
    try:
        args = _parse_args(parser, argv)
    except ValueError as exc:  # --config FILE: unreadable, malformed, unknown key
        print(f"graphforget: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    args.quiet = bool(getattr(args, "quiet", False) or args.global_quiet)
    args.verbose = bool(getattr(args, "verbose", False) or args.global_verbose)
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose exclude each other")
    logger = logging.getLogger("graphforget")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    try:
        try:
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        except BrokenPipeError:
            _silence_stdout()
            return 141
    except (ValueError, OSError, FloatingPointError) as exc:  # OSError: FileNotFoundError too
        print(f"graphforget: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not _is_unlearning_failure(exc):
            raise
        print(f"graphforget: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)


def _silence_stdout() -> None:
    """Point stdout at ``os.devnull`` after its reader went away, so that nothing more (nor the
    interpreter's flush at exit) raises ``BrokenPipeError``."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    devnull = os.open(os.devnull, os.O_WRONLY)
    if fd is not None:
        os.dup2(devnull, fd)
        os.close(devnull)
    else:
        sys.stdout = os.fdopen(devnull, "w")


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type's name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _is_unlearning_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the deletion service's ``UnlearningFailed`` (nothing was changed)."""
    requests = sys.modules.get("graphforget.service.requests")
    return requests is not None and isinstance(exc, getattr(requests, "UnlearningFailed", ()))


if __name__ == "__main__":
    sys.exit(main())
