"""CLI subcommands of the deletion service: ``store import``, ``store migrate``,
``store rebind``, ``store retrain``, ``forget``, ``history``, ``verify``.

Plugged into :mod:`graphforget.cli` through ``COMMAND_MODULES`` (``register(subparsers)``;
handlers return an exit code, ``ValueError`` / ``FileNotFoundError`` become
``graphforget: error: ...`` with exit status 2). ``history`` and ``verify`` open the store
read-only; a ``--db`` that is not a graphforget store (another program's SQLite file, a
directory, a damaged file) is refused in one line without being written, and SQLite errors of a
store damaged past its header become one line naming the file too.

``forget --batch FILE.jsonl`` applies queued requests (one JSON object per line, as
:meth:`~graphforget.service.Forgetter.forget_many` takes them) as one unlearning step with one
ledger row each; a bad line refuses the whole file.

``forget`` prints the hash of the request's ledger row: keep it elsewhere (a ticket, a log) and
``verify --anchor HASH`` later checks that the ledger up to that row was not rewritten. ``history``
ends with the chain's state (intact with its head hash, or where it is broken). Stored strings
that are not printable (a request id with an ANSI escape or a newline, written before such ids
were refused) are printed as their ``repr``.

``verify`` prints one line per check (``ok`` / ``FAIL`` / ``skip``, see
:mod:`graphforget.service.verify`) and then ``verified`` or ``NOT verified``; exit status 0 when
verified, 1 when a check fails, 2 on bad input (``--json``: the same as one JSON object).
``store migrate`` brings a store of an older schema to the current one (any writable open does
it too): it chains the ledger of a store written before the chain, and turns raw tombstones
into keyed ones (creating the key file ``DB.key``), removing the raw ids of forgotten data.

``store import`` into a store that already holds data only re-imports the same rows (a reload:
forgotten rows stay forgotten). Anything that would make the store unusable is refused in one
line (exit 2) before the store or a checkpoint is written: rows, users or items the store does
not hold (another data set, whose raw ids would merge with the store's, or the same data split
with another ``--seed``), ``--model`` on a store that already has a bound checkpoint, and
``--model --checkpoint PATH`` onto an existing file (it may be a store's bound checkpoint).

Recovery of a store whose bound checkpoint was replaced (``graphforget train --out`` onto it),
lost or no longer matches its graph: ``store rebind --db DB --checkpoint CKPT`` binds an
existing checkpoint of the store's current graph (sizes, fingerprint and finiteness checked);
``store retrain --db DB --checkpoint NEW`` trains a new model on the store's current graph with
the recipe the ledger recorded (``--model``, ``--epochs``, … override it) and binds it. Both
are rows of the hash-chained ledger; later commands take ``--checkpoint`` of the new file.
``forget``, ``store rebind`` and ``store retrain`` wait at most ``--lock-timeout`` seconds
(default 60) for the series' lock file, then fail naming it.

Examples::

    graphforget store import ../shared/data/ml100k --db store.sqlite \\
        --model lightgcn --epochs 200 --checkpoint runs/model.pt
    graphforget forget --db store.sqlite --checkpoint runs/model.pt --user 196 --request-id t-17
    graphforget forget --db store.sqlite --checkpoint runs/model.pt --edges pairs.txt --method ifru
    graphforget history --db store.sqlite [--json]
    graphforget verify --db store.sqlite --checkpoint runs/model.pt [--anchor HASH] [--json]
    graphforget store rebind --db store.sqlite --checkpoint runs/model.pt
    graphforget store retrain --db store.sqlite --checkpoint runs/model-2.pt [--epochs 50]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path


def _progress_bar(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet or not sys.stderr.isatty(), leave=False)


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _existing_db(path: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such store (create it with `graphforget store import`)")
    return path


@contextmanager
def _store_errors(path: str):
    """SQLite errors of a damaged store as a one-line ``ValueError`` naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: damaged or unreadable store ({exc})") from exc


