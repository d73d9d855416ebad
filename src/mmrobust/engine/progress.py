"""A rich progress bar that can be switched off (non-zero ranks, ``trainer.progress=false``).

Training shows one ``train`` task advanced per step; every evaluation pass (validation after each epoch, the
method's validation predictions, the final evaluation of each split) shows its own task advanced per batch
(``tracked``), so the bar does not freeze while a long validation runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def tracked(items: Iterable[T], bar: Progress, description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``, advancing the task ``description`` of ``bar`` by one per item.

    The task is created on first use and reset on every later pass (one ``val`` line per run, not one per
    epoch); ``total`` defaults to ``len(items)``.
    """
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    task = next((t.id for t in bar.tasks if t.description == description), None)
    if task is None:
        task = bar.add_task(description, total=total)
    else:
        bar.reset(task, total=total, description=description)
    for item in items:
        yield item
        bar.advance(task, 1)
