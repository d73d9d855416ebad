"""Bring-your-own data: a CSV manifest with one column per modality.

Layout::

    root/
      manifest.csv      # columns: <modality>..., label[, split]
      <any files the cells point to, relative to root (or absolute)>

An empty cell means that modality is missing for that sample, so incomplete training data works as is.
Without a split column, a seeded stratified split is made. Labels may be integers or class names
(names are sorted to give class indices).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.readers import READERS, Reader
from mmrobust.data.splits import stratified_split
from mmrobust.registry import ConfigError

SUFFIX_READER = {
    ".npy": "npy",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".wav": "audio",
    ".flac": "audio",
}


class Manifest(MultimodalDataset):
    """A dataset described by a CSV manifest (see the module docstring).

    Args:
        root: folder of the manifest; relative paths in cells are resolved against it.
        split: ``train``, ``val`` or ``test``.
        modalities: the modality columns, in order.
        file: manifest file name inside ``root``.
        label_column: name of the label column.
        split_column: name of the optional split column (values train/val/test).
        readers: per-modality reader config, e.g. ``{rgb: {type: image, size: [64, 64]}}``; a modality
            without one gets the reader of its first file's suffix with default options.
        fractions, split_seed: used only when the manifest has no split column.
        strict: stop at the first missing/unreadable file instead of marking the modality absent.
    """

    def __init__(
        self,
        root: str,
        modalities: list[str],
        split: str = "train",
        file: str = "manifest.csv",
        label_column: str = "label",
        split_column: str = "split",
        readers: dict[str, dict[str, Any]] | None = None,
        fractions: list[float] | None = None,
        split_seed: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        self.root = Path(root).expanduser()
        path = self.root / file
        if not path.is_file():
            raise DatasetLayoutError(
                f"manifest file {path} is missing; expected layout: {self.root}/{file} with columns "
                f"{[*modalities, label_column]} (+ optional {split_column!r}), one row per sample"
            )
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = list(reader)
        absent = [c for c in [*modalities, label_column] if c not in columns]
        if absent:
            raise DatasetLayoutError(f"{path}: missing columns {absent}; the file has columns {columns}")
        if not rows:
            raise DatasetLayoutError(f"{path}: no rows")
        self.modalities = tuple(modalities)
        raw_labels = [r[label_column].strip() for r in rows]
        self.class_names, label_ids = _encode_labels(raw_labels)
        self.num_classes = len(self.class_names)
        if split_column in columns:
            keep = [i for i, r in enumerate(rows) if r[split_column].strip() == split]
            unknown = sorted({r[split_column].strip() for r in rows} - set(SPLITS))
            if unknown:
                raise DatasetLayoutError(
                    f"{path}: column {split_column!r} has values {unknown}; expected {list(SPLITS)}"
                )
        else:
            parts = stratified_split(label_ids, fractions or [0.7, 0.15, 0.15], split_seed)
            keep = parts[SPLITS.index(split)].tolist()
        self.cells = [{m: rows[i][m].strip() for m in modalities} for i in keep]
        self.labels = [label_ids[i] for i in keep]
        self.readers = {m: self._reader(m, (readers or {}).get(m)) for m in modalities}
        self.shapes = {m: self._infer_shape(m) for m in modalities}

    def _reader(self, modality: str, config: dict[str, Any] | None) -> Reader:
        config = dict(config or {})
        name = config.pop("type", None)
        if name is None:
            first = next((c[modality] for c in self.cells if c[modality]), "")
            name = SUFFIX_READER.get(Path(first).suffix.lower())
            if name is None:
                raise ConfigError(
                    f"dataset.readers.{modality}.type: cannot guess a reader from {first!r}; "
                    f"set one of {READERS.names()}"
                )
        return READERS.build(name, config, where=f"dataset.readers.{modality}")

    def _infer_shape(self, modality: str) -> tuple[int, ...]:
        reader = self.readers[modality]
        if reader.shape is not None:
            return tuple(reader.shape)
        for i, cell in enumerate(self.cells):
            if cell[modality]:
                x = self._read(i, modality)
                if x is not None:
                    return tuple(x.shape)
        raise DatasetLayoutError(f"no readable {modality!r} file in this split; cannot infer its shape")

    def path(self, index: int, modality: str) -> Path:
        p = Path(self.cells[index][modality])
        return p if p.is_absolute() else self.root / p

    def _read(self, index: int, modality: str) -> Any:
        path = self.path(index, modality)
        try:
            x = self.readers[modality](path)
        except (OSError, ValueError, RuntimeError, EOFError) as error:  # EOFError: np.load of an empty file
            self.mark_unreadable(modality, str(path), error)
            return None
        expected = getattr(self, "shapes", {}).get(modality)
        if expected is not None and tuple(x.shape) != expected:
            raise ValueError(f"{path}: {modality} has shape {tuple(x.shape)}, expected {expected}")
        return x

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Sample:
        inputs = {m: (self._read(index, m) if self.cells[index][m] else None) for m in self.modalities}
        return Sample(inputs, self.labels[index], index)

    def targets(self) -> list[int]:
        return list(self.labels)

    def check(self) -> dict[str, dict[str, int]]:
        """Count, per modality, the samples with a readable file, an empty cell, and an unreadable file."""
        counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in self.modalities}
        for i, cell in enumerate(self.cells):
            for m in self.modalities:
                if not cell[m]:
                    counts[m]["empty"] += 1
                elif self._read(i, m) is None:
                    counts[m]["unreadable"] += 1
                else:
                    counts[m]["present"] += 1
        return counts


def _encode_labels(raw: list[str]) -> tuple[tuple[str, ...], list[int]]:
    """Integer labels stay as they are (classes 0..max); names are sorted into class indices."""
    if all(v.lstrip("-").isdigit() for v in raw):
        ids = [int(v) for v in raw]
        if min(ids) < 0:
            raise DatasetLayoutError("integer labels must be >= 0")
        return tuple(str(c) for c in range(max(ids) + 1)), ids
    names = tuple(sorted(set(raw)))
    return names, [names.index(v) for v in raw]