# ---------------------------------------------------------------------------- handlers
def cmd_store_import(args) -> int:
    from ..data.registry import load_dataset
    from ..service import Forgetter, InteractionStore

    from ..service.store import probe
    from ..service.tokens import default_key_path

    if args.model and not args.checkpoint:
        raise ValueError("--model trains a model: give --checkpoint PATH to write it to")
    _check_device(args.device)
    if args.model and Path(args.checkpoint).exists():
        raise ValueError(f"{args.checkpoint} already exists: --model would overwrite it (it may be "
                         "the checkpoint a store is bound to); give a new path, or recover a store "
                         "with `graphforget store rebind` / `graphforget store retrain`")
    kind = probe(args.db)  # read-only; refuses a file that is not a store
    bar = _progress_bar(4 if args.checkpoint else 2, "store import", args.quiet)
    bar.set_postfix_str("load")
    graph = load_dataset(args.data, root=args.root, seed=args.seed, verbose=False)
    if graph.num_train == 0:
        raise ValueError(f"{args.data}: no training interactions (after the data set's protocol); "
                         "nothing to import")
    if kind in ("store", "unmarked"):
        with _store_errors(args.db), InteractionStore(args.db, readonly=True) as ro:
            _refuse_unsafe_import(args, ro, graph)
    bar.update()
    bar.set_postfix_str("import")
    key = Path(args.key) if args.key else default_key_path(args.db)
    new_key = not key.exists()
    try:
        with _store_errors(args.db), InteractionStore(args.db, key_path=args.key) as store:
            stats = store.import_graph(graph, source=str(args.data))
            current = store.to_graph()
            counts = store.counts()
    except BaseException:
        if kind == "absent":  # a refused first import leaves no store (nor key) behind
            for path in (Path(args.db), Path(f"{args.db}-wal"), Path(f"{args.db}-shm")) + \
                    ((key,) if new_key else ()):
                path.unlink(missing_ok=True)
        raise
    bar.update()
    print(f"imported {args.data} into {args.db}: +{stats['users_added']} users, "
          f"+{stats['items_added']} items, +{stats['rows_added']} rows "
          f"({stats['rows_existing']} already present, {stats['rows_forgotten']} previously forgotten)")
    print(f"store: users={counts['users']} items={counts['items']} train={counts['train']} "
          f"valid={counts['valid']} test={counts['test']} forgotten={counts['deleted']} "
          f"fingerprint={current.fingerprint()}")
    if args.checkpoint:
        if args.model:
            from ..models import build_model
            from ..train import TrainConfig, train

            bar.set_postfix_str("train")
            model = build_model(args.model, current.num_users, current.num_items, dim=args.dim,
                                layers=args.layers, seed=args.seed)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              weight_decay=args.weight_decay,
                              patience=args.patience if args.patience > 0 else None,
                              seed=args.seed, device=args.device, progress=False)
            res = train(model, current, cfg, checkpoint=args.checkpoint)
            print(f"trained {args.model} for {res.epochs_run} epochs in {res.seconds:.1f}s "
                  f"(best valid metric {res.best_metric:.4f} at epoch {res.best_epoch})")
        bar.update()
        bar.set_postfix_str("bind")
        with Forgetter(args.db, args.checkpoint, method="ifru", fallback=None, audit=None,
                       key_path=args.key) as f:
            print(f"bound checkpoint {f.current['name']} sha256={f.current['sha256']} "
                  f"(graph {f.current['fingerprint']})")
        bar.update()
    bar.close()
    return 0


def _check_device(name: str) -> None:
    from . import _device  # the CLI's one device check (a one-line error without CUDA)

    _device(name)


def _refuse_unsafe_import(args, store, graph) -> None:
    """One-line ``ValueError`` (nothing written yet) for an import that would leave the store
    unusable: see the module docstring."""
    if store.is_empty():
        return
    ptr = store.current_checkpoint()
    if args.model and ptr is not None:
        raise ValueError(f"{args.db} already has a bound checkpoint ({ptr['name']}); refusing to "
                         "train another over it: to replace the model use `graphforget store "
                         f"retrain --db {args.db} --checkpoint NEW.pt`")
    p = store.import_preview(graph)
    if p["users_added"] or p["items_added"] or p["rows_added"]:
        current = store.to_graph()
        merged = (f", {p['existing_users_gaining_rows']} of its users would gain rows (raw ids "
                  "collide)") if p["existing_users_gaining_rows"] else ""
        raise ValueError(
            f"{args.db} already holds data set {store.get_meta('name') or 'unnamed'!r} (graph "
            f"{current.fingerprint()}); importing {args.data} (--seed {args.seed}) would add "
            f"{p['users_added']} users, {p['items_added']} items and {p['rows_added']} rows"
            f"{merged}, and no bound checkpoint would match it: refused, nothing written; "
            "import another data set or split into a new --db")


