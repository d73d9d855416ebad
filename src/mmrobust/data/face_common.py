"""What the RGB / Depth / IR face anti-spoofing datasets (CASIA-SURF, CASIA-CeFA) share: one base class with
the reference preprocessing of the SURF baseline (Zhang et al. 2019), as the MMANet and DMRNet code uses it.

Every modality file is read as an 8-bit 3-channel image ``x ∈ [0, 1]`` (greyscale depth and IR repeated over
the three channels), then

    train:  resize to ``resize`` x ``resize`` → one random affine per sample (rotation θ ~ U[−rotate, rotate]°,
            random crop ``size`` x ``size``, horizontal flip with probability 1/2), shared by the three
            modalities (``PairedAugment``)
    val/test (or ``augment: null``): resize to ``size`` x ``size``
    all:    x ← (255·x − 127.5) / 128                                            (about [−1, 1])

Differences from the reference code, all deliberate: images are decoded as RGB (the reference uses OpenCV, i.e.
BGR channel order for the colour modality, so its weights need the channels swapped); resizing is bilinear
with antialiasing; the rotation angle is continuous (reference: an integer) and the crop offset is uniform in
``±(resize − size)/2`` around the centre for every angle (the reference crops from the rotated canvas of
side ``0.8·resize·(|cos θ| + |sin θ|)``, a smaller range near 0° and a larger one near 30°).

Targets: 1 = bona fide (real face), 0 = attack, for every dataset (use ``eval.bona_fide_class=1`` for
APCER/BPCER/ACER). A missing or unreadable modality file marks that modality absent for the sample (strict
mode: stop with the file name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.seg_common import read_rgb, resize
from mmrobust.data.transforms import PairedAugment
from mmrobust.registry import ConfigError

FACE_MODALITIES = ("rgb", "depth", "ir")
FACE_CLASS_NAMES = ("attack", "bona fide")  # target 0 = attack, 1 = bona fide


@dataclass(frozen=True)
class FaceItem:
    """The files of one sample (one path per modality) and its target (1 = bona fide, 0 = attack)."""

    paths: dict[str, Path]
    target: int


def normalize_face(x: torch.Tensor) -> torch.Tensor:
    """The reference normalization of an 8-bit image given in [0, 1]: ``(255·x − 127.5) / 128``.

    Shape: any -> same.
    """
    return x.mul(255.0 / 128.0).sub_(127.5 / 128.0)  # one temporary instead of three


class FaceAntiSpoofing(MultimodalDataset):
    """Base class of the face anti-spoofing datasets (see the module docstring).

    Subclasses list the split's ``FaceItem``s, call ``setup``, and set ``layout`` (a short description
    of the expected on-disk layout, for errors).
    """

    modalities = FACE_MODALITIES
    num_classes = 2
    class_names = FACE_CLASS_NAMES
    layout = ""

    def setup(
        self,
        items: Sequence[FaceItem],
        *,
        split: str,
        size: int,
        resize: int,
        augment: Mapping[str, Any] | None,
        max_samples: int | None,
    ) -> None:
        """Check the options, keep the first ``max_samples`` items and build the train augmentation."""
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        if int(size) < 1 or int(resize) < 1:
            raise ConfigError(f"dataset.size / dataset.resize: expected positive integers, got {size} / {resize}")
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"dataset.max_samples: expected a positive integer or null, got {max_samples}")
        self.split = split
        self.size = int(size)
        self.resize = int(resize)
        self.items = list(items)[:max_samples] if max_samples else list(items)
        if not self.items:
            raise DatasetLayoutError(f"the {split} split of {type(self).__name__} has no samples; {self.layout}")
        self.shapes = {m: (3, self.size, self.size) for m in self.modalities}
        self.augment = PairedAugment.from_config(augment, (self.size, self.size)) if split == "train" else None

    def __len__(self) -> int:
        return len(self.items)

    def targets(self) -> list[Any]:
        """The split's targets from the file lists (no image is read)."""
        return [item.target for item in self.items]

    def _read(self, modality: str, path: Path) -> torch.Tensor | None:
        try:
            return read_rgb(path)
        except FileNotFoundError as error:
            self.mark_unreadable(modality, str(path), error, reason="missing")
        except (OSError, ValueError, EOFError, SyntaxError) as error:  # truncated or not an image
            self.mark_unreadable(modality, str(path), error)
        return None

    def load(self, index: int) -> Sample:
        item = self.items[index]
        side = self.resize if self.augment is not None else self.size
        inputs: dict[str, torch.Tensor | None] = {}
        for m in self.modalities:
            x = self._read(m, item.paths[m])
            inputs[m] = None if x is None else resize(x, (side, side), "bilinear")  # [3, side, side]
        if self.augment is not None:
            inputs, _ = self.augment(inputs)  # one affine for the three modalities: [3, size, size]
        out = {m: None if x is None else normalize_face(x) for m, x in inputs.items()}
        return Sample(out, item.target, index)

    def check(self) -> dict[str, dict[str, int]]:
        """Per modality: files that open as images and files missing or unreadable (headers only, fast)."""
        from PIL import Image

        counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in self.modalities}
        for item in self.items:
            for m in self.modalities:
                try:
                    with Image.open(item.paths[m]):
                        ok = True
                except (OSError, ValueError, SyntaxError):
                    ok = False
                counts[m]["present" if ok else "unreadable"] += 1
        return counts
