"""The command line, run in-process through ``main([...])`` on ml100k."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import shutil
import sys
import types

import pytest
import torch

from conftest import shared
from graphforget import cli
from graphforget.data.registry import load_dataset
from graphforget.metrics import format_metrics
from graphforget.train import evaluate, load_checkpoint

TRAIN_ARGS = ["--model", "lightgcn", "--layers", "2", "--dim", "16", "--epochs", "2",
              "--batch-size", "4096", "--lr", "0.01", "--patience", "0", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI training run on ml100k shared by the tests below: (data, ckpt, log, stdout)."""
    data = shared("ml100k")
    out = tmp_path_factory.mktemp("cli")
    ckpt, log = out / "lgcn.pt", out / "log.jsonl"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["train", "--data", str(data), *TRAIN_ARGS, "--out", str(ckpt),
                         "--log", str(log)])
    assert code == 0
    return data, ckpt, log, stdout.getvalue()


def _metric_line(text: str, label: str) -> dict:
    line = next(x for x in text.splitlines() if x.startswith(f"{label}: "))
    return {k: float(v) for k, v in re.findall(r"(\w+@\d+|auc)=([0-9.]+)", line)}


def test_train_prints_stats_metrics_and_writes_checkpoint(trained):
    data, ckpt, log, out = trained
    graph = load_dataset(data)
    assert f"fingerprint={graph.fingerprint()}" in out
    assert f"users={graph.num_users} items={graph.num_items} train={graph.num_train}" in out
    model, payload = load_checkpoint(ckpt, graph)
    assert payload["model"] == {"model": "lightgcn", "num_users": graph.num_users,
                                "num_items": graph.num_items, "dim": 16, "layers": 2, "init_std": 0.1}
    assert payload["train_config"]["epochs"] == 2 and payload["train_config"]["patience"] is None
    for split in ("valid", "test"):
        want = evaluate(model, graph, split)
        got = _metric_line(out, split)
        assert got["recall@20"] == pytest.approx(want["recall@20"], abs=1e-4)
        assert got["ndcg@20"] == pytest.approx(want["ndcg@20"], abs=1e-4)
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_evaluate_checkpoint(trained, capsys):
    data, ckpt, _, _ = trained
    assert cli.main(["evaluate", str(ckpt), "--data", str(data), "--ks", "10", "20"]) == 0
    out = capsys.readouterr().out
    graph = load_dataset(data)
    model, _ = load_checkpoint(ckpt, graph)
    want = evaluate(model, graph, "test", ks=(10, 20))
    assert format_metrics(want) in out
    assert "model lightgcn dim=16 layers=2" in out
    assert cli.main(["evaluate", str(ckpt), "--data", str(data), "--split", "valid"]) == 0
    assert format_metrics(evaluate(model, graph, "valid")) in capsys.readouterr().out


def test_evaluate_refuses_a_different_graph(trained, tmp_path, capsys):
    data, ckpt, _, _ = trained
    other = tmp_path / "ml100k-minus-one-user"
    other.mkdir()
    for name in ("validation.txt", "test.txt"):
        shutil.copy(data / name, other / name)
    lines = (data / "train.txt").read_text().splitlines()
    (other / "train.txt").write_text("\n".join(lines[:-1] + [lines[-1].rsplit(" ", 1)[0]]) + "\n")
    assert cli.main(["evaluate", str(ckpt), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphforget: error: ") and "another training graph" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing.pt", "no such checkpoint"),
    (lambda p: (p / "junk.pt").write_bytes(b"not a checkpoint") and p / "junk.pt", "not a readable"),
])
def test_evaluate_bad_checkpoint_path(trained, tmp_path, capsys, make, fragment):
    data = trained[0]
    code = cli.main(["evaluate", str(make(tmp_path)), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("graphforget: error: ") and fragment in err and "Traceback" not in err


def test_bad_data_and_options_exit_2(tmp_path, capsys):
    ckpt = str(tmp_path / "x.pt")
    assert cli.main(["train", "--data", str(tmp_path / "nope"), "--out", ckpt, "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("graphforget: error: ")
    data = str(shared("ml100k"))
    assert cli.main(["train", "--data", data, "--out", ckpt, "--metric", "recall@10", "--quiet"]) == 2
    assert "--metric" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse usage errors
        cli.main(["train", "--data", data, "--out", ckpt, "--model", "gcn"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--data", data, "--out", ckpt, "--epochs", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    assert not (tmp_path / "x.pt").exists()


def test_train_mf_with_early_stopping(tmp_path, capsys):
    data = str(shared("ml100k"))
    ckpt = tmp_path / "mf.pt"
    args = ["train", "--data", data, "--model", "mf", "--dim", "8", "--epochs", "3",
            "--batch-size", "8192", "--patience", "1", "--ks", "10", "--out", str(ckpt), "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "model mf:" in out and "recall@10=" in out and "recall@20" not in out
    model, payload = load_checkpoint(ckpt)
    assert payload["model"]["model"] == "mf" and payload["train_config"]["metric"] == "recall@10"


def test_datasets_commands(capsys, monkeypatch, tmp_path):
    from graphforget.data import registry

    download_mod = importlib.import_module("graphforget.data.download")  # the name is re-exported

    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for entry in registry.list_datasets():
        assert str(entry["name"]) in out
    data = str(shared("ml100k"))
    assert cli.main(["datasets", "stats", data]) == 0
    out = capsys.readouterr().out
    for key, value in registry.dataset_stats(data).items():
        assert f"{key}: {value}" in out
    calls = []

    def fake_download(name, root=None, url=None, force=False, progress=True):
        calls.append((name, root, url, force, progress))
        return tmp_path / name

    monkeypatch.setattr(download_mod, "download", fake_download)
    assert cli.main(["datasets", "download", "demo", "--root", str(tmp_path),
                     "--url", "https://example.org/d.zip", "--force", "--quiet"]) == 0
    assert calls == [("demo", str(tmp_path), "https://example.org/d.zip", True, False)]
    assert str(tmp_path / "demo") in capsys.readouterr().out

    def failing_download(name, **kwargs):
        raise ValueError(f"unknown dataset {name!r}")

    monkeypatch.setattr(download_mod, "download", failing_download)
    assert cli.main(["datasets", "download", "nope"]) == 2
    assert "graphforget: error: unknown dataset 'nope'" in capsys.readouterr().err


def test_command_modules_hook(monkeypatch, capsys):
    mod = types.ModuleType("_graphforget_test_commands")

    def hello(args):
        print(f"hello {args.who}")
        return 3

    def register(subparsers):
        p = subparsers.add_parser("hello", help="test command")
        p.add_argument("--who", default="world")
        p.set_defaults(func=hello)

    mod.register = register
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [mod.__name__])
    assert cli.main(["hello", "--who", "graph"]) == 3
    assert capsys.readouterr().out == "hello graph\n"
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        cli.main(["hello"])


def test_device_check(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: nothing to refuse")
    data = str(shared("ml100k"))
    assert cli.main(["train", "--data", data, "--out", str(tmp_path / "c.pt"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
