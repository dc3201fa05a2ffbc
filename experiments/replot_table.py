"""Redraw a reproduction table's plot from its committed per-seed CSV.

The rows are aggregated exactly as ``graphforget reproduce`` does (mean over seeds) and drawn by
the same :func:`graphforget.reproduce.tables.plot_table`, so a plot can follow a change of the
plotting code without re-running the experiments:

    python experiments/replot_table.py experiments/results/alteraser.csv --table alteraser
"""
from __future__ import annotations

import argparse
from pathlib import Path

from graphforget.reproduce.report import aggregate, read_results
from graphforget.reproduce.tables import plot_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--table", required=True, choices=["ifru", "alteraser"])
    args = ap.parse_args()
    print(plot_table(args.table, aggregate(read_results(args.csv)), args.csv.with_suffix(".png")))


if __name__ == "__main__":
    main()
