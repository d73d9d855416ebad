"""The inputs of ``mmrobust predict``: rows of modality files, read into model inputs with the spec's readers.

Two sources:

- a manifest CSV: one column per modality (file paths, relative to the CSV's folder or absolute; an empty
  cell = that modality is missing for the row). Other columns (``id``, ``label``, ...) are carried to the
  output. A column of a deployed modality may be absent (every row then lacks it); a column that is not a
  modality but holds data-file paths is refused (a misspelled modality would otherwise be ignored silently).
- ``--input MODALITY=PATH`` pairs: one sample (paths relative to the working directory).

A modality whose spec has a reader (``ModelSpec.inputs[m].reader``) is read with it (resize, normalization:
exactly as in training); without one, the file must be a ``.npy`` array already in model-input space. A
file that is missing, unreadable, of another shape than the model input or non-finite makes that modality
absent for its row and is reported (``strict``: stop with the file name instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.manifest import SUFFIX_READER, read_csv
from mmrobust.data.readers import READERS, NpyReader, Reader, upgrade_config
from mmrobust.deploy.spec import ModelSpec
from mmrobust.registry import ConfigError

DATA_SUFFIXES = (*SUFFIX_READER, ".npz", ".tif", ".tiff", ".bmp", ".mp3", ".ogg")


@dataclass(frozen=True)
class InputRow:
    """One sample to predict: ``files[m]`` is the path of modality ``m`` (None: missing); ``carried`` are the
    other columns of its manifest row, copied to the output."""

    files: dict[str, Path | None]
    carried: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A file that could not be used: its row (0-based), modality, path and why."""

    row: int
    modality: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} {self.modality} {self.path} ({self.reason})"


def _looks_like_files(cells: Sequence[str]) -> str | None:
    """The first cell that names a data file (by suffix), or None."""
    return next((c for c in cells if c and Path(c).suffix.lower() in DATA_SUFFIXES), None)


def manifest_rows(path: str | Path, spec: ModelSpec) -> list[InputRow]:
    """The rows of a predict manifest (see the module docstring); layout errors are one line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"inputs {path}: no such file; expected a CSV with one column per modality")
    header, rows, _ = read_csv(path)
    used = [c for c in header if c in spec.deployed]
    for column in header:
        if column in spec.modalities or column in used:
            continue
        example = _looks_like_files([r[column] for r in rows])
        if example is not None:
            raise DatasetLayoutError(
                f"{path}: column {column!r} holds data files (e.g. {example!r}) but is not a modality of this "
                f"model; its modalities are {list(spec.deployed)} (rename the column, or remove it)"
            )
    if not used:
        raise DatasetLayoutError(
            f"{path}: no column names a modality of this model; expected columns among {list(spec.deployed)} "
            f"(found {header})"
        )
    carried = [c for c in header if c not in spec.modalities]
    out = []
    for r in rows:
        files: dict[str, Path | None] = {m: None for m in spec.deployed}
        for m in used:
            if r[m]:
                p = Path(r[m]).expanduser()
                files[m] = p if p.is_absolute() else path.parent / p
        out.append(InputRow(files, {c: r[c] for c in carried}))
    return out


def pair_rows(pairs: Mapping[str, str | Path], spec: ModelSpec) -> list[InputRow]:
    """One sample from ``{modality: path}`` (``--input MODALITY=PATH``)."""
    unknown = [m for m in pairs if m not in spec.deployed]
    if unknown:
        raise ConfigError(
            f"--input {unknown[0]}=...: {unknown[0]!r} is not a modality of this model; "
            f"its modalities are {list(spec.deployed)}"
        )
    if not pairs:
        raise ConfigError(f"--input: give at least one MODALITY=PATH (modalities: {list(spec.deployed)})")
    files: dict[str, Path | None] = {m: None for m in spec.deployed}
    files |= {m: Path(p).expanduser() for m, p in pairs.items()}
    return [InputRow(files)]


def build_readers(spec: ModelSpec) -> dict[str, Reader]:
    """The reader of every deployed modality: its spec's reader config, else a plain ``.npy`` reader."""
    readers: dict[str, Reader] = {}
    for m in spec.deployed:
        config = spec.inputs[m].reader
        if config is None:
            readers[m] = NpyReader()
        else:
            options = upgrade_config(config)  # a spec saved before the audio reader had `features`
            readers[m] = READERS.build(str(options.pop("type")), options, where=f"spec.inputs.{m}.reader")
    return readers


class InputReader:
    """Reads rows into ``(inputs, present)`` tensors for the model, collecting the unusable files.

    Shape: ``read(rows)`` -> inputs[m] ``[B, *spec.inputs[m].shape]`` (zeros where absent), present bool
    ``[B, M]`` over ``spec.modalities`` (never True for a modality that is not deployed).
    """

    def __init__(self, spec: ModelSpec, strict: bool = False) -> None:
        self.spec = spec
        self.strict = strict
        self.readers = build_readers(spec)
        self.problems: list[Problem] = []

    def _one(self, row: int, m: str, path: Path) -> torch.Tensor | None:
        expected = self.spec.inputs[m].shape
        try:
            x = self.readers[m](path)
        except FileNotFoundError as error:
            reason = f"missing: {error}"
        except Exception as error:  # a corrupt file may raise anything from its decoder
            reason = f"unreadable: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        else:
            if tuple(x.shape) != expected:
                reason = f"wrong shape {tuple(x.shape)}, the model takes {expected}"
                if self.spec.inputs[m].reader is None:
                    reason += " as a .npy array in model-input space (this dataset has no file reader)"
            elif not bool(torch.isfinite(x).all()):
                reason = f"non-finite: {int((~torch.isfinite(x)).sum())} NaN/Inf values"
            else:
                return x.float()
        problem = Problem(row, m, str(path), reason)
        if self.strict:
            raise DatasetLayoutError(f"cannot use {m} file {path} ({reason}) (strict: stop at the first such file)")
        self.problems.append(problem)
        return None

    def read(self, rows: Sequence[InputRow], first: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``first``: the index of ``rows[0]`` among all rows (for the problem lines)."""
        spec = self.spec
        inputs = {m: torch.zeros(len(rows), *spec.inputs[m].shape) for m in spec.modalities}
        present = torch.zeros(len(rows), len(spec.modalities), dtype=torch.bool)
        for i, row in enumerate(rows):
            for m, path in row.files.items():
                if path is None:
                    continue
                x = self._one(first + i, m, path)
                if x is not None:
                    inputs[m][i] = x
                    present[i, spec.modalities.index(m)] = True
        return inputs, present
