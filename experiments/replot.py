"""Redraw the paper-table plots from their committed CSVs, with the current plotting code
(axis labels in words with the better direction, one legend per figure, the do-nothing and
held-out-retrain lines). Nothing is re-run: the points are the measured rows.

    python experiments/replot.py                       # every table CSV below experiments/results
    python experiments/replot.py results/ifru_early_stop/ifru.csv --y umia_auc   # one table
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from graphforget.reproduce.report import KEYS, aggregate, plot_tradeoff, read_results  # noqa: E402

#: csv → (column on the y axis, title); the fixed-budget tables say so in the title
PLOTS = {
    "alteraser.csv": ("mia_auc", "AltEraser table (fixed-budget models): MIA AUC vs wall time"),
    "alteraser_ridge_ml100k.csv": ("mia_auc", "AltEraser ridge variants, ml100k (fixed-budget models)"),
    "alteraser_gowalla25_mf/alteraser.csv": ("mia_auc", "AltEraser table, gowalla-25 MF (fixed-budget models)"),
    "alteraser_gowalla25_lightgcn/alteraser.csv": ("mia_auc", "AltEraser table, gowalla-25 LightGCN (fixed-budget models)"),
    "ifru.csv": ("test_auc", "IFRU table (fixed-budget models): test AUC vs unlearning time"),
    "ifru_ridge.csv": ("test_auc", "IFRU table, ridge variants (fixed-budget models)"),
    "ifru_early_stop/ifru.csv": ("umia_auc", "IFRU table, authors' recipe: U-MIA AUC (0.5 = retrain) vs unlearning time"),
}


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="*", type=Path, help="table CSVs (default: the known ones)")
    ap.add_argument("--y", default="umia_auc", help="y column for a CSV not in the known list")
    args = ap.parse_args(argv)
    known = {(HERE / "results" / name).resolve(): v for name, v in PLOTS.items()}
    todo = [(c, known.get(c.resolve(), (args.y, c.stem))) for c in args.csv] or \
        [(c, v) for c, v in known.items()]
    for csv, (y, title) in todo:
        name = csv.name
        if not csv.is_file():
            continue
        rows = read_results(csv)
        for r in rows:  # tables written before the recipe column
            for key in KEYS:
                r.setdefault(key, "fixed_budget" if key == "recipe" else "")
        agg = aggregate(rows)
        if not any(y in r for r in agg):
            print(f"{name}: no {y} column, skipped")
            continue
        out = plot_tradeoff(agg, csv.with_suffix(".png"), y, title)
        print(f"{name} -> {out}")


if __name__ == "__main__":
    main()
