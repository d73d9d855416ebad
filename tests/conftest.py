"""Shared tiny fixtures: synthetic data and small models that run in milliseconds on the CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from mmrobust.data import DATASETS, Collate
from mmrobust.models import build_model

MLP = {
    "encoder": {"name": "mlp", "hidden": [16], "out_features": 8},
    "fusion": {"name": "concat_mlp", "hidden": [], "out_features": 12},
}
SURF_TINY = {
    "encoder": {
        "name": "resnet",
        "depth": 18,
        "stem": "surf",
        "width": 8,
        "last_stage": "layer2",
        "se_out": True,
        "pool": False,
    },
    "fusion": {"name": "concat_trunk", "depth": 18, "width": 8},
}


def tiny_dataset(split: str = "train", **overrides):
    spec = {
        "modalities": ["a", "b", "c"],
        "snr": [2.0, 1.0, 0.5],
        "num_classes": 3,
        "dim": 6,
        "samples_per_split": [64, 32, 32],
    } | overrides
    return DATASETS.build("synthetic", {**spec, "split": split})


def batch_of(dataset, n: int = 8, start: int = 0):
    return Collate(dataset.modalities, dataset.shapes)([dataset[i] for i in range(start, start + n)])


def tiny_model(dataset, config=None):
    torch.manual_seed(0)
    return build_model(config or MLP, dataset.modalities, dataset.shapes, dataset.num_classes)


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for running the real ``mmrobust`` console script in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


MMROBUST = [sys.executable, "-m", "mmrobust"]
