"""The run configuration schema (validated by OmegaConf: a value of the wrong type names its key).

``dataset``, ``model`` and ``method`` are free-form groups whose keys are checked against the
registered constructors when they are built (see ``registry.validate_kwargs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, get_args

from hydra.core.config_store import ConfigStore

from mmrobust.registry import ConfigError


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # sgd | adamw
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # none | multistep | cosine
    warmup_epochs: float = 0.0  # linear warmup from warmup_start_factor·lr
    warmup_start_factor: float = 0.1
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.0  # cosine: final lr = min_lr_ratio·lr


@dataclass
class TrainCorruptConfig:
    """Training augmentation with input corruptions (``corruption.augment_batch``); off when ``kinds`` is empty."""

    kinds: list[str] = field(default_factory=list)  # names of corruption.CORRUPTIONS, e.g. [gaussian, salt]
    max_strength: float = 10.0  # strength = l·max_strength, l ~ U[0, 1]
    fraction: float = 0.5  # probability that a modality of a sample is corrupted
    rates: dict[str, float] = field(default_factory=dict)  # per-modality probability; CLI: +trainer.corrupt.rates={a:1}


@dataclass
class EarlyStoppingConfig:
    """Stop training when the validation selection score has not improved by more than ``min_delta`` for
    ``patience`` epochs (``engine.early_stopping``); ``patience: 0`` = off."""

    patience: int = 0
    min_delta: float = 0.0


@dataclass
class EvalCorruptConfig:
    """Corrupted-input evaluation (``evaluation.corrupted``); off when ``conditions`` is empty."""

    conditions: list[str] = field(default_factory=list)  # KIND:STRENGTH items, e.g. [gaussian:5, salt:10]
    fraction: float = 0.5  # of the evaluated samples get the modality corrupted (QMF: 50 %)
    modalities: list[str] = field(default_factory=list)  # the modalities corrupted in turn; empty = each
    seed: int = 0


@dataclass
class TrainerConfig:
    max_epochs: int = 30
    batch_size: int = 64  # global batch (split evenly across processes)
    eval_batch_size: int = 512
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    accelerator: str = "cpu"  # cpu | cuda | gpu | mps | auto
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp
    precision: str = "32-true"  # 32-true | bf16-mixed (autocast) | bf16-true (bf16 weights) | 16-mixed (GPU only)
    deterministic: bool = False  # torch.use_deterministic_algorithms
    # DataLoader worker processes per training process, or "auto" (``resolve_num_workers``): min(4, cores − 1) on
    # a machine with more than 2 usable cores for datasets whose samples draw no random numbers (the manifest), with
    # persistent train workers; 0 on 1–2 cores (a worker would take the core the training step needs; the decoded-
    # input cache makes epochs after the first cheap anyway) and for in-memory or augmenting datasets (their random
    # draws come from each worker's generator, so workers would change the results). Integers are used as given.
    num_workers: int | str = "auto"
    select_metric: str | None = None  # validation metric averaged over select_subsets; None = the task's default
    select_subsets: list[str] = field(default_factory=list)  # empty = every subset
    select_from_epoch: int = 0  # no epoch before this (nor before the method's full loss is active) is selected
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)  # patience 0 = off
    encode_once: bool = True  # every-subset evaluation encodes each batch once
    # validation also covers every subset (logged as val_all/avg_<metric>, the curves) every N epochs and at the
    # last one, when select_subsets narrows the per-epoch validation; 0 = never (engine.validation)
    val_all_subsets_every: int = 0
    threads: int | str = "auto"  # torch intra-op threads: auto (engine.threads: model size, free cores) | N
    progress: bool = True
    log_every_n_steps: int = 10
    tensorboard: bool = True  # false drops "tensorboard" from loggers (the older switch)
    # csv | tensorboard | wandb | mlflow | {name: my_pkg.MyLogger, ...options}: see engine.loggers
    loggers: list[Any] = field(default_factory=lambda: ["csv", "tensorboard"])
    logger_options: dict[str, Any] = field(default_factory=dict)  # per logger name, e.g. {wandb: {mode: offline}}
    corrupt: TrainCorruptConfig = field(default_factory=TrainCorruptConfig)  # input corruption augmentation


@dataclass
class EvalConfig:
    bona_fide_class: int | None = None  # set for face anti-spoofing: adds APCER/BPCER/ACER
    threshold: str = "argmax"  # argmax | val (fixed per subset on the validation split)
    splits: list[str] = field(default_factory=lambda: ["test"])
    corrupt: EvalCorruptConfig = field(default_factory=EvalCorruptConfig)  # corrupted-input evaluation
    paper_table: str | None = None  # a stored printed table (mmrobust/paper_tables): `report` sets ours beside it


@dataclass
class RunConfig:
    dataset: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)  # task options (class_weights); name = the dataset's
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    resume: bool = False  # continue the run in the run folder (only RESUME_MUTABLE keys may differ)
    overwrite: bool = False  # delete the earlier run in the run folder and start again


def register_schema() -> None:
    """Store the schema. ``model`` is left open (not struct): its keys depend on the data (per-modality
    ``model.encoders.<modality>``), so ``model.encoders.audio.name=resnet`` needs no ``+``; ``build_model``
    refuses unknown model keys with one ``ConfigError`` line instead."""
    from omegaconf import OmegaConf

    node = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(node.model, False)
    ConfigStore.instance().store(name="run_schema", node=node)


# --------------------------------------------------------------------------------------------- validation
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "multistep", "none")
THRESHOLDS = ("argmax", "val")
EVAL_SPLITS = ("train", "val", "test")
MAX_SEED = 2**32 - 1  # numpy / Lightning seeds are unsigned 32-bit


def accepted_precisions() -> tuple[str, ...]:
    """The ``trainer.precision`` values Lightning Fabric accepts (read from Lightning itself)."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT

        values: list[str] = []
        for literal in get_args(_PRECISION_INPUT):
            values.extend(str(v) for v in get_args(literal))
        return tuple(values)
    except (ImportError, AttributeError):  # pragma: no cover - a Lightning without that private name
        return ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "32", "16", "bf16")


