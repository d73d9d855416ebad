"""Reports in the papers' layout: one row per subset (● present / ○ missing), one column per method,
values in percent as ``mean ± std`` over seeds, then an Average row and a Worst row.

The Average (Worst) row is computed per seed — the mean (minimum) over subsets of that seed — and then
summarized over seeds, so its ± is the spread between runs, not between subsets.
Outputs: Markdown, CSV (long format: method, seed, split, subset, metric, value), JSON and LaTeX.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmrobust.atomic_io import write_json_atomic, write_text_atomic
from mmrobust.registry import ConfigError
from mmrobust.subsets import all_subsets, dot_row, subset_name
from mmrobust.tasks import metric_fact

Row = dict[str, Any]


def result_rows(results: Iterable[dict[str, Any]], split: str = "test") -> list[Row]:
    """Long-format rows from ``results.json`` dicts."""
    rows = []
    for r in results:
        for subset, metrics in r["metrics"][split].items():
            for metric, value in metrics.items():
                rows.append(
                    {
                        "method": r["method"],
                        "seed": r["seed"],
                        "split": split,
                        "subset": subset,
                        "metric": metric,
                        "value": value,
                    }
                )
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary(rows: Sequence[Row], modalities: Sequence[str], metric: str) -> dict[str, Any]:
    """``{method: {subset name | 'Average' | 'Worst': (mean, std, n_seeds)}}`` in percent."""
    by: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["metric"] == metric:
            by[(r["method"], r["seed"])][r["subset"]] = 100.0 * r["value"]
    worst = min if metric_fact(metric).higher_is_better else max
    out: dict[str, dict[str, tuple[float, float, int]]] = defaultdict(dict)
    methods = list(dict.fromkeys(m for m, _ in by))
    for method in methods:
        seeds = [values for (m, _), values in by.items() if m == method]
        subsets = [subset_name(s, modalities) for s in all_subsets(len(modalities))]
        for name in subsets:
            vals = [v[name] for v in seeds if name in v]
            if vals:
                out[method][name] = (*mean_std(vals), len(vals))
        complete = [v for v in seeds if all(n in v for n in subsets)]
        if complete:
            out[method]["Average"] = (
                *mean_std([statistics.fmean(v.values()) for v in complete]),
                len(complete),
            )
            out[method]["Worst"] = (*mean_std([worst(v.values()) for v in complete]), len(complete))
    return out


def fmt(cell: tuple[float, float, int] | None, decimals: int = 2) -> str:
    if cell is None:
        return "–"
    mean, std, n = cell
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}" if n > 1 else f"{mean:.{decimals}f}"


def table_cells(rows: Sequence[Row], modalities: Sequence[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of one metric's table."""
    data = summary(rows, modalities, metric)
    methods = list(data)
    header = [*modalities, *methods]
    body = []
    for s in all_subsets(len(modalities)):
        name = subset_name(s, modalities)
        if any(name in data[m] for m in methods):
            body.append([*dot_row(s, len(modalities)), *(fmt(data[m].get(name)) for m in methods)])
    for label in ("Average", "Worst"):
        body.append([label, *[""] * (len(modalities) - 1), *(fmt(data[m].get(label)) for m in methods)])
    return header, body


