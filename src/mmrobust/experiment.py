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

from mmrobust.config import RunConfig
from mmrobust.data import DATASETS, MultimodalDataset
from mmrobust.data.base import SPLITS
from mmrobust.engine.checkpoint import load_checkpoint, write_json_atomic, write_text_atomic
from mmrobust.engine.trainer import FitResult, Trainer
from mmrobust.evaluation.evaluator import Predictions
from mmrobust.evaluation.metrics import fit_threshold, subset_metrics
from mmrobust.evaluation.report import result_rows, write_report
from mmrobust.methods import METHODS, Method, MethodContext
from mmrobust.models import build_model
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import ConfigError
from mmrobust.runners import RUNNERS, Job
from mmrobust.subsets import subset_name

log = logging.getLogger(__name__)
META_KEYS = ("name", "runner", "label")


@dataclass
class Data:
    train: MultimodalDataset
    val: MultimodalDataset
    test: MultimodalDataset

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.train.modalities


def to_run_config(config: DictConfig | RunConfig | dict[str, Any]) -> RunConfig:
    """Merge a config onto the schema (type errors name the key) and return the typed object."""
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), config)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def build_data(dataset_cfg: dict[str, Any]) -> Data:
    spec = dict(dataset_cfg)
    if "name" not in spec:
        raise ConfigError("dataset.name: required key is missing")
    name = spec.pop("name")
    if "split" in spec:
        raise ConfigError("dataset.split: set by mmrobust (train/val/test); remove it from the config")
    splits = {s: DATASETS.build(name, {**spec, "split": s}, where="dataset") for s in SPLITS}
    return Data(**splits)


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
    data = build_data(cfg.dataset)
    method_cfg = dict(cfg.method)
    if "name" not in method_cfg:
        raise ConfigError("method.name: required key is missing")
    jobs = runner_jobs(method_cfg, data.modalities)
    METHODS.get(method_cfg["name"])  # fail on an unknown method before any training
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if fabric.is_global_zero:
        write_text_atomic(OmegaConf.to_yaml(resolved), run_dir / "config.yaml")
    predictions: dict[str, dict[int, Predictions]] = {"val": {}, "test": {}}
    fits = {}
    for job in jobs:
        folder = run_dir / job.folder
        provenance = {"config": resolved, "job": str(job.folder)}
        fabric.seed_everything(cfg.seed, verbose=False)
        model = build_job_model(cfg, data)
        context = MethodContext(
            modalities=data.modalities,
            num_classes=data.train.num_classes,
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
        fits[str(job.folder)] = {"best_epoch": fit.best_epoch, "best_val_score": fit.best_score}
        model.load_state_dict(load_checkpoint(fit.best_path)["model"])
        for split in ("val", "test"):
            predictions[split] |= trainer.predict(model, getattr(data, split), list(job.subsets))
    results = summarize(cfg, data, predictions, resolved) | {"fits": fits}
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
        bona_fide_class=cfg.eval.bona_fide_class,
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
    cfg: RunConfig, data: Data, predictions: dict[str, dict[int, Predictions]], resolved: Any
) -> dict[str, Any]:
    """Metrics per subset on every split, thresholds fixed on validation when asked."""
    thresholds = None
    if cfg.eval.threshold == "val":
        if cfg.eval.bona_fide_class is None:
            raise ConfigError("eval.threshold=val needs eval.bona_fide_class")
        thresholds = {
            s: fit_threshold(p.logits, p.target, cfg.eval.bona_fide_class) for s, p in predictions["val"].items()
        }
    elif cfg.eval.threshold != "argmax":
        raise ConfigError(f"eval.threshold: expected 'argmax' or 'val', got {cfg.eval.threshold!r}")
    per_split = {}
    for split, preds in predictions.items():
        metrics = subset_metrics(
            dict(sorted(preds.items(), key=lambda kv: (kv[0].bit_count(), kv[0]))),
            cfg.eval.bona_fide_class,
            thresholds,
        )
        per_split[split] = {subset_name(s, data.modalities): m for s, m in metrics.items()}
    return {
        "method": method_label(cfg.method),
        "seed": cfg.seed,
        "dataset": cfg.dataset.get("name"),
        "modalities": list(data.modalities),
        "metrics": per_split,
        "thresholds": None
        if thresholds is None
        else {subset_name(s, data.modalities): t for s, t in thresholds.items()},
        "unreadable": {split: dict(getattr(data, split).unreadable) for split in SPLITS},
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
    data = build_data(cfg.dataset)
    jobs = runner_jobs(cfg.method, data.modalities)
    predictions: dict[str, dict[int, Predictions]] = {"val": {}, split: {}}
    for job in jobs:
        if ckpt_paths is not None and job.folder not in ckpt_paths:
            continue
        best = ckpt_paths[job.folder] if ckpt_paths else run_dir / job.folder / "checkpoints" / "best.ckpt"
        model = build_job_model(cfg, data)
        model.load_state_dict(load_checkpoint(best)["model"])
        trainer = Trainer(cfg.trainer, fabric, run_dir / job.folder, cfg.seed, log_fn=lambda m, s: None)
        for s in ("val", split):
            predictions[s] |= trainer.predict(model.to(fabric.device), getattr(data, s), list(job.subsets))
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    results = summarize(cfg, data, predictions, resolved)
    out = Path(out_dir) if out_dir else run_dir / f"eval_{split}"
    results["metrics"] = {split: results["metrics"][split]}
    write_json_atomic(results, out / "results.json")
    rows = result_rows([results], split=split)
    paths = write_report(rows, results["modalities"], out, stem="table")
    print(paths["markdown"].read_text())
    print(f"saved: {', '.join(str(p) for p in paths.values())}")
    return results
