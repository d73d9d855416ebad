"""UCI Multiple Features: six views of 2000 handwritten digits, shipped with mmrobust."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import torch

from mmrobust.data.base import SPLITS, MultimodalDataset, Sample, check_modalities
from mmrobust.data.splits import stratified_split
from mmrobust.registry import ConfigError

VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")


@lru_cache(maxsize=1)
def load_views() -> dict[str, np.ndarray]:
    """The shipped arrays: one ``[2000, dim]`` float32 array per view and ``labels`` ``[2000]``."""
    with (
        resources.files("mmrobust.data.assets").joinpath("uci_mfeat.npz").open("rb") as f,
        np.load(f) as data,
    ):
        return {k: data[k] for k in data.files}


class UciMfeat(MultimodalDataset):
    """UCI Multiple Features with a fixed, seeded, stratified split.

    Every view is z-scored with the mean and standard deviation of the *train* split, so no statistic
    of the validation or test split leaks into training.

    Args:
        split: ``train``, ``val`` or ``test``.
        views: which views to use as modalities, in order (default all six).
        fractions: train/val/test fractions of each class.
        split_seed: seed of the split (fixed by default: every run sees the same split).
    """

    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def __init__(
        self,
        split: str = "train",
        views: list[str] | None = None,
        fractions: list[float] | None = None,
        split_seed: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        views = list(check_modalities(VIEWS if views is None else views, "dataset.views"))
        unknown = [v for v in views if v not in VIEWS]
        if unknown:
            raise ConfigError(f"dataset.views: unknown views {unknown}; valid views: {list(VIEWS)}")
        data = load_views()
        parts = stratified_split(data["labels"].tolist(), fractions or [0.6, 0.2, 0.2], split_seed)
        train_idx, rows = parts[0], parts[SPLITS.index(split)]
        self.modalities = tuple(views)
        self.shapes = {v: (data[v].shape[1],) for v in views}
        self.features: dict[str, torch.Tensor] = {}
        self.stats: dict[str, tuple[list[float], list[float]]] = {}  # view -> (mean, std) of the z-score
        for v in views:
            mean = data[v][train_idx].mean(axis=0)
            std = data[v][train_idx].std(axis=0) + 1e-6
            self.stats[v] = (mean.tolist(), std.tolist())
            self.features[v] = torch.from_numpy((data[v][rows] - mean) / std).float()
        self.labels = torch.from_numpy(data["labels"][rows]).long()
        self.rows = rows

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Sample:
        return Sample({v: self.features[v][index] for v in self.modalities}, int(self.labels[index]), index)

    def input_spec(self, modality: str) -> dict[str, Any] | None:
        """A raw feature vector (``.npy``, shape ``[dim]``) z-scored with the train statistics:
        ``(x − mean) / std`` per feature."""
        mean, std = self.stats[modality]
        return {"type": "npy", "shape": list(self.shapes[modality]), "mean": mean, "std": std}

    def targets(self) -> list[int]:
        return self.labels.tolist()
