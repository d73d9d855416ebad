"""The Task contract: what a model predicts, how it is supervised and how it is scored.

A task owns everything that depends on the kind of prediction, so the trainer, the evaluator, the report
and the methods never do:

- ``collate_targets``: per-sample targets -> the batch target tensor;
- ``loss(logits, target, mask)``: the supervised loss every method calls;
- ``new_metric()``: a streaming metric (a torchmetrics ``Metric`` whose state is a fixed-size sum, synced
  across processes), one per modality subset, so evaluation memory does not grow with the split;
- ``METRICS``: the facts of each metric it reports (title, higher is better) and ``default_select_metric``;
- ``compact(logits, target)``: a per-sample class-level summary ``([B, C], [B])`` for method hooks that
  compare predictions between subsets (MMANet's MAR mining, the imbalance diagnostics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric

from mmrobust.registry import Registry


@dataclass(frozen=True)
class MetricFact:
    """How one metric reads: its table title, whether higher is better; values are fractions shown in %."""

    title: str
    higher_is_better: bool = True


class SubsetMetric(Metric):
    """A streaming metric of one modality subset: ``update(logits, target)``, then ``scores()``.

    ``scores()`` returns the scalar metrics (fractions) of the task's ``METRICS``; ``details()`` returns
    extra per-class values for ``results.json`` (not tabulated).
    """

    full_state_update = False

    def scores(self, **options: Any) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        return {}

    def compute(self) -> dict[str, float]:
        return self.scores()


class Task:
    """Base class of a task; see the module docstring. Subclasses set ``name``, ``METRICS`` and
    ``default_select_metric`` and implement the methods."""

    name: str = ""
    METRICS: ClassVar[dict[str, MetricFact]] = {}
    default_select_metric: str = ""

    def __init__(self, num_classes: int, class_names: Sequence[str] = ()) -> None:
        if num_classes < 1:
            raise ValueError(f"a task needs at least one class, got num_classes={num_classes}")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) or tuple(str(c) for c in range(num_classes))

    def metric_names(self) -> tuple[str, ...]:
        """The scalar metrics this task reports (in table order)."""
        return tuple(self.METRICS)

    def collate_targets(self, targets: Sequence[Any]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def new_metric(self) -> SubsetMetric:  # pragma: no cover - abstract
        raise NotImplementedError

    def compact(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def probe_head(self, in_features: int) -> nn.Module:  # pragma: no cover - abstract
        """A fresh small head from a representation with ``in_features`` channels to this task's logits
        (methods use it to read a prediction off an intermediate representation, e.g. OS-MD's f_s)."""
        raise NotImplementedError

    def save_examples(self, model: Any, batch: Any, subsets: Sequence[int], path: Path) -> Path | None:
        """Save a figure of example predictions of every subset on ``batch``; None when the task has none."""
        return None

    def describe(self) -> dict[str, Any]:
        """What a checkpoint or ``results.json`` records about the task."""
        return {"name": self.name, "num_classes": self.num_classes, "class_names": list(self.class_names)}


TASKS: Registry[Task] = Registry("task")


def metric_fact(metric: str) -> MetricFact:
    """The facts of a metric name of any registered task (unknown names read as higher-is-better)."""
    for name in TASKS.names():
        facts = getattr(TASKS.get(name), "METRICS", {})
        if metric in facts:
            return facts[metric]
    return MetricFact(title=f"{metric} (%)")
