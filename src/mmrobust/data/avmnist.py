"""AV-MNIST (image + spoken digit, 10 classes) in MultiBench's npy layout.

Layout::

    root/image/train_data.npy    [60000, 784] MNIST digits (or [N, 28, 28]); 0..255
    root/image/test_data.npy     [10000, 784]
    root/audio/train_data.npy    [60000, 112, 112] spectrograms of spoken digits (or [N, 12544]); 0..255
    root/audio/test_data.npy     [10000, 112, 112]
    root/train_labels.npy        [60000] digits 0..9
    root/test_labels.npy         [10000]

Each modality is divided by 255 as in MultiBench's loader: image ``[1, 28, 28]``, audio ``[1, 112, 112]``.
Splits as MultiBench: ``val`` is the last ``val_size`` (5000) samples of the train arrays, ``train`` the
others, ``test`` the test arrays. The arrays are memory-mapped (``np.load(mmap_mode="r")``), opened lazily in
each process, so a sample reads only its own rows. A missing modality array marks that modality absent for
every sample (strict: stop); a missing label array, or arrays whose lengths differ, is a layout error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.registry import ConfigError

SHAPES = {"image": (1, 28, 28), "audio": (1, 112, 112)}
LAYOUT = "root/{image,audio}/{train,test}_data.npy and root/{train,test}_labels.npy (MultiBench's AV-MNIST)"


def header_shape(path: Path) -> tuple[int, ...]:
    """The array shape from a ``.npy`` header (nothing else is read)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return tuple(arr.shape)


class AvMnist(MultimodalDataset):
    """AV-MNIST (see the module docstring).

    Args:
        root: the folder holding ``image/``, ``audio/`` and the label arrays.
        split: ``train``, ``val`` (the last ``val_size`` of train) or ``test``.
        val_size: size of the validation split (MultiBench: 5000).
        max_samples: keep only the first N samples of the split.
        strict: stop when a modality array is missing or unreadable instead of marking it absent.
    """

    modalities = ("image", "audio")
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def __init__(
        self,
        root: str,
        split: str = "train",
        val_size: int = 5000,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"dataset.max_samples: expected a positive integer or null, got {max_samples}")
        self.shapes = dict(SHAPES)
        self.root = Path(root).expanduser()
        published = "test" if split == "test" else "train"
        labels_path = self.root / f"{published}_labels.npy"
        if not labels_path.is_file():
            raise DatasetLayoutError(f"label file {labels_path} is missing; expected layout: {LAYOUT}")
        labels = np.load(labels_path, allow_pickle=False).astype(np.int64).reshape(-1)
        n = len(labels)
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DatasetLayoutError(f"label file {labels_path} has values outside 0..9")
        self.paths = {m: self.root / m / f"{published}_data.npy" for m in self.modalities}
        if not any(p.is_file() for p in self.paths.values()):
            raise DatasetLayoutError(
                f"neither {self.paths['image']} nor {self.paths['audio']} exists; expected layout: {LAYOUT}"
            )
        self.available: dict[str, bool] = {}
        for m, path in self.paths.items():
            self.available[m] = self._check_array(m, path, n)
        if split == "test":
            rows = np.arange(n)
        else:
            if not 0 < val_size < n:
                raise ConfigError(f"dataset.val_size: expected 0 < val_size < {n} (train samples), got {val_size}")
            rows = np.arange(n - val_size, n) if split == "val" else np.arange(n - val_size)
        self.rows = rows[:max_samples] if max_samples else rows
        self.labels = labels[self.rows]
        self.split = split
        self._arrays: dict[str, np.ndarray] | None = None

    def _check_array(self, modality: str, path: Path, n: int) -> bool:
        """True when the array exists and has ``n`` rows of the right size; a missing or unreadable one is
        marked unreadable (modality absent); a wrong length or row size is a layout error."""
        if not path.is_file():
            self.mark_unreadable(modality, str(path), "no such file", "missing")
            return False
        try:
            shape = header_shape(path)
        except (OSError, ValueError) as error:
            self.mark_unreadable(modality, str(path), error)
            return False
        if not shape or shape[0] != n or math.prod(shape[1:]) != math.prod(SHAPES[modality]):
            raise DatasetLayoutError(
                f"{path} has shape {shape}; expected [{n}, {', '.join(map(str, SHAPES[modality][1:]))}] "
                f"({n} samples like the labels)"
            )
        return True

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in each worker process
        return {**self.__dict__, "_arrays": None}

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {
                m: np.load(p, mmap_mode="r", allow_pickle=False) for m, p in self.paths.items() if self.available[m]
            }
        return self._arrays

    def __len__(self) -> int:
        return len(self.rows)

    def targets(self) -> list[Any]:
        return self.labels.tolist()

    def load(self, index: int) -> Sample:
        row = int(self.rows[index])
        arrays = self.arrays()
        inputs: dict[str, torch.Tensor | None] = {}
        for m in self.modalities:
            if m in arrays:
                x = np.asarray(arrays[m][row], dtype=np.float32).reshape(SHAPES[m]) / 255.0
                inputs[m] = torch.from_numpy(x)
            else:
                inputs[m] = None
        return Sample(inputs, int(self.labels[index]), index)

    def check(self) -> dict[str, dict[str, int]]:
        """Per modality: every sample present when its array is readable, else every sample unreadable."""
        n = len(self)
        return {
            m: {"present": n if self.available[m] else 0, "empty": 0, "unreadable": 0 if self.available[m] else n}
            for m in self.modalities
        }

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """Each expected array and its shape from the header, or MISSING."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows = []
        for rel in ("image/train_data.npy", "audio/train_data.npy", "train_labels.npy",
                    "image/test_data.npy", "audio/test_data.npy", "test_labels.npy"):  # fmt: skip
            path = root / rel
            try:
                rows.append((rel, f"shape {list(header_shape(path))}" if path.is_file() else "MISSING"))
            except (OSError, ValueError) as error:
                rows.append((rel, f"UNREADABLE ({error})"))
        return rows
