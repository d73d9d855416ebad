"""The Batch contract: inputs keyed by modality, a ``[B, M]`` availability mask and targets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from mmrobust.subsets import subset_mask


@dataclass(frozen=True)
class Batch:
    """One mini-batch.

    Attributes:
        inputs: modality name -> tensor ``[B, ...]``; zeros where the modality is absent.
        present: bool ``[B, M]``; column ``j`` tells whether ``modalities[j]`` is present.
        target: ``[B]`` class indices (or ``[B, ...]`` dense targets).
        modalities: the modality order; it never changes with configuration.
        index: ``[B]`` dataset indices of the samples (drives per-sample randomness, so results do
            not depend on how samples are split across processes).
        unreadable: the files found unreadable while loading the batch (they are absent in ``present``).
    """

    inputs: dict[str, torch.Tensor]
    present: torch.Tensor
    target: torch.Tensor
    modalities: tuple[str, ...]
    index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    # (modality, path, reason) of the files found unreadable while loading this batch, possibly in a
    # DataLoader worker: the main process merges them with ``dataset.record_unreadable(batch.unreadable)``
    unreadable: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.present.dtype != torch.bool or self.present.dim() != 2:
            raise ValueError(
                f"present must be a bool [B, M] tensor, got {self.present.dtype} {tuple(self.present.shape)}"
            )
        if self.present.shape[1] != len(self.modalities):
            raise ValueError(
                f"present has {self.present.shape[1]} columns but there are {len(self.modalities)} modalities"
            )
        missing = [m for m in self.modalities if m not in self.inputs]
        if missing:
            raise ValueError(f"batch inputs lack modalities {missing}; every modality needs a (zero) tensor")

    def __len__(self) -> int:
        return self.present.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device``."""
        return replace(
            self,
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            present=self.present.to(device),
            target=self.target.to(device),
            index=self.index.to(device),
        )

    def restrict(self, subset: int) -> Batch:
        """AND the mask with one subset (a bitmask) for every sample; inputs of dropped modalities are zeroed."""
        keep = subset_mask(subset, len(self.modalities)).to(self.present.device)
        return self.with_present(self.present & keep)

    def with_present(self, present: torch.Tensor) -> Batch:
        """A batch with another ``[B, M]`` mask; inputs of absent modalities are zeroed.

        Zeroing selects with ``torch.where`` rather than multiplying by the mask: a NaN or Inf in an absent
        input stays out of the batch (``NaN · 0 = NaN``; ``where(False, NaN, 0) = 0``).

        Shape: inputs[m] ``[B, ...]``, present ``[B, M]`` bool.
        """
        inputs = {}
        for j, name in enumerate(self.modalities):
            x = self.inputs[name]
            keep = present[:, j].view(-1, *([1] * (x.dim() - 1)))  # [B, 1, ..., 1]
            inputs[name] = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return replace(self, inputs=inputs, present=present)

    def with_mask(self, present: torch.Tensor) -> Batch:
        """A batch with another ``[B, M]`` mask and the inputs untouched: training-time modality dropout.

        The papers drop a modality with a Bernoulli indicator on the encoder *output*; ``MultimodalModel.fuse``
        zeroes the features of absent modalities, so the encoders (and their BatchNorm statistics) see the
        real inputs of the samples that keep each modality (``encode`` skips the others), never all-zero images.
        (``with_present`` also zeroes the inputs: data that is absent.)

        Shape: present ``[B, M]`` bool, like ``self.present``.
        """
        if present.shape != self.present.shape or present.dtype != torch.bool:
            raise ValueError(
                f"with_mask needs a bool mask of shape {tuple(self.present.shape)}, got {present.dtype} "
                f"{tuple(present.shape)}"
            )
        return replace(self, present=present)
