"""Collate samples into a Batch: zero-fill absent modalities and build the ``[B, M]`` mask."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mmrobust.batch import Batch
from mmrobust.data.base import Sample


class Collate:
    """Picklable collate function bound to a dataset's modality order and shapes; ``collate_targets`` (the
    task's) stacks the targets (default: class indices)."""

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
        present = torch.zeros(len(samples), len(self.modalities), dtype=torch.bool)
        inputs: dict[str, torch.Tensor] = {}
        for j, name in enumerate(self.modalities):
            shape = self.shapes[name]
            stacked = torch.zeros(len(samples), *shape)
            for i, sample in enumerate(samples):
                x = sample.inputs.get(name)
                if x is None:
                    continue
                if tuple(x.shape) != shape:
                    raise ValueError(
                        f"sample {sample.index}: modality {name!r} has shape {tuple(x.shape)}, expected {shape}"
                    )
                stacked[i] = x
                present[i, j] = True
            inputs[name] = stacked
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
