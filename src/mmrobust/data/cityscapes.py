"""Cityscapes RGB + disparity semantic segmentation, 19 training classes, in the published download layout.

Layout::

    root/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png    8-bit RGB, 1024x2048
    root/disparity/{train,val}/<city>/<city>_<seq>_<frame>_disparity.png        16-bit PNG
    root/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     8-bit label ids 0..33

A sample is every ``<city>_<seq>_<frame>`` found under ``leftImg8bit`` or ``gtFine``: its label file must
exist; a missing image or disparity file marks that modality absent.

Disparity ``d = (p − 1) / 256`` for a PNG value ``p > 0``; ``p = 0`` is invalid (and stays 0 after
normalization). It is normalized with ESANet's published statistics of the disparity PNGs converted to these
units (mean (9069.7 − 1) / 256 ≈ 35.42, std 7178.3 / 256 ≈ 28.04).

Labels: the 19 evaluated classes get their training ids (road 7 -> 0, sidewalk 8 -> 1, ..., car 26 -> 13,
bicycle 33 -> 18); every other label id (0..33, and 255 where the license plate's id −1 was written as a byte)
-> 255 (ignored).

Splits: the test labels are not public, so ``test`` is the published ``val`` split (500 images, as the papers
report) and ``val`` (model selection) is a seeded ``val_fraction`` (default 10 %) of the published train split.
Samples are resized to ``size`` (default 512x1024) and scored at that size, not at 1024x2048.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmrobust.data.base import IGNORE_INDEX, DatasetLayoutError
from mmrobust.data.seg_common import (
    RGBDSegmentation,
    SegItem,
    carve_validation,
    count_files,
    label_lookup,
    read_depth_png,
)

# label id -> train id of the 19 evaluated classes (Cityscapes' own label table)
TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
DISPARITY_MEAN = (9069.706336834102 - 1.0) / 256.0
DISPARITY_STD = 7178.335960071306 / 256.0
RGB_SUFFIX, DISPARITY_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_disparity.png", "_gtFine_labelIds.png"
LAYOUT = (
    "root/{leftImg8bit,disparity,gtFine}/{train,val}/<city>/<city>_<seq>_<frame>_"
    "{leftImg8bit,disparity,gtFine_labelIds}.png (the Cityscapes download)"
)


def sample_stems(root: Path, published: str) -> list[tuple[str, str]]:
    """``(city, stem)`` of every sample with an image or a label file in a published split, sorted."""
    stems: set[tuple[str, str]] = set()
    for folder, suffix in (("leftImg8bit", RGB_SUFFIX), ("gtFine", LABEL_SUFFIX)):
        base = root / folder / published
        if not base.is_dir():
            raise DatasetLayoutError(f"folder {base} is missing; expected layout: {LAYOUT}")
        stems |= {(p.parent.name, p.name[: -len(suffix)]) for p in base.glob(f"*/*{suffix}")}
    return sorted(stems)


def sample_paths(root: Path, published: str, city: str, stem: str) -> SegItem:
    return SegItem(
        stem,
        root / "leftImg8bit" / published / city / f"{stem}{RGB_SUFFIX}",
        root / "disparity" / published / city / f"{stem}{DISPARITY_SUFFIX}",
        root / "gtFine" / published / city / f"{stem}{LABEL_SUFFIX}",
    )


class Cityscapes(RGBDSegmentation):
    """Cityscapes with disparity as the depth modality, 19 classes (see the module docstring).

    Args:
        root: the Cityscapes folder holding ``leftImg8bit``, ``disparity`` and ``gtFine``.
        split: ``train`` / ``val`` (both carved from the published train split) or ``test`` (published val).
        size: ``[H, W]`` every sample is resized to.
        augment: paired augmentation of the train split (``PairedAugment`` keys) or null.
        val_fraction, split_seed: the validation split carved from train.
        depth_mean, depth_std: override the disparity statistics (disparity units).
        max_samples: keep only the first N samples of the split.
        strict: stop at the first missing/unreadable rgb or disparity file instead of marking it absent.
    """

    num_classes = 19
    class_names = CLASS_NAMES
    layout = LAYOUT
    label_lut, label_known = label_lookup({**{i: TRAIN_IDS.get(i, IGNORE_INDEX) for i in range(34)}, 255: 255})
    label_expected = "Cityscapes label ids 0..33 (or 255)"

    def __init__(
        self,
        root: str,
        split: str = "train",
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
        self.root = Path(root).expanduser()
        published = "val" if split == "test" else "train"
        stems = sample_stems(self.root, published)
        if split in ("train", "val") and stems:
            train_idx, val_idx = carve_validation(len(stems), val_fraction, split_seed)
            stems = [stems[i] for i in (train_idx if split == "train" else val_idx)]
        self.setup(
            [sample_paths(self.root, published, city, stem) for city, stem in stems],
            split=split,
            size=size or [512, 1024],
            augment=augment,
            depth_mean=DISPARITY_MEAN if depth_mean is None else depth_mean,
            depth_std=DISPARITY_STD if depth_std is None else depth_std,
            max_samples=max_samples,
        )

    def read_depth(self, path: Path) -> torch.Tensor:
        """Disparity ``(p − 1) / 256`` from the 16-bit PNG, 0 where ``p = 0`` (invalid).

        Shape: ``[1, H, W]``.
        """
        p = read_depth_png(path)
        return torch.where(p > 0, (p - 1.0) / 256.0, torch.zeros_like(p))

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: each expected folder and how complete it is."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows: list[tuple[str, str]] = []
        for published in ("train", "val"):
            missing = [f for f in ("leftImg8bit", "gtFine") if not (root / f / published).is_dir()]
            if missing:
                rows += [(f"{f}/{published}", "MISSING (<city>/<city>_<seq>_<frame>_...png)") for f in missing]
                continue
            items = [sample_paths(root, published, c, s) for c, s in sample_stems(root, published)]
            for name, paths in (
                ("leftImg8bit", [i.rgb for i in items]),
                ("disparity", [i.depth for i in items]),
                ("gtFine (labelIds)", [i.label for i in items]),
            ):
                rows.append((f"{name.split()[0]}/{published}/<city>/", count_files(paths, root)))
        return rows
