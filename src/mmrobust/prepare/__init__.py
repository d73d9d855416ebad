"""``mmrobust prepare DATASET RAW_DIR OUT_DIR``: the published raw files → the layout mmrobust's loaders read.

Datasets: ``crema_d`` (``crema_d.py``) and ``kinetics_sounds`` (``kinetics_sounds.py``). Frames are extracted
at 1 fps as JPEG and audio is linked, copied or decoded (``video.py``) with PyAV, the optional extra
``mmrobust[video]``. A run is resumable: complete clips are skipped, interrupted ones redone, unreadable ones
listed with the reason (``runner.py``) without stopping the others. The exit code is non-zero only for a
usage or layout error, not for unreadable clips.
"""

from __future__ import annotations

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
    if dataset == "crema_d":
        from mmrobust.prepare.crema_d import prepare_crema_d

        summary, notes = prepare_crema_d(
            raw,
            out,
            lists=list_dir,
            seed=seed,
            test_fraction=test_fraction,
            fps=fps,
            workers=workers,
            progress=progress,
        )
    elif dataset == "kinetics_sounds":
        from mmrobust.prepare.kinetics_sounds import prepare_kinetics_sounds

        summary, notes = prepare_kinetics_sounds(
            raw,
            out,
            lists=list_dir,
            seed=seed,
            test_fraction=test_fraction,
            fps=fps,
            workers=workers,
            progress=progress,
        )
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    print("\n".join([*notes, *summary.lines()]))
    return summary
