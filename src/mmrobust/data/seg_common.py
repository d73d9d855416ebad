"""What the RGB-D segmentation datasets share: file readers, label mapping, resizing and one base class.

A sample is read at its native resolution, checked (the label map must have the size of its images and only
known values), resized to the configured ``size`` (RGB bilinear; depth and labels by nearest neighbour, as
ESANet does, because a depth of 0 means "no measurement" and must not be blended into its neighbours),
augmented in the train split (``PairedAugment``: one geometric transform for rgb, depth and label, jitter on
RGB only) and normalized:

    rgb   ← (x / 255 − mean_ImageNet) / std_ImageNet                       (per channel)
    depth ← (d − depth_mean) / depth_std  where d > 0,   0 where d = 0     (invalid pixels stay 0)

Labels become int64 maps with classes ``0..K−1`` and ``IGNORE_INDEX`` (255) for void and padding.
A missing or unreadable rgb/depth file marks that modality absent for the sample (strict mode: stop; when
both are unreadable the sample keeps its label and has no input, and ``check()`` counts both); a
missing label, a label map of the wrong size, unknown label values, or a depth PNG that is not 16-bit stop
with one line naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmrobust.data.base import IGNORE_INDEX, SPLITS, DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.transforms import PairedAugment
from mmrobust.registry import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": how Pillow < 10 opened 16-bit greyscale PNGs


@dataclass(frozen=True)
class SegItem:
    """The files of one sample."""

    name: str
    rgb: Path
    depth: Path
    label: Path


# --------------------------------------------------------------------------------------------- readers
def read_rgb(path: Path) -> torch.Tensor:
    """An 8-bit colour image as floats in [0, 1].

    Shape: ``[3, H, W]``.
    """
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_depth_png(path: Path) -> torch.Tensor:
    """A 16-bit greyscale PNG as raw float values (0 = no measurement); any other PNG is refused.

    Shape: ``[1, H, W]``.
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in DEPTH16_MODES:
            raise DatasetLayoutError(
                f"depth file {path} is not a 16-bit greyscale PNG (Pillow mode {img.mode!r}); "
                "depth must be stored as 16-bit PNG"
            )
        arr = np.asarray(img).astype(np.float32)
    return torch.from_numpy(arr)[None]


def read_label_file(path: Path) -> np.ndarray:
    """A label map from a single-channel PNG (8/16-bit or palette indices) or a ``.npy`` array.

    Shape: ``[H, W]`` (int64, raw values).
    """
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        with Image.open(path) as img:
            if img.mode not in ("L", "P", *DEPTH16_MODES):
                raise DatasetLayoutError(
                    f"label file {path} is not a single-channel label map (Pillow mode {img.mode!r})"
                )
            arr = np.asarray(img)
    if arr.ndim != 2:
        raise DatasetLayoutError(f"label file {path} has shape {arr.shape}; expected a 2-D [H, W] label map")
    return arr.astype(np.int64)


