"""Global CLI options (issue 16): -v/-q before or after the command, --config FILE.toml,
defaults in --help, notes printed, quiet broken pipes. Tiny runs on the shipped ``demo`` data."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from graphforget import cli

TINY = ["--data", "demo", "--model", "mf", "--dim", "8", "--epochs", "1", "--patience", "0"]


def _level() -> int:
    return logging.getLogger("graphforget").level


@pytest.fixture(autouse=True)
def _restore_logger():
    logger = logging.getLogger("graphforget")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "mf.pt"
    assert cli.main(["train", *TINY, "--out", str(out), "-q"]) == 0
    return out


# ---------------------------------------------------------------- -q / -v
@pytest.mark.parametrize("argv", [["-q", "train"], ["train", "-q"], ["train", "--quiet"],
                                  ["--quiet", "train"]])
def test_quiet_before_or_after_command(argv, tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args([*argv, "--data", "demo", "--out", str(tmp_path / "x.pt")])
    assert getattr(args, "quiet", False) or args.global_quiet


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flag, level", [("-q", logging.WARNING), ("-v", logging.DEBUG),
                                         (None, logging.INFO)])
def test_quiet_verbose_set_log_level(where, flag, level, ckpt, capsys):
    rest = ["evaluate", str(ckpt), "--data", "demo"]
    flags = [flag] if flag else []
    argv = flags + rest if where == "before" else rest + flags
    assert cli.main(argv) == 0
    assert _level() == level
    assert "test: recall@20=" in capsys.readouterr().out


def test_quiet_disables_progress(monkeypatch, tmp_path):
    seen = {}

    def fake(args):
        seen["quiet"] = args.quiet
        return 0

    monkeypatch.setattr(cli, "cmd_train", fake)
    for argv, quiet in ((["-q", "train"], True), (["train", "-q"], True), (["train"], False)):
        assert cli.main([*argv, "--data", "demo", "--out", str(tmp_path / "x.pt")]) == 0
        assert seen["quiet"] is quiet


@pytest.mark.parametrize("argv", [["-q", "-v", "datasets", "list"],
                                  ["-q", "evaluate", "c.pt", "--data", "demo", "-v"]])
def test_quiet_and_verbose_exclude_each_other(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "exclude each other" in capsys.readouterr().err


def test_every_module_command_takes_v_and_q():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    leaves = []

    def walk(p, path):
        subs = [a for a in p._actions if isinstance(a, cli.argparse._SubParsersAction)]
        if not subs:
            leaves.append((path, p))
        for a in subs:
            for name, child in a.choices.items():
                walk(child, path + [name])

    walk(parser, [])
    assert len(leaves) >= 15  # train … verify, datasets list/stats/download, store import/…
    for path, p in leaves:
        assert {"-q", "--quiet", "-v", "--verbose"} <= set(p._option_string_actions), path


def test_global_quiet_reaches_service_commands(monkeypatch):
    """``graphforget -q forget ...``: the service's own ``--quiet`` (default False) is set."""
    seen = {}
    parser = cli.build_parser()
    forget = parser._subparsers._group_actions[0].choices["forget"]
    forget.set_defaults(func=lambda args: seen.setdefault("quiet", args.quiet) and 0)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    cli.main(["-q", "forget", "--db", "x.db", "--checkpoint", "c.pt", "--user", "1"])
    assert seen["quiet"] is True
    assert _level() == logging.WARNING


def test_global_quiet_reaches_datasets_download(monkeypatch, capsys, tmp_path):
    import importlib

    dl = importlib.import_module("graphforget.data.download")
    calls = []
    monkeypatch.setattr(dl, "download", lambda name, root, url, force, progress:
                        calls.append(progress) or tmp_path)
    assert cli.main(["-q", "datasets", "download", "demo", "--root", str(tmp_path)]) == 0
    assert calls == [False]


# ---------------------------------------------------------------- --config
def test_train_config_defaults_and_override(tmp_path, capsys):
    cfg = tmp_path / "train.toml"
    out = tmp_path / "c.pt"
    cfg.write_text(f'data = "demo"\nmodel = "mf"\ndim = 8\nepochs = 1\npatience = 0\n'
                   f'batch_size = 4096\nks = [5, 10]\nout = "{out}"\nquiet = true\n')
    assert cli.main(["train", "--config", str(cfg), "--dim", "4"]) == 0
    text = capsys.readouterr().out
    assert "model mf: dim=4" in text  # the command line overrides the file
    assert "recall@10=" in text and "recall@5=" in text  # the file's ks
    assert out.exists()
    assert _level() == logging.WARNING  # quiet = true from the file


