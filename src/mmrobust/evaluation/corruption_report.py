"""Reports of the corrupted-input evaluation (``results["corrupted"]``, see ``evaluation.corrupted``).

- ``<stem>.md``: first a summary (``summary_markdown``): per method (rows) and condition (columns), the main metric
  averaged over the subsets that contain the corrupted modality, then averaged over the corrupted modalities — and
  the same on the subset with every modality — computed per seed, then ``mean ± std`` over seeds; then, for the
  task's main metric (the first of ``results.json``), one table per corrupted modality and
  method, in the papers' layout: one row per subset (● present / ○ missing), then Average and Worst rows; one column
  per condition (``clean``, then ``KIND STRENGTH`` in order), values ``mean ± std`` over seeds (in %). The
  Average / Worst rows are computed per seed, as in ``report``.
- ``<stem>.csv``: long format, every metric: method, seed, split, fraction, modality (the corrupted one), kind,
  strength, subset, metric, value (``kind = clean``, ``strength = 0`` for the clean rows).
- ``<stem>_<metric>.png``: the main metric averaged over the subsets containing the corrupted modality versus
  strength (0 = clean), one panel per
  corrupted modality, one line per method and kind, error bars = std over seeds.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmrobust.atomic_io import write_text_atomic
from mmrobust.evaluation.plots import save_figure
from mmrobust.evaluation.report import mean_std, table_cells
from mmrobust.tasks import metric_fact

Row = dict[str, Any]
FIELDS = ["method", "seed", "split", "fraction", "modality", "kind", "strength", "subset", "metric", "value"]


def corruption_rows(results: Iterable[dict[str, Any]]) -> list[Row]:
    """Long rows of every run's ``corrupted`` section, with the clean values of the same split (per modality)."""
    rows: list[Row] = []
    for r in results:
        section = r.get("corrupted")
        if not section:
            continue
        split = section["split"]
        base = {"method": r["method"], "seed": r["seed"], "split": split, "fraction": section["fraction"]}
        modalities = list(dict.fromkeys(c["modality"] for c in section["conditions"]))
        clean = r.get("metrics", {}).get(split, {})
        for m in modalities:
            rows += _rows(base | {"modality": m, "kind": "clean", "strength": 0.0}, clean)
        for c in section["conditions"]:
            info = {"modality": c["modality"], "kind": c["kind"], "strength": float(c["strength"])}
            rows += _rows(base | info, c["metrics"])
    return rows


def _rows(base: Row, metrics: dict[str, dict[str, float]]) -> list[Row]:
    return [base | {"subset": s, "metric": k, "value": v} for s, values in metrics.items() for k, v in values.items()]


def label(row: Row) -> str:
    return "clean" if row["kind"] == "clean" else f"{row['kind']} {row['strength']:g}"


