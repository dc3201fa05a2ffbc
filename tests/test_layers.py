"""Layers import downward only, and only ``graphforget/cli/`` parses arguments.

data, metrics → models → train → unlearning → audit → service, reproduce → cli
(docs/architecture.md). A relative or absolute ``graphforget.*`` import from a package into a
higher layer fails this test, as does ``argparse`` outside the CLI package.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "graphforget"
LAYER = {"data": 0, "metrics": 0, "demo_data": 0, "models": 1, "train": 2, "unlearning": 3,
         "audit": 4, "service": 5, "reproduce": 5, "cli": 6}


def _imports(path: Path):
    """(top-level graphforget package imported, line) for every import in ``path``."""
    parts = path.relative_to(PACKAGE).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-1])[:len(parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
                names = target or [a.name for a in node.names]
                if not target:  # `from . import x` at the package root
                    for a in node.names:
                        yield a.name, node.lineno
                    continue
                yield names[0], node.lineno
            elif (node.module or "").startswith("graphforget."):
                yield node.module.split(".")[1], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("graphforget."):
                    yield a.name.split(".")[1], node.lineno
                if a.name == "argparse":
                    yield "argparse", node.lineno


def test_imports_go_downward_only():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own not in LAYER:
            continue
        for target, line in _imports(path):
            target = target.removesuffix(".py")
            if target in LAYER and LAYER[target] > LAYER[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_only_the_cli_parses_arguments():
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                 if p.relative_to(PACKAGE).parts[0] != "cli"
                 and any(t == "argparse" for t, _ in _imports(p))]
    assert not offenders, f"argparse outside graphforget/cli/: {offenders}"


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a data module importing train is reported."""
    fake = tmp_path / "graphforget"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("from ..train import TrainConfig\nimport argparse\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_imports_go_downward_only()
    except AssertionError as exc:
        assert "data/bad.py:1 imports train" in str(exc)
    else:
        raise AssertionError("upward import not detected")
    try:
        test_only_the_cli_parses_arguments()
    except AssertionError as exc:
        assert "bad.py" in str(exc)
    else:
        raise AssertionError("argparse outside cli not detected")
