"""The Hydra application behind ``mmrobust train`` (also runnable as a script, which is how Fabric's
launcher starts the other processes of a multi-process run)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mmrobust.config import register_schema
from mmrobust.errors import user_errors
from mmrobust.sweeps import register_resolver

CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
register_schema()
register_resolver()


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def train_app(cfg: DictConfig) -> float:
    """Train one run; returns its validation selection score (``trainer.select_metric`` averaged over
    ``trainer.select_subsets`` at the selected epoch; the mean over the models of a multi-model runner), the
    value Hydra's sweepers (e.g. Optuna) optimize. Higher is better unless the metric says otherwise (ACER)."""
    from mmrobust.experiment import run

    with user_errors():
        results = run(cfg, HydraConfig.get().runtime.output_dir)
    scores = [float(fit["best_val_score"]) for fit in results["fits"].values()]
    return sum(scores) / len(scores)


if __name__ == "__main__":
    from mmrobust.cli import main

    main(["train", *sys.argv[1:]])  # the same one-line errors in relaunched worker processes
