"""Train and evaluate one run: datasets -> model(s) -> trainer -> every-subset test evaluation -> report.

``run(config, run_dir)`` is what ``mmrobust train`` calls; ``evaluate(path)`` re-evaluates a finished
run directory or one checkpoint (``mmrobust eval``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from mmrobust.config import RunConfig, validate_against_data, validate_run_config
from mmrobust.data import DATASETS, MultimodalDataset
from mmrobust.data.base import SPLITS
from mmrobust.engine.checkpoint import load_checkpoint, load_model_state, write_json_atomic, write_text_atomic
from mmrobust.engine.trainer import FitResult, Trainer
from mmrobust.evaluation.report import result_rows, write_report
from mmrobust.methods import METHODS, Method, MethodContext
from mmrobust.models import build_model
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import ConfigError
from mmrobust.runners import RUNNERS, Job
from mmrobust.subsets import subset_name
from mmrobust.tasks import SubsetMetric, Task, build_task

log = logging.getLogger(__name__)
META_KEYS = ("name", "runner", "label")


@dataclass
class Data:
    train: MultimodalDataset
    val: MultimodalDataset
    test: MultimodalDataset

    task: Task

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.train.modalities


def to_run_config(config: DictConfig | RunConfig | dict[str, Any]) -> RunConfig:
    """Merge a config onto the schema (type errors name the key), check its values and return the typed object."""
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), config)
    cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate_run_config(cfg)
    return cfg


def build_data(cfg: RunConfig) -> Data:
    """The three splits of ``cfg.dataset`` and the task of the dataset (options from ``cfg.task``)."""
    spec = dict(cfg.dataset)
    if "name" not in spec:
        raise ConfigError("dataset.name: required key is missing")
    name = spec.pop("name")
    if "split" in spec:
        raise ConfigError("dataset.split: set by mmrobust (train/val/test); remove it from the config")
    splits = {s: DATASETS.build(name, {**spec, "split": s}, where="dataset") for s in SPLITS}
    train = splits["train"]
    validate_against_data(cfg, train.modalities, train.num_classes)
    options = dict(cfg.task)
    task_name = str(options.pop("name", None) or train.task)
    if task_name != train.task:
        raise ConfigError(f"task.name: dataset {name!r} is a {train.task} dataset, not {task_name}")
    if task_name == "classification":
        options.setdefault("bona_fide_class", cfg.eval.bona_fide_class)
    elif cfg.eval.bona_fide_class is not None:
        raise ConfigError(f"eval.bona_fide_class: only for classification; dataset {name!r} is {task_name}")
    task = build_task(task_name, train.num_classes, tuple(train.class_names), options)
    return Data(**splits, task=task)


def method_label(method_cfg: dict[str, Any]) -> str:
    return str(method_cfg.get("label") or method_cfg.get("name"))


def make_fabric(cfg: RunConfig) -> Fabric:
    """Fabric from the trainer config; Lightning's complaints about these keys become a ConfigError."""
    t = cfg.trainer
    try:
        fabric = Fabric(
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=cast(Any, t.precision),
        )
    except (ValueError, RuntimeError) as error:
        raise ConfigError(
            f"trainer.accelerator/devices/num_nodes/strategy/precision "
            f"({t.accelerator}/{t.devices}/{t.num_nodes}/{t.strategy}/{t.precision}): {error}"
        ) from error
    fabric.launch()
    return fabric


def loggers_for(folder: Path, tensorboard: bool) -> list[Any]:
    loggers: list[Any] = [CSVLogger(root_dir=str(folder), name="logs", version="")]
    if tensorboard:
        loggers.append(TensorBoardLogger(root_dir=str(folder), name="logs", version="tensorboard"))
    return loggers


def log_to(loggers: list[Any]) -> Callable[[dict[str, float], int], None]:
    def log(metrics: dict[str, float], step: int) -> None:
        for logger in loggers:
            logger.log_metrics(metrics, step)

    return log


def runner_jobs(method_cfg: dict[str, Any], modalities: tuple[str, ...]) -> list[Job]:
    """The jobs of the method's runner; a runner with a ``method`` parameter also gets the method config
    (e.g. the ``ordinary`` runner reads ``method.ordinary``)."""
    runner = RUNNERS.get(method_cfg.get("runner", "single"))
    if "method" in inspect.signature(runner).parameters:
        return runner(modalities, method=method_cfg)
    return runner(modalities)


def check_method_task(method_cfg: dict[str, Any], task: Task) -> None:
    """Stop before any training when the method cannot train this task (its one-line reason)."""
    method_class = METHODS.get(method_cfg["name"])
    supported = getattr(method_class, "supported_tasks", ("classification", "segmentation"))
    if task.name not in supported:
        reason = getattr(method_class, "task_reason", "")
        raise ConfigError(
            f"method.name: {method_cfg['name']} does not support {task.name}"
            + (f" ({reason})" if reason else f"; it supports {', '.join(supported)}")
        )


