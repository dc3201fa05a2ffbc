"""docs/results.md's tables, generated from the committed result files so they cannot drift.

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` and is
rebuilt from its source by the function of :data:`BLOCKS`; the prose around the blocks is
written by hand (with the command and commit of every number).

    python experiments/results_doc.py          # rewrite the blocks in docs/results.md
    python experiments/results_doc.py --check  # exit 1 if a block differs from its source
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_forgetting  # noqa: E402
import bench_recipes  # noqa: E402

DOC = HERE.parent / "docs" / "results.md"
RESULTS = HERE / "results"
BLOCKS = {
    "recipes": lambda: bench_recipes.summary(str(RESULTS / "recipes.jsonl")),
    "forgetting": lambda: bench_forgetting.summary(*map(str, sorted(RESULTS.glob("forgetting-*.jsonl")))),
}


def render(text: str) -> str:
    def block(m: re.Match) -> str:
        name = m.group(1)
        if name not in BLOCKS:
            raise SystemExit(f"{DOC}: unknown generated block {name!r}")
        return f"<!-- generated: {name} -->\n{BLOCKS[name]().strip()}\n<!-- end: {name} -->"

    return re.sub(r"<!-- generated: (\w+) -->.*?<!-- end: \1 -->", block, text, flags=re.S)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = ap.parse_args()
    text = DOC.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date with experiments/results: run python experiments/results_doc.py")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
