"""Class-conditional synthetic multimodal data with a per-modality signal-to-noise knob.

For class ``c`` and modality ``m`` the clean signal is a fixed prototype ``P[c, m]`` (unit RMS); a sample is

    x_m = snr_m · (√ρ · U[c] W_m + √(1 − ρ) · P[c, m]) + ε,   ε ~ N(0, I)

where ``U[c]`` is a prototype shared by all modalities and ``W_m`` a fixed random projection, so ``ρ``
(``shared``) makes modalities correlated (ρ = 1: redundant views of one signal). ``redundant_with``
makes a modality an exact noisy copy of another's clean signal. ``snr = 0`` makes a modality pure noise.
Image-shaped modalities (``image_size > 0``) upsample low-resolution class patterns to
``[channels, size, size]``. The train/val/test splits are independent draws from one generator seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mmrobust.data.base import SPLITS, MultimodalDataset, Sample, check_modalities
from mmrobust.registry import ConfigError

SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


class Synthetic(MultimodalDataset):
    """Synthetic dataset; see the module docstring for the generative model.

    Args:
        split: ``train``, ``val`` or ``test``.
        modalities: modality names.
        snr: per-modality signal strength (same length as ``modalities``).
        num_classes: number of classes.
        dim: feature size of a vector modality.
        image_size: if > 0, every modality is an image ``[channels, image_size, image_size]``.
        channels: image channels.
        shared: ρ in [0, 1], the fraction of signal shared across modalities.
        redundant_with: optional per-modality name of another modality whose clean signal it copies.
        missing_rate: probability that a modality is missing for a sample (incomplete data); never all.
        samples_per_split: sizes of train, val, test.
        seed: generator seed (prototypes and samples).
    """

    def __init__(
        self,
        split: str = "train",
        modalities: list[str] | None = None,
        snr: list[float] | None = None,
        num_classes: int = 4,
        dim: int = 16,
        image_size: int = 0,
        channels: int = 3,
        shared: float = 0.0,
        redundant_with: dict[str, str] | None = None,
        missing_rate: float = 0.0,
        samples_per_split: list[int] | None = None,
        seed: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        names = check_modalities(["a", "b"] if modalities is None else modalities)
        snrs = list(snr) if snr is not None else [1.0] * len(names)
        if len(snrs) != len(names):
            raise ConfigError(f"dataset.snr: needs one value per modality {list(names)}, got {snrs}")
        if not 0.0 <= shared <= 1.0:
            raise ConfigError(f"dataset.shared: expected a number in [0, 1], got {shared}")
        if not 0.0 <= missing_rate < 1.0:
            raise ConfigError(f"dataset.missing_rate: expected a probability in [0, 1), got {missing_rate}")
        redundant = dict(redundant_with or {})
        for copy, source in redundant.items():
            if copy not in names or source not in names or copy == source:
                raise ConfigError(
                    f"dataset.redundant_with: {copy}->{source} must name two different modalities of {list(names)}"
                )
        sizes = list(samples_per_split or [512, 256, 256])
        if len(sizes) != 3 or min(sizes) < 1:
            raise ConfigError(f"dataset.samples_per_split: expected 3 sizes >= 1 (train, val, test), got {sizes}")
        for key, value, least in (("num_classes", num_classes, 2), ("dim", dim, 1), ("channels", channels, 1)):
            if value < least:
                raise ConfigError(f"dataset.{key}: expected an integer >= {least}, got {value}")
        self.modalities = names
        self.num_classes = num_classes
        self.class_names = tuple(str(c) for c in range(num_classes))
        shape = (channels, image_size, image_size) if image_size > 0 else (dim,)
        self.shapes = {m: shape for m in names}

        rng = np.random.default_rng(seed)
        numel = math.prod(shape)
        low = (channels, 4, 4) if image_size > 0 else (dim,)
        protos = {m: self._prototypes(rng, num_classes, low, shape) for m in names}
        shared_proto = self._prototypes(rng, num_classes, low, shape)
        clean = {}
        for m in names:
            own = protos[redundant.get(m, m)]
            mixed = own
            if shared > 0:
                projection = np.linalg.qr(rng.standard_normal((numel, numel)))[0].astype(np.float32)
                mixed = math.sqrt(shared) * (shared_proto @ projection) + math.sqrt(1 - shared) * own
            clean[m] = mixed / np.sqrt((mixed**2).mean(axis=1, keepdims=True))  # unit RMS per class
        for copy, source in redundant.items():  # an exact copy, shared part included (W_copy != W_source)
            clean[copy] = clean[source]

        split_rng = np.random.default_rng([seed, SPLIT_OFFSET[split]])
        n = sizes[SPLIT_OFFSET[split]]
        labels = split_rng.integers(0, num_classes, size=n)
        self.labels = torch.from_numpy(labels).long()
        self.features: dict[str, torch.Tensor] = {}
        for m, s in zip(names, snrs):
            x = s * clean[m][labels] + split_rng.standard_normal((n, numel)).astype(np.float32)
            self.features[m] = torch.from_numpy(x.astype(np.float32)).view(n, *shape)
        keep = split_rng.random((n, len(names))) >= missing_rate
        keep[~keep.any(axis=1), 0] = True  # never drop every modality of a sample
        self.available = torch.from_numpy(keep)

    @staticmethod
    def _prototypes(
        rng: np.random.Generator, num_classes: int, low: tuple[int, ...], shape: tuple[int, ...]
    ) -> np.ndarray:
        """Unit-RMS class patterns ``[num_classes, numel]``; images are smooth upsampled patterns."""
        p = torch.from_numpy(rng.standard_normal((num_classes, *low)).astype(np.float32))
        if len(shape) == 3:
            p = F.interpolate(p, size=shape[1:], mode="bilinear", align_corners=False)
        flat = p.reshape(num_classes, -1).numpy()
        return flat / np.sqrt((flat**2).mean(axis=1, keepdims=True))

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Sample:
        inputs = {
            m: (self.features[m][index] if self.available[index, j] else None) for j, m in enumerate(self.modalities)
        }
        return Sample(inputs, int(self.labels[index]), index)

    def targets(self) -> list[int]:
        return self.labels.tolist()