def markdown(rows: Sequence[Row], modalities: Sequence[str], metrics: Sequence[str]) -> str:
    parts = []
    for metric in metrics:
        header, body = table_cells(rows, modalities, metric)
        seeds = len({(r["method"], r["seed"]) for r in rows}) // max(len({r["method"] for r in rows}), 1)
        note = f" — mean ± std over {seeds} seeds" if seeds > 1 else ""
        lines = [f"### {metric_fact(metric).title}{note}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join([":-:"] * len(modalities) + ["--:"] * (len(header) - len(modalities))) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def latex(rows: Sequence[Row], modalities: Sequence[str], metrics: Sequence[str]) -> str:
    parts = []
    for metric in metrics:
        header, body = table_cells(rows, modalities, metric)
        cols = "c" * len(modalities) + "r" * (len(header) - len(modalities))
        lines = [f"% {metric_fact(metric).title}", f"\\begin{{tabular}}{{{cols}}}", "\\toprule"]
        lines.append(" & ".join(_tex(h) for h in header) + " \\\\")
        lines.append("\\midrule")
        for cells in body:
            cells = [c.replace("●", "$\\bullet$").replace("○", "$\\circ$").replace("±", "$\\pm$") for c in cells]
            if cells[0] in ("Average", "Worst"):
                lines.append("\\midrule" if cells[0] == "Average" else "")
                cells = [f"\\multicolumn{{{len(modalities)}}}{{c}}{{{cells[0]}}}", *cells[len(modalities) :]]
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        parts.append("\n".join(line for line in lines if line))
    return "\n\n".join(parts) + "\n"


def _tex(text: str) -> str:
    return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["method", "seed", "split", "subset", "metric", "value"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def metrics_of(rows: Sequence[Row]) -> list[str]:
    """The metrics of the rows in their first-seen order (the task's order in ``results.json``)."""
    return list(dict.fromkeys(r["metric"] for r in rows))


def write_report(
    rows: Sequence[Row], modalities: Sequence[str], out_dir: str | Path, stem: str = "report"
) -> dict[str, Path]:
    """Write ``<stem>.md/.csv/.json/.tex`` and ``<stem>_heatmap.png`` (plus ``<stem>_by_size.png`` for many
    subsets); returns their paths by kind."""
    from mmrobust.evaluation.plots import COMPACT_MIN_MODALITIES, by_subset_size, heatmap

    out_dir = Path(out_dir)
    metrics = metrics_of(rows)
    summaries = {
        m: {meth: {k: list(v) for k, v in cells.items()} for meth, cells in summary(rows, modalities, m).items()}
        for m in metrics
    }
    paths = {
        "markdown": write_text_atomic(markdown(rows, modalities, metrics), out_dir / f"{stem}.md"),
        "csv": write_text_atomic(to_csv(rows), out_dir / f"{stem}.csv"),
        "json": write_json_atomic(
            {"modalities": list(modalities), "summary": summaries, "rows": list(rows)},
            out_dir / f"{stem}.json",
        ),
        "latex": write_text_atomic(latex(rows, modalities, metrics), out_dir / f"{stem}.tex"),
    }
    first = summary(rows, modalities, metrics[0])
    paths["heatmap"] = heatmap(first, modalities, metrics[0], out_dir / f"{stem}_heatmap.png")
    if len(modalities) >= COMPACT_MIN_MODALITIES:
        paths["by_size"] = by_subset_size(first, modalities, metrics[0], out_dir / f"{stem}_by_size.png")
    return paths


RESULT_KEYS = ("method", "seed", "modalities", "metrics")


def read_result(path: Path) -> dict[str, Any]:
    """One run's ``results.json``; a file that is not one (not JSON, or lacking its keys) is one ConfigError line."""
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable results.json of an mmrobust run ({error})") from error
    missing = [k for k in RESULT_KEYS if not isinstance(result, dict) or k not in result]
    if missing:
        raise ConfigError(f"{path}: not a results.json of an mmrobust run (no {', '.join(missing)})")
    return result


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every ``results.json`` under the given run or sweep directories (or the files themselves)."""
    found = []
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(p.rglob("results.json"))
        found += [f for f in files if "eval_" not in f.parent.name]
    if not found:
        raise FileNotFoundError(f"no results.json under {[str(p) for p in paths]}")
    results = [read_result(f) for f in found]
    by_modalities: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for f, r in zip(found, results):
        by_modalities[tuple(r["modalities"])].append(str(f.parent))
    if len(by_modalities) > 1:
        groups = "; ".join(
            f"{'+'.join(m)}: {dirs[0]}{' ...' if len(dirs) > 1 else ''}" for m, dirs in by_modalities.items()
        )
        raise ConfigError(f"the runs have different modality sets ({groups}); report each set separately")
    return label_configurations(results)


# config keys that do not change what a run trains or how it is scored (a sweep over them is not a new row)
NOT_A_CONFIGURATION = (
    "seed", "resume", "overwrite", "method.label", "trainer.progress", "trainer.tensorboard", "trainer.logger",
    "trainer.log_every_n_steps", "trainer.num_workers", "trainer.eval_batch_size", "eval.splits", "eval.corrupt",
    "eval.paper_table", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
)  # fmt: skip


def flat_config(config: Any, prefix: str = "") -> dict[str, str]:
    """``{'trainer.optimizer.lr': '0.01', ...}`` (leaves as JSON text, so lists and dicts compare by value)."""
    if not isinstance(config, dict):
        return {prefix: json.dumps(config, sort_keys=True)}
    flat: dict[str, str] = {}
    for key, value in config.items():
        flat |= flat_config(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def label_configurations(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give runs that share a method label but differ in configuration distinct labels, so that a report never
    averages different configurations as seeds of one: ``method (key=value, ...)`` naming the keys whose values
    differ within that label (the seed and the keys in ``NOT_A_CONFIGURATION`` do not count)."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_label[r["method"]].append(r)
    for label, runs in by_label.items():
        flats = [
            {k: v for k, v in flat_config(r.get("config", {})).items() if not k.startswith(NOT_A_CONFIGURATION)}
            for r in runs
        ]
        keys = sorted({k for f in flats for k in f if len({g.get(k) for g in flats}) > 1})
        for r, f in zip(runs, flats):
            if keys:
                r["method"] = f"{label} ({', '.join(f'{k}={json.loads(f[k]) if k in f else None}' for k in keys)})"
        seeds = [(r["method"], r["seed"]) for r in runs]
        duplicates = sorted({f"{m} seed {s}" for m, s in seeds if seeds.count((m, s)) > 1})
        if duplicates:
            raise ConfigError(
                f"runs {duplicates[:3]} appear more than once with the same configuration (the same run reported "
                "twice?); give each directory once"
            )
    return results