def build_job_model(cfg: RunConfig, data: Data) -> MultimodalModel:
    return build_model(cfg.model, data.modalities, data.train.shapes, data.train.num_classes)


def run(
    config: DictConfig | RunConfig | dict[str, Any], run_dir: str | Path, fabric: Fabric | None = None
) -> dict[str, Any]:
    """Train every model the method's runner asks for, evaluate every subset and write the report.

    Returns the results dict also saved as ``results.json``.
    """
    cfg = to_run_config(config)
    run_dir = Path(run_dir)
    fabric = fabric or make_fabric(cfg)
    data = build_data(cfg)
    method_cfg = dict(cfg.method)
    if "name" not in method_cfg:
        raise ConfigError("method.name: required key is missing")
    jobs = runner_jobs(method_cfg, data.modalities)
    check_method_task(method_cfg, data.task)  # fail on an unknown or unsuited method before any training
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if fabric.is_global_zero:
        write_text_atomic(OmegaConf.to_yaml(resolved), run_dir / "config.yaml")
    metrics: dict[str, dict[int, SubsetMetric]] = {"val": {}, "test": {}}
    fits = {}
    for job in jobs:
        folder = run_dir / job.folder
        provenance = {"config": resolved, "job": str(job.folder), "task": data.task.describe()}
        fabric.seed_everything(cfg.seed, verbose=False)
        model = build_job_model(cfg, data)
        context = MethodContext(
            modalities=data.modalities,
            num_classes=data.train.num_classes,
            task=data.task,
            build_model=lambda: build_job_model(cfg, data),
            fit=partial(fit_submodel, cfg, fabric, data, folder, provenance),
            run_dir=folder,
        )
        method = METHODS.build(
            method_cfg["name"],
            {k: v for k, v in method_cfg.items() if k not in META_KEYS},
            where="method",
            context=context,
        )
        method.prepare(model)
        trainer, fit = fit_model(
            cfg, fabric, data, folder, model, method, provenance, restrict_to=job.restrict_to, select=job.subsets
        )
        fits[str(job.folder)] = {
            "best_epoch": fit.best_epoch,
            "best_val_score": fit.best_score,
            "selected_from_epoch": fit.selected_from_epoch,
        }
        load_model_state(model, load_checkpoint(fit.best_path)["model"], fit.best_path)
        for split in ("val", "test"):
            metrics[split] |= trainer.evaluate(model, getattr(data, split), list(job.subsets))
        if fabric.is_global_zero and len(data.test):
            examples = trainer.collate(data.test)([data.test[i] for i in range(min(4, len(data.test)))])
            data.task.save_examples(model, examples.to(fabric.device), list(job.subsets), folder / "examples.png")
    results = summarize(cfg, data, metrics, resolved) | {"fits": fits}
    if fabric.is_global_zero:
        write_outputs(results, run_dir)
    return results


def fit_model(
    cfg: RunConfig,
    fabric: Fabric,
    data: Data,
    folder: Path,
    model: MultimodalModel,
    method: Method,
    provenance: dict[str, Any],
    *,
    restrict_to: int | None = None,
    max_epochs: int | None = None,
    select: Sequence[int] | None = None,
) -> tuple[Trainer, FitResult]:
    """Train ``model`` with ``method`` into ``folder`` (checkpoints, logs); resumable with ``resume``.

    ``select``: the subsets the model answers for (its job's); unless ``trainer.select_subsets`` is set, the
    best epoch is selected on them (for the ``single`` runner: every subset, the default).
    """
    trainer_cfg = cfg.trainer if max_epochs is None else replace(cfg.trainer, max_epochs=max_epochs)
    if select is not None and not trainer_cfg.select_subsets:
        trainer_cfg = replace(trainer_cfg, select_subsets=[subset_name(s, data.modalities) for s in select])
    loggers = loggers_for(folder, cfg.trainer.tensorboard) if fabric.is_global_zero else []
    trainer = Trainer(
        trainer_cfg,
        fabric,
        folder,
        cfg.seed,
        task=data.task,
        restrict_to=restrict_to,
        provenance=provenance,
        log_fn=log_to(loggers),
    )
    fit = trainer.fit(model, method, data.train, data.val, resume=cfg.resume)
    for logger in loggers:
        logger.finalize("success")
    return trainer, fit


