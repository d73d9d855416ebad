"""Every-subset evaluation: encode once per batch, then fuse + neck + head for each subset.

Because ``fuse`` zeroes the features of absent modalities, encoding the batch once and fusing with the
mask ANDed with each subset gives exactly the logits of running the model on each restricted batch, at
a fraction of the cost (the encoders run once instead of once per subset that contains them). Models
that fuse inside their encoders (``fusion_inside_encoders = True``, e.g. ESANet, whose ``encode`` is lazy and
whose ``fuse`` runs both encoder streams) get one forward per subset: their cost grows with the number of
subsets.

Late-fusion models go one step further (``batched=True``, the default): fuse + neck + head run for many
subsets in ONE call. The features ``[B, ...]`` are repeated ``k`` times along the batch (``[k·B, ...]``,
subset-major) and the masks stacked, ``present_{(i, b)} = present_b ∧ subset_i`` (``[k·B, M]``); the output
is split back into ``k`` blocks of ``B`` rows. A model with ``fuse_subsets(features, present, subset_masks)``
(``MultimodalModel``) does the stacking itself, and its fusion may share work across subsets (``concat_mlp``
projects each modality once, not each subset's concatenation). This equals the per-subset loop whenever every
sample's output depends on that sample only: the model and all its modules in eval mode (dropout off, BatchNorm
on running statistics), no BatchNorm without running statistics, and no forward hooks (which would see one
stacked call instead of one call per subset). Otherwise the loop runs. A model class may also opt out with
``subset_batching = False``. Memory stays bounded: ``k`` is chosen so that ``k·B·max(F, L) ≤ max_elements``,
with ``F`` the feature elements and ``L`` the output elements per sample (``L`` is learnt from a first
one-subset call per model and feature shape, so a dense-prediction head cannot blow the budget).

``evaluate_subsets`` streams: it updates one task metric per subset batch by batch and keeps no logits, so
its memory does not grow with the split. ``predict_subsets`` keeps per-sample predictions for method hooks,
compacted by the task (``[N, C]`` per subset, whatever the task).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

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


MAX_STACKED_ELEMENTS = 1 << 24
"""Default budget of one batched fuse + neck + head call: stacked feature (or output) elements, 64 MiB in fp32."""

# output elements per sample of fuse + neck + head, per model and per feature signature (learnt on first use)
_OUTPUT_SIZE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], int]] = weakref.WeakKeyDictionary()


def subset_outputs(
    model: Any,
    batch: Batch,
    subsets: Sequence[int],
    encode_once: bool = True,
    *,
    batched: bool = True,
    max_elements: int = MAX_STACKED_ELEMENTS,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(subset, logits)`` of every subset on one batch, in the order of ``subsets`` (the model in its
    current mode; floating inputs cast to the model's dtype, a no-op unless ``trainer.precision`` converted it).

    ``encode_once=False``: one full forward per subset. ``encode_once=True``: encode once, then fuse + neck +
    head for several subsets per call when :func:`can_batch_subsets` allows it and ``batched`` (at most
    ``max_elements`` stacked elements per call, module docstring), else once per subset.
    """
    batch = cast_to_model(batch, model)
    once = encode_once and not getattr(model, "fusion_inside_encoders", False)
    if not once:
        for s in subsets:
            yield s, model(batch.restrict(s))
        return
    features = model.encode(batch)
    if batched and len(subsets) > 1 and can_batch_subsets(model, features, len(batch)):
        yield from _batched_outputs(model, features, batch.present, subsets, max_elements)
        return
    for s in subsets:
        present = batch.present & subset_mask(s, len(batch.modalities)).to(batch.present.device)
        yield s, model.head(model.neck(model.fuse(features, present)))


def can_batch_subsets(model: Any, features: Mapping[str, Any], batch_size: int) -> bool:
    """Whether fuse + neck + head of several subsets may run as one stacked call (module docstring): a
    late-fusion model with ``encode``/``fuse``/``neck``/``head``, tensor features ``[B, ...]``, every module
    in eval mode, no BatchNorm without running statistics, no forward hooks, no ``subset_batching = False``."""
    if getattr(model, "fusion_inside_encoders", False) or not getattr(model, "subset_batching", True):
        return False
    if not all(callable(getattr(model, stage, None)) for stage in ("fuse", "neck", "head")):
        return False
    if not isinstance(model, nn.Module):
        return False
    if not all(isinstance(f, torch.Tensor) and f.dim() >= 1 and len(f) == batch_size for f in features.values()):
        return False
    for module in model.modules():
        if module.training or module._forward_hooks or module._forward_pre_hooks:
            return False
        if isinstance(module, _BatchNorm) and module.running_mean is None:  # normalizes with batch statistics
            return False
    return True


