"""Missing-modality policies: which subset of modalities each training sample keeps.

Draws are a pure function of ``(seed, epoch, sample index)`` through a counter-based hash, so a sample
gets the same subset however the data is split across processes or workers, and a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmrobust.registry import ConfigError, Registry
from mmrobust.subsets import all_subsets, subset_from_names, subsets_to_masks

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash_uniform(seed: int, epoch: int, index: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Uniform floats in [0, 1), one per entry of ``index``, from SplitMix64 of (seed, epoch, index, stream).

    Shape: ``index [B] -> [B]`` (float64).
    """
    with np.errstate(over="ignore"):
        key = index.detach().cpu().numpy().astype(np.uint64)
        x = key * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0xBF58476D1CE4E5B9)
        x = (
            x
            + np.uint64(epoch & 0xFFFFFFFF) * np.uint64(0x94D049BB133111EB)
            + np.uint64(stream) * np.uint64(0x2545F4914F6CDD1D)
        )
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x = x ^ (x >> np.uint64(31))
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) / float(1 << 53)).to(index.device)


class SubsetPolicy:
    """Draws a ``[B, M]`` keep-mask for a batch. Subclasses implement ``draw``."""

    def __init__(self, modalities: Sequence[str]) -> None:
        self.modalities = tuple(modalities)

    def draw(self, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


SUBSET_POLICIES: Registry[SubsetPolicy] = Registry("subset distribution")


@SUBSET_POLICIES.register("uniform")
class UniformSubsets(SubsetPolicy):
    """Each sample keeps a subset drawn uniformly from the 2^M − 1 non-empty subsets."""

    def draw(self, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        choices = torch.tensor(all_subsets(len(self.modalities)), device=index.device)
        u = hash_uniform(seed, epoch, index)
        pick = (u * len(choices)).long().clamp_max(len(choices) - 1)
        return subsets_to_masks(choices[pick], len(self.modalities))


@SUBSET_POLICIES.register("independent")
class IndependentKeep(SubsetPolicy):
    """Each modality is kept independently with its probability ``keep``; an empty draw is redrawn
    (conditioning on a non-empty subset)."""

    def __init__(self, modalities: Sequence[str], keep: list[float] | float = 0.5) -> None:
        super().__init__(modalities)
        probs = [float(keep)] * len(self.modalities) if isinstance(keep, (int, float)) else [float(k) for k in keep]
        if len(probs) != len(self.modalities) or not all(0.0 < p <= 1.0 for p in probs):
            raise ConfigError(
                f"method.distribution.keep: need one probability in (0, 1] per modality {list(self.modalities)}"
            )
        self.keep = torch.tensor(probs, dtype=torch.float64)

    def draw(self, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        mask = torch.zeros(len(index), len(self.modalities), dtype=torch.bool, device=index.device)
        todo = torch.ones(len(index), dtype=torch.bool, device=index.device)
        for attempt in range(64):
            u = torch.stack(
                [
                    hash_uniform(seed, epoch, index, stream=1 + attempt * len(self.modalities) + j)
                    for j in range(len(self.modalities))
                ],
                dim=1,
            )
            draw = u < self.keep.to(u.device)
            mask[todo] = draw[todo]
            todo = ~mask.any(dim=1)
            if not todo.any():
                return mask
        mask[todo] = True  # vanishingly unlikely: fall back to all modalities
        return mask


@SUBSET_POLICIES.register("weighted")
class WeightedSubsets(SubsetPolicy):
    """Each sample keeps one subset from a fixed list, with the given weights.

    ``subsets`` are names like ``rgb+depth``; ``weights`` default to uniform.
    """

    def __init__(self, modalities: Sequence[str], subsets: list[str], weights: list[float] | None = None) -> None:
        super().__init__(modalities)
        try:
            self.choices = torch.tensor([subset_from_names(s, self.modalities) for s in subsets])
        except ValueError as error:
            raise ConfigError(f"method.distribution.subsets: {error}") from error
        w = torch.tensor(weights if weights is not None else [1.0] * len(subsets), dtype=torch.float64)
        if len(w) != len(subsets) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError("method.distribution.weights: need one non-negative weight per subset, not all zero")
        self.cdf = torch.cumsum(w / w.sum(), 0)

    def draw(self, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        u = hash_uniform(seed, epoch, index)
        pick = torch.searchsorted(self.cdf.to(u.device), u, right=True).clamp_max(len(self.choices) - 1)
        return subsets_to_masks(self.choices.to(index.device)[pick], len(self.modalities))
