"""Bring-your-own data: a CSV manifest with one column per modality.

Layout::

    root/
      manifest.csv      # UTF-8 (a BOM is accepted); columns: <modality>..., label[, split]
      <any files the cells point to, relative to root (or absolute)>

An empty cell means that modality is missing for that sample, so incomplete training data works as is.
Without a split column, a seeded stratified split is made. Labels are either all integers (class indices
``0..max``) or all class names (sorted to give class indices); ``class_names`` holds the mapping. An empty
label, a mix of integers and names, names that differ only by case, or a single class stop with the lines.

Every file of the split is checked from its header when the dataset is built (missing, not that format,
wrong shape, over the memory caps ``max_array_bytes`` / ``max_image_pixels``); a file that fails then, or
later when read (for example non-finite values), marks that modality absent for that sample and is counted
once in ``unreadable`` (``strict=True``: stop with the file name instead).

Decoded inputs (the readers' outputs) are cached, ``cache: memory`` (default, ``cache_bytes`` per process),
``disk`` (``.npy`` files under ``cache_dir``) or ``none``; see ``mmrobust.data.cache``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset, Sample, check_modalities
from mmrobust.data.cache import DEFAULT_CACHE_BYTES, InputCache
from mmrobust.data.readers import (
    DEFAULT_MAX_ARRAY_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    READERS,
    Reader,
    check_reader_defaults,
    full_config,
)
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
INTEGER = re.compile(r"[+-]?\d+")


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
            without one (or without ``type``) gets the reader of its first file's suffix. None = ``{}``.
        reader_defaults: per reader type, the options under every modality's own ones, e.g.
            ``{audio: {n_mels: 40}}`` (``configs/dataset/manifest.yaml`` lists every key with its default).
        fractions, split_seed: used only when the manifest has no split column.
        strict: stop at the first missing/unreadable file instead of marking the modality absent.
        max_array_bytes: a ``.npy`` (or decoded audio) file declaring more bytes is refused unread.
        max_image_pixels: an image with more pixels is refused before it is decoded.
        cache: ``memory``, ``disk`` or ``none``: where decoded inputs are kept (``mmrobust.data.cache``).
        cache_bytes: memory budget of the cache per process (split among DataLoader workers).
        cache_dir: folder of the disk cache; None = ``~/.cache/mmrobust/inputs``.
    """

    worker_invariant = True  # load(i) depends on i only (no random draws): DataLoader workers cannot change results

    def __init__(
        self,
        root: str,
        modalities: list[str],
        split: str = "train",
        file: str = "manifest.csv",
        label_column: str = "label",
        split_column: str = "split",
        readers: dict[str, Any] | None = None,  # values checked by _reader (one line naming the modality)
        reader_defaults: dict[str, Any] | None = None,  # checked by check_reader_defaults
        fractions: list[float] | None = None,
        split_seed: int = 0,
        strict: bool = False,
        max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        cache: str = "memory",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        modalities = list(check_modalities(modalities))
        for key, value in (("max_array_bytes", max_array_bytes), ("max_image_pixels", max_image_pixels)):
            if value <= 0:
                raise ConfigError(f"dataset.{key}: expected an integer > 0, got {value}")
        stray = sorted(set(readers or {}) - set(modalities))
        if stray:
            raise ConfigError(f"dataset.readers: {stray} are not modalities {modalities}")
        defaults = check_reader_defaults(reader_defaults)
        self.cache = InputCache(cache, cache_bytes, cache_dir)
        self.split = split
        self.root = Path(root).expanduser()
        path = self.root / file
        if not path.is_file():
            raise DatasetLayoutError(
                f"manifest file {path} is missing; expected layout: {self.root}/{file} with columns "
                f"{[*modalities, label_column]} (+ optional {split_column!r}), one row per sample"
            )
        header, rows, lines = read_csv(path)
        absent = [c for c in [*modalities, label_column] if c not in header]
        if absent:
            raise DatasetLayoutError(f"{path}: missing columns {absent}; the file has columns {header}")
        if label_column in modalities:
            raise ConfigError(f"dataset.modalities: {label_column!r} is the label column, not a modality")
        self.modalities = tuple(modalities)
        self.class_names, label_ids = encode_labels([r[label_column] for r in rows], lines, f"{path}", label_column)
        self.num_classes = len(self.class_names)
        if split_column in header:
            unknown = sorted({r[split_column] for r in rows} - set(SPLITS))
            if unknown:
                raise DatasetLayoutError(
                    f"{path}: column {split_column!r} has values {unknown}; expected {list(SPLITS)}"
                )
            keep = [i for i, r in enumerate(rows) if r[split_column] == split]
            how = f"no row has {split_column}={split}"
        else:
            fractions = list(fractions or [0.7, 0.15, 0.15])
            if len(fractions) != len(SPLITS):
                raise ConfigError(f"dataset.fractions: expected 3 fractions (train, val, test), got {fractions}")
            parts = stratified_split(label_ids, fractions, split_seed)
            keep = parts[SPLITS.index(split)].tolist()
            how = f"dataset.fractions={fractions} of {len(rows)} rows leave none"
        if not keep:
            raise DatasetLayoutError(f"{path}: the {split} split is empty ({how}); every split needs samples")
        self.cells = [{m: rows[i][m] for m in modalities} for i in keep]
        self.labels = [label_ids[i] for i in keep]
        self.reader_configs: dict[str, dict[str, Any]] = {}
        self.readers = {m: self._reader(m, (readers or {}).get(m), defaults) for m in modalities}
        for reader in self.readers.values():
            reader.max_array_bytes, reader.max_image_pixels = max_array_bytes, max_image_pixels
        self.shapes = self._scan()

    def _reader(self, modality: str, config: Any, defaults: dict[str, dict[str, Any]]) -> Reader:
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"dataset.readers.{modality}: expected a mapping such as {{type: npy}}, got {config!r}")
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
        options = {**defaults.get(name, {}), **config}
        try:
            reader = READERS.build(name, options, where=f"dataset.readers.{modality}")
        except ConfigError as error:  # a bad value may come from reader_defaults: say where the options come from
            inherited = sorted(set(defaults.get(name, {})) - set(config))
            if not inherited:
                raise
            raise ConfigError(
                f"{error} (dataset.readers.{modality} takes {inherited} from dataset.reader_defaults.{name})"
            ) from error
        self.reader_configs[modality] = full_config(name, options)
        return reader

    def input_spec(self, modality: str) -> dict[str, Any] | None:
        """The complete reader config of ``modality``: its type (guessed from the suffix when not set) and every
        option (its own, else ``reader_defaults``, else the reader's default)."""
        return dict(self.reader_configs[modality])

    def _scan(self) -> dict[str, tuple[int, ...]]:
        """Probe every file of the split from its header (cheap): count the bad ones now, in the main
        process, and fix each modality's shape (the reader's, or the most common one among the files)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for m in self.modalities:
            reader = self.readers[m]
            probed: dict[str, tuple[int, ...]] = {}
            for i, cell in enumerate(self.cells):
                if not cell[m]:
                    continue
                p = self.path(i, m)
                try:
                    shape = reader.probe(p)
                except FileNotFoundError as error:
                    self.mark_unreadable(m, str(p), error, "missing")
                except Exception as error:  # any failure to parse a header: the file is unusable
                    self.mark_unreadable(m, str(p), error, "too large" if "max_" in str(error) else "unreadable")
                else:
                    if shape is not None:
                        probed[str(p)] = tuple(shape)
            if reader.shape is not None:
                expected: tuple[int, ...] | None = tuple(reader.shape)
            elif probed:
                expected = Counter(probed.values()).most_common(1)[0][0]
            else:
                expected = None
            for where, shape in probed.items():
                if shape != expected:
                    self.mark_unreadable(m, where, f"shape {shape}, expected {expected}", "wrong shape")
            if expected is None:
                expected = self._shape_from_a_read(m)
            if probed and all(s != expected for s in probed.values()):
                where, found = next(iter(probed.items()))
                raise ConfigError(
                    f"dataset.readers.{m}.shape: declared {expected}, but no {m} file of the {self.split} "
                    f"split has that shape (e.g. {where}: {found})"
                )
            shapes[m] = expected
        return shapes

    def _shape_from_a_read(self, modality: str) -> tuple[int, ...]:
        for i, cell in enumerate(self.cells):
            if cell[modality]:
                x, _ = self._read(i, modality, None)
                if x is not None:
                    return tuple(x.shape)
        reasons = Counter(r for m, r in self.unreadable_files.values() if m == modality)
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "every cell is empty"
        raise DatasetLayoutError(
            f"no readable {modality!r} file in the {self.split} split ({why}); cannot infer its shape "
            f"(set dataset.readers.{modality}.shape or size)"
        )

    def path(self, index: int, modality: str) -> Path:
        p = Path(self.cells[index][modality])
        return p if p.is_absolute() else self.root / p

    def _read(
        self, index: int, modality: str, expected: tuple[int, ...] | None
    ) -> tuple[torch.Tensor | None, tuple[str, str, str] | None]:
        """The tensor of one file, or ``(None, (modality, path, reason))`` when it is unusable."""
        path = str(self.path(index, modality))
        known = self.unreadable_files.get(path)
        if known is not None:
            return None, (modality, path, known[1])
        try:
            x = self.cache.read(self.readers[modality], Path(path))
        except FileNotFoundError as error:
            reason, detail = "missing", str(error)
        except Exception as error:  # a corrupt file may raise anything from its decoder
            reason, detail = ("too large" if "max_" in str(error) else "unreadable"), str(error) or repr(error)
        else:
            if expected is not None and tuple(x.shape) != expected:
                reason, detail = "wrong shape", f"shape {tuple(x.shape)}, expected {expected}"
            elif not bool(torch.isfinite(x).all()):
                reason, detail = "non-finite", f"{int((~torch.isfinite(x)).sum())} NaN/Inf values"
            else:
                return x, None
        self.mark_unreadable(modality, path, detail, reason)
        return None, (modality, path, reason)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Sample:
        inputs: dict[str, torch.Tensor | None] = {}
        problems = []
        for m in self.modalities:
            inputs[m] = None
            if self.cells[index][m]:
                inputs[m], problem = self._read(index, m, self.shapes[m])
                if problem is not None:
                    problems.append(problem)
        return Sample(inputs, self.labels[index], index, tuple(problems))

    def targets(self) -> list[Any]:
        return list(self.labels)

    def check(self) -> dict[str, dict[str, int]]:
        """Count, per modality, the samples with a readable file, an empty cell, and an unreadable file."""
        counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in self.modalities}
        for i, cell in enumerate(self.cells):
            for m in self.modalities:
                if not cell[m]:
                    counts[m]["empty"] += 1
                elif self._read(i, m, self.shapes[m])[0] is None:
                    counts[m]["unreadable"] += 1
                else:
                    counts[m]["present"] += 1
        return counts


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """The header, the rows (stripped cells) and each row's line number in the file.

    UTF-8 with or without a BOM; a non-UTF-8 file, a duplicate column name or a row with another number
    of fields than the header is one ``DatasetLayoutError`` line.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DatasetLayoutError(
            f"{path}: not UTF-8 text (line {line}, byte {error.start}: {error.reason}); save the manifest as UTF-8"
        ) from error
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader)]
    except StopIteration:
        raise DatasetLayoutError(f"{path}: the file is empty; expected a header row and one row per sample") from None
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise DatasetLayoutError(f"{path}: duplicate column names {duplicates}; every column name must be unique")
    rows, lines, ragged = [], [], []
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(header):
            ragged.append(reader.line_num)
            continue
        rows.append({c: f.strip() for c, f in zip(header, fields)})
        lines.append(reader.line_num)
    if ragged:
        raise DatasetLayoutError(
            f"{path}: lines {_lines(ragged)} do not have the {len(header)} fields of the header {header}"
        )
    if not rows:
        raise DatasetLayoutError(f"{path}: no rows")
    return header, rows, lines