def label_lookup(mapping: Mapping[int, int], size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A lookup table raw value -> class id (``IGNORE_INDEX`` for void) and a mask of the known raw values."""
    lut = np.full(size, IGNORE_INDEX, dtype=np.int64)
    known = np.zeros(size, dtype=bool)
    for raw, cls in mapping.items():
        lut[raw] = cls
        known[raw] = True
    return lut, known


def map_labels(raw: np.ndarray, lut: np.ndarray, known: np.ndarray, path: Path, expected: str) -> torch.Tensor:
    """Map raw label values to class ids; values that are not known stop with the file and the values.

    Shape: ``[H, W] -> [H, W]`` (int64).
    """
    values = np.unique(raw)
    bad = [int(v) for v in values if v < 0 or v >= len(known) or not known[v]]
    if bad:
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DatasetLayoutError(f"label file {path} has values {shown} outside the classes; expected {expected}")
    return torch.from_numpy(lut[raw])


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a ``[C, H, W]`` image (``bilinear`` or ``nearest``) or a ``[H, W]`` label map (``nearest``).

    Nearest uses ``nearest-exact`` (pixel centres, like PIL and OpenCV), never blending values.
    """
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "bilinear":
        return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    if x.dim() == 2:
        return F.interpolate(x[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(x.dtype)
    return F.interpolate(x[None], size=size, mode="nearest-exact")[0]


def carve_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, val) with ``round(n · fraction)`` (at least 1) validation samples.

    Seeded permutation; both parts are sorted. Used where the published protocol has no validation split.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction: expected a fraction in (0, 1), got {fraction}")
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise DatasetLayoutError(f"cannot carve a validation split of {n_val} from {n} training samples")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def count_files(paths: Sequence[Path], root: Path) -> str:
    """``"present/total present"`` and the first missing path (relative to ``root``), for ``layout_status``."""
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return f"{len(paths)}/{len(paths)} present"
    first = missing[0].relative_to(root) if missing[0].is_relative_to(root) else missing[0]
    return f"{len(paths) - len(missing)}/{len(paths)} present; missing e.g. {first}"


# ------------------------------------------------------------------------------------------ base class
class RGBDSegmentation(MultimodalDataset):
    """Base class of the RGB-D segmentation datasets (see the module docstring).

    Subclasses set ``num_classes``, ``class_names``, ``label_lut``/``label_known``/``label_expected``
    (raw label value -> class id) and ``layout`` (a short description for errors), list the split's
    ``SegItem``s, and call ``setup``. They may override ``read_depth`` (raw units, 0 = invalid).
    """

    task = "segmentation"
    modalities = ("rgb", "depth")
    layout = ""
    label_lut: np.ndarray
    label_known: np.ndarray
    label_expected = ""

    def setup(
        self,
        items: Sequence[SegItem],
        *,
        split: str,
        size: Sequence[int],
        augment: Mapping[str, Any] | None,
        depth_mean: float,
        depth_std: float,
        max_samples: int | None,
    ) -> None:
        """Store the items (truncated to ``max_samples``), check every label file exists, build the augmentation."""
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        if len(size) != 2 or min(int(s) for s in size) < 1:
            raise ConfigError(f"dataset.size: expected [H, W] with positive integers, got {list(size)}")
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"dataset.max_samples: expected a positive integer or null, got {max_samples}")
        if depth_std <= 0:
            raise ConfigError(f"dataset.depth_std: must be positive, got {depth_std}")
        self.split = split
        self.size = (int(size[0]), int(size[1]))
        self.items = list(items)[:max_samples] if max_samples else list(items)
        if not self.items:
            raise DatasetLayoutError(f"the {split} split of {type(self).__name__} has no samples; {self.layout}")
        for item in self.items:
            if not item.label.is_file():
                raise DatasetLayoutError(f"label file {item.label} is missing; expected layout: {self.layout}")
        self.shapes = {"rgb": (3, *self.size), "depth": (1, *self.size)}
        self.depth_mean, self.depth_std = float(depth_mean), float(depth_std)
        defaults: dict[str, Any] = {"nearest": ["depth"]}  # raw depth: 0 = invalid, never blended (as in resizing)
        self.augment = PairedAugment.from_config(augment, self.size, **defaults) if split == "train" else None
        self.rgb_mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.rgb_std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    # ---------------------------------------------------------------------------------------- reading
    def read_depth(self, path: Path) -> torch.Tensor:
        """Raw depth ``[1, H, W]`` (0 = no measurement)."""
        return read_depth_png(path)

    def read_target(self, path: Path) -> torch.Tensor:
        """The mapped label map ``[H, W]`` (int64; classes and ``IGNORE_INDEX``)."""
        if not path.is_file():
            raise DatasetLayoutError(f"label file {path} is missing; expected layout: {self.layout}")
        try:
            raw = read_label_file(path)
        except DatasetLayoutError:
            raise
        except (OSError, ValueError, EOFError) as error:
            raise DatasetLayoutError(f"cannot read label file {path}: {error}") from error
        return map_labels(raw, self.label_lut, self.label_known, path, self.label_expected)

    def _read(self, modality: str, path: Path) -> torch.Tensor | None:
        reader = read_rgb if modality == "rgb" else self.read_depth
        try:
            return reader(path)
        except DatasetLayoutError:  # a wrong format is an error, not a missing modality
            raise
        except (OSError, ValueError, EOFError, SyntaxError) as error:  # missing file, truncated or not an image
            self.mark_unreadable(modality, str(path), error)
            return None

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        item = self.items[index]
        label = self.read_target(item.label)
        raw = {"rgb": self._read("rgb", item.rgb), "depth": self._read("depth", item.depth)}
        for m, x in raw.items():
            if x is not None and tuple(x.shape[-2:]) != tuple(label.shape):
                path = item.rgb if m == "rgb" else item.depth
                raise DatasetLayoutError(
                    f"label file {item.label} is {label.shape[0]}x{label.shape[1]} but its {m} file {path} is "
                    f"{x.shape[-2]}x{x.shape[-1]}; a label map must have the size of its images"
                )
        inputs: dict[str, torch.Tensor | None] = {
            "rgb": None if raw["rgb"] is None else resize(raw["rgb"], self.size, "bilinear"),
            "depth": None if raw["depth"] is None else resize(raw["depth"], self.size, "nearest"),
        }
        target = resize(label, self.size, "nearest")
        if self.augment is not None:
            inputs, warped = self.augment(inputs, target)
            assert warped is not None
            target = warped
        return Sample(self.normalize(inputs), target, index)

    def normalize(self, inputs: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        """ImageNet statistics for RGB; the dataset's depth statistics for valid depth, 0 for invalid."""
        out: dict[str, torch.Tensor | None] = {}
        for m, x in inputs.items():
            if x is None:
                out[m] = None
            elif m == "rgb":
                out[m] = (x - self.rgb_mean) / self.rgb_std
            else:
                out[m] = torch.where(x > 0, (x - self.depth_mean) / self.depth_std, torch.zeros_like(x))
        return out

    # ----------------------------------------------------------------------------------------- checks
    def check(self) -> dict[str, dict[str, int]]:
        """Per modality (and label): readable files, and missing or unreadable ones (headers only, fast)."""
        from PIL import Image

        counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in (*self.modalities, "label")}
        for item in self.items:
            for m, path in (("rgb", item.rgb), ("depth", item.depth), ("label", item.label)):
                ok = path.is_file()
                if ok and path.suffix.lower() != ".npy":
                    try:
                        with Image.open(path) as img:
                            ok = img.mode in DEPTH16_MODES if m == "depth" else True
                    except (OSError, ValueError, SyntaxError):
                        ok = False
                counts[m]["present" if ok else "unreadable"] += 1
        return counts
