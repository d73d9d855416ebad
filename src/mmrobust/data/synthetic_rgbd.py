"""Generated RGB-D scenes for segmentation in which each modality carries information the other lacks.

Every sample is a pure function of ``(seed, split, index)``: nothing is stored, and any index of any split
can be drawn in any order (workers, processes). With ``K = num_classes`` (at least 5), class 0 is the
background and each object class ``c ≥ 1`` has one role:

- **depth classes** (odd ``c``; the r-th of ``n_d``): solid objects of one shared colour (a blue of random
  brightness, no texture) standing at depth ``z_r = 1 + 2 r / n_d`` metres (± 0.1 per object). RGB shows
  *that* an object is there but not *which* class; depth tells the classes apart.
- **texture classes** (even ``c``; the q-th of ``n_t``): flat regions lying *on* the background plane
  (posters), so their depth is the background's; only colour and texture tell them apart: hue
  ``0.45 q / (n_t − 1)`` (red to green), stripes of period ``4 + 2q`` pixels at angle ``π q / n_t``,
  ``x = colour · (0.75 ± 0.25)``.
- **background**: a grey wall (grey level ~ U[0.35, 0.6]) on a tilted plane
  ``z = z0 + g (y / (H − 1) − 1/2)``, ``z0 ~ U[3.6, 4.4]``, ``g ~ U[−0.4, 0.4]``.

A scene has ``objects`` (a range, default 3..6) rectangles or ellipses with half-sizes in [H/10, H/4] and
uniformly drawn classes; texture regions are painted first, then depth objects from far to near (nearer
ones occlude). Gaussian noise of std ``noise`` is added to RGB (in [0, 1], then clipped) and to depth
(metres). So an RGB-only model cannot separate the depth classes, a depth-only model cannot find or separate
the texture classes, and RGB-D can do both: the RGB / Depth / RGB-D rows of a table differ.

Inputs: rgb ``[3, H, W]`` normalized with the ImageNet statistics, depth ``[1, H, W]`` as
``(z − 3.4) / 1.1`` (about zero mean, unit variance). ``missing_rate`` drops each modality of a sample with that
probability (never both), as data that is incomplete on disk would.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np
import torch

from mmrobust.data.base import SPLITS, MultimodalDataset, Sample
from mmrobust.data.seg_common import IMAGENET_MEAN, IMAGENET_STD
from mmrobust.data.transforms import PairedAugment
from mmrobust.registry import ConfigError

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
OBJECT_RGB = np.array([0.25, 0.45, 0.85], dtype=np.float32)  # the shared colour of every depth class
DEPTH_CENTER, DEPTH_SCALE = 3.4, 1.1  # about the mean and std of depth over scenes


def depth_classes(num_classes: int) -> list[int]:
    return list(range(1, num_classes, 2))


def texture_classes(num_classes: int) -> list[int]:
    return list(range(2, num_classes, 2))


class SyntheticRgbd(MultimodalDataset):
    """Generated RGB-D segmentation scenes; see the module docstring for the generative model.

    Args:
        split: ``train``, ``val`` or ``test``.
        size: image ``[H, W]``.
        num_classes: classes including the background (at least 5: two depth and two texture classes).
        samples_per_split: sizes of train, val, test.
        seed: the generator seed.
        noise: std of the Gaussian noise on RGB (in [0, 1]) and depth (metres).
        missing_rate: probability that a modality is missing for a sample (never both).
        objects: ``[min, max]`` objects per scene.
        augment: paired augmentation of the train split (``PairedAugment`` keys) or null.
    """

    task = "segmentation"
    modalities = ("rgb", "depth")

    def __init__(
        self,
        split: str = "train",
        size: list[int] | None = None,
        num_classes: int = 6,
        samples_per_split: list[int] | None = None,
        seed: int = 0,
        noise: float = 0.05,
        missing_rate: float = 0.0,
        objects: list[int] | None = None,
        augment: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        h, w = size or [64, 64]
        if min(h, w) < 8:
            raise ConfigError(f"dataset.size: expected [H, W] of at least 8x8, got {size}")
        if num_classes < 5:
            raise ConfigError(
                f"dataset.num_classes: needs at least 5 (background, 2 depth, 2 texture), got {num_classes}"
            )
        sizes = list(samples_per_split or [400, 100, 100])
        if len(sizes) != 3 or min(sizes) < 1:
            raise ConfigError(f"dataset.samples_per_split: expected three positive sizes, got {sizes}")
        if noise < 0 or not 0.0 <= missing_rate < 1.0:
            raise ConfigError(f"dataset.noise must be >= 0 and missing_rate in [0, 1), got {noise}, {missing_rate}")
        lo, hi = objects or [3, 6]
        if not 1 <= lo <= hi:
            raise ConfigError(f"dataset.objects: expected [min, max] with 1 <= min <= max, got {objects}")
        self.split, self.size, self.seed = split, (int(h), int(w)), seed
        self.noise, self.missing_rate, self.objects = float(noise), float(missing_rate), (lo, hi)
        self.length = sizes[SPLIT_IDS[split]]
        self.num_classes = num_classes
        self.depth_ids, self.texture_ids = depth_classes(num_classes), texture_classes(num_classes)
        self.class_names = tuple(
            "background" if c == 0 else f"depth_{(c - 1) // 2}" if c % 2 else f"texture_{c // 2 - 1}"
            for c in range(num_classes)
        )
        self.shapes = {"rgb": (3, *self.size), "depth": (1, *self.size)}
        self.augment = PairedAugment.from_config(augment, self.size) if split == "train" else None
        self.rgb_mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.rgb_std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    # ---------------------------------------------------------------------------------------- scenes
    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The clean-plus-noise scene of one sample: rgb ``[H, W, 3]`` in [0, 1], depth ``[H, W]`` in metres,
        labels ``[H, W]`` (int64 classes)."""
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        depth = rng.uniform(3.6, 4.4) + rng.uniform(-0.4, 0.4) * (yy / (h - 1) - 0.5)
        rgb = np.broadcast_to(np.float32(rng.uniform(0.35, 0.6)), (h, w, 3)).copy()
        label = np.zeros((h, w), dtype=np.int64)

        n = int(rng.integers(self.objects[0], self.objects[1] + 1))
        shapes = []
        for _ in range(n):
            cls = int(rng.integers(1, self.num_classes))
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ay, ax = rng.uniform(h / 10, h / 4), rng.uniform(w / 10, w / 4)
            if rng.random() < 0.5:
                mask = (np.abs(yy - cy) <= ay) & (np.abs(xx - cx) <= ax)
            else:
                mask = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0
            shapes.append((cls, mask, rng.uniform(-0.1, 0.1), rng.uniform(0.85, 1.15)))
        n_d, n_t = len(self.depth_ids), len(self.texture_ids)
        textures = [s for s in shapes if s[0] % 2 == 0]
        solids = sorted((s for s in shapes if s[0] % 2 == 1), key=lambda s: -self._level(s[0], n_d) - s[2])
        for cls, mask, _, _ in textures:  # flat posters on the wall: depth unchanged
            q = cls // 2 - 1
            hue = 0.45 * q / max(n_t - 1, 1)
            colour = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.85), dtype=np.float32)
            angle, period = math.pi * q / n_t, 4.0 + 2.0 * q
            phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
            shade = 0.75 + 0.25 * np.sign(np.sin(phase))  # stripes: 0.5 or 1.0 (0.75 on the zero crossings)
            rgb[mask] = colour * shade[mask, None]
            label[mask] = cls
        for cls, mask, offset, brightness in solids:  # far to near: nearer objects occlude
            rgb[mask] = np.clip(OBJECT_RGB * brightness, 0, 1)
            depth[mask] = self._level(cls, n_d) + offset
            label[mask] = cls
        rgb = np.clip(rgb + rng.normal(0, self.noise, rgb.shape), 0, 1).astype(np.float32)
        depth = (depth + rng.normal(0, self.noise, depth.shape)).astype(np.float32)
        return rgb, depth, label

    @staticmethod
    def _level(cls: int, n_d: int) -> float:
        """Depth (metres) of the depth class ``cls``: ``1 + 2 r / n_d`` for its rank ``r``."""
        return 1.0 + 2.0 * ((cls - 1) // 2) / n_d

    def available(self, index: int) -> tuple[bool, bool]:
        """Whether rgb and depth are present for a sample (``missing_rate``; never both missing)."""
        if self.missing_rate == 0:
            return True, True
        keep = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index, 1]).random(2) >= self.missing_rate
        if not keep.any():
            keep[0] = True
        return bool(keep[0]), bool(keep[1])

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a split of {self.length} samples")
        rgb, depth, label = self.scene(index)
        has_rgb, has_depth = self.available(index)
        inputs: dict[str, torch.Tensor | None] = {
            "rgb": torch.from_numpy(rgb.transpose(2, 0, 1).copy()) if has_rgb else None,
            "depth": torch.from_numpy(depth)[None] if has_depth else None,
        }
        target = torch.from_numpy(label)
        if self.augment is not None:
            inputs, warped = self.augment(inputs, target)
            assert warped is not None
            target = warped
        x_rgb, x_depth = inputs["rgb"], inputs["depth"]
        return Sample(
            {
                "rgb": None if x_rgb is None else (x_rgb - self.rgb_mean) / self.rgb_std,
                "depth": None if x_depth is None else (x_depth - DEPTH_CENTER) / DEPTH_SCALE,
            },
            target,
            index,
        )