def cmd_store_rebind(args) -> int:
    from ..service import rebind_checkpoint

    _existing_db(args.db)
    with _store_errors(args.db):
        row = rebind_checkpoint(args.db, args.checkpoint, lock_timeout=args.lock_timeout,
                                key_path=args.key)
    print(f"bound {row.checkpoint} sha256={row.checkpoint_sha256} (graph {row.graph_fingerprint}) "
          f"as the current checkpoint of {args.db}; ledger row {row.seq} hash {row.hash}")
    return 0


def cmd_store_retrain(args) -> int:
    from ..service import retrain_checkpoint

    _existing_db(args.db)
    _check_device(args.device)
    model = {k: getattr(args, k) for k in ("model", "dim", "layers") if getattr(args, k) is not None}
    config = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "seed")
              if getattr(args, k) is not None}
    if args.patience is not None:
        config["patience"] = args.patience if args.patience > 0 else None
    with _store_errors(args.db):
        row = retrain_checkpoint(args.db, args.checkpoint, model=model, config=config, key_path=args.key,
                                 device=args.device, lock_timeout=args.lock_timeout)
    rep = row.report or {}
    print(f"retrained {row.request['recipe']['model'].get('model')} on the store's current graph "
          f"for {rep.get('epochs_run')} epochs in {rep.get('seconds_total', 0):.1f}s; bound "
          f"{row.checkpoint} sha256={row.checkpoint_sha256} (graph {row.graph_fingerprint}); "
          f"ledger row {row.seq} hash {row.hash}")
    return 0


def cmd_forget(args) -> int:
    from ..data import read_pairs
    from ..service import Forgetter, audit_figures

    _existing_db(args.db)
    _check_device(args.device)
    edges = read_pairs(args.edges) if args.edges else None  # malformed file: nothing opened
    batch = _read_batch(args.batch) if args.batch else None
    if batch is not None and args.request_id is not None:
        raise ValueError("--request-id names one request: give each --batch line its own \"request_id\"")
    phases = ["validate", "audit", "unlearn", "audit", "checkpoint", "commit"]
    bar = _progress_bar(len(phases), "forget", args.quiet)

    def step(phase: str) -> None:
        bar.set_postfix_str(phase)
        bar.update()

    fallback = None if args.fallback.lower() == "none" else args.fallback
    with _store_errors(args.db), Forgetter(
            args.db, args.checkpoint, method=args.method, options=dict(args.option or []),
            fallback=fallback, audit=None if args.no_audit else partial(audit_figures, ks=tuple(args.ks)),
            device=args.device, progress=step, lock_timeout=args.lock_timeout, key_path=args.key) as f:
        if batch is not None:
            results = f.forget_many(batch)
        elif args.user is not None:
            results = [f.forget_user(args.user, request_id=args.request_id)]
        elif args.item is not None:
            results = [f.forget_item(args.item, request_id=args.request_id)]
        else:
            results = [f.forget(edges, request_id=args.request_id)]
    bar.close()
    if args.json:
        rows = [dict(r.__dict__) for r in results]
        print(json.dumps(rows if batch is not None else rows[0], indent=2, default=str))
        return 0
    for res in results:
        print(res.summary())
    res = results[-1]
    print(f"  ledger row hash {res.ledger_hash} (keep it: `graphforget verify --anchor HASH`)")
    for label, fig in (("before", res.audit_before), ("after", res.audit_after)):
        if fig:
            util = fig.get("utility", {}).get("overall", {})
            ranks = fig.get("deleted_ranks", {})
            parts = [f"{k}={v:.4f}" for k, v in util.items() if "@" in k or k == "auc"
                     if isinstance(v, float)]
            parts += [f"deleted mean_rank={ranks['mean_rank']:.1f}"] if "mean_rank" in ranks else []
            print(f"  audit {label}: {'  '.join(parts)}")
    return 0


