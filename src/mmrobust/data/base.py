"""Dataset base class: a sample is a dict of per-modality tensors where ``None`` means missing."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IGNORE_INDEX = 255  # the void label of segmentation targets: no loss, not counted by any metric


@dataclass(frozen=True)
class Sample:
    """One sample. ``inputs[m] is None`` marks modality ``m`` as missing for this sample.

    ``target`` is what the dataset's task predicts: a class index (classification) or an int64 label map
    ``[H, W]`` with classes ``0..K-1`` and ``IGNORE_INDEX`` for void pixels (segmentation).
    """

    inputs: dict[str, torch.Tensor | None]
    target: int | torch.Tensor
    index: int
    # the files of this sample found unreadable while loading it: (modality, path, reason); travels from
    # DataLoader worker processes to the main process in ``Batch.unreadable`` (see ``record_unreadable``)
    unreadable: tuple[tuple[str, str, str], ...] = ()


class DatasetLayoutError(FileNotFoundError):
    """A dataset root does not match the expected on-disk layout."""


def check_modalities(names: Sequence[str], key: str = "dataset.modalities") -> tuple[str, ...]:
    """A non-empty list of distinct modality names, or one ``ConfigError`` line naming ``key``."""
    from mmrobust.registry import ConfigError

    names = [str(n) for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates or any(not n.strip() for n in names):
        why = f"duplicates {duplicates}" if duplicates else "an empty list" if not names else "an empty name"
        raise ConfigError(f"{key}: expected a non-empty list of distinct names, got {names} ({why})")
    return tuple(names)


class MultimodalDataset(Dataset[Sample]):
    """Base class of every dataset.

    Subclasses set ``modalities`` (fixed order), ``num_classes`` and ``shapes`` (the per-sample shape of
    each modality, used to zero-fill a missing one), and implement ``__len__`` and ``load``.
    """

    modalities: tuple[str, ...]
    num_classes: int
    shapes: dict[str, tuple[int, ...]]
    class_names: tuple[str, ...] = ()
    task: str = "classification"  # the name of the task in mmrobust.tasks (what a target is, loss, metrics)

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.unreadable: Counter[str] = Counter()  # modality -> number of unreadable FILES (not reads)
        self.unreadable_files: dict[str, tuple[str, str]] = {}  # path -> (modality, reason)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def mark_unreadable(self, modality: str, path: str, error: Exception | str, reason: str = "unreadable") -> None:
        """Record a modality file that is missing or unreadable (each file counted once, however many
        times it is read); in strict mode stop with its name.

        ``reason`` is a short category (``missing``, ``unreadable``, ``wrong shape``, ``non-finite``,
        ``too large``) used by ``unreadable_summary``; ``error`` says what exactly is wrong.
        """
        if self.strict:
            cause = error if isinstance(error, Exception) else None
            raise DatasetLayoutError(f"cannot read {modality} file {path} ({reason}): {error}") from cause
        if path in self.unreadable_files:
            return
        self.unreadable_files[path] = (modality, reason)
        if self.unreadable[modality] == 0:
            log.warning(
                "%s file %s is %s (%s); marking that modality absent for the sample (further %s files: counted)",
                modality,
                path,
                reason,
                error,
                modality,
            )
        self.unreadable[modality] += 1

    def record_unreadable(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Merge ``(modality, path, reason)`` entries found by DataLoader worker processes (a batch's
        ``Batch.unreadable``) into this main-process copy; files already counted are not counted again."""
        for modality, path, reason in entries:
            if path not in self.unreadable_files:
                self.unreadable_files[path] = (modality, reason)
                self.unreadable[modality] += 1

    def unreadable_summary(self) -> dict[str, dict[str, int]]:
        """``{modality: {reason: number of files}}`` of the unreadable files seen so far."""
        summary: dict[str, dict[str, int]] = {}
        for modality, reason in self.unreadable_files.values():
            per = summary.setdefault(modality, {})
            per[reason] = per.get(reason, 0) + 1
        return summary

    def input_spec(self, modality: str) -> dict[str, Any] | None:
        """How a file becomes this modality's model input, for deployment (``mmrobust predict``): a reader
        config of ``mmrobust.data.readers`` (``{type: image, size: [H, W], mean: [...], std: [...]}``), saved in
        every checkpoint's ``ModelSpec``. None (the default): the dataset has no file reader, and predict takes
        ``.npy`` arrays already in model-input space."""
        return None

    def targets(self) -> list[Any]:
        """All targets of the split (subclasses override when cheaper than loading every sample)."""
        return [self.load(i).target for i in range(len(self))]
