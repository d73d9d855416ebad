"""Every-subset evaluation: encode once per batch, then fuse + neck + head for each subset.

Because ``fuse`` zeroes the features of absent modalities, encoding the batch once and fusing with the
mask ANDed with each subset gives exactly the logits of running the model on each restricted batch, at
a fraction of the cost (the encoders run once instead of once per subset that contains them). Models
that fuse inside their encoders (``fusion_inside_encoders = True``, e.g. ESANet, whose ``encode`` is lazy and
whose ``fuse`` runs both encoder streams) get one forward per subset: their cost grows with the number of
subsets.

``evaluate_subsets`` streams: it updates one task metric per subset batch by batch and keeps no logits, so
its memory does not grow with the split. ``predict_subsets`` keeps per-sample predictions for method hooks,
compacted by the task (``[N, C]`` per subset, whatever the task).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmrobust.batch import Batch
from mmrobust.engine.precision import cast_to_model
from mmrobust.subsets import subset_mask
from mmrobust.tasks.base import SubsetMetric, Task

Compact = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Predictions:
    """Logits ``[N, C]``, targets ``[N]`` and dataset indices ``[N]`` of one subset."""

    logits: torch.Tensor
    target: torch.Tensor
    index: torch.Tensor


def subset_outputs(
    model: Any, batch: Batch, subsets: Sequence[int], encode_once: bool = True
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(subset, logits)`` of every subset on one batch (the model in its current mode; floating inputs
    cast to the model's dtype, a no-op unless ``trainer.precision`` converted it)."""
    batch = cast_to_model(batch, model)
    once = encode_once and not getattr(model, "fusion_inside_encoders", False)
    if once:
        features = model.encode(batch)
        for s in subsets:
            present = batch.present & subset_mask(s, len(batch.modalities)).to(batch.present.device)
            yield s, model.head(model.neck(model.fuse(features, present)))
    else:
        for s in subsets:
            yield s, model(batch.restrict(s))


@torch.no_grad()
def evaluate_subsets(
    model: Any,
    batches: Iterable[Batch],
    subsets: Sequence[int],
    task: Task,
    *,
    device: torch.device | str = "cpu",
    encode_once: bool = True,
    on_unreadable: Callable[[tuple[tuple[str, str, str], ...]], None] | None = None,
) -> dict[int, SubsetMetric]:
    """One streaming task metric per subset over every batch (the model in eval mode).

    ``on_unreadable`` receives each batch's unreadable-file entries (``dataset.record_unreadable``). In a
    distributed run each process passes its shard; the metrics' states are summed across processes
    when they are read (torchmetrics syncs them), so shards must not overlap.
    """
    was_training = model.training
    model.eval()
    metrics = {s: task.new_metric().to(device) for s in subsets}
    for batch in batches:
        if on_unreadable is not None:
            on_unreadable(batch.unreadable)
        batch = batch.to(device)
        for s, logits in subset_outputs(model, batch, subsets, encode_once):
            metrics[s].update(logits.float(), batch.target)
    model.train(was_training)
    for metric in metrics.values():
        metric.sync()  # sum the states of every process's shard (a no-op in one process)
    return metrics


@torch.no_grad()
def predict_subsets(
    model: Any,
    batches: Iterable[Batch],
    subsets: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    encode_once: bool = True,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    compact: Compact | None = None,
) -> dict[int, Predictions]:
    """Per-sample predictions of every subset of ``subsets`` (bitmasks) on every batch.

    ``compact(logits, target)`` reduces each batch to ``([B, C], [B])`` (the task's ``compact``; identity for
    classification). ``gather`` concatenates the shards of a distributed evaluation along dimension 0 (every
    process must hold the same number of samples, as a padding ``DistributedSampler`` gives); samples
    repeated by the padding are dropped by index.
    """
    was_training = model.training
    model.eval()
    out: dict[int, list[torch.Tensor]] = {s: [] for s in subsets}
    targets: dict[int, list[torch.Tensor]] = {s: [] for s in subsets}
    indices = []
    for batch in batches:
        batch = batch.to(device)
        for s, logits in subset_outputs(model, batch, subsets, encode_once):
            kept, target = (logits.float(), batch.target) if compact is None else compact(logits.float(), batch.target)
            out[s].append(kept)
            targets[s].append(target)
        indices.append(batch.index)
    model.train(was_training)
    index = torch.cat(indices)
    logits_of = {s: torch.cat(v) for s, v in out.items()}
    target_of = {s: torch.cat(v) for s, v in targets.items()}
    if gather is not None:
        index = gather(index)
        logits_of = {s: gather(v) for s, v in logits_of.items()}
        target_of = {s: gather(v) for s, v in target_of.items()}
    order = _unique_order(index)
    return {
        s: Predictions(v[order].cpu(), target_of[s][order].cpu(), index[order].cpu()) for s, v in logits_of.items()
    }


def _unique_order(index: torch.Tensor) -> torch.Tensor:
    """Positions that sort by dataset index and keep the first copy of each index."""
    sorted_index, order = torch.sort(index, stable=True)
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
