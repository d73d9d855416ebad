"""The speed targets of issues 16 and 17, read from the benchmarks' JSON results, in one table.

Run after the benchmarks (``make bench`` runs them, then this): every row names the JSON it comes from, the
figure measured in that run (a ratio between two things timed in the same run), the target, and whether it is
met. A missing JSON is a row saying so, never a guess.

- ``yardstick.json``: our modality-dropout and MMANet training steps over the plain authors-style loop
  (throughput ratio; target ≥ 1.3×, fp32, SURF network at paper width).
- ``precision.json``: fp32 step time over bf16-mixed (target ≥ 2×; needs a CPU with native bf16 or a GPU).
- ``around_step.json``: a ``method=joint`` epoch (imbalance diagnostics) over a modality-dropout epoch
  (target ≤ 1.2×); the vectorized collate over the per-sample loop.
- ``eval_subsets_batched.json``: every-subset evaluation in one batched call over the per-subset loop and
  over one forward per subset (reported; no target in the issue).
- ``reader_cache.json``: a ``.wav`` manifest run with the default memory cache over the same run on ``.npy``
  inputs (target ≤ 2×).

Usage::

    python benchmarks/targets.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as C

Row = list[str]


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _row(figure: str, value: float | None, target: str, met: bool | None, source: str) -> Row:
    shown = "not measured" if value is None else f"{value:.2f}×"
    verdict = "—" if met is None else ("met" if met else "**not met**")
    return [figure, shown, target, verdict, source]


def yardstick_rows(data: dict[str, Any]) -> list[Row]:
    results = data["results"]
    return [
        _row(f"{name} step: ours / authors-style loop (throughput)", r["ratio"], "≥ 1.3×", r["ratio"] >= 1.3,
             "yardstick.json")
        for name, r in results.items()
    ]  # fmt: skip


def precision_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("uci_step", "uci_mfeat step"), ("surf_step", "SURF step")):
        slower = data[key]["ratio_bf16_mixed_over_fp32"]  # bf16 time / fp32 time
        speedup = 1.0 / slower
        rows.append(_row(f"{label}: bf16-mixed speed over fp32", speedup, "≥ 2×", speedup >= 2.0, "precision.json"))
    return rows


def around_step_rows(data: dict[str, Any]) -> list[Row]:
    ratio = data["diagnostics_ratio"]
    rows = [_row("joint (diagnostics) epoch / modality-dropout epoch", ratio, "≤ 1.2×", ratio <= 1.2,
                 "around_step.json")]  # fmt: skip
    for name, c in data["collate"].items():
        speedup = c["speedup"]
        rows.append(_row(f"collate {name}: per-sample loop / vectorized", speedup, "faster", None, "around_step.json"))
    return rows


def eval_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for r in data["results"]:
        label = f"every-subset eval, {r['case']} M={r['modalities']}"
        rows.append(_row(f"{label}: loop / batched", r["speedup_vs_loop"], "reported", None, "eval_subsets_batched"))
        rows.append(
            _row(f"{label}: one forward per subset / batched", r["speedup_vs_per_subset"], "reported", None,
                 "eval_subsets_batched")
        )  # fmt: skip
    return rows


def reader_cache_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for r in data["results"]:
        if r["config"] == "npy" or r["ratio_to_npy"] is None:
            continue
        target, met = ("≤ 2×", r["ratio_to_npy"] <= 2.0) if r["config"] == "wav memory" else ("reported", None)
        rows.append(_row(f"{r['config']} run / npy run (workers {r['num_workers']})", r["ratio_to_npy"], target, met,
                         "reader_cache.json"))  # fmt: skip
    return rows


SOURCES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "yardstick": yardstick_rows,
    "precision": precision_rows,
    "around_step": around_step_rows,
    "eval_subsets_batched": eval_rows,
    "reader_cache": reader_cache_rows,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(C.ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    folder = Path(args.results)
    rows: list[Row] = []
    for name, to_rows in SOURCES.items():
        data = _load(folder, name)
        if data is None:
            rows.append([f"{name}.py", "not measured", "", "—", f"{name}.json missing"])
            continue
        when = data.get("machine", {}).get("date_utc", "?")
        rows += [[*r[:4], f"{r[4]} ({when})"] for r in to_rows(data)]
    print("## Targets (issues 16 and 17)\n")
    print(C.markdown_table(["figure", "measured", "target", "verdict", "source (date)"], rows))


if __name__ == "__main__":
    main()
