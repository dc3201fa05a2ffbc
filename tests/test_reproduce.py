"""Smoke versions of the paper-table reproductions, so the commands cannot rot."""
import csv
import json
import math

import pytest

from conftest import shared

from graphforget.cli import main
from graphforget.reproduce import reproduce
from graphforget.unlearning import parse_method
from graphforget.reproduce.report import read_results


def test_parse_method():
    assert parse_method("ifru:k=1,damping=0.01,paper_mode=true") == (
        "ifru", {"k": 1, "damping": 0.01, "paper_mode": True})
    assert parse_method("retrain") == ("retrain", {})


def test_reproduce_ifru_smoke_is_deterministic(tmp_path):
    root = shared("ml-latest-small").parent
    methods = ["original", "retrain", "if", "ifru:k=1", "scif"]
    runs = []
    for out in ("a", "b"):
        paths = reproduce("ifru", root, tmp_path / out, preset="smoke", methods=methods,
                          progress=False, log=lambda s: None)
        with open(paths["csv"]) as f:
            runs.append(list(csv.DictReader(f)))
        meta = json.loads(paths["json"].read_text())
        assert meta["seeds"] == [0] and "torch" in meta["versions"]
        assert "ml-latest-small" in meta["datasets"]
        assert meta["train_config"]["lr"] == 1e-3 and meta["train_config"]["loss"] == "auto"
    a, b = runs
    # two models x five methods, every method present
    assert len(a) == 10 and {r["method"] for r in a} == {"Original", "Retrain", "IF", "IFRU (k=1)", "SCIF"}
    for ra, rb in zip(a, b):  # same seed -> same numbers (times aside)
        assert ra["test_auc"] == rb["test_auc"] and ra["valid_auc"] == rb["valid_auc"]
    for r in a:
        assert 0.0 <= float(r["test_auc"]) <= 1.0


def test_reproduce_alteraser_smoke_cli(tmp_path, capsys):
    root = shared("ml100k").parent
    rc = main(["reproduce", "alteraser", "--preset", "smoke", "--data-root", str(root), "--out",
               str(tmp_path), "--no-progress", "--methods", "retrain", "original",
               "alteraser:rounds=1", "finetune:max_epochs=1", "ifru"])
    assert rc == 0
    md = (tmp_path / "alteraser.md").read_text()
    for name in ("Retrain", "Original", "AltEraser (rounds=1)", "Fine-tune (max_epochs=1)", "IFRU"):
        assert name in md
    with open(tmp_path / "alteraser.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(0.0 <= float(r["mia_auc"]) <= 1.0 for r in rows)
    assert all(0.0 <= float(r["umia_auc"]) <= 1.0 for r in rows)
    # the held-out retrain is the U-MIA's reference: exactly 0.5 against itself
    assert all(float(r["umia_auc"]) == 0.5 for r in rows if r["method"] == "Retrain")
    # the flags reach reproduce(): one deletion request, every setting reused from the rows log
    rc = main(["reproduce", "alteraser", "--preset", "smoke", "--data-root", str(root), "--out",
               str(tmp_path), "--no-progress", "--deletions", "users:2", "--resume", "--methods",
               "retrain", "original", "alteraser:rounds=1", "finetune:max_epochs=1", "ifru"])
    assert rc == 0 and "reused from" in capsys.readouterr().out
    with open(tmp_path / "alteraser.csv") as f:
        again = list(csv.DictReader(f))
    assert again == [r for r in rows if r["deletion"] == "users:2"]


def test_reproduce_models_subset(tmp_path):
    root = shared("ml100k").parent
    with pytest.raises(ValueError, match="choose from"):
        reproduce("alteraser", root, tmp_path, preset="smoke", models=["ngcf"], log=lambda s: None)
    assert not any(tmp_path.iterdir())  # rejected before any work
    paths = reproduce("alteraser", root, tmp_path, preset="smoke", models=["mf"],
                      methods=["retrain", "original"], progress=False, log=lambda s: None)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["model"] for r in rows} == {"mf"}
    assert json.loads(paths["json"].read_text())["models"] == ["mf-0"]


def test_reproduce_deletions_subset(tmp_path):
    root = shared("ml100k").parent
    with pytest.raises(ValueError, match="choose from"):
        reproduce("alteraser", root, tmp_path, preset="smoke", deletions=["random:0.5"], log=lambda s: None)
    with pytest.raises(ValueError, match="one deletion per model"):
        reproduce("ifru", root, tmp_path, preset="smoke", deletions=["random:0.01"], log=lambda s: None)
    assert not any(tmp_path.iterdir())  # rejected before any work
    paths = reproduce("alteraser", root, tmp_path, preset="smoke", models=["mf"], deletions=["users:2"],
                      methods=["retrain", "original"], progress=False, log=lambda s: None)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["deletion"] for r in rows} == {"users:2"}
    assert json.loads(paths["json"].read_text())["deletions"] == ["users:2"]


