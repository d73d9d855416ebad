"""Train and evaluate one run: datasets -> model(s) -> trainer -> every-subset test evaluation -> report.

``run(config, run_dir)`` is what ``mmrobust train`` calls; ``evaluate(path)`` re-evaluates a finished
run directory or one checkpoint (``mmrobust eval``).
"""

from __future__ import annotations

import copy
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig, OmegaConf

from mmrobust.config import RunConfig, validate_against_data, validate_run_config
from mmrobust.corruption import validate_corrupt_data
from mmrobust.data import DATASETS, MultimodalDataset
from mmrobust.data.base import SPLITS
from mmrobust.deploy.spec import job_spec
from mmrobust.engine.checkpoint import (
    clean_orphan_temps,
    load_checkpoint,
    load_model_state,
    write_json_atomic,
    write_text_atomic,
)
from mmrobust.engine.faults import fault_point
from mmrobust.engine.loggers import build_loggers, log_hyperparams
from mmrobust.engine.metrics_log import MetricsCSV
from mmrobust.engine.precision import check_precision_device, convert_modules
from mmrobust.engine.run_folder import prepare_run_folder
from mmrobust.engine.run_lock import RunFolderError, RunLock
from mmrobust.engine.trainer import FitResult, Trainer
from mmrobust.evaluation.corrupted import Condition, add_corrupted, corrupted_results, save_corrupted_into_run
from mmrobust.evaluation.corruption_report import print_corruption_report
from mmrobust.evaluation.report import result_rows, write_report
from mmrobust.methods import METHODS, Method, MethodContext
from mmrobust.models import build_model
from mmrobust.models.auto import resolve_run_model, summary_line
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
    validate_corrupt_data(cfg, train.modalities, train.shapes)
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
        with warnings.catch_warnings():  # its fallback of 16-mixed to bf16-mixed on the CPU: refused below
            warnings.filterwarnings("ignore", message=".*AMP with fp16 is not supported on CPU")
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
    check_precision_device(t.precision, fabric.device)  # Lightning would train 16-mixed on the CPU as bf16-mixed
    fabric.launch()
    return fabric


def log_to(loggers: list[Any]) -> Callable[[dict[str, float], int], None]:
    def log(metrics: dict[str, float], step: int) -> None:
        for logger in loggers:
            logger.log_metrics(metrics, step)

    return log


def truncate_logs(loggers: list[Any]) -> Callable[[int], None]:
    """``Trainer.on_restore``: drop the CSV rows of steps after the one training continues from."""

    def truncate(step: int) -> None:
        for logger in loggers:
            if isinstance(logger, MetricsCSV):
                dropped = logger.truncate_after(step)
                if dropped:
                    log.info("%s: dropped %d rows after step %d (trained again)", logger.path, dropped, step)

    return truncate


@contextmanager
def claimed_run_folder(fabric: Fabric, run_dir: Path, cfg: RunConfig, resolved: Any) -> Iterator[None]:
    """Hold ``run_dir`` for this run: take its lock (rank 0), clean orphan temp files, apply the folder policy
    (``engine.run_folder``: refuse a used folder unless resume/overwrite, validate a resume); every process
    stops with the same one line when rank 0 refuses. The lock is released when the block exits, also on an
    exception. ``config.yaml`` is written later, once the config has built a model and a method
    (``train_and_evaluate``): a run that fails on its config does not leave a used folder behind."""
    lock = RunLock(run_dir)
    refusal: str | None = None
    if fabric.is_global_zero:
        try:
            lock.acquire()
            removed = clean_orphan_temps(run_dir)
            if removed:
                log.info("removed %d orphan temporary files in %s", len(removed), run_dir)
            saved_path = run_dir / "config.yaml"
            saved = OmegaConf.to_container(OmegaConf.load(saved_path)) if saved_path.is_file() else None
            prepare_run_folder(run_dir, resume=cfg.resume, overwrite=cfg.overwrite, saved_config=saved, config=resolved)
        except RunFolderError as error:
            lock.release()
            refusal = str(error)
            if fabric.world_size == 1:
                raise
    if fabric.world_size > 1:
        refusal = fabric.broadcast(refusal, src=0)
    if refusal is not None:
        raise RunFolderError(refusal)
    try:
        yield
    finally:
        lock.release()


def write_point(name: str, write: Callable[[], Any]) -> Any:
    """A write of the run with the kill -9 test hook around it (``engine.faults``)."""
    fault_point("before", name)
    out = write()
    fault_point("after", name)
    return out


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


