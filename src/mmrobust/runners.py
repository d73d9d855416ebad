"""Runners decide how many models a method trains and which subsets each one answers for.

- ``single``: one model for every subset (every method of the papers).
- ``per_subset``: one model per non-empty subset, each trained and selected on that subset only
  (MMANet's "Customized" rows); the evaluation merges them into one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmrobust.registry import Registry
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