def fit_submodel(
    cfg: RunConfig,
    fabric: Fabric,
    data: Data,
    parent: Path,
    provenance: dict[str, Any],
    name: str,
    model: MultimodalModel,
    method: Method,
    max_epochs: int | None = None,
    restrict_to: int | None = None,
) -> Path:
    """``MethodContext.fit``: train a helper model (teacher, pretrained encoder) in ``parent/name``,
    on the subset ``restrict_to`` only when given."""
    method.prepare(model)
    _, fit = fit_model(
        cfg,
        fabric,
        data,
        parent / name,
        model,
        method,
        provenance | {"submodel": name},
        restrict_to=restrict_to,
        max_epochs=max_epochs,
    )
    return fit.best_path


def summarize(
    cfg: RunConfig, data: Data, metrics: dict[str, dict[int, SubsetMetric]], resolved: Any
) -> dict[str, Any]:
    """Scores per subset on every split; PAD thresholds fixed on validation when asked."""
    thresholds = None
    if cfg.eval.threshold == "val":
        if cfg.eval.bona_fide_class is None:
            raise ConfigError("eval.threshold=val needs eval.bona_fide_class")
        thresholds = {s: m.fit_threshold() for s, m in metrics["val"].items()}  # type: ignore[operator]
    elif cfg.eval.threshold != "argmax":
        raise ConfigError(f"eval.threshold: expected 'argmax' or 'val', got {cfg.eval.threshold!r}")
    per_split, details = {}, {}
    for split, by_subset in metrics.items():
        ordered = sorted(by_subset.items(), key=lambda kv: (kv[0].bit_count(), kv[0]))
        per_split[split] = {
            subset_name(s, data.modalities): m.scores(**({"threshold": thresholds[s]} if thresholds else {}))
            for s, m in ordered
        }
        details[split] = {subset_name(s, data.modalities): m.details() for s, m in ordered}
    return {
        "method": method_label(cfg.method),
        "seed": cfg.seed,
        "dataset": cfg.dataset.get("name"),
        "task": data.task.describe(),
        "modalities": list(data.modalities),
        "metrics": per_split,
        "details": details,
        "thresholds": None
        if thresholds is None
        else {subset_name(s, data.modalities): t for s, t in thresholds.items()},
        "unreadable": {split: getattr(data, split).unreadable_summary() for split in SPLITS},
        "config": resolved,
    }


def write_outputs(results: dict[str, Any], run_dir: Path) -> None:
    write_json_atomic(results, run_dir / "results.json")
    rows = result_rows([results], split="test")
    paths = write_report(rows, results["modalities"], run_dir, stem="table")
    print(paths["markdown"].read_text())
    print(f"saved: {', '.join(str(p) for p in paths.values())}")


def evaluate(path: str | Path, split: str = "test", out_dir: str | Path | None = None) -> dict[str, Any]:
    """Re-evaluate a finished run directory (every model of its runner) or a single checkpoint."""
    path = Path(path)
    if path.is_dir():
        ckpt_paths = None
        config_source = path / "config.yaml"
        if not config_source.is_file():
            raise FileNotFoundError(f"{path} is not an mmrobust run directory (no config.yaml)")
        cfg = to_run_config(cast(DictConfig, OmegaConf.load(config_source)))
        run_dir = path
    else:
        ckpt = load_checkpoint(path)
        cfg = to_run_config(ckpt["provenance"]["config"])
        ckpt_paths = {Path(ckpt["provenance"].get("job", ".")): path}
        run_dir = path.parent.parent
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy = 1, 1, "auto"
    fabric = make_fabric(cfg)
    data = build_data(cfg)
    jobs = runner_jobs(cfg.method, data.modalities)
    metrics: dict[str, dict[int, SubsetMetric]] = {"val": {}, split: {}}
    for job in jobs:
        if ckpt_paths is not None and job.folder not in ckpt_paths:
            continue
        best = ckpt_paths[job.folder] if ckpt_paths else run_dir / job.folder / "checkpoints" / "best.ckpt"
        model = build_job_model(cfg, data)
        load_model_state(model, load_checkpoint(best)["model"], best)
        trainer = Trainer(cfg.trainer, fabric, run_dir / job.folder, cfg.seed, task=data.task, log_fn=lambda m, s: None)
        for s in ("val", split):
            metrics[s] |= trainer.evaluate(model.to(fabric.device), getattr(data, s), list(job.subsets))
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    results = summarize(cfg, data, metrics, resolved)
    out = Path(out_dir) if out_dir else run_dir / f"eval_{split}"
    results["metrics"] = {split: results["metrics"][split]}
    write_json_atomic(results, out / "results.json")
    rows = result_rows([results], split=split)
    paths = write_report(rows, results["modalities"], out, stem="table")
    print(paths["markdown"].read_text())
    print(f"saved: {', '.join(str(p) for p in paths.values())}")
    return results