def markdown(rows: Sequence[Row], modalities: Sequence[str], metric: str) -> str:
    """One ●/○ table per (corrupted modality, method): rows = subsets, columns = conditions."""
    parts = []
    groups = _groups(rows, metric)
    for m, method in sorted(groups, key=lambda k: (list(modalities).index(k[0]), k[1])):
        group = groups[(m, method)]
        ordered = sorted(group, key=lambda r: (r["kind"] != "clean", r["kind"], r["strength"]))
        as_methods = [r | {"method": label(r)} for r in ordered]  # conditions play the report's method columns
        header, body = table_cells(as_methods, modalities, metric)
        seeds = len({r["seed"] for r in group})
        note = f" — mean ± std over {seeds} seeds" if seeds > 1 else ""
        where = f"{m} corrupted in {100 * group[0]['fraction']:g} % of the {group[0]['split']} samples"
        lines = [f"### {metric_fact(metric).title}: {where} — {method}{note}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join([":-:"] * len(modalities) + ["--:"] * (len(header) - len(modalities))) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def contains(subset: str, modality: str) -> bool:
    return modality in subset.split("+")


def summary(rows: Sequence[Row], metric: str, every_modality: str | None = None) -> dict[str, dict[str, tuple]]:
    """``{method: {condition: (mean, std, n_seeds)}}`` in %: per seed, the metric averaged over the subsets that
    contain the corrupted modality (only the subset ``every_modality`` when given), then over the corrupted
    modalities; then mean ± std over seeds."""
    cells: dict[tuple[str, str, int, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["metric"] != metric or not contains(r["subset"], r["modality"]):
            continue
        if every_modality is not None and r["subset"] != every_modality:
            continue
        cells[(r["method"], label(r), r["seed"], r["modality"])].append(100.0 * r["value"])
    per_seed: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (method, condition, seed, _), values in cells.items():
        per_seed[(method, condition, seed)].append(statistics.fmean(values))
    over_seeds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (method, condition, _), values in per_seed.items():
        over_seeds[(method, condition)].append(statistics.fmean(values))
    out: dict[str, dict[str, tuple]] = defaultdict(dict)
    for (method, condition), values in over_seeds.items():
        out[method][condition] = (*mean_std(values), len(values))
    return out


def summary_markdown(rows: Sequence[Row], modalities: Sequence[str], metric: str) -> str:
    """The two summary tables (see the module docstring), methods as rows, conditions as columns."""
    conditions = sorted(
        {label(r) for r in rows},
        key=lambda c: (c != "clean", c.split()[0], float(c.split()[-1]) if c != "clean" else 0),
    )
    parts = []
    title = metric_fact(metric).title
    fraction = 100 * rows[0]["fraction"]
    for every, what in ((None, "averaged over the subsets that contain the corrupted modality"),
                        ("+".join(modalities), "with every modality present")):  # fmt: skip
        table = summary(rows, metric, every)
        lines = [f"### {title}: one modality corrupted in {fraction:g} % of the samples, {what}, averaged over "
                 "the corrupted modalities (mean ± std over seeds)", ""]  # fmt: skip
        lines.append("| method | " + " | ".join(conditions) + " |")
        lines.append("|---|" + "|".join(["--:"] * len(conditions)) + "|")
        for method in sorted(table):
            cells = [
                f"{table[method][c][0]:.2f} ± {table[method][c][1]:.2f}" if c in table[method] else ""
                for c in conditions
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _groups(rows: Sequence[Row], metric: str) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric:
            groups[(r["modality"], r["method"])].append(r)
    return groups


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def curves(rows: Sequence[Row], metric: str) -> dict[str, dict[tuple[str, str], list[tuple[float, float, float]]]]:
    """``{modality: {(method, kind): [(strength, mean, std)]}}`` of the subset-averaged metric (in %), the clean
    point (strength 0) on every kind's curve; mean ± std over seeds."""
    per_seed: dict[tuple[str, str, str, float, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric and contains(r["subset"], r["modality"]):
            per_seed[(r["modality"], r["method"], r["kind"], r["strength"], r["seed"])].append(100.0 * r["value"])
    averaged: dict[tuple[str, str, str, float], list[float]] = defaultdict(list)
    for (m, method, kind, strength, _), values in per_seed.items():
        averaged[(m, method, kind, strength)].append(statistics.fmean(values))
    out: dict[str, dict[tuple[str, str], list[tuple[float, float, float]]]] = defaultdict(dict)
    kinds = {m: sorted({k for (mm, _, k, _) in averaged if mm == m and k != "clean"}) for (m, _, _, _) in averaged}
    for (m, method, kind, strength), values in sorted(averaged.items()):
        targets = kinds[m] if kind == "clean" else [kind]
        for k in targets:
            out[m].setdefault((method, k), []).append((strength, *mean_std(values)))
    return {m: {key: sorted(points) for key, points in lines.items()} for m, lines in out.items()}


def plot(rows: Sequence[Row], metric: str, path: Path) -> Path:
    """Save the subset-averaged ``metric`` versus strength (one panel per corrupted modality)."""
    import matplotlib.pyplot as plt  # after evaluation.plots (imported above), which selects the Agg backend

    data = curves(rows, metric)
    fig, axes = plt.subplots(1, max(len(data), 1), figsize=(4.2 * max(len(data), 1), 3.4), squeeze=False)
    for ax, (m, lines) in zip(axes[0], data.items()):
        for (method, kind), points in lines.items():
            xs, ys, es = zip(*points)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{method} · {kind}")
        ax.set_title(f"{m} corrupted")
        ax.set_xlabel("strength (0 = clean)")
        ax.set_ylabel(f"{metric_fact(metric).title}, subsets with {m}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_corruption_report(
    results: Sequence[dict[str, Any]], out_dir: str | Path, stem: str = "corrupted"
) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>_<metric>.png`` of the runs that have a ``corrupted``
    section; returns their paths by kind ({} when none has one)."""
    rows = corruption_rows(results)
    if not rows:
        return {}
    out_dir = Path(out_dir)
    modalities = next(r["modalities"] for r in results if r.get("corrupted"))
    metric = rows[0]["metric"]  # the task's first (main) metric, in results.json order
    return {
        "corrupted_summary": write_text_atomic(
            summary_markdown(rows, modalities, metric), out_dir / f"{stem}_summary.md"
        ),
        "corrupted_markdown": write_text_atomic(
            summary_markdown(rows, modalities, metric) + "\n" + markdown(rows, modalities, metric),
            out_dir / f"{stem}.md",
        ),
        "corrupted_csv": write_text_atomic(to_csv(rows), out_dir / f"{stem}.csv"),
        "corrupted_plot": plot(rows, metric, out_dir / f"{stem}_{metric}.png"),
    }


def print_corruption_report(results: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """``write_corruption_report`` and print its Markdown (nothing when no run has a ``corrupted`` section)."""
    paths = write_corruption_report(results, out_dir)
    if paths:
        print("Corrupted inputs:")
        print(paths["corrupted_summary"].read_text())
        print(f"(per-subset tables of every corrupted modality and method: {paths['corrupted_markdown']})")
    return paths
