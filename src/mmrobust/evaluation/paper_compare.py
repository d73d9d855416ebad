"""Our results beside a paper's printed table.

The papers' tables are stored as data in ``mmrobust/paper_tables/<key>.yaml`` (one file per printed table and
dataset): a citation, the metric and its direction, the modality order, the table's subsets in ●/○ form, and
per paper method the printed cells, the printed Average and the recomputed one

    recomputed_average = (1 / |S|) · Σ_{s ∈ S} value[s]      (S = the table's subsets; only when every cell is printed)

Some printed averages are not the mean of their printed cells (e.g. DMRNet Table 2, OGM-MD on CREMA-D: 55.69
printed, 54.61 recomputed); the comparison shows both. ``ours`` names the ``method.label`` of our run that
reproduces a paper method (null for a method we do not implement).

The comparison table has one row per subset of the paper's table (plus the Average rows) and two columns per
paper method that we ran: the paper's value and ours (mean ± std over seeds, percent). Our Average is computed
per seed over the table's subsets, then summarized over seeds (as in ``report.summary``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmrobust.registry import ConfigError
from mmrobust.subsets import MISSING, PRESENT

TABLE_DIR = Path(__file__).resolve().parents[1] / "paper_tables"
DIRECTIONS = ("lower", "higher")
Row = dict[str, Any]


@dataclass(frozen=True)
class PaperMethod:
    """One method column of a printed table (values in percent, keyed by ●/○ subset)."""

    name: str
    ours: str | None
    values: dict[str, float]
    average: float | None  # as printed; None where the table has no Average row
    recomputed_average: float | None  # mean of the printed cells over the table's subsets
    note: str | None = None


@dataclass(frozen=True)
class PaperTable:
    key: str
    paper: str
    citation: str
    table: str
    caption: str
    dataset: str
    metric: str
    direction: str  # "lower" | "higher" is better
    modalities: tuple[str, ...]
    subsets: tuple[str, ...]  # ●/○ strings over ``modalities``
    methods: tuple[PaperMethod, ...]
    partial: bool = False
    notes: tuple[str, ...] = ()

    def subset_members(self, dots: str) -> frozenset[str]:
        """The modality names present in a ●/○ string of this table."""
        return frozenset(m for m, d in zip(self.modalities, dots) if d == PRESENT)

    def method(self, ours: str) -> PaperMethod | None:
        return next((m for m in self.methods if m.ours == ours), None)


def paper_table_keys() -> list[str]:
    """The keys of every stored table (file stems of ``paper_tables/*.yaml``)."""
    return sorted(p.stem for p in TABLE_DIR.glob("*.yaml"))


def mean_of_cells(values: dict[str, float], subsets: Sequence[str]) -> float | None:
    """Mean of ``values`` over ``subsets``; None unless every subset has a value and there are several."""
    if len(subsets) < 2 or any(s not in values for s in subsets):
        return None
    return statistics.fmean(values[s] for s in subsets)


def _dots_ok(dots: Any, n: int) -> bool:
    return isinstance(dots, str) and len(dots) == n and set(dots) <= {PRESENT, MISSING} and PRESENT in dots


def load_paper_table(key: str) -> PaperTable:
    """Read and check ``paper_tables/<key>.yaml``; a bad file raises one ``ConfigError`` line naming it."""
    path = TABLE_DIR / f"{key}.yaml"
    if not path.is_file():
        raise ConfigError(f"paper table {key!r}: unknown; valid tables: {paper_table_keys()}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: {what}")

    need(isinstance(raw, dict), "expected a mapping")
    for k in ("key", "paper", "citation", "table", "dataset", "metric", "direction", "modalities", "subsets"):
        need(k in raw, f"missing key {k!r}")
    need(raw["key"] == key, f"key: expected {key!r} (the file name), got {raw['key']!r}")
    need(raw["direction"] in DIRECTIONS, f"direction: expected one of {list(DIRECTIONS)}, got {raw['direction']!r}")
    modalities = tuple(raw["modalities"])
    n = len(modalities)
    subsets = tuple(raw["subsets"])
    for s in subsets:
        need(_dots_ok(s, n), f"subsets: {s!r} is not a ●/○ string of length {n} with at least one ●")
    methods = []
    for m in raw.get("methods") or []:
        values = {str(s): float(v) for s, v in (m.get("values") or {}).items()}
        for s in values:
            need(s in subsets, f"method {m.get('name')!r}: subset {s!r} is not among the table's subsets")
        methods.append(
            PaperMethod(
                name=str(m["name"]),
                ours=m.get("ours"),
                values=values,
                average=None if m.get("average") is None else float(m["average"]),
                recomputed_average=None if m.get("recomputed_average") is None else float(m["recomputed_average"]),
                note=m.get("note"),
            )
        )
    need(bool(methods), "expected at least one method")
    return PaperTable(
        key=key,
        paper=str(raw["paper"]),
        citation=str(raw["citation"]),
        table=str(raw["table"]),
        caption=str(raw.get("caption", "")),
        dataset=str(raw["dataset"]),
        metric=str(raw["metric"]),
        direction=str(raw["direction"]),
        modalities=modalities,
        subsets=subsets,
        methods=tuple(methods),
        partial=bool(raw.get("partial", False)),
        notes=tuple(raw.get("notes") or ()),
    )


def paper_table_of(results: Iterable[dict[str, Any]]) -> str | None:
    """The ``eval.paper_table`` named in the runs' saved configs; None if none names one. Runs naming
    different tables raise a ``ConfigError`` (choose one with ``mmrobust report --paper``)."""
    keys = set()
    for r in results:
        key = ((r.get("config") or {}).get("eval") or {}).get("paper_table")
        if key:
            keys.add(str(key))
    if len(keys) > 1:
        raise ConfigError(f"the runs name different paper tables {sorted(keys)}; choose one with --paper TABLE")
    return keys.pop() if keys else None


def _ours_by_seed(rows: Sequence[Row], table: PaperTable) -> dict[str, dict[int, dict[frozenset[str], float]]]:
    """``{method label: {seed: {subset members: value in percent}}}`` for the table's metric."""
    out: dict[str, dict[int, dict[frozenset[str], float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["metric"] == table.metric:
            out[r["method"]][r["seed"]][frozenset(str(r["subset"]).split("+"))] = 100.0 * float(r["value"])
    return out


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def compare(table: PaperTable, rows: Sequence[Row]) -> dict[str, Any]:
    """Per paper method that we ran (``ours`` in the rows): paper value and our mean ± std per subset, and the
    printed / recomputed / our averages. Returns ``{'columns': [...], 'rows': [...], 'paper_only': [...],
    'ours_only': [...]}`` (cells as strings, ready for Markdown)."""
    ours = _ours_by_seed(rows, table)
    matched = [m for m in table.methods if m.ours is not None and m.ours in ours]
    columns = [*table.modalities]
    for m in matched:
        columns += [f"{m.name} (paper)", f"{m.ours} (ours)"]
    body: list[list[str]] = []
    for dots in table.subsets:
        key = table.subset_members(dots)
        cells = list(dots)
        for m in matched:
            seeds = ours[m.ours or ""]
            cells += [_num(m.values.get(dots)), _cell([v[key] for v in seeds.values() if key in v])]
        body.append(cells)
    if any(m.average is not None or m.recomputed_average is not None for m in table.methods):
        keys = [table.subset_members(s) for s in table.subsets]
        ours_avg = {
            m.ours: [
                statistics.fmean(v[k] for k in keys) for v in ours[m.ours or ""].values() if all(k in v for k in keys)
            ]
            for m in matched
        }
        for label, pick in (
            ("Average (paper: printed)", "average"),
            ("Average (paper: mean of cells)", "recomputed_average"),
        ):
            cells = [label, *[""] * (len(table.modalities) - 1)]
            for m in matched:
                cells += [_num(getattr(m, pick)), _cell(ours_avg[m.ours]) if pick == "average" else ""]
            body.append(cells)
    return {
        "columns": columns,
        "rows": body,
        "matched": [m.name for m in matched],
        "paper_only": [m.name for m in table.methods if m not in matched],
        "ours_only": sorted(set(ours) - {m.ours for m in matched}),
    }


def check_modalities(table: PaperTable, modalities: Sequence[str]) -> None:
    """Our runs must have the table's modalities (any order; more are allowed, e.g. CASIA-SURF's ir in the
    RGB-D tables of OS-MD); else one ``ConfigError`` line."""
    if not set(table.modalities) <= set(modalities):
        raise ConfigError(
            f"paper table {table.key!r} has modalities {list(table.modalities)} but the runs have "
            f"{list(modalities)}; report against a table of the same modalities (--paper TABLE)"
        )


def markdown(table: PaperTable, rows: Sequence[Row]) -> str:
    """The comparison as Markdown, with the citation and the methods only one side has."""
    c = compare(table, rows)
    arrow = "↓" if table.direction == "lower" else "↑"
    lines = [
        f"### Beside the paper: {table.paper} Table {table.table} ({table.dataset}, {table.metric} % {arrow})",
        "",
        f"{table.caption} {table.citation}",
        "",
        "| " + " | ".join(c["columns"]) + " |",
        "|" + "|".join([":-:"] * len(table.modalities) + ["--:"] * (len(c["columns"]) - len(table.modalities))) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in c["rows"]]
    lines.append("")
    if table.partial:
        lines.append("The paper's table is partial: only the cells printed in its text are stored.")
    if not c["matched"]:
        lines.append(f"No run matches a method of this table (our labels: {c['ours_only']}).")
    if c["paper_only"]:
        lines.append(f"In the paper only (not run or not implemented here): {', '.join(c['paper_only'])}.")
    if c["ours_only"]:
        lines.append(f"Ours only (not in this table): {', '.join(c['ours_only'])}.")
    lines += [f"Note: {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def write_paper_compare(
    results: Sequence[dict[str, Any]], rows: Sequence[Row], out_dir: str | Path, key: str | None = None
) -> Path | None:
    """Write ``paper_compare.md`` beside the report for table ``key`` (default: the runs' ``eval.paper_table``);
    None when neither names a table."""
    from mmrobust.atomic_io import write_text_atomic

    key = key or paper_table_of(results)
    if key is None:
        return None
    table = load_paper_table(key)
    check_modalities(table, results[0]["modalities"])
    return write_text_atomic(markdown(table, rows), Path(out_dir) / "paper_compare.md")
