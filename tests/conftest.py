"""Shared tiny fixtures: synthetic data and small models that run in milliseconds on the CPU."""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric

from mmrobust.data import DATASETS, Collate
from mmrobust.methods import MethodContext
from mmrobust.models import build_model

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` every worker is one process per core: one torch thread each (and in the CLI
    # subprocesses they start), so the workers never oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


# The processes that multi-process tests start (start method "forkserver") are forked from a server that imported
# mmrobust once, so each one skips the ~3 s import of torch that a spawned interpreter pays.
multiprocessing.set_forkserver_preload(["mmrobust.cli"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with slow tests first: with ``-n 2`` the long end-to-end runs start early instead of at the tail."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order inside a file is kept


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


TINY_SPEC = {
    "modalities": ["a", "b", "c"],
    "snr": [2.0, 1.0, 0.5],
    "num_classes": 3,
    "dim": 6,
    "samples_per_split": [64, 32, 32],
}


def tiny_dataset(split: str = "train", **overrides):
    return DATASETS.build("synthetic", {**TINY_SPEC, **overrides, "split": split})


def batch_of(dataset, n: int = 8, start: int = 0):
    return Collate(dataset.modalities, dataset.shapes)([dataset[i] for i in range(start, start + n)])


def tiny_model(dataset, config=None):
    torch.manual_seed(0)
    return build_model(config or MLP, dataset.modalities, dataset.shapes, dataset.num_classes)


def method_context(dataset_overrides=None, model_config=None, run_dir=None, max_epochs: int = 1) -> MethodContext:
    """A real MethodContext on tiny synthetic data: ``fit`` trains sub-models with the real trainer."""
    from mmrobust.experiment import Data, fit_submodel, to_run_config
    from mmrobust.tasks import Classification

    overrides = dataset_overrides or {}
    splits = [tiny_dataset(s, **overrides) for s in ("train", "val", "test")]
    data = Data(*splits, task=Classification(splits[0].num_classes))
    model_config = model_config or MLP
    cfg = to_run_config(
        {
            "dataset": {"name": "synthetic", **TINY_SPEC, **overrides},
            "model": model_config,
            "trainer": {"max_epochs": max_epochs, "batch_size": 16, "progress": False, "tensorboard": False},
        }
    )
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="mmrobust-ctx-"))
    return MethodContext(
        modalities=data.modalities,
        num_classes=data.train.num_classes,
        build_model=lambda: tiny_model(data.train, model_config),
        fit=partial(fit_submodel, cfg, Fabric(accelerator="cpu", devices=1), data, run_dir, {}),
        run_dir=run_dir,
        task=data.task,
    )


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for running the real ``mmrobust`` console script in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


MMROBUST = [sys.executable, "-m", "mmrobust"]
# CLI overrides for a run of a few seconds: tiny synthetic data, tiny MLP model, 2 epochs.
TINY_CLI = [
    "dataset.samples_per_split=[128,64,64]",
    "dataset.dim=6",
    "dataset.num_classes=3",
    "model.encoder.hidden=[16]",
    "model.encoder.out_features=8",
    "model.fusion.out_features=12",
    "trainer.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.progress=false",
    "trainer.tensorboard=false",
]


@dataclass
class CliResult:
    """What a ``mmrobust`` command gave: as ``subprocess.CompletedProcess`` (exit code, stdout, stderr)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], CliResult]:
    """``cli(ARGV)`` runs ``mmrobust ARGV`` through the real entry point (``mmrobust.cli.main``) in this process:
    the end-to-end tests pay the ~3 s torch import of a new interpreter once per worker, not once per command.
    The console script itself (``python -m mmrobust``) is run in subprocesses by the tests that need a process
    of its own: kill -9 faults, the 2-process DDP launch, the console-script errors."""

    def call(argv: list[str]) -> CliResult:
        return CliResult(*run_cli(list(argv), capsys))

    return call


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``mmrobust ARGV`` in this process: (exit code, stdout, stderr)."""
    from mmrobust.cli import main

    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
