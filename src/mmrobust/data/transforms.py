"""Paired augmentation of aligned image modalities (and an optional label map).

One random geometric transform per sample is applied identically to every image modality and to the label
map, so pixels stay aligned across modalities (RGB-D segmentation, RGB/Depth/IR face anti-spoofing):

    p_dst = s · R(θ) · F · (p_src − c_src) + c_dst + δ

with ``s ~ U[scale]``, ``θ ~ U[−rotate, rotate]`` degrees, ``F = diag(−1, 1)`` with probability 1/2 when
``flip`` (else the identity), ``c`` the image centres, and a random crop offset
``δ ~ U[−|s·w − W| / 2, |s·w − W| / 2]`` per axis (``W`` the output width, ``w`` the input width): a scaled
image larger than the output is cropped at a random place, a smaller one is placed at a random place and
padded. Images are resampled bilinearly (nearest for the modalities listed in ``nearest``, e.g. raw depth
where 0 marks "no measurement"), padded with 0; the label map is resampled by nearest neighbour and padded
with ``IGNORE_INDEX`` (255), so it keeps exactly the values it had plus 255.

Photometric jitter touches only the modalities in ``photometric`` (default ``rgb``). With factors drawn
uniformly, ``b, c, s ∈ [1 − j, 1 + j]`` and ``h ∈ [−j/4, j/4]`` for ``j = jitter``, it applies, in this order,

    brightness  x ← b·x
    contrast    x ← c·(x − m) + m,           m = mean over the image of gray(x)
    saturation  x ← s·(x − gray x) + gray x, gray x = wᵀx (ITU-R 601 weights, Σw = 1)
    hue         x ← R(2πh)·x,                R(φ) rotates colours about the grey axis (greys stay grey)

all linear in the colour, so they compose into one 3x3 matrix and an offset, followed by one clamp to
[0, 1] (inputs are expected in [0, 1], before normalization). Every random number comes from torch's
default generator (or the one passed), which the trainer seeds per epoch.

Cost: one sampling grid per sample, shared by every modality and the label, and one ``grid_sample`` per
image: about 0.07 s for a 480x640 RGB-D sample with its label on one CPU thread. kornia's ``warp_affine``
(which rebuilds a grid per call) and ``adjust_hue`` (an HSV round trip) cost about 1 s for the same sample
here, so the grid and the colour matrix are written in torch; kornia supplies the grey weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale

from mmrobust.data.base import IGNORE_INDEX
from mmrobust.registry import ConfigError

AUGMENT_KEYS = ("scale", "flip", "rotate", "jitter", "photometric", "nearest")


class PairedAugment:
    """One geometric transform shared by all image modalities and the label map; jitter on RGB only.

    Args:
        size: output ``(H, W)``; ``None`` keeps the input size.
        scale: range of the random scale factor ``(low, high)``.
        flip: random horizontal flip with probability 1/2.
        rotate: maximum absolute rotation in degrees (0: none).
        jitter: strength ``j`` of the photometric jitter (0: none); see the module docstring.
        photometric: the modalities that get the jitter (3-channel images in [0, 1]).
        nearest: the modalities resampled by nearest neighbour instead of bilinearly.

    Shape:
        inputs ``{m: [C_m, H, W] or None}`` and label ``[H, W]`` (or None) ->
        ``{m: [C_m, *size] or None}``, ``[*size]`` (int64).
    """

    def __init__(
        self,
        size: Sequence[int] | None = None,
        scale: Sequence[float] = (1.0, 1.0),
        flip: bool = True,
        rotate: float = 0.0,
        jitter: float = 0.0,
        photometric: Sequence[str] = ("rgb",),
        nearest: Sequence[str] = (),
    ) -> None:
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ConfigError(f"augment.scale: expected [low, high] with 0 < low <= high, got {list(scale)}")
        if rotate < 0 or not 0 <= jitter < 1:
            raise ConfigError(f"augment: rotate must be >= 0 and jitter in [0, 1), got {rotate}, {jitter}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ConfigError(f"augment size: expected [H, W], got {list(size)}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = bool(flip)
        self.rotate = float(rotate)
        self.jitter = float(jitter)
        self.photometric = tuple(photometric)
        self.nearest = tuple(nearest)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | None,
        size: Sequence[int] | None,
        *,
        where: str = "dataset.augment",
        **defaults: Any,
    ) -> PairedAugment | None:
        """Build from a dataset's ``augment`` config (``None`` -> no augmentation); ``defaults`` fill unset keys."""
        if config is None:
            return None
        if not isinstance(config, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {list(AUGMENT_KEYS)} or null, got {config!r}")
        unknown = sorted(set(config) - set(AUGMENT_KEYS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key; accepted keys: {', '.join(AUGMENT_KEYS)}")
        options = {**defaults, **dict(config)}
        try:
            return cls(size=size, **options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {error}") from error

    def __repr__(self) -> str:
        return (
            f"PairedAugment(size={self.size}, scale={self.scale}, flip={self.flip}, rotate={self.rotate}, "
            f"jitter={self.jitter}, photometric={self.photometric}, nearest={self.nearest})"
        )

    # ------------------------------------------------------------------------------------------- random
    def _uniform(self, low: float, high: float, generator: torch.Generator | None) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    def sample_matrix(
        self, in_size: tuple[int, int], out_size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One random affine map from input to output pixel coordinates (see the module docstring).

        Shape: ``[1, 2, 3]``.
        """
        (h, w), (out_h, out_w) = in_size, out_size
        s = self._uniform(*self.scale, generator)
        theta = math.radians(self._uniform(-self.rotate, self.rotate, generator)) if self.rotate else 0.0
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        dx = self._uniform(-abs(s * w - out_w) / 2, abs(s * w - out_w) / 2, generator)
        dy = self._uniform(-abs(s * h - out_h) / 2, abs(s * h - out_h) / 2, generator)
        cos, sin = math.cos(theta), math.sin(theta)
        a = torch.tensor([[s * cos, -s * sin], [s * sin, s * cos]], dtype=torch.float32)  # s · R(θ)
        if flip:
            a = a @ torch.diag(torch.tensor([-1.0, 1.0]))  # · F
        c_src = torch.tensor([(w - 1) / 2, (h - 1) / 2])
        c_dst = torch.tensor([(out_w - 1) / 2 + dx, (out_h - 1) / 2 + dy])
        shift = c_dst - a @ c_src
        return torch.cat([a, shift[:, None]], dim=1)[None]

    def jitter_image(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Brightness, contrast, saturation and hue jitter of one RGB image in [0, 1].

        Shape: ``[3, H, W] -> [3, H, W]``.
        """
        if x.shape[0] != 3:
            raise ValueError(f"photometric jitter needs a 3-channel image, got shape {tuple(x.shape)}")
        j = self.jitter
        b, c, s = (self._uniform(1 - j, 1 + j, generator) for _ in range(3))
        h = self._uniform(-j / 4, j / 4, generator)
        gray_weights = rgb_to_grayscale(torch.eye(3).view(3, 3, 1, 1)).view(3)  # gray(e_k) for each channel k
        saturation = s * torch.eye(3) + (1 - s) * torch.ones(3, 1) * gray_weights[None, :]
        matrix = hue_rotation(2 * math.pi * h) @ saturation * (c * b)
        m = b * float(torch.einsum("k,khw->", gray_weights, x)) / (x.shape[1] * x.shape[2])
        offset = (1 - c) * m  # R and the saturation matrix keep the grey vector (1, 1, 1) fixed
        return (torch.einsum("ij,jhw->ihw", matrix, x) + offset).clamp(0, 1)

    # ------------------------------------------------------------------------------------------- apply
    def __call__(
        self,
        inputs: Mapping[str, torch.Tensor | None],
        label: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, torch.Tensor | None], torch.Tensor | None]:
        present = {m: x for m, x in inputs.items() if x is not None}
        sizes = {m: tuple(x.shape[-2:]) for m, x in present.items()}
        if label is not None:
            sizes["label"] = tuple(label.shape[-2:])
        if not sizes:
            return dict(inputs), label
        if len(set(sizes.values())) > 1:
            raise ValueError(f"paired augmentation needs aligned images of one size, got {sizes}")
        in_size: tuple[int, int] = next(iter(sizes.values()))  # type: ignore[assignment]
        out_size = self.size or in_size
        grid = sampling_grid(self.sample_matrix(in_size, out_size, generator)[0], in_size, out_size)
        out: dict[str, torch.Tensor | None] = {}
        for m, x in inputs.items():
            if x is None:
                out[m] = None
                continue
            mode = "nearest" if m in self.nearest else "bilinear"
            y = F.grid_sample(x[None].float(), grid, mode=mode, padding_mode="zeros", align_corners=True)[0]
            if m in self.photometric and self.jitter > 0:
                y = self.jitter_image(y, generator)
            out[m] = y
        if label is None:
            return out, None
        # shift by one so that zero padding marks "outside the image", then map it to IGNORE_INDEX
        shifted = (label.float() + 1)[None, None]
        warped = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=True)
        warped_label = warped[0, 0].long() - 1  # nearest sampling copies values: exact integers
        warped_label[warped_label < 0] = IGNORE_INDEX
        return out, warped_label


def sampling_grid(matrix: torch.Tensor, in_size: tuple[int, int], out_size: tuple[int, int]) -> torch.Tensor:
    """The ``grid_sample`` grid of an affine map from input to output pixel coordinates.

    Each output pixel ``(u, v)`` reads the input at ``A⁻¹((u, v) − t)``, normalized to [−1, 1] with pixel
    centres at the ends (``align_corners=True``). Shape: matrix ``[2, 3]`` -> ``[1, H_out, W_out, 2]``.
    """
    (h, w), (out_h, out_w) = in_size, out_size
    inv = torch.linalg.inv(matrix[:, :2].double()).float()
    t = matrix[:, 2]
    u = torch.arange(out_w, dtype=torch.float32)[None, :] - t[0]  # [1, W_out]
    v = torch.arange(out_h, dtype=torch.float32)[:, None] - t[1]  # [H_out, 1]
    sx, sy = 2 / max(w - 1, 1), 2 / max(h - 1, 1)
    grid = torch.empty(1, out_h, out_w, 2)
    torch.add(inv[0, 0] * sx * u, inv[0, 1] * sx * v, out=grid[0, :, :, 0])
    torch.add(inv[1, 0] * sy * u, inv[1, 1] * sy * v, out=grid[0, :, :, 1])
    return grid - 1


def hue_rotation(phi: float) -> torch.Tensor:
    """Rotation of RGB colours by ``phi`` radians about the grey axis k = (1, 1, 1)/√3:
    ``R = cos φ · I + sin φ · [k]× + (1 − cos φ) · k kᵀ``. Shape: ``[3, 3]``."""
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
    return math.cos(phi) * torch.eye(3) + math.sin(phi) * cross + (1 - math.cos(phi)) * torch.full((3, 3), 1 / 3)
