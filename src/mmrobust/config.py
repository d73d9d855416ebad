"""The run configuration schema (validated by OmegaConf: a value of the wrong type names its key).

``dataset``, ``model`` and ``method`` are free-form groups whose keys are checked against the
registered constructors when they are built (see ``registry.validate_kwargs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


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
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    deterministic: bool = False  # torch.use_deterministic_algorithms
    num_workers: int = 0
    select_metric: str = "accuracy"  # validation metric averaged over select_subsets
    select_subsets: list[str] = field(default_factory=list)  # empty = every subset
    encode_once: bool = True  # every-subset evaluation encodes each batch once
    progress: bool = True
    log_every_n_steps: int = 10
    tensorboard: bool = True


@dataclass
class EvalConfig:
    bona_fide_class: int | None = None  # set for face anti-spoofing: adds APCER/BPCER/ACER
    threshold: str = "argmax"  # argmax | val (fixed per subset on the validation split)
    splits: list[str] = field(default_factory=lambda: ["test"])


@dataclass
class RunConfig:
    dataset: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    resume: bool = False


def register_schema() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