def validate_run_config(cfg: RunConfig) -> None:
    """Check the values of a typed run config; the first bad one raises one ``ConfigError`` line.

    Types are already checked by OmegaConf; this checks ranges and names (``trainer.batch_size: expected an
    integer > 0, got 0``). Dataset, model and method keys are checked by their constructors.
    """
    t, o, s, e = cfg.trainer, cfg.trainer.optimizer, cfg.trainer.scheduler, cfg.eval

    def need(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key}: expected {expected}, got {value!r}")

    need(0 <= cfg.seed <= MAX_SEED, "seed", f"an integer in [0, {MAX_SEED}]", cfg.seed)
    need(t.max_epochs > 0, "trainer.max_epochs", "an integer > 0", t.max_epochs)
    need(t.batch_size > 0, "trainer.batch_size", "an integer > 0", t.batch_size)
    need(t.eval_batch_size > 0, "trainer.eval_batch_size", "an integer > 0", t.eval_batch_size)
    need(t.log_every_n_steps > 0, "trainer.log_every_n_steps", "an integer > 0", t.log_every_n_steps)
    need(
        t.num_workers == "auto" or str(t.num_workers).isdigit(),
        "trainer.num_workers",
        "an integer >= 0 or 'auto'",
        t.num_workers,
    )
    stop = t.early_stopping
    need(stop.patience >= 0, "trainer.early_stopping.patience", "an integer >= 0 (0 = off)", stop.patience)
    need(math.isfinite(stop.min_delta) and stop.min_delta >= 0, "trainer.early_stopping.min_delta", "a number >= 0",
         stop.min_delta)  # fmt: skip
    need(t.val_all_subsets_every >= 0, "trainer.val_all_subsets_every", "an integer >= 0 (0 = never)",
         t.val_all_subsets_every)  # fmt: skip
    need(t.threads == "auto" or (str(t.threads).isdigit() and int(t.threads) > 0), "trainer.threads",
         "'auto' or an integer > 0", t.threads)  # fmt: skip
    need(t.devices > 0, "trainer.devices", "an integer > 0", t.devices)
    need(t.num_nodes > 0, "trainer.num_nodes", "an integer > 0", t.num_nodes)
    need(math.isfinite(t.grad_clip) and t.grad_clip >= 0, "trainer.grad_clip", "a number >= 0 (0 = off)", t.grad_clip)
    precisions = accepted_precisions()
    need(str(t.precision) in precisions, "trainer.precision", f"one of {list(precisions)}", t.precision)
    need(o.name in OPTIMIZERS, "trainer.optimizer.name", f"one of {list(OPTIMIZERS)}", o.name)
    need(math.isfinite(o.lr) and o.lr > 0, "trainer.optimizer.lr", "a number > 0", o.lr)
    need(
        math.isfinite(o.weight_decay) and o.weight_decay >= 0,
        "trainer.optimizer.weight_decay",
        "a number >= 0",
        o.weight_decay,
    )
    need(0 <= o.momentum < 1, "trainer.optimizer.momentum", "a number in [0, 1)", o.momentum)
    need(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        "trainer.optimizer.betas",
        "two numbers in [0, 1)",
        list(o.betas),
    )
    need(s.name in SCHEDULERS, "trainer.scheduler.name", f"one of {list(SCHEDULERS)}", s.name)
    need(s.warmup_epochs >= 0, "trainer.scheduler.warmup_epochs", "a number >= 0", s.warmup_epochs)
    need(
        0 <= s.warmup_start_factor <= 1,
        "trainer.scheduler.warmup_start_factor",
        "a number in [0, 1]",
        s.warmup_start_factor,
    )
    need(s.gamma > 0, "trainer.scheduler.gamma", "a number > 0", s.gamma)
    need(0 <= s.min_lr_ratio <= 1, "trainer.scheduler.min_lr_ratio", "a number in [0, 1]", s.min_lr_ratio)
    milestones = list(s.milestones)
    need(
        all(m > 0 for m in milestones) and all(a < b for a, b in pairwise(milestones)),
        "trainer.scheduler.milestones",
        "strictly increasing epochs > 0",
        milestones,
    )
    need(e.threshold in THRESHOLDS, "eval.threshold", f"one of {list(THRESHOLDS)}", e.threshold)
    if e.paper_table is not None:
        from mmrobust.evaluation.paper_compare import paper_table_keys

        need(e.paper_table in paper_table_keys(), "eval.paper_table", f"one of {paper_table_keys()}", e.paper_table)
    need(
        e.bona_fide_class is None or e.bona_fide_class >= 0,
        "eval.bona_fide_class",
        "a class index >= 0",
        e.bona_fide_class,
    )
    need(
        e.threshold != "val" or e.bona_fide_class is not None,
        "eval.bona_fide_class",
        "a class index when eval.threshold=val",
        e.bona_fide_class,
    )
    splits = list(e.splits)
    need(
        bool(splits) and all(x in EVAL_SPLITS for x in splits) and len(set(splits)) == len(splits),
        "eval.splits",
        f"a non-empty list of distinct names from {list(EVAL_SPLITS)}",
        splits,
    )
    need(
        len(set(t.select_subsets)) == len(t.select_subsets),
        "trainer.select_subsets",
        "distinct subset names",
        list(t.select_subsets),
    )
    from mmrobust.corruption import validate_corrupt_config

    validate_corrupt_config(cfg)
    from mmrobust.engine.loggers import logger_specs

    logger_specs(t)  # names, options, installed packages


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 quota (``cpu.max``)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        from pathlib import Path

        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def resolve_num_workers(value: int | str, dataset: Any, processes: int = 1) -> int:
    """The number of DataLoader workers for ``trainer.num_workers`` = ``value`` (see ``TrainerConfig``).

    ``auto``: ``min(4, c − 1)`` with ``c`` the usable cores per training process (``processes`` on this node)
    when ``c > 2`` and the dataset declares ``worker_invariant`` (its samples draw no random numbers) and is not
    ``in_memory``; else 0. A string of digits counts as that integer.
    """
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if value != "auto":
        return int(value)
    if not getattr(dataset, "worker_invariant", False) or getattr(dataset, "in_memory", False):
        return 0
    cores = usable_cores() // max(processes, 1)
    return min(4, cores - 1) if cores > 2 else 0


def validate_against_data(cfg: RunConfig, modalities: Sequence[str], num_classes: int) -> None:
    """The checks that need the dataset: subset names of ``trainer.select_subsets`` and the range of
    ``eval.bona_fide_class``. One ``ConfigError`` line for the first bad value."""
    from mmrobust.subsets import subset_from_names

    for name in cfg.trainer.select_subsets:
        try:
            subset_from_names(name, tuple(modalities))
        except ValueError as error:
            raise ConfigError(f"trainer.select_subsets: {name!r}: {error} (join names with '+')") from error
    bona = cfg.eval.bona_fide_class
    if bona is not None and not 0 <= bona < num_classes:
        raise ConfigError(f"eval.bona_fide_class: expected a class index in [0, {num_classes - 1}], got {bona}")
