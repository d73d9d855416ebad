"""The roles of a run's modalities for learning with privileged information.

A run declares its **ordinary** modalities (present at deployment) and its **privileged** ones (training only)
in the method config, ``method.ordinary: [rgb]``, ``method.privileged: [depth]``; every other modality of the
dataset is ignored. Defaults: ordinary = the first modality, privileged = the first modality that is not
ordinary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmrobust.registry import ConfigError
from mmrobust.subsets import all_subsets, subset_from_names


@dataclass(frozen=True)
class Roles:
    """The ordinary and privileged modalities of a run and their bitmasks over the modality order."""

    modalities: tuple[str, ...]
    ordinary: tuple[str, ...]
    privileged: tuple[str, ...]

    @property
    def ordinary_subset(self) -> int:
        return subset_from_names(self.ordinary, self.modalities)

    @property
    def privileged_subset(self) -> int:
        return subset_from_names(self.privileged, self.modalities)

    def ordinary_subsets(self) -> list[int]:
        """Every non-empty subset of the ordinary modalities (papers' order)."""
        return [s for s in all_subsets(len(self.modalities)) if s & ~self.ordinary_subset == 0]


def resolve_roles(
    modalities: Sequence[str], ordinary: Sequence[str] | None = None, privileged: Sequence[str] | None = None
) -> Roles:
    """Validate the declared roles and fill the defaults (see the module docstring)."""
    modalities = tuple(modalities)
    ordinary = tuple(ordinary) if ordinary else modalities[:1]
    if privileged is None:
        privileged = tuple(m for m in modalities if m not in ordinary)[:1]
    privileged = tuple(privileged)
    for key, names in (("ordinary", ordinary), ("privileged", privileged)):
        unknown = [m for m in names if m not in modalities]
        if unknown:
            raise ConfigError(f"method.{key}: unknown modalities {unknown}; valid modalities: {list(modalities)}")
    if set(ordinary) & set(privileged):
        raise ConfigError(f"method.ordinary {list(ordinary)} and method.privileged {list(privileged)} overlap")
    return Roles(modalities, ordinary, privileged)
