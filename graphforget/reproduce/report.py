"""Aggregate result rows over seeds and write Markdown, CSV, JSON metadata and plots."""
from __future__ import annotations

import csv
import json
import math
import platform
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

KEYS = ("dataset", "model", "recipe", "deletion", "method")


class SettingLog:
    """Finished settings of a reproduction, one JSON line each (``{"key": ..., "rows": [...]}``).

    A line is appended as soon as a setting (dataset, model, deletion, seed) finishes, so a
    long run that stops keeps everything it finished; a later run can :meth:`get` the rows of
    a setting with the same key (dataset fingerprint, model, deletion, seed, methods, training
    config) instead of recomputing them. The last line of a key wins; a line that does not
    parse (a run killed mid-write) is skipped with a warning and its setting recomputed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._done: dict = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self._done[self._id(rec["key"])] = rec["rows"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    warnings.warn(f"{self.path}:{n}: skipped, not a finished setting ({e})")

    @staticmethod
    def _id(key: dict) -> str:
        return json.dumps(key, sort_keys=True)

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: dict) -> Optional[list]:
        return self._done.get(self._id(key))

    def add(self, key: dict, rows: list) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "rows": rows}) + "\n"
        with open(self.path, "a+b") as f:  # one write per setting, on a line of its own
            if f.tell() > 0:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())
        self._done[self._id(key)] = rows


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """Mean and (sample) std over seeds of every numeric column, per (dataset, model,
    deletion, method), in first-appearance order."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in KEYS)].append(r)
    out = []
    for key, rs in groups.items():
        agg = dict(zip(KEYS, key))
        agg["seeds"] = len(rs)
        cols = [c for c in rs[0] if c not in KEYS and c != "seed" and isinstance(rs[0][c], (int, float))]
        for c in cols:
            vals = [float(r[c]) for r in rs if c in r and r[c] is not None and not math.isnan(float(r[c]))]
            if not vals:
                agg[c], agg[c + "_std"] = float("nan"), float("nan")
                continue
            mean = sum(vals) / len(vals)
            std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
            agg[c], agg[c + "_std"] = mean, std
        out.append(agg)
    return out


def _fmt(v: float, std: float | None, col: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col in ("seconds",):
        s = f"{v:.3g}"
    elif col == "speedup":
        s = f"{v:.3g}×"
    elif col == "deleted":
        return f"{v:.0f}"
    else:
        s = f"{v:.4f}"
    if std:
        s += f" ± {std:.2g}" if col in ("seconds", "speedup") else f" ± {std:.4f}"
    return s


def markdown_table(agg: Sequence[dict], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(c in r for r in agg)]
    head = "| " + " | ".join(list(KEYS) + cols) + " |"
    sep = "|" + "---|" * (len(KEYS) + len(cols))
    lines = [head, sep]
    for r in agg:
        cells = [str(r[k]) for k in KEYS] + [_fmt(r.get(c), r.get(c + "_std"), c) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, rows: Sequence[dict], columns: Sequence[str],
                  meta: dict) -> dict:
    """Write ``NAME.csv`` (per-seed rows), ``NAME.md`` (mean ± std), ``NAME.json`` (config,
    seeds, versions, data fingerprints). Returns the paths."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    md = markdown_table(agg, columns)
    (out_dir / f"{name}.md").write_text(f"# {meta.get('title', name)}\n\n{meta.get('protocol', '')}\n\n{md}\n")
    try:
        import torch_geometric

        pyg = torch_geometric.__version__
    except ImportError:  # pragma: no cover
        pyg = None
    from .. import __version__

    meta = dict(meta, versions={"graphforget": __version__, "torch": torch.__version__,
                                "torch_geometric": pyg, "python": platform.python_version()})
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str))
    return {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md",
            "json": out_dir / f"{name}.json", "table": md, "aggregate": agg}


INTEGER_COLUMNS = ("seed", "deleted", "solver_iters", "shadows")
BOOLEAN_COLUMNS = ("forgotten", "deterministic")


def read_results(path: Path) -> list[dict]:
    """The per-seed rows of a ``NAME.csv`` written by :func:`write_results`, numbers parsed
    (cells the writer left empty are dropped), e.g. to aggregate or plot them again."""
    with open(path, newline="") as f:
        return [{k: (v if k in KEYS else int(v) if k in INTEGER_COLUMNS
                     else v == "True" if k in BOOLEAN_COLUMNS else float(v))
                 for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


#: options that only set a method's budget: the points of one curve differ in these alone
BUDGET_OPTIONS = ("rounds", "max_epochs")


def method_family(label: str) -> str:
    """A method label without its budget options: ``"AltEraser (rounds=3, ridge=fitted)"`` →
    ``"AltEraser (ridge=fitted)"``; the rows of one family form one time/quality curve."""
    name, _, inside = label.partition(" (")
    keep = [o for o in inside.rstrip(")").split(", ") if o and o.split("=")[0] not in BUDGET_OPTIONS]
    return f"{name} ({', '.join(keep)})" if keep else name


#: y-axis labels in words, with the direction that is better
AXIS_LABELS = {
    "umia_auc": "U-MIA AUC (0.5 = retrain,\nhigher = remembers)",
    "score_error": "score error to the retrain\n(0 = retrain, 1 = forgot nothing)",
    "test_auc": "test AUC (higher is better)",
    "mia_auc": "MIA AUC on deleted edges\n(the retrain's is the target)",
    "overlap@20": "top-20 overlap with the retrain\n(higher is closer)",
    "recall@20": "test Recall@20 (higher is better)",
}


def plot_tradeoff(agg: Sequence[dict], out: Path, y: str, title: str,
                  methods: Sequence[str] | None = None) -> Path | None:
    """Scatter/curve of ``y`` against unlearning wall time (log x) per method family
    (:func:`method_family`; ``methods`` keeps the families of these method names), one panel
    per (dataset, model, deletion), with horizontal reference lines where the rows have them:
    the original model's ``y`` (doing nothing; it takes no time, so it is no point) and the
    held-out retrain's. Axis labels in words (:data:`AXIS_LABELS`), one legend for the figure.
    Returns the PNG path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    panels = list(dict.fromkeys((r["dataset"], r["model"], r["deletion"]) for r in agg))
    n = len(panels)
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(5.5 * cols, 4.6 * rows_), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2])
        fam: dict = defaultdict(list)
        for r in agg:
            if (r["dataset"], r["model"], r["deletion"]) != panel or y not in r:
                continue
            family = method_family(r["method"])
            if methods and family.split(" (")[0] not in methods:
                continue
            if r.get("seconds", 0) > 0 and not math.isnan(r.get(y, float("nan"))):
                fam[family].append((r["seconds"], r[y], r["method"]))
        for family, pts in fam.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", label=family)
        for label, method, style in (("Original (do nothing)", "Original", "--"),
                                     ("held-out retrain", "Retrain", ":")):
            vals = [r[y] for r in agg if (r["dataset"], r["model"], r["deletion"]) == panel
                    and r["method"] == method and not math.isnan(r.get(y, math.nan))]
            if vals:
                ax.axhline(vals[0], linestyle=style, color="grey", linewidth=1, label=label)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
        ax.set_xlabel("unlearning wall time, seconds (left is faster)")
        ax.set_ylabel(AXIS_LABELS.get(y, y))
        ax.set_title(" / ".join(panel), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(4, max(1, len(handles))),
               fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(handles) / 4), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