def build_job_model(cfg: RunConfig, data: Data, *, plain: bool = False) -> MultimodalModel:
    """The model a run trains: built from ``job_model_config`` (the architecture the method declares), so
    training, ``mmrobust eval`` and the analyses all build the same model. ``plain``: from ``cfg.model`` as
    given, without the method's changes (``MethodContext.build_model``: teachers, pretrained helpers)."""
    config = dict(cfg.model) if plain else job_model_config(cfg, data)
    return build_model(config, data.modalities, data.train.shapes, data.train.num_classes)


def job_model_config(cfg: RunConfig, data: Data) -> dict[str, Any]:
    """``method.model_config(cfg.model)``: the model config the method trains (e.g. DMRNet's probabilistic neck,
    OS-MD's encoders), the one saved in ``config.yaml``. Idempotent, so a saved config maps to itself.

    The method is built here only to declare its architecture (its sub-model training is unavailable), under a
    forked RNG so that the model that follows gets the same initialization as without this call.
    """
    method_cfg = dict(cfg.method)
    if "name" not in method_cfg:
        raise ConfigError("method.name: required key is missing")
    check_method_task(method_cfg, data.task)  # an unsuited method says so before its constructor runs

    def no_fit(*args: Any, **kwargs: Any) -> Path:
        raise RuntimeError("a method may not train sub-models while it declares its model config")

    with torch.random.fork_rng(devices=[]):
        method = new_method(cfg, data, no_fit, Path())
    return method.model_config(copy.deepcopy(dict(cfg.model)))


def new_method(cfg: RunConfig, data: Data, fit: Callable[..., Path], run_dir: Path) -> Method:
    """The method of ``cfg`` built with its context (teachers are built with the plain architecture)."""
    method_cfg = dict(cfg.method)
    context = MethodContext(
        modalities=data.modalities,
        num_classes=data.train.num_classes,
        task=data.task,
        build_model=lambda: build_job_model(cfg, data, plain=True),
        fit=fit,
        run_dir=run_dir,
    )
    options = {k: v for k, v in method_cfg.items() if k not in META_KEYS}
    return METHODS.build(str(method_cfg["name"]), options, where="method", context=context)


def run(
    config: DictConfig | RunConfig | dict[str, Any], run_dir: str | Path, fabric: Fabric | None = None
) -> dict[str, Any]:
    """Train every model the method's runner asks for, evaluate every subset and write the report.

    The run folder is locked for the whole run (a second run on it refuses) and may not hold an earlier run
    unless ``resume=true`` (validated against its ``config.yaml``) or ``overwrite=true``; see
    ``engine.run_folder``. Returns the results dict also saved as ``results.json``.
    """
    cfg = to_run_config(config)
    run_dir = Path(run_dir)
    fabric = fabric or make_fabric(cfg)
    resolved = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))
    data = build_data(cfg)
    model_config, chosen = resolve_run_model(dict(cfg.model), data.train)  # model=auto: encoders per modality
    cfg = replace(cfg, model=model_config)
    resolved["model"] = job_model_config(cfg, data)  # the architecture the method trains: eval rebuilds it
    with claimed_run_folder(fabric, run_dir, cfg, resolved):
        if chosen is not None and fabric.is_global_zero:
            log.info(summary_line(chosen))
            write_text_atomic(OmegaConf.to_yaml(chosen), run_dir / "model_resolved.yaml")
        return train_and_evaluate(cfg, run_dir, fabric, resolved, data)


def build_method(
    cfg: RunConfig,
    data: Data,
    folder: Path,
    model: MultimodalModel,
    fit: Callable[..., Path],
    before_prepare: Callable[[], None] | None = None,
) -> Method:
    """The method of ``cfg`` for the model trained in ``folder``, prepared on ``model`` (built by
    ``build_job_model``: the architecture the method declares); ``fit`` trains (or, for evaluation, finds) the
    method's helper models. ``before_prepare`` runs between building (which checks the method's keys) and
    preparing (which may train a teacher)."""
    method = new_method(cfg, data, fit, folder)
    if before_prepare is not None:
        before_prepare()
    method.prepare(model)
    return method


