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

CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
register_schema()


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def train_app(cfg: DictConfig) -> None:
    from mmrobust.experiment import run

    with user_errors():
        run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    from mmrobust.cli import main

    main(["train", *sys.argv[1:]])  # the same one-line errors in relaunched worker processes