def _lines(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return f"[{shown}{f', … +{len(numbers) - limit} more' if len(numbers) > limit else ''}]"


def encode_labels(
    raw: list[str], lines: list[int], where: str = "manifest", column: str = "label"
) -> tuple[tuple[str, ...], list[int]]:
    """Class names and per-row class indices.

    All integers: they are the class indices (classes ``0..max``). All names: sorted into indices. Empty
    cells, a mix of both, names equal up to case, negative integers or a single class raise one
    ``DatasetLayoutError`` line with the file ``lines``.
    """
    empty = [n for v, n in zip(raw, lines) if not v]
    if empty:
        raise DatasetLayoutError(f"{where}: empty {column!r} cell at lines {_lines(empty)}; every row needs a label")
    is_int = [bool(INTEGER.fullmatch(v)) for v in raw]
    if all(is_int):
        ids = [int(v) for v in raw]
        negative = [n for i, n in zip(ids, lines) if i < 0]
        if negative:
            raise DatasetLayoutError(f"{where}: negative {column!r} at lines {_lines(negative)}; expected >= 0")
        names: tuple[str, ...] = tuple(str(c) for c in range(max(ids) + 1))
    elif any(is_int):
        ints = [n for n, k in zip(lines, is_int) if k]
        others = [n for n, k in zip(lines, is_int) if not k]
        raise DatasetLayoutError(
            f"{where}: column {column!r} mixes integer labels (lines {_lines(ints)}) and class names "
            f"(lines {_lines(others)}); use one kind"
        )
    else:
        spellings: dict[str, set[str]] = {}
        for v in raw:
            spellings.setdefault(v.casefold(), set()).add(v)
        clash = next((sorted(s) for s in spellings.values() if len(s) > 1), None)
        if clash is not None:
            at = [n for v, n in zip(raw, lines) if v in clash]
            raise DatasetLayoutError(
                f"{where}: labels {clash} differ only by case (lines {_lines(at)}); use one spelling per class"
            )
        names = tuple(sorted(set(raw)))
        index = {name: i for i, name in enumerate(names)}
        ids = [index[v] for v in raw]
    if len(set(ids)) < 2:
        raise DatasetLayoutError(
            f"{where}: column {column!r} has a single class ({raw[0]!r}); classification needs at least 2"
        )
    return names, ids
