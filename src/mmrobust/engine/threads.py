"""How many intra-op threads torch uses: ``trainer.threads = auto | <int>``.

torch starts with one thread per core whatever the model. For the small models of this toolkit (an MLP over
UCI features: a few MFLOP per step) the threads spend more time synchronizing than computing, and on a shared
machine they oversubscribe the cores: measured on a busy 2-core machine, ``make main`` took 5.4× longer with
2 threads than with 1. Large convolutional nets, on the other hand, gain from every free core (1.9× with 2
threads on an idle 2-core machine). ``auto`` therefore decides from the work per step and the cores actually
free:

- the user's setting wins: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment, or a
  ``torch.set_num_threads`` call made after mmrobust was imported (torch's count then differs from the count at
  import and from the last one applied here), leave torch as it is;
- ``free = max(1, round(cores − max(0, load − 1)))`` with ``cores`` the usable cores (affinity mask, cgroup quota)
  and ``load`` the 1-minute load average (minus this process itself);
- per training process on the node the budget is ``⌊free / processes⌋ − workers`` (its DataLoader workers take
  one core each), at least 1: ``processes · (threads + workers) ≤ free``, never oversubscribed;
- ``threads = clamp(⌊F / F₁⌋, 1, budget)`` with ``F`` the estimated FLOPs of one training step (3 × the forward
  FLOPs of the per-process batch) and ``F₁ = 1 GFLOP``: a model under 2 GFLOP per step runs on one thread, a big
  convolutional net on every free core.

An integer ``trainer.threads`` is used as given. The choice is applied once per process and logged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

FLOPS_PER_THREAD = 1e9
"""``F₁``: training-step FLOPs that justify one more thread (module docstring)."""

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_AT_IMPORT = torch.get_num_threads()  # torch's count when mmrobust's engine was imported
_APPLIED: int | None = None  # the last count this module applied


@dataclass(frozen=True)
class ThreadChoice:
    """The decision: ``threads`` (None = leave torch as it is) and the reason, for the log."""

    threads: int | None
    reason: str


def choose_threads(
    setting: int | str,
    *,
    cores: int,
    load: float,
    step_flops: float | None,
    processes: int = 1,
    workers: int = 0,
    env: Mapping[str, str] | None = None,
    user_set: bool = False,
) -> ThreadChoice:
    """Decide the intra-op thread count (module docstring); a pure function of its arguments.

    Args:
        setting: ``trainer.threads``: ``"auto"`` or a number of threads (an int or a string of digits).
        cores: usable cores of this machine (affinity mask, cgroup quota).
        load: the 1-minute load average (it counts this process too).
        step_flops: estimated FLOPs of one training step of one process; None when unknown (counted as large).
        processes: training processes on this node.
        workers: DataLoader worker processes per training process.
        env: the environment (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` are the user's setting).
        user_set: torch's count was changed by the user (``torch.set_num_threads``) before this call.
    """
    if isinstance(setting, str) and setting.strip().isdigit():
        setting = int(setting)
    if isinstance(setting, int):
        if setting < 1:
            raise ValueError(f"trainer.threads: expected 'auto' or an integer >= 1, got {setting}")
        return ThreadChoice(setting, f"trainer.threads={setting}")
    if setting != "auto":
        raise ValueError(f"trainer.threads: expected 'auto' or an integer >= 1, got {setting!r}")
    for var in ENV_VARS:
        if (env or {}).get(var):
            return ThreadChoice(None, f"{var}={(env or {})[var]} is set: torch keeps it")
    if user_set:
        return ThreadChoice(None, "torch.set_num_threads was called by the user: kept")
    free = max(1, round(cores - max(0.0, load - 1.0)))
    budget = max(1, free // max(processes, 1) - max(workers, 0))
    if step_flops is None:
        wanted, size = budget, "model size unknown"
    else:
        wanted = max(1, math.floor(step_flops / FLOPS_PER_THREAD))
        size = f"{step_flops / 1e9:.3g} GFLOP per step"
    threads = min(wanted, budget)
    reason = (
        f"auto: {cores} cores, load {load:.2f} -> {free} free; {processes} process(es) x {workers} worker(s) -> "
        f"budget {budget}; {size} -> {threads}"
    )
    return ThreadChoice(threads, reason)


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return 0.0


def torch_user_set() -> bool:
    """Whether torch's thread count was changed since import by someone other than :func:`apply_threads`."""
    current = torch.get_num_threads()
    return current != _AT_IMPORT and current != _APPLIED


def step_flops(model: torch.nn.Module, batch: Any, batch_size: int) -> float | None:
    """Estimated FLOPs of one training step: 3 × the forward FLOPs on ``batch`` (counted by torch's
    ``FlopCounterMode`` in eval mode without gradients), scaled to ``batch_size`` samples; None when the model
    cannot be counted this way."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(batch)
        per_sample = counter.get_total_flops() / max(len(batch), 1)
    except Exception as error:
        log.debug("threads: FLOPs of the model could not be counted (%s)", error)
        return None
    finally:
        model.train(was_training)
    return 3.0 * per_sample * batch_size


def apply_threads(choice: ThreadChoice) -> None:
    """Set torch's intra-op thread count (no-op for ``threads=None``) and log the choice once per change."""
    global _APPLIED
    if choice.threads is None:
        if _APPLIED is None:
            log.info("threads: %d (%s)", torch.get_num_threads(), choice.reason)
        _APPLIED = torch.get_num_threads()
        return
    if choice.threads != torch.get_num_threads() or _APPLIED is None:
        log.info("threads: %d (%s)", choice.threads, choice.reason)
    torch.set_num_threads(choice.threads)
    _APPLIED = choice.threads


def configure_threads(
    setting: int | str,
    model: torch.nn.Module,
    example: Callable[[], Any],
    *,
    batch_size: int,
    processes: int = 1,
    workers: int = 0,
) -> ThreadChoice:
    """Decide (:func:`choose_threads`) from this machine and ``model`` and apply the choice. ``example()`` gives a
    small batch for counting the model's FLOPs; it is called only when ``auto`` needs them."""
    from mmrobust.config import usable_cores

    env, user = dict(os.environ), torch_user_set()
    needs_size = str(setting) == "auto" and not user and not any(env.get(v) for v in ENV_VARS)
    flops = None
    if needs_size:
        try:
            batch = example()
        except Exception as error:
            log.debug("threads: no example batch (%s)", error)
        else:
            flops = step_flops(model, batch, batch_size)
    choice = choose_threads(
        setting,
        cores=usable_cores(),
        load=load_average(),
        step_flops=flops,
        processes=processes,
        workers=workers,
        env=env,
        user_set=user,
    )
    apply_threads(choice)
    return choice
