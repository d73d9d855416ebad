"""Tasks: what a model predicts (classification, segmentation) — targets, loss, streaming metrics."""

from __future__ import annotations

from typing import Any

from mmrobust.tasks.base import TASKS, MetricFact, SubsetMetric, Task, metric_fact
from mmrobust.tasks.classification import Classification
from mmrobust.tasks.segmentation import Segmentation

__all__ = ["TASKS", "Classification", "MetricFact", "Segmentation", "SubsetMetric", "Task", "build_task", "metric_fact"]


def build_task(name: str, num_classes: int, class_names: tuple[str, ...], options: dict[str, Any]) -> Task:
    """The task ``name`` of a dataset with its config ``options`` (``task.*`` keys, plus
    ``bona_fide_class`` for classification)."""
    return TASKS.build(name, options, where="task", num_classes=num_classes, class_names=class_names)
