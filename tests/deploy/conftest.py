"""A tiny trained run on a bring-your-own manifest (``.npy`` files generated here), shared by the deploy tests,
and helpers to call the real CLI in process."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mmrobust.cli import main

CLASSES = ("cat", "dog", "eel")
DIM = 6
TINY_TRAIN = [
    "model.encoder.hidden=[16]",
    "model.encoder.out_features=8",
    "model.fusion.out_features=12",
    "trainer.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "trainer.optimizer.lr=0.01",
]


def cli(*args: str, capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    """Run ``mmrobust ARGS`` in process; the exit code (0 when it returns) and, with ``capsys``, its output."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def sample(rng: np.random.Generator, label: int) -> dict[str, np.ndarray]:
    """Two 6-d views of one sample of class ``label``: a class mean plus noise (view b noisier)."""
    means = np.eye(3, DIM, dtype=np.float32) * 3.0
    return {
        "a": (means[label] + rng.normal(0, 0.5, DIM)).astype(np.float32),
        "b": (means[label] + rng.normal(0, 1.0, DIM)).astype(np.float32),
    }


def write_manifest(root: Path, per_class: dict[str, int], seed: int = 0, drop_b: int = 0) -> Path:
    """``root/manifest.csv`` (columns id, a, b, label, split) and its ``.npy`` files under ``root/a``,
    ``root/b``; ``per_class``: rows per class of each split; the first ``drop_b`` train rows lack b."""
    rng = np.random.default_rng(seed)
    (root / "a").mkdir(parents=True, exist_ok=True)
    (root / "b").mkdir(exist_ok=True)
    rows = []
    for split, n in per_class.items():
        for i in range(n * len(CLASSES)):
            label = i % len(CLASSES)
            name = f"{split}{i:03d}.npy"
            views = sample(rng, label)
            for m, x in views.items():
                np.save(root / m / name, x)
            keep_b = not (split == "train" and i < drop_b)
            rows.append([f"{split}{i}", f"a/{name}", f"b/{name}" if keep_b else "", CLASSES[label], split])
    path = root / "manifest.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "a", "b", "label", "split"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def manifest_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run trained by ``mmrobust train`` on a manifest dataset: ``run`` (the run dir), ``data`` (the dataset
    folder, which tests may delete: they must use a copy), ``ckpt`` (its best checkpoint)."""
    base = tmp_path_factory.mktemp("deploy")
    data = base / "data"
    write_manifest(data, {"train": 16, "val": 4, "test": 4}, drop_b=5)
    run = base / "run"
    code, _, _ = cli(
        "train",
        "dataset=manifest",
        f"dataset.root={data}",
        "dataset.modalities=[a,b]",
        "model=mlp",
        *TINY_TRAIN,
        "eval.splits=[test]",
        f"hydra.run.dir={run}",
    )
    assert code == 0
    return {"run": run, "data": data, "ckpt": run / "checkpoints" / "best.ckpt"}
