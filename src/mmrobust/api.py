"""The Python API: the same runs as the CLI, from a list of Hydra overrides.

Example::

    from mmrobust import api
    results = api.train(["dataset=synthetic", "trainer.max_epochs=5", "seed=1"], run_dir="runs/demo")
    api.evaluate("runs/demo")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mmrobust.config import register_schema
from mmrobust.hydra_app import CONFIG_DIR


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved run config for these overrides (same defaults as ``mmrobust train``)."""
    register_schema()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def train(overrides: Sequence[str] = (), run_dir: str | Path = "outputs/api") -> dict[str, Any]:
    """Train and evaluate one run; returns the results dict saved as ``run_dir/results.json``."""
    from mmrobust.experiment import run

    cfg = compose_config(overrides)
    return run({str(k): v for k, v in cfg.items() if k != "hydra"}, run_dir)


def evaluate(path: str | Path, split: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a run directory or a checkpoint on every subset, on ``split`` (default: the run's
    ``eval.splits``)."""
    from mmrobust.experiment import evaluate as evaluate_run

    return evaluate_run(path, split)


def predict(
    path: str | Path, inputs: str | Path | Mapping[str, str | Path], batch_size: int = 64, strict: bool = False
) -> list[dict[str, Any]]:
    """Predict with the model of a run directory or checkpoint, from its checkpoint alone (no dataset).

    ``inputs``: a manifest CSV (one column per modality, empty cell = missing) or ``{modality: file}`` for
    one sample. One dict per row: the manifest's other columns, ``subset`` (the modalities used), and
    ``prediction`` + ``p_<class>`` (classification) or ``labels``, a uint8 ``[H, W]`` array (segmentation).
    Unusable files are logged as a warning and treated as missing (``strict``: raise instead).
    """
    import logging

    from mmrobust.deploy.predict import predict as predict_rows

    predictions = predict_rows(path, inputs, batch_size, strict)
    if predictions.problems:
        logging.getLogger(__name__).warning(
            "%d input files not usable (treated as missing): %s",
            len(predictions.problems),
            "; ".join(map(str, predictions.problems[:5])),
        )
    return predictions.rows
