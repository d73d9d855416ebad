"""``mmrobust prepare DATASET RAW_DIR OUT_DIR``: the published raw files → the layout mmrobust's loaders read.

Datasets: ``crema_d`` (``crema_d.py``) and ``kinetics_sounds`` (``kinetics_sounds.py``). Frames are extracted
at 1 fps as JPEG and audio is linked, copied or decoded (``video.py``) with PyAV, the optional extra
``mmrobust[video]``. A run is resumable: complete clips are skipped, interrupted ones redone, unreadable ones
listed with the reason (``runner.py``) without stopping the others. The exit code is non-zero only for a
usage or layout error, not for unreadable clips.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from mmrobust.prepare.runner import Summary
from mmrobust.prepare.video import MissingVideoExtra, require_av

DATASETS = ("crema_d", "kinetics_sounds")


def prepare(
    dataset: str,
    raw: str | Path,
    out: str | Path,
    *,
    lists: str | Path | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    fps: int = 1,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Prepare ``dataset`` from ``raw`` into ``out``, print the split and the summary, return the summary.
    Without PyAV, print one line saying how to install it and exit with code 2."""
    try:
        require_av()
    except MissingVideoExtra as error:
        print(f"mmrobust: missing dependency: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    raw, out = Path(raw), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    list_dir = None if lists is None else Path(lists)
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    module = importlib.import_module(f"mmrobust.prepare.{dataset}")  # prepare_<dataset>(raw, out, ...)
    summary, notes = getattr(module, f"prepare_{dataset}")(
        raw, out, lists=list_dir, seed=seed, test_fraction=test_fraction, fps=fps, workers=workers, progress=progress
    )
    print("\n".join([*notes, *summary.lines()]))
    return summary