def train_and_evaluate(
    cfg: RunConfig, run_dir: Path, fabric: Fabric, resolved: Any, data: Data | None = None
) -> dict[str, Any]:
    """The body of ``run`` (the folder claimed): train each job, evaluate val and ``eval.splits``, report."""
    data = build_data(cfg) if data is None else data
    method_cfg = dict(cfg.method)
    if "name" not in method_cfg:
        raise ConfigError("method.name: required key is missing")
    jobs = runner_jobs(method_cfg, data.modalities)
    check_method_task(method_cfg, data.task)  # fail on an unknown or unsuited method before any training
    splits = eval_splits(cfg)
    metrics: dict[str, dict[int, SubsetMetric]] = {s: {} for s in splits}
    fits = {}
    corrupted: dict[Condition, dict[int, SubsetMetric]] = {}  # eval.corrupt (QMF noise protocol)
    written: list[bool] = []

    def write_config() -> None:  # once, when the first model and method are built: the run starts
        if fabric.is_global_zero and not written:
            write_point("config.yaml", lambda: write_text_atomic(OmegaConf.to_yaml(resolved), run_dir / "config.yaml"))
        written.append(True)

    for job in jobs:
        folder = run_dir / job.folder
        provenance = {"config": resolved, "job": str(job.folder), "task": data.task.describe()}
        fabric.seed_everything(cfg.seed, verbose=False)
        model = build_job_model(cfg, data)
        fit_helper = partial(fit_submodel, cfg, fabric, data, folder, provenance)
        method = build_method(cfg, data, folder, model, fit_helper, before_prepare=write_config)
        # the deployment spec (deploy/spec.py): a checkpoint alone rebuilds the model and reads its inputs
        provenance["spec"] = job_spec(data.train, data.task, method, cfg.model, job.subsets, cfg.dataset.get("name"))
        trainer, fit = fit_model(
            cfg, fabric, data, folder, model, method, provenance, restrict_to=job.restrict_to, select=job.subsets
        )
        fits[str(job.folder)] = {
            "best_epoch": fit.best_epoch,
            "best_val_score": fit.best_score,
            "selected_from_epoch": fit.selected_from_epoch,
            "early_stopped_epoch": fit.early_stopped_epoch,  # None: trained to trainer.max_epochs
        }
        load_model_state(model, load_checkpoint(fit.best_path)["model"], fit.best_path)
        for split in splits:
            metrics[split] |= trainer.evaluate(model, getattr(data, split), list(job.subsets), label=split)
        shown = getattr(data, cfg.eval.splits[0])
        with fabric.autocast():  # trainer.precision, as in training (the model was converted by the trainer)
            add_corrupted(corrupted, trainer, model, shown, list(job.subsets), cfg.eval.corrupt)
            if fabric.is_global_zero and len(shown):
                examples = trainer.collate(shown)([shown[i] for i in range(min(4, len(shown)))])
                data.task.save_examples(model, examples.to(fabric.device), list(job.subsets), folder / "examples.png")
    results = summarize(cfg, data, metrics, resolved) | {"fits": fits}
    shown = getattr(data, cfg.eval.splits[0])
    results |= corrupted_results(corrupted, results, cfg.eval.splits[0], cfg.eval.corrupt, len(shown))
    if fabric.is_global_zero:
        write_outputs(results, run_dir, list(cfg.eval.splits))
    return results