def _read_batch(path: str) -> list[dict]:
    """The requests of a ``--batch`` file (JSON lines; blank and ``#`` lines skipped); a one-line
    ``ValueError`` naming the file and line for anything else."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"--batch {path}: is a directory, expected a JSON-lines file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--batch {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = []
    for n, line in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):  # blank lines and comments
            continue
        try:
            req = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--batch {path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(req, dict):
            raise ValueError(f"--batch {path}:{n}: expected a JSON object, got {type(req).__name__}")
        out.append(req)
    if not out:
        raise ValueError(f"--batch {path}: no requests")
    return out


def _chain_state(store, ledger) -> str:
    """The last line of ``history``: the chain intact with its head hash, or the first problem
    (:func:`~graphforget.service.integrity_problem`)."""
    from ..service import integrity_problem

    if not store.chained:
        return (f"ledger NOT CHAINED: written before graphforget chained its ledger; chain it with "
                f"`graphforget store migrate --db {store.path}`")
    problem = integrity_problem(store, ledger)
    if problem:
        return f"WARNING: {problem}; run `graphforget verify --db {store.path}`"
    seq, head = ledger.head() or (0, None)
    return f"ledger chain intact: {seq} rows, head {head}"


def cmd_history(args) -> int:
    from ..service import InteractionStore, Ledger
    from ..service.ledger import shown

    _existing_db(args.db)
    with _store_errors(args.db), InteractionStore(args.db, readonly=True) as store, store.snapshot():
        ledger = Ledger(store.conn)
        entries = ledger.history(args.request_id)
        state = _chain_state(store, ledger)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2, sort_keys=True))
            if not state.startswith("ledger chain intact"):
                print(state, file=sys.stderr)
            return 0
        counts = store.counts()
        ptr = store.current_checkpoint()
    for e in entries:
        print(e.summary())
    applied = [e for e in entries if e.status == "applied" and e.kind in ("edges", "user", "item")]
    print(f"{len(entries)} ledger rows; {len(applied)} forget requests applied, "
          f"{sum(e.num_edges for e in applied)} training interactions forgotten; store now "
          f"train={counts['train']} valid={counts['valid']} test={counts['test']}")
    if ptr:
        print(f"current checkpoint {shown(ptr['name'])} sha256={shown(ptr['sha256'])} "
              f"graph={shown(ptr['fingerprint'])}")
    print(state)
    return 0


def cmd_verify(args) -> int:
    from ..service import verified, verify_store

    _existing_db(args.db)
    with _store_errors(args.db):
        checks = verify_store(args.db, args.checkpoint, args.anchor, key_path=args.key)
    ok = verified(checks)
    if args.json:
        print(json.dumps({"verified": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            print(c.line())
        print("verified" if ok else "NOT verified")
    return 0 if ok else 1


def cmd_store_migrate(args) -> int:
    from ..service import InteractionStore, Ledger

    _existing_db(args.db)
    with _store_errors(args.db):
        with InteractionStore(args.db, readonly=True) as store:
            was_chained = store.chained
        with InteractionStore(args.db, key_path=args.key) as store:  # converts an old store
            seq, head = Ledger(store.conn).head() or (0, None)
    state = "was already current" if was_chained else f"is converted now (chain row {seq})"
    print(f"{args.db}: the store {state}; {seq} ledger rows, head {head}")
    return 0


# ---------------------------------------------------------------------------- parsers
def _lock_timeout(text: str):
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _key_option(p) -> None:
    p.add_argument("--key", default=None, metavar="FILE",
                   help="the store's key file, which its tombstones need (default: DB.key beside "
                        "the store; keep it where the database's readers cannot read it)")


def _lock_option(p) -> None:
    p.add_argument("--lock-timeout", type=_lock_timeout, default=60.0, metavar="SECONDS",
                   help="wait at most this long for the checkpoint series' lock file (default 60)")

def register(subparsers) -> None:
    """Add ``store``, ``forget``, ``history`` and ``verify`` to the ``graphforget`` command line."""
    from . import add_command  # -v / -q after every leaf command, defaults in --help
    p = subparsers.add_parser("store", help="the deletion service's interaction store")
    ssub = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    q = add_command(ssub, "import", help="import a dataset (and bind or train a model)")
    q.add_argument("data", metavar="DATA", help="registered dataset name or a path")
    q.add_argument("--db", required=True, metavar="SQLITE", help="store file (created if absent)")
    q.add_argument("--root", default=None, metavar="DIR", help="dataset cache directory")
    q.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="checkpoint to bind (trained on DATA), or to write with --model")
    q.add_argument("--model", choices=["lightgcn", "ngcf", "mf"], default=None,
                   help="train this model on the imported data and write it to --checkpoint")
    q.add_argument("--dim", type=int, default=64)
    q.add_argument("--layers", type=int, default=3)
    q.add_argument("--epochs", type=int, default=100)
    q.add_argument("--batch-size", type=int, default=2048)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--weight-decay", type=float, default=1e-4)
    q.add_argument("--patience", type=int, default=10, help="0 disables early stopping")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="cpu")
    _key_option(q)
    q.set_defaults(func=cmd_store_import)
    q = add_command(ssub, "migrate", help="bring a store of an older schema to the current one")
    q.add_argument("--db", required=True, metavar="SQLITE")
    _key_option(q)
    q.set_defaults(func=cmd_store_migrate)
    q = add_command(ssub, "rebind", help="bind an existing checkpoint of the store's current graph "
                                       "(recovery after the bound one was replaced or lost)")
    q.add_argument("--db", required=True, metavar="SQLITE")
    q.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="checkpoint trained on the store's current graph (becomes the series)")
    _lock_option(q)
    _key_option(q)
    q.set_defaults(func=cmd_store_rebind)
    q = add_command(ssub, "retrain", help="train a new model on the store's current graph with the "
                                        "recorded recipe and bind it")
    q.add_argument("--db", required=True, metavar="SQLITE")
    q.add_argument("--checkpoint", required=True, metavar="NEW_CKPT",
                   help="new checkpoint file to write (an existing file is refused)")
    q.add_argument("--model", choices=["lightgcn", "ngcf", "mf"], default=None,
                   help="architecture (default: the recorded recipe's)")
    for opt, typ in (("--dim", int), ("--layers", int), ("--epochs", int), ("--batch-size", int),
                     ("--lr", float), ("--weight-decay", float), ("--seed", int)):
        q.add_argument(opt, type=typ, default=None, help="default: the recorded recipe's")
    q.add_argument("--patience", type=int, default=None, help="0 disables early stopping")
    q.add_argument("--device", default="cpu")
    _lock_option(q)
    _key_option(q)
    q.set_defaults(func=cmd_store_retrain)

    p = add_command(subparsers, "forget", help="forget interactions (atomic, logged in the ledger)")
    p.add_argument("--db", required=True, metavar="SQLITE")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="base checkpoint of the series")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="RAW_ID", help="forget every interaction of this user")
    who.add_argument("--item", metavar="RAW_ID", help="forget every interaction with this item")
    who.add_argument("--edges", metavar="FILE", help="text file, one 'user item' pair per line")
    who.add_argument("--batch", metavar="FILE.jsonl",
                     help="queued requests, one JSON object per line ({\"user\": ...}, {\"item\": ...} "
                          "or {\"edges\": [[u, i], ...]}, each with an optional \"request_id\"), "
                          "unlearned as one step (Forgetter.forget_many)")
    p.add_argument("--method", default="ifru", help="unlearning method (default ifru)")
    p.add_argument("--option", type=_option, action="append", metavar="KEY=VALUE",
                   help="method option (JSON value), repeatable")
    p.add_argument("--fallback", default="finetune",
                   help="method used when --method fails numerically, or 'none' (default finetune)")
    p.add_argument("--request-id", default=None, metavar="ID",
                   help="idempotency key: a request id already applied is not applied again")
    p.add_argument("--ks", type=int, nargs="+", default=[20], metavar="K")
    p.add_argument("--no-audit", action="store_true", help="record no audit figures")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _lock_option(p)
    _key_option(p)
    p.set_defaults(func=cmd_forget)

    p = add_command(subparsers, "history", help="the ledger of a store")
    p.add_argument("--db", required=True, metavar="SQLITE")
    p.add_argument("--request-id", default=None, metavar="ID", help="only this request")
    p.add_argument("--json", action="store_true", help="export the ledger as JSON")
    p.set_defaults(func=cmd_history)

    p = add_command(subparsers, "verify", help="check a store for tampering (read-only; exit 1 if found)")
    p.add_argument("--db", required=True, metavar="SQLITE")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="base checkpoint of the series: also check the checkpoint files")
    p.add_argument("--anchor", default=None, metavar="HASH",
                   help="a ledger row hash kept elsewhere (printed by forget): it must be in the chain")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    _key_option(p)
    p.set_defaults(func=cmd_verify)
