"""Multirun job folders: every job of a sweep gets its own folder, whatever is swept.

A job's folder is ``<sweep dir>/<method label>/seed<seed>`` followed, when other keys are swept, by one more
component naming this job's values of those keys, e.g. ``…/modality_dropout/seed0/trainer.optimizer.lr=0.01``.
A key is *swept* when its value on the command line (or in ``hydra.sweeper.params`` of an experiment config)
is a sweep: a comma-separated list outside brackets and quotes, or one of Hydra's sweep functions
(``range(…)``, ``choice(…)``, ``glob(…)``, ``interval(…)``). ``method`` and ``seed`` are already in the path.

The config uses it through the resolver ``mmrobust_sweep_suffix`` (registered by ``register_resolver``)::

    subdir: ${method.label}/seed${seed}${mmrobust_sweep_suffix:${hydra:overrides.task},${hydra:sweeper.params}}
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf

IN_PATH = ("method", "seed")  # keys the folder already names
SWEEP_FUNCTIONS = ("range(", "choice(", "glob(", "interval(")


def is_sweep(value: str) -> bool:
    """Whether an override value is a sweep (a top-level comma, or a sweep function)."""
    value = value.strip()
    if value.startswith(SWEEP_FUNCTIONS):
        return True
    depth, quote = 0, ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def split_override(override: str) -> tuple[str, str]:
    """``'+a.b=1'`` -> ``('a.b', '1')`` (Hydra's ``+``/``++``/``~`` prefixes dropped)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept_keys(argv: Iterable[str], sweeper_params: Mapping[str, Any] | None) -> list[str]:
    """The swept keys other than ``method`` and ``seed``, in command-line order then config order."""
    found = [split_override(a) for a in argv if "=" in a and not a.startswith("-")]
    found += [(str(k), str(v)) for k, v in (sweeper_params or {}).items()]
    keys = [k for k, v in found if is_sweep(v) and not k.startswith("hydra.") and k not in IN_PATH]
    return list(dict.fromkeys(keys))


def sweep_suffix(task_overrides: Iterable[str], sweeper_params: Any = None, argv: Iterable[str] | None = None) -> str:
    """``/k1=v1,k2=v2`` naming this job's values of the swept keys, or ``''`` when only method/seed vary.

    ``task_overrides`` are this job's overrides (``hydra.overrides.task``); ``argv`` defaults to the command
    line of the multirun (``sys.argv[1:]``). Slashes in values become ``_`` so the suffix is one folder.
    """
    params = OmegaConf.to_container(sweeper_params) if OmegaConf.is_config(sweeper_params) else sweeper_params
    sweeps = {str(k): v for k, v in params.items()} if isinstance(params, Mapping) else None
    keys = swept_keys(sys.argv[1:] if argv is None else argv, sweeps)
    values = dict(split_override(o) for o in task_overrides)
    parts = [f"{k}={values[k]}".replace("/", "_") for k in keys if k in values]
    return "/" + ",".join(parts) if parts else ""


def register_resolver() -> None:
    if not OmegaConf.has_resolver("mmrobust_sweep_suffix"):
        OmegaConf.register_new_resolver("mmrobust_sweep_suffix", sweep_suffix)
