"""Optimizers (SGD with momentum/Nesterov, AdamW) and per-step learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mmrobust.config import OptimizerConfig, SchedulerConfig
from mmrobust.registry import ConfigError


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay)
    raise ConfigError(f"trainer.optimizer.name: unknown optimizer {cfg.name!r}; valid names: adamw, sgd")


def lr_factor(step: int, steps_per_epoch: int, max_epochs: int, cfg: SchedulerConfig) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Warmup: linear from ``warmup_start_factor`` to 1 over ``warmup_epochs``. Then ``multistep``:
    ``gamma ** (number of milestones <= current epoch)``; ``cosine``:
    ``r + (1 − r)·½(1 + cos(π·t))`` with t the fraction of post-warmup steps done and r = ``min_lr_ratio``.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * step / warmup
    if cfg.name == "none":
        return 1.0
    if cfg.name == "multistep":
        epoch = step / steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.name == "cosine":
        total = max(max_epochs * steps_per_epoch - warmup, 1)
        t = min((step - warmup) / total, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    raise ConfigError(f"trainer.scheduler.name: unknown schedule {cfg.name!r}; valid names: cosine, multistep, none")


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, steps_per_epoch: int, max_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, steps_per_epoch, max_epochs, cfg)  # validate the name now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, max_epochs, cfg))