def eval_splits(cfg: RunConfig, splits: Sequence[str] | None = None) -> list[str]:
    """The splits evaluated after training: ``val`` (thresholds, the selection record) then ``eval.splits``."""
    return ["val", *[s for s in (splits or cfg.eval.splits) if s != "val"]]


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
    loggers = build_loggers(cfg.trainer, folder) if fabric.is_global_zero else []  # engine.loggers
    log_hyperparams(loggers, provenance.get("config", {}))  # the resolved run config, once at the start
    trainer = Trainer(
        trainer_cfg,
        fabric,
        folder,
        cfg.seed,
        task=data.task,
        restrict_to=restrict_to,
        provenance=provenance,
        log_fn=log_to(loggers),
        on_restore=truncate_logs(loggers),
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


def summarize(cfg: RunConfig, data: Data, metrics: dict[str, dict[int, SubsetMetric]], resolved: Any) -> dict[str, Any]:
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


def write_tables(results: dict[str, Any], out: Path, splits: Sequence[str]) -> None:
    """``table.*`` for the first of ``splits``, ``table_<split>.*`` for the others; printed."""
    saved = []
    for i, split in enumerate(splits):
        rows = result_rows([results], split=split)
        paths = write_report(rows, results["modalities"], out, stem=f"table_{split}" if i else "table")
        if len(splits) > 1:
            print(f"{split} split:")
        print(paths["markdown"].read_text())
        saved += [str(p) for p in paths.values()]
    saved += [str(p) for p in print_corruption_report([results], out).values()]  # when results has "corrupted"
    from mmrobust.evaluation.plots import CONFUSION_NAME, confusion_figure

    confusion = confusion_figure(results, splits[0], out / CONFUSION_NAME)  # classification: all + each alone
    saved += [str(confusion)] if confusion is not None else []
    diagnostics = plot_stale_diagnostics(out)  # a run stopped early never reached the last-epoch plot
    saved += [str(diagnostics)] if diagnostics is not None else []
    print(f"saved: {', '.join(saved)}")


def plot_stale_diagnostics(run_dir: Path) -> Path | None:
    """Draw ``diagnostics.png`` from ``diagnostics.json`` when the figure is missing or older than the records
    (the imbalance diagnostics plot at the last epoch; early stopping ends a run before it)."""
    import json

    from mmrobust.methods.diagnostics import JSON_NAME, PNG_NAME

    records, figure = run_dir / JSON_NAME, run_dir / PNG_NAME
    if not records.is_file() or (figure.is_file() and figure.stat().st_mtime_ns >= records.stat().st_mtime_ns):
        return None
    from mmrobust.evaluation.imbalance_plots import plot_diagnostics

    history = json.loads(records.read_text())
    modalities = [k.split("/", 1)[1] for k in history[0] if k.startswith("val_acc/") and k != "val_acc/fused"]
    plot_diagnostics(history, figure, modalities=modalities)
    return figure


def write_outputs(results: dict[str, Any], run_dir: Path, splits: Sequence[str] = ("test",)) -> None:
    """``results.json`` then the tables of ``splits`` (write points of the kill -9 test hook)."""
    write_point("results.json", lambda: write_json_atomic(results, run_dir / "results.json"))
    write_point("table", lambda: write_tables(results, run_dir, splits))


def evaluate(
    path: str | Path,
    split: str | Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    corrupt: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Re-evaluate a finished run directory (every model of its runner) or a single checkpoint.

    ``split``: one split name or several; default the run's ``eval.splits``. Validation is always evaluated
    too (PAD thresholds); ``results.json`` holds the requested splits only, in ``out_dir`` (default
    ``RUN_DIR/eval_<splits>``). The model is rebuilt as the run trained it, from the architecture its method
    declares (``method.model_config``: DMRNet's probabilistic neck, OS-MD's encoders); nothing is trained.
    """
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
        job_folder = Path(ckpt["provenance"].get("job", "."))
        ckpt_paths = {job_folder: path}
        run_dir = path.parent.parent
        for _ in job_folder.parts:  # checkpoints of a job live in RUN_DIR/<job>/checkpoints/
            run_dir = run_dir.parent
    requested = [split] if isinstance(split, str) else list(split or cfg.eval.splits)
    for s in requested:
        if s not in SPLITS:
            raise ConfigError(f"split: expected one of {list(SPLITS)}, got {s!r}")
    requested = list(dict.fromkeys(requested))
    if corrupt:  # ``mmrobust eval RUN corrupt=...``: the corrupted-input evaluation (evaluation.corrupted)
        cfg.eval.corrupt = replace(cfg.eval.corrupt, **corrupt)
        validate_run_config(cfg)
    corrupted: dict[Condition, dict[int, SubsetMetric]] = {}
    cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy = 1, 1, "auto"
    fabric = make_fabric(cfg)
    data = build_data(cfg)
    jobs = runner_jobs(cfg.method, data.modalities)
    splits = eval_splits(cfg, requested)
    metrics: dict[str, dict[int, SubsetMetric]] = {s: {} for s in splits}
    for job in jobs:
        if ckpt_paths is not None and job.folder not in ckpt_paths:
            continue
        folder = run_dir / job.folder
        best = ckpt_paths[job.folder] if ckpt_paths else folder / "checkpoints" / "best.ckpt"
        model = build_job_model(cfg, data)  # the architecture the method declared (method.model_config)
        load_model_state(model, load_checkpoint(best)["model"], best)
        convert_modules(fabric, model.to(fabric.device))  # trainer.precision: *-true evaluates as it was trained
        trainer = Trainer(cfg.trainer, fabric, folder, cfg.seed, task=data.task, log_fn=lambda m, s: None)
        for s in splits:
            metrics[s] |= trainer.evaluate(model, getattr(data, s), list(job.subsets), label=s)
        with fabric.autocast():
            add_corrupted(corrupted, trainer, model, getattr(data, requested[0]), list(job.subsets), cfg.eval.corrupt)
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    results = summarize(cfg, data, metrics, resolved)
    results |= corrupted_results(corrupted, results, requested[0], cfg.eval.corrupt, len(getattr(data, requested[0])))
    if "corrupted" in results and path.is_dir() and (run_dir / "results.json").is_file():
        save_corrupted_into_run(results["corrupted"], run_dir / "results.json")  # what `mmrobust report` reads
    out = Path(out_dir) if out_dir else run_dir / f"eval_{'_'.join(requested)}"
    results["metrics"] = {s: results["metrics"][s] for s in requested}
    results["details"] = {s: results["details"][s] for s in requested}
    write_json_atomic(results, out / "results.json")
    write_tables(results, out, requested)
    return results