def test_reproduce_rejects_an_unknown_method_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown unlearning method 'iffy'"):
        reproduce("alteraser", tmp_path / "no-data", tmp_path, preset="smoke", methods=["retrain", "iffy"],
                  log=lambda s: None)
    assert not any(tmp_path.iterdir())


def test_reproduce_keeps_finished_settings_and_resumes(tmp_path, monkeypatch):
    import graphforget.reproduce.runner as runner
    import graphforget.reproduce.tables as tables

    root = shared("ml100k").parent
    calls = []
    real_train = runner.train
    monkeypatch.setattr(runner, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    opts = dict(preset="smoke", models=["mf"], methods=["retrain", "original"], progress=False,
                log=lambda s: None)
    first = reproduce("alteraser", root, tmp_path, **opts)
    assert len(calls) == 1  # one original for both deletion requests (same data, model, seed)
    lines = (tmp_path / "alteraser.rows.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"]["deletion"] for x in lines] == ["random", "users"]
    logged = [r for x in lines for r in json.loads(x)["rows"]]
    parsed = read_results(first["csv"])  # the CSV reads back to the very rows
    assert [set(r) for r in parsed] == [set(r) for r in logged]
    assert all(p[k] == r[k] or (math.isnan(p[k]) and math.isnan(r[k]))
               for p, r in zip(parsed, logged) for k in r)

    def must_not_run(*a, **k):
        raise AssertionError("a finished setting was recomputed")

    monkeypatch.setattr(tables, "run_setting", must_not_run)
    with open(tmp_path / "alteraser.rows.jsonl", "a") as f:
        f.write('{"key": {"table": "alteraser"}, "rows": [')  # a run killed mid-write
    with pytest.warns(UserWarning, match="skipped"):
        again = reproduce("alteraser", root, tmp_path, resume=True, **opts)
    assert again["csv"].read_text() == first["csv"].read_text()
    with pytest.raises(AssertionError, match="recomputed"):  # without resume: computed afresh
        reproduce("alteraser", root, tmp_path, **opts)
    with pytest.raises(AssertionError, match="recomputed"):  # another key (seed): not reused
        reproduce("alteraser", root, tmp_path, resume=True, seeds=[1], **opts)
    monkeypatch.setattr(tables, "run_setting", runner.run_setting)
    with pytest.warns(UserWarning, match="skipped"):  # appends after the broken line stay readable
        reproduce("alteraser", root, tmp_path, resume=True, deletions=["users:2"], seeds=[1], **opts)
    assert len(tables.SettingLog(tmp_path / "alteraser.rows.jsonl")) == 3


def test_tradeoff_plot_draws_methods_and_reference_lines(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from graphforget.reproduce.report import plot_tradeoff

    base = {"dataset": "d", "model": "mf", "deletion": "random:0.01"}
    agg = [dict(base, method="Original", seconds=0.0, **{"overlap@20": 0.8}),
           dict(base, method="Retrain", seconds=5.0, **{"overlap@20": 0.6}),
           dict(base, method="AltEraser (rounds=1)", seconds=0.1, **{"overlap@20": 0.7}),
           dict(base, method="AltEraser (rounds=3)", seconds=0.3, **{"overlap@20": 0.65}),
           dict(base, method="Fine-tune (max_epochs=1)", seconds=0.2, **{"overlap@20": 0.75}),
           dict(base, method="AltEraser (rounds=1, ridge=fitted)", seconds=0.1, **{"overlap@20": 0.72}),
           dict(base, method="IFRU", seconds=0.1, **{"overlap@20": 0.79})]
    lines, real = [], matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda self, yv, *a, **k: lines.append((k.get("label"), yv)) or real(self, yv, *a, **k))
    curves, plot = [], matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **k: curves.extend(plot(self, *a, **k)))
    out = plot_tradeoff(agg, tmp_path / "p.png", "overlap@20", "t", methods=["AltEraser", "Fine-tune"])
    assert out.exists() and out.stat().st_size > 0
    assert lines == [("Original (do nothing)", 0.8), ("held-out retrain", 0.6)]
    assert [(c.get_label(), list(c.get_ydata())) for c in curves] == [
        ("AltEraser", [0.7, 0.65]), ("Fine-tune", [0.75]), ("AltEraser (ridge=fitted)", [0.72])]
