"""Collate samples into a Batch: zero-fill absent modalities and build the ``[B, M]`` mask.

Each modality is stacked in one call: ``torch.stack`` of every sample's tensor when all samples have it, else the
present tensors stacked and copied into a zero tensor at their rows (``index_copy_``). This replaces a Python
assignment per sample and modality (``stacked[i] = x``), which cost about a quarter of a small model's training
step; the output is the same tensor, value for value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mmrobust.batch import Batch
from mmrobust.data.base import Sample


class Collate:
    """Picklable collate function bound to a dataset's modality order and shapes; ``collate_targets`` (the
    task's) stacks the targets (default: class indices).

    Shape: per modality ``m`` the samples' ``[*S_m]`` (or None) -> ``inputs[m]`` ``[B, *S_m]`` (float32, zeros where
    absent), ``present`` ``[B, M]``.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        shapes: dict[str, tuple[int, ...]],
        collate_targets: Callable[[Sequence[Any]], torch.Tensor] | None = None,
    ) -> None:
        self.modalities = tuple(modalities)
        self.shapes = dict(shapes)
        self.collate_targets = collate_targets

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        n = len(samples)
        present = torch.zeros(n, len(self.modalities), dtype=torch.bool)
        inputs: dict[str, torch.Tensor] = {}
        for j, name in enumerate(self.modalities):
            shape = self.shapes[name]
            found = [(i, x) for i, x in enumerate(sample.inputs.get(name) for sample in samples) if x is not None]
            rows, tensors = [i for i, _ in found], [x for _, x in found]
            for i, x in zip(rows, tensors):
                if tuple(x.shape) != shape:
                    raise ValueError(
                        f"sample {samples[i].index}: modality {name!r} has shape {tuple(x.shape)}, expected {shape}"
                    )
            if not rows:
                inputs[name] = torch.zeros(n, *shape)
                continue
            stacked = torch.stack(tensors).to(torch.float32)  # [P, *S]: the dtype of the zero-filled batch
            if len(rows) == n:
                inputs[name] = stacked
            else:
                index = torch.tensor(rows, dtype=torch.long)
                inputs[name] = torch.zeros(n, *shape).index_copy_(0, index, stacked)
                present[index, j] = True
                continue
            present[:, j] = True
        targets = [s.target for s in samples]
        if self.collate_targets is not None:
            target = self.collate_targets(targets)
        else:
            target = torch.tensor(targets, dtype=torch.long)
        index = torch.tensor([s.index for s in samples], dtype=torch.long)
        unreadable = tuple(entry for s in samples for entry in s.unreadable)
        return Batch(
            inputs=inputs,
            present=present,
            target=target,
            modalities=self.modalities,
            index=index,
            unreadable=unreadable,
        )
