"""Unreadable files are counted once per FILE and the counts survive DataLoader worker processes.

Files that fail their header check are found when the split is built (in the main process). Files that
fail only when read (non-finite values, here) are found in whichever process reads them; the sample
reports them in ``Sample.unreadable``, the collate gathers them in ``Batch.unreadable`` and the main
process merges them with ``dataset.record_unreadable``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from mmrobust.data import DATASETS, Collate
from tests.errors.layouts import make_manifest


def loader_counts(root: Path, num_workers: int, epochs: int = 3) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    ds = DATASETS.build("manifest", {"root": str(root), "modalities": ["vec", "img"], "split": "train"})
    loader = DataLoader(
        ds, batch_size=3, shuffle=True, num_workers=num_workers, collate_fn=Collate(ds.modalities, ds.shapes)
    )
    absent = 0
    for _ in range(epochs):
        for batch in loader:
            ds.record_unreadable(batch.unreadable)
            absent += int((~batch.present).sum())
    assert absent == 3 * epochs  # every bad file is absent for its sample in every epoch
    return dict(ds.unreadable), ds.unreadable_summary()


def test_counts_are_files_not_reads_and_survive_worker_processes(tmp_path: Path) -> None:
    root = make_manifest(tmp_path / "root", rows=24)
    (root / "img/0.png").unlink()  # found at build time
    np.save(root / "vec/1.npy", np.full(4, np.nan, "f4"))  # found only when read (in a worker)
    np.save(root / "vec/2.npy", np.array([0, 1, np.inf, 3], "f4"))
    expected = ({"img": 1, "vec": 2}, {"img": {"missing": 1}, "vec": {"non-finite": 2}})
    assert loader_counts(root, num_workers=0) == expected
    assert loader_counts(root, num_workers=2) == expected
