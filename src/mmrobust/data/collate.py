"""Collate samples into a Batch: zero-fill absent modalities and build the ``[B, M]`` mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmrobust.batch import Batch
from mmrobust.data.base import Sample


class Collate:
    """Picklable collate function bound to a dataset's modality order and shapes."""

    def __init__(self, modalities: Sequence[str], shapes: dict[str, tuple[int, ...]]) -> None:
        self.modalities = tuple(modalities)
        self.shapes = dict(shapes)

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
        target = torch.tensor([s.target for s in samples], dtype=torch.long)
        index = torch.tensor([s.index for s in samples], dtype=torch.long)
        return Batch(inputs=inputs, present=present, target=target, modalities=self.modalities, index=index)
