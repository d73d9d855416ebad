"""The run's metric loggers, built from ``trainer.loggers`` (default ``[csv, tensorboard]``).

Each entry is a name, or a mapping ``{name: NAME, key: value, ...}`` whose other keys are options; options may
also come from ``trainer.logger_options: {NAME: {...}}`` (the entry's own keys win). Names:

- ``csv``: ``RUN/logs/metrics.csv`` (``engine.metrics_log``: appended row by row, kept across kills and
  resumes; ``overwrite=true`` deletes it with the rest of the old run);
- ``tensorboard``: Lightning Fabric's ``TensorBoardLogger`` into ``RUN/logs/tensorboard`` (a resumed run adds
  an event file next to the earlier ones); options are its keyword arguments;
- ``wandb``, ``mlflow``: Lightning's ``WandbLogger`` / ``MLFlowLogger``, imported only when asked (a missing
  package is one line: ``pip install wandb``). Defaults: wandb ``save_dir=RUN/logs``; mlflow
  ``experiment_name=mmrobust`` and ``tracking_uri`` from ``MLFLOW_TRACKING_URI``, else ``file:RUN/logs/mlruns``;
- a dotted class path (``my_pkg.MyLogger``): a ``lightning.fabric.loggers.Logger`` subclass, built with the
  options (and ``run_dir=RUN`` when its constructor takes ``run_dir``): users plug in their own.

``trainer.tensorboard=false`` (the older switch) drops ``tensorboard`` from the list. Every logger receives the
run's resolved config once at the start (``log_hyperparams``, flattened to ``trainer.optimizer.lr``-style keys)
and then ``log_metrics(metrics, step)`` calls with the tags ``train_step/<term>``, ``lr``, ``train_epoch/<term>``,
``val/avg_<metric>`` and ``epoch`` (``engine.trainer``). Loggers exist on rank 0 only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrobust.config import TrainerConfig
from mmrobust.engine.metrics_log import MetricsCSV
from mmrobust.engine.run_folder import flatten
from mmrobust.registry import ConfigError

OPTIONAL_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}  # logger name -> the package it needs


@dataclass(frozen=True)
class LoggerSpec:
    """One configured logger: its name (or class path), options, and the config key it came from."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = "trainer.loggers"


def _csv(run_dir: Path) -> MetricsCSV:
    return MetricsCSV(run_dir / "logs" / "metrics.csv")


def _tensorboard(run_dir: Path, **options: Any) -> Any:
    from lightning.fabric.loggers import TensorBoardLogger

    return TensorBoardLogger(**({"root_dir": str(run_dir), "name": "logs", "version": "tensorboard"} | options))


def _wandb(run_dir: Path, **options: Any) -> Any:
    from lightning.pytorch.loggers import WandbLogger

    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    return WandbLogger(**({"save_dir": str(run_dir / "logs")} | options))


def _mlflow(run_dir: Path, **options: Any) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{run_dir / 'logs' / 'mlruns'}"
    if str(options.get("tracking_uri", uri)).startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    return MLFlowLogger(**({"experiment_name": "mmrobust", "tracking_uri": uri} | options))


BUILTIN: dict[str, Callable[..., Any]] = {
    "csv": _csv,
    "tensorboard": _tensorboard,
    "wandb": _wandb,
    "mlflow": _mlflow,
}


def _is_class_path(name: str) -> bool:
    return "." in name and name not in BUILTIN


def logger_specs(cfg: TrainerConfig) -> list[LoggerSpec]:
    """The loggers ``cfg`` asks for, checked without importing them: known names (or class paths), no name twice,
    options as mappings, installed packages for ``wandb``/``mlflow``. Raises one ``ConfigError`` line."""
    specs: list[LoggerSpec] = []
    all_options = dict(cfg.logger_options or {})
    for i, entry in enumerate(cfg.loggers):
        where = f"trainer.loggers[{i}]"
        if isinstance(entry, str):
            name, own = entry, {}
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name, own = str(entry["name"]), {str(k): v for k, v in entry.items() if k != "name"}
        else:
            raise ConfigError(f"{where}: expected a logger name or a mapping with a 'name' key, got {entry!r}")
        if name not in BUILTIN and not _is_class_path(name):
            raise ConfigError(
                f"{where}: unknown logger {name!r}; valid logger names: {', '.join(BUILTIN)}, "
                "or a dotted path of a lightning.fabric.loggers.Logger subclass (my_pkg.MyLogger)"
            )
        package = OPTIONAL_PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{where}: the {name} logger needs the {package} package: pip install {package}")
        if any(s.name == name for s in specs):
            raise ConfigError(f"{where}: logger {name!r} is listed twice")
        shared = all_options.get(name, {})
        if not isinstance(shared, Mapping):
            raise ConfigError(f"trainer.logger_options.{name}: expected a mapping of options, got {shared!r}")
        if name == "csv" and (shared or own):
            raise ConfigError(f"{where}: the csv logger takes no options, got {sorted({**shared, **own})}")
        if name == "tensorboard" and not cfg.tensorboard:
            continue  # trainer.tensorboard=false: the older switch
        specs.append(LoggerSpec(name, {str(k): v for k, v in shared.items()} | own, where))
    unused = sorted(set(all_options) - {s.name for s in specs} - {"tensorboard"})
    if unused:
        raise ConfigError(f"trainer.logger_options: options for {unused}, which trainer.loggers does not list")
    return specs


def _plugin_class(spec: LoggerSpec) -> type:
    from lightning.fabric.loggers import Logger

    module_name, _, class_name = spec.name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{spec.where}: cannot import logger class {spec.name!r}: {error}") from error
    if not (inspect.isclass(cls) and issubclass(cls, Logger)):
        raise ConfigError(f"{spec.where}: {spec.name} is not a lightning.fabric.loggers.Logger subclass")
    return cls


def build_loggers(cfg: TrainerConfig, run_dir: Path) -> list[Any]:
    """The loggers of ``cfg`` writing into ``run_dir`` (see the module docstring)."""
    loggers = []
    for spec in logger_specs(cfg):
        options = dict(spec.options)
        if spec.name in BUILTIN:
            build: Callable[..., Any] = BUILTIN[spec.name]
            options["run_dir"] = run_dir
        else:
            build = _plugin_class(spec)
            if "run_dir" in inspect.signature(build).parameters:
                options["run_dir"] = run_dir
        try:
            loggers.append(build(**options))
        except TypeError as error:  # an unknown or missing option
            raise ConfigError(f"{spec.where} ({spec.name}): {error}") from error
    return loggers


def hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved run config as one flat mapping ``{"trainer.optimizer.lr": 0.001, ...}``: numbers, booleans
    and strings stay, anything else (lists, None, empty mappings) becomes its text."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flatten(config).items()}


def log_hyperparams(loggers: list[Any], config: Mapping[str, Any]) -> None:
    """Give every logger the flattened run config once (the run's start)."""
    if not config:
        return
    params = hyperparameters(config)
    for logger in loggers:
        logger.log_hyperparams(params)
