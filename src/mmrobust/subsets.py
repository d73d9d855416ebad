"""Modality subsets as bitmasks over the modality order.

Bit ``j`` of a subset is set when ``modalities[j]`` is present. With ``M`` modalities there are
``2**M - 1`` non-empty subsets; they are enumerated in the papers' order: by size, then by bitmask
(single modalities first, the full set last).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

PRESENT, MISSING = "●", "○"


def full_subset(num_modalities: int) -> int:
    """The bitmask with every modality present."""
    return (1 << num_modalities) - 1


def all_subsets(num_modalities: int) -> list[int]:
    """Every non-empty subset, ordered by size then bitmask (singles first, full set last)."""
    if num_modalities < 1:
        raise ValueError(f"need at least one modality, got {num_modalities}")
    masks = range(1, 1 << num_modalities)
    return sorted(masks, key=lambda s: (s.bit_count(), s))


def members(subset: int, modalities: Sequence[str]) -> tuple[str, ...]:
    """The modality names in ``subset``."""
    return tuple(m for j, m in enumerate(modalities) if subset >> j & 1)


def subset_name(subset: int, modalities: Sequence[str]) -> str:
    """``'rgb+depth'`` style name of a subset."""
    if subset <= 0 or subset >= 1 << len(modalities):
        raise ValueError(f"subset {subset} is not a non-empty subset of {list(modalities)}")
    return "+".join(members(subset, modalities))


def subset_from_names(names: Iterable[str] | str, modalities: Sequence[str]) -> int:
    """Parse ``'rgb+depth'`` or ``['rgb', 'depth']`` into a bitmask."""
    if isinstance(names, str):
        names = names.split("+")
    subset = 0
    for name in names:
        if name not in modalities:
            raise ValueError(f"unknown modality {name!r}; valid modalities: {list(modalities)}")
        subset |= 1 << list(modalities).index(name)
    if subset == 0:
        raise ValueError("a subset needs at least one modality")
    return subset


def dot_row(subset: int, num_modalities: int) -> list[str]:
    """Paper-style row: ``●`` for a present modality, ``○`` for a missing one."""
    return [PRESENT if subset >> j & 1 else MISSING for j in range(num_modalities)]


def subset_mask(subset: int, num_modalities: int) -> torch.Tensor:
    """Bool vector ``[M]`` of a subset."""
    return torch.tensor([bool(subset >> j & 1) for j in range(num_modalities)])


def masks_to_subsets(present: torch.Tensor) -> torch.Tensor:
    """Encode a ``[B, M]`` bool mask into ``[B]`` integer bitmasks."""
    weights = 2 ** torch.arange(present.shape[1], device=present.device)
    return (present.long() * weights).sum(dim=1)


def subsets_to_masks(subsets: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """Decode ``[B]`` integer bitmasks into a ``[B, M]`` bool mask."""
    bits = 2 ** torch.arange(num_modalities, device=subsets.device)
    return (subsets.long().unsqueeze(1) & bits) > 0