def test_config_key_spellings_and_alias(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('init-std = 0.2\nnegative_seed = 3\nweight_decay = 0.001\neval-every = 2\n')
    parser = cli.build_parser()
    args = cli._parse_args(parser, ["train", "--config", str(cfg), "--data", "demo", "--out", "x.pt"])
    assert (args.init_std, args.negative_seed, args.l2, args.eval_every) == (0.2, 3, 0.001, 2)
    args = cli._parse_args(cli.build_parser(), ["train", "--config=" + str(cfg), "--data", "demo",
                                                "--out", "x.pt", "--l2", "auto"])
    assert args.l2 == "auto"


@pytest.mark.parametrize("body, needle", [
    ("bogus = 1\n", "unknown key 'bogus'"),
    ("config = 'x.toml'\n", "unknown key 'config'"),
    ("help = true\n", "unknown key 'help'"),
    ("dim = -3\n", "key 'dim': must be positive, got -3"),
    ("model = 'gpt'\n", "key 'model'"),
    ("dim = [8, 16]\n", "key 'dim': expected one value"),
    ("quiet = 'yes'\n", "key 'quiet': expected true or false"),
    ("[dim]\nx = 8\n", "key 'dim': expected a value, not a table"),
    ("[train]\ndim = 8\n", "unknown key 'train'"),
    ("dim = \n", "not valid TOML"),
])
def test_train_config_errors(body, needle, tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    out = tmp_path / "x.pt"
    assert cli.main(["train", "--config", str(cfg), *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("graphforget: error: --config ")
    assert needle in err and str(cfg) in err
    assert not out.exists()


def test_config_directory_and_missing(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path), *TINY, "--out", "x.pt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err
    assert cli.main(["train", "--config", str(tmp_path / "no.toml"), *TINY, "--out", "x.pt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_config_not_taken_by_evaluate(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "c.pt", "--data", "demo", "--config", "x.toml"])
    assert exc.value.code == 2


def test_unlearn_config(ckpt, tmp_path, capsys):
    cfg = tmp_path / "u.toml"
    out = tmp_path / "u.pt"
    cfg.write_text(f'data = "demo"\nmethod = "finetune"\nrandom_fraction = 0.01\n'
                   f'option = ["max_epochs=1"]\nout = "{out}"\n')
    assert cli.main(["unlearn", str(ckpt), "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "test after:" in text and out.exists()
    # a member of the edges/user/fraction group on the command line replaces the file's
    args = cli._parse_args(cli.build_parser(), ["unlearn", str(ckpt), "--config", str(cfg),
                                                "--user", "3"])
    assert args.user == [3] and args.random_fraction is None and args.method == "finetune"
    cfg.write_text('data = "demo"\nrandom_fraction = 0.5\nuser = [1]\n')
    assert cli.main(["unlearn", str(ckpt), "--config", str(cfg)]) == 2
    assert "mutually exclusive" in capsys.readouterr().err
    cfg.write_text('checkpoint = "x.pt"\n')  # positional arguments are not options
    assert cli.main(["unlearn", str(ckpt), "--config", str(cfg), "--data", "demo",
                     "--user", "1"]) == 2
    assert "unknown key 'checkpoint'" in capsys.readouterr().err


def test_reproduce_config(tmp_path, capsys):
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'data_root = "{tmp_path / "absent"}"\npreset = "smoke"\nseeds = [0, 1]\n'
                   'no_progress = true\n')
    args = cli._parse_args(cli.build_parser(), ["reproduce", "ifru", "--config", str(cfg),
                                                "--seeds", "7"])
    assert args.preset == "smoke" and args.seeds == [7] and args.no_progress is True
    assert cli.main(["reproduce", "ifru", "--config", str(cfg)]) == 2  # refused before any work
    assert "no such directory" in capsys.readouterr().err
    cfg.write_text("table = 'ifru'\n")
    assert cli.main(["reproduce", "ifru", "--config", str(cfg)]) == 2
    assert "unknown key 'table'" in capsys.readouterr().err


# ---------------------------------------------------------------- --help shows defaults
@pytest.mark.parametrize("command, expected", [
    ("train", ["(default: lightgcn)", "(default 64)", "(default: 1)", "(default 20)"]),
    ("evaluate", ["(default: test)", "(default: 1024)"]),
    ("unlearn", ["(default: ifru)", "(default cpu)"]),
    ("audit", ["(default 16)", "(default 20)"]),
    ("reproduce", ["(default: full)", "(default: experiments/results)", "(default early_stop)"]),
])
def test_help_shows_defaults(command, expected, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    for needle in expected:
        assert needle in text, needle
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default 64) (default" not in text and "(default: ifru) (default" not in text


def test_every_option_help_names_its_default():
    """Each option with a non-None, non-flag default mentions it in --help."""
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0]
    for name in ("train", "evaluate", "unlearn", "audit", "reproduce"):
        p = sub.choices[name]
        fmt = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or action.nargs == 0 or action.default in (None, cli.argparse.SUPPRESS):
                continue
            assert action.help, (name, action.option_strings)
            assert "default" in fmt._get_help_string(action).lower(), (name, action.option_strings)


def test_unlearn_help_keeps_method_list(capsys):
    with pytest.raises(SystemExit):
        cli.main(["unlearn", "--help"])
    text = capsys.readouterr().out
    assert "\nmethods (--method):\n  retrain" in text and "\n  ifru " in text


# ---------------------------------------------------------------- notes
def test_unlearn_and_audit_print_notes(ckpt, tmp_path, capsys):
    out = tmp_path / "f.pt"
    assert cli.main(["unlearn", str(ckpt), "--data", "demo", "--random-fraction", "0.01",
                     "--method", "finetune", "--option", "max_epochs=1", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    edges = tmp_path / "f.edges.txt"
    assert cli.main(["audit", str(ckpt), str(out), "--data", "demo", "--edges", str(edges),
                     "--shadows", "0", "-q"]) == 0
    captured = capsys.readouterr()
    assert "\nnote: per-edge U-MIA skipped" in captured.out  # the report's notes are shown
    assert "retrain" not in captured.err.lower()  # -q: no progress line per retrain


# ---------------------------------------------------------------- broken pipes
class _ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_pipe_in_process(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert cli.main(["datasets", "list"]) == 141
    sys.stdout.write("nothing raises any more\n")
    sys.stdout.flush()


def test_broken_pipe_subprocess_is_quiet():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (as after `| head -0`)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from graphforget.cli import main; "
                           "sys.exit(main(['datasets', 'list']))"],
                          stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    os.close(write)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_datasets_list_and_stats_as_json(capsys):
    import json

    from graphforget.cli import main

    assert main(["datasets", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "demo" and {"format", "description", "on_disk"} <= set(rows[0])
    assert main(["datasets", "stats", "demo", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 1944 and stats["items"] == 2748 and stats["train"] == 38708
