"""Dataset base class: a sample is a dict of per-modality tensors where ``None`` means missing."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One sample. ``inputs[m] is None`` marks modality ``m`` as missing for this sample."""

    inputs: dict[str, torch.Tensor | None]
    target: int
    index: int


class DatasetLayoutError(FileNotFoundError):
    """A dataset root does not match the expected on-disk layout."""


class MultimodalDataset(Dataset[Sample]):
    """Base class of every dataset.

    Subclasses set ``modalities`` (fixed order), ``num_classes`` and ``shapes`` (the per-sample shape of
    each modality, used to zero-fill a missing one), and implement ``__len__`` and ``load``.
    """

    modalities: tuple[str, ...]
    num_classes: int
    shapes: dict[str, tuple[int, ...]]
    class_names: tuple[str, ...] = ()

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.unreadable: Counter[str] = Counter()

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def mark_unreadable(self, modality: str, path: str, error: Exception) -> None:
        """Count a modality file that is missing or unreadable; in strict mode stop with its name."""
        if self.strict:
            raise DatasetLayoutError(f"cannot read {modality} file {path}: {error}") from error
        if self.unreadable[modality] == 0:
            log.warning(
                "%s file %s is unreadable (%s); marking that modality absent for the sample",
                modality,
                path,
                error,
            )
        self.unreadable[modality] += 1

    def targets(self) -> list[int]:
        """All targets of the split (subclasses override when cheaper than loading every sample)."""
        return [self.load(i).target for i in range(len(self))]
