"""NYUv2 RGB-D semantic segmentation, 40 classes, in the layout ESANet's preparation script writes.

Layout::

    root/train.txt, root/test.txt          one bare sample name per line (e.g. 0003); 795 / 654 names
    root/{train,test}/rgb/<name>.png       8-bit RGB, 480x640
    root/{train,test}/depth/<name>.png     refined depth, 16-bit PNG (millimetres)
    root/{train,test}/depth_raw/<name>.png raw sensor depth, 16-bit PNG (0 = no measurement)
    root/{train,test}/labels_40/<name>.png 8-bit labels: 0 = void, 1..40 = classes

Labels: 0 (void) -> 255 (ignored), ``k`` -> ``k − 1`` for k = 1..40. Depth is normalized with ESANet's
published statistics of the chosen depth (refined: mean 2841.9, std 1417.3; raw: 2769.0 / 1350.4;
ESANet itself used the refined ones for both), invalid pixels (0) stay 0.

Splits: ``test`` is the published test split (654 images). The published code selected models on that test
split; we do not: ``val`` is a seeded ``val_fraction`` (default 10 %) of the published train split, and
``train`` is the rest. Evaluation is at ``size`` (default 480x640, the original label resolution).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.seg_common import RGBDSegmentation, SegItem, carve_validation, count_files, label_lookup
from mmrobust.registry import ConfigError

CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)  # fmt: skip
DEPTH_DIRS = {"refined": "depth", "raw": "depth_raw"}
DEPTH_STATS = {"refined": (2841.94941272766, 1417.2594281672277), "raw": (2769.0187903686697, 1350.4174149841133)}
LAYOUT = (
    "root/{train,test}.txt (bare names) and root/{train,test}/{rgb,depth,depth_raw,labels_40}/<name>.png "
    "(ESANet's NYUv2 preparation)"
)


def read_names(root: Path, published: str) -> list[str]:
    """The sample names of a published split (``train`` or ``test``) from ``root/<split>.txt``."""
    path = root / f"{published}.txt"
    if not path.is_file():
        raise DatasetLayoutError(f"list file {path} is missing; expected layout: {LAYOUT}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class NYUv2(RGBDSegmentation):
    """NYUv2, 40 classes (see the module docstring).

    Args:
        root: the prepared dataset folder.
        split: ``train``, ``val`` (carved from the published train split) or ``test``.
        depth: ``refined`` (folder ``depth``) or ``raw`` (folder ``depth_raw``).
        size: ``[H, W]`` every sample is resized to (inputs bilinear/depth nearest, labels nearest).
        augment: paired augmentation of the train split (``PairedAugment`` keys) or null.
        val_fraction, split_seed: the validation split carved from train.
        depth_mean, depth_std: override the published depth statistics.
        max_samples: keep only the first N samples of the split (quick runs).
        strict: stop at the first missing/unreadable rgb or depth file instead of marking it absent.
    """

    num_classes = 40
    class_names = CLASS_NAMES
    layout = LAYOUT
    label_lut, label_known = label_lookup({0: 255, **{k: k - 1 for k in range(1, 41)}})
    label_expected = "0 (void) or 1..40"

    def __init__(
        self,
        root: str,
        split: str = "train",
        depth: str = "refined",
        size: list[int] | None = None,
        augment: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        depth_mean: float | None = None,
        depth_std: float | None = None,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if depth not in DEPTH_DIRS:
            raise ConfigError(f"dataset.depth: expected one of {list(DEPTH_DIRS)}, got {depth!r}")
        self.root = Path(root).expanduser()
        published = "test" if split == "test" else "train"
        names = read_names(self.root, published)
        if split in ("train", "val"):
            train_idx, val_idx = carve_validation(len(names), val_fraction, split_seed)
            names = [names[i] for i in (train_idx if split == "train" else val_idx)]
        folder = self.root / published
        items = [
            SegItem(
                n,
                folder / "rgb" / f"{n}.png",
                folder / DEPTH_DIRS[depth] / f"{n}.png",
                folder / "labels_40" / f"{n}.png",
            )
            for n in names
        ]
        mean, std = DEPTH_STATS[depth]
        self.setup(
            items,
            split=split,
            size=size or [480, 640],
            augment=augment,
            depth_mean=mean if depth_mean is None else depth_mean,
            depth_std=std if depth_std is None else depth_std,
            max_samples=max_samples,
        )

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: each expected list file and folder, present or missing."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows: list[tuple[str, str]] = []
        for published in ("train", "test"):
            path = root / f"{published}.txt"
            if not path.is_file():
                rows.append((path.name, "MISSING (one bare name per line)"))
                continue
            names = read_names(root, published)
            rows.append((path.name, f"{len(names)} names"))
            for folder in ("rgb", "depth", "depth_raw", "labels_40"):
                files = [root / published / folder / f"{n}.png" for n in names]
                rows.append((f"{published}/{folder}/<name>.png", count_files(files, root)))
        return rows
