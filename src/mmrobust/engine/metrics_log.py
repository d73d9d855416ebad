"""The run's CSV log of metrics (``logs/metrics.csv``): appended row by row, kept across kills and resumes.

Lightning's ``CSVLogger`` is not used: it deletes an existing ``metrics.csv`` when it starts (a resumed run
loses every row of the epochs before the interruption) and buffers rows in memory for 100 steps (a killed run
loses them). Here every ``log_metrics`` call appends one row and flushes it to the operating system, so a
``kill -9`` loses nothing written before it. The header is ``step`` followed by the sorted metric names;
a row with a new name rewrites the file (atomically) with the wider header, earlier rows keep empty cells.

On resume the trainer calls ``truncate_after(step)`` with the step of the checkpoint it continues from: rows
of later steps (the part of an epoch that the kill interrupted and that will be trained again) are dropped,
so the file of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mmrobust.atomic_io import write_text_atomic


class MetricsCSV:
    """Append-only CSV of ``(step, metrics...)`` rows at ``path``; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.keys: list[str] = []
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            self.keys = [k for k in header if k != "step"]

    def _rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["step", *self.keys], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(out.getvalue(), self.path)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Append one row (``step`` and the metrics); a new metric name widens the header first."""
        row: dict[str, Any] = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row["step"] = int(step)  # a "step" metric is the step column
        new = sorted(set(metrics) - {"step", *self.keys})
        if new or not self.path.is_file():
            self.keys = sorted({*self.keys, *new})
            self._rewrite(self._rows())
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=["step", *self.keys], restval="", lineterminator="\n").writerow(row)

    def truncate_after(self, step: int) -> int:
        """Drop the rows of steps after ``step``; returns how many were dropped."""
        rows = self._rows()
        kept = [r for r in rows if r.get("step", "") != "" and int(float(r["step"])) <= step]
        if len(kept) != len(rows):
            self._rewrite(kept)
        return len(rows) - len(kept)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """Nothing: the run folder's ``config.yaml`` holds the hyper-parameters (the Lightning logger interface)."""

    def finalize(self, status: str) -> None:
        """Nothing is buffered (the Lightning logger interface)."""
