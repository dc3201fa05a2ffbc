"""Shared by the benchmarks: the provenance stamp of a result row and appending it."""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import torch


def stamp(repo: Path) -> dict:
    """Commit, date, host and torch version, beside every result row."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=repo).stdout.strip()
    return {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": f"{platform.node()} {platform.machine()}", "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def append_row(path: str | Path, row: dict) -> None:
    """Print ``row`` as JSON and append it as one line to ``path``."""
    print(json.dumps(row))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