def subsets_per_call(
    features: Mapping[str, torch.Tensor], batch_size: int, output_per_sample: int, max_elements: int
) -> int:
    """``k = max(1, ⌊max_elements / (B · max(F, L))⌋)``: subsets per stacked call, with ``F`` the feature
    elements and ``L`` the output elements per sample."""
    per_sample = max(sum(f[:1].numel() for f in features.values()), output_per_sample, 1)
    return max(1, max_elements // (max(batch_size, 1) * per_sample))


def _batched_outputs(
    model: Any,
    features: Mapping[str, torch.Tensor],
    present: torch.Tensor,
    subsets: Sequence[int],
    max_elements: int,
) -> Iterator[tuple[int, torch.Tensor]]:
    """fuse + neck + head on chunks of ``k`` subsets at once (``model.fuse_subsets`` where the model has it, else
    ``fuse`` on the features repeated ``k`` times and the masks stacked).

    Shape: features[m] ``[B, *F_m]``, present ``[B, M]`` -> per subset ``[B, *out]`` (views of the chunk's output).
    """
    b, num_modalities = present.shape
    masks = torch.stack([subset_mask(s, num_modalities) for s in subsets]).to(present.device)  # [S, M]
    signature = (num_modalities, *sorted((m, tuple(f.shape[1:]), f.dtype) for m, f in features.items()))
    sizes = _OUTPUT_SIZE.setdefault(model, {})
    start = 0
    while start < len(subsets):
        known = sizes.get(signature)
        k = 1 if known is None else subsets_per_call(features, b, known, max_elements)  # a first call learns L
        chunk = subsets[start : start + k]
        n = len(chunk)
        if callable(getattr(model, "fuse_subsets", None)):  # e.g. concat_mlp shares its first layer across subsets
            fused = model.fuse_subsets(features, present, masks[start : start + n])  # [n·B, D]
        else:
            stacked = {m: f.repeat(n, *([1] * (f.dim() - 1))) if n > 1 else f for m, f in features.items()}
            mask = (present.unsqueeze(0) & masks[start : start + n].unsqueeze(1)).reshape(n * b, num_modalities)
            fused = model.fuse(stacked, mask)  # features [n·B, ...] -> [n·B, D]
        out = model.head(model.neck(fused))  # [n·B, *out]
        if known is None and b > 0:
            sizes[signature] = out[:1].numel()
        for i, s in enumerate(chunk):
            yield s, out[i * b : (i + 1) * b]
        start += n


@torch.no_grad()
def evaluate_subsets(
    model: Any,
    batches: Iterable[Batch],
    subsets: Sequence[int],
    task: Task,
    *,
    device: torch.device | str = "cpu",
    encode_once: bool = True,
    batched: bool = True,
    on_unreadable: Callable[[tuple[tuple[str, str, str], ...]], None] | None = None,
) -> dict[int, SubsetMetric]:
    """One streaming task metric per subset over every batch (the model in eval mode).

    ``on_unreadable`` receives each batch's unreadable-file entries (``dataset.record_unreadable``). In a
    distributed run each process passes its shard; the metrics' states are summed across processes
    when they are read (torchmetrics syncs them), so shards must not overlap. ``encode_once`` and ``batched``:
    see :func:`subset_outputs`.
    """
    was_training = model.training
    model.eval()
    metrics = {s: task.new_metric().to(device) for s in subsets}
    for batch in batches:
        if on_unreadable is not None:
            on_unreadable(batch.unreadable)
        batch = batch.to(device)
        for s, logits in subset_outputs(model, batch, subsets, encode_once, batched=batched):
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
    batched: bool = True,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    compact: Compact | None = None,
) -> dict[int, Predictions]:
    """Per-sample predictions of every subset of ``subsets`` (bitmasks) on every batch.

    ``compact(logits, target)`` reduces each batch to ``([B, C], [B])`` (the task's ``compact``; identity for
    classification). ``gather`` concatenates the shards of a distributed evaluation along dimension 0 (every
    process must hold the same number of samples, as a padding ``DistributedSampler`` gives); samples
    repeated by the padding are dropped by index. ``encode_once`` and ``batched``: see :func:`subset_outputs`.
    """
    was_training = model.training
    model.eval()
    out: dict[int, list[torch.Tensor]] = {s: [] for s in subsets}
    targets: dict[int, list[torch.Tensor]] = {s: [] for s in subsets}
    indices = []
    for batch in batches:
        batch = batch.to(device)
        for s, logits in subset_outputs(model, batch, subsets, encode_once, batched=batched):
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
