"""Runners decide how many models a method trains and which subsets each one answers for.

- ``single``: one model for every subset (every method of the papers).
- ``per_subset``: one model per non-empty subset, each trained and selected on that subset only
  (MMANet's "Customized" rows); the evaluation merges them into one table.
- ``ordinary``: one model evaluated on the subsets of the ordinary modalities only (privileged-information
  methods: the deployed model never takes the privileged ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrobust.registry import Registry
from mmrobust.roles import resolve_roles
from mmrobust.subsets import all_subsets, subset_name


@dataclass(frozen=True)
class Job:
    """One model to train: the subsets it is evaluated on, its folder (relative to the run), and the
    subset it is restricted to during training (None = the data as it comes)."""

    subsets: tuple[int, ...]
    folder: Path
    restrict_to: int | None = None


RUNNERS: Registry[list[Job]] = Registry("runner")


@RUNNERS.register("single")
def single(modalities: tuple[str, ...]) -> list[Job]:
    return [Job(tuple(all_subsets(len(modalities))), Path("."))]


@RUNNERS.register("per_subset")
def per_subset(modalities: tuple[str, ...]) -> list[Job]:
    return [
        Job((s,), Path("subsets") / subset_name(s, modalities), restrict_to=s) for s in all_subsets(len(modalities))
    ]


@RUNNERS.register("ordinary")
def ordinary_runner(modalities: tuple[str, ...], method: Mapping[str, Any] | None = None) -> list[Job]:
    """One model, evaluated on the subsets of the ordinary modalities only (``method.ordinary``)."""
    spec = method or {}
    roles = resolve_roles(modalities, spec.get("ordinary"), spec.get("privileged"))
    return [Job(tuple(roles.ordinary_subsets()), Path("."))]
