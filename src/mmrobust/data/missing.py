"""Missing-modality policies: which subset of modalities each training sample keeps.

Draws are a pure function of ``(seed, epoch, sample index)`` through a counter-based hash, so a sample
gets the same subset however the data is split across processes or workers, and a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    """Each modality is kept independently with its probability ``keep`` (or dropped with its missing rate
    ``rates``: ``keep_m = 1 − r_m``); an empty draw is redrawn (conditioning on a non-empty subset).

    ``keep`` is one probability in (0, 1] or one per modality (a list in modality order or a mapping
    ``{name: p}``); ``rates`` is one missing rate in [0, 1) or one per modality (list, or ``{name: r}`` where an
    omitted modality has rate 0) — imbalanced missing rates, as MCE (Pattern Recognition 2025) trains with.
    Give one of the two (neither: ``keep = 0.5``). A subset S ≠ ∅ is drawn with probability
    ``Π_{m∈S} (1 − r_m) Π_{m∉S} r_m / (1 − Π_m r_m)``, so modality m is dropped for a fraction
    ``(r_m − Π_k r_k) / (1 − Π_k r_k)`` of the samples (exactly ``r_m`` when another modality never drops).
    """

    def __init__(
        self,
        modalities: Sequence[str],
        keep: Sequence[float] | Mapping[str, float] | float | None = None,
        rates: Sequence[float] | Mapping[str, float] | float | None = None,
    ) -> None:
        super().__init__(modalities)
        if keep is not None and rates is not None:
            raise ConfigError(
                "method.distribution: give keep (probabilities to keep) or rates (missing rates), not both"
            )
        if rates is not None:
            drop = per_modality(rates, self.modalities, "method.distribution.rates", default=0.0)
            if not all(0.0 <= r < 1.0 for r in drop):
                raise ConfigError(
                    f"method.distribution.rates: need missing rates in [0, 1) for {list(self.modalities)}, got {drop}"
                )
            probs = [1.0 - r for r in drop]
        else:
            probs = per_modality(
                0.5 if keep is None else keep, self.modalities, "method.distribution.keep", default=1.0
            )
            if not all(0.0 < p <= 1.0 for p in probs):
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


def per_modality(
    value: Sequence[float] | Mapping[str, float] | float, modalities: Sequence[str], key: str, default: float
) -> list[float]:
    """One float per modality from a scalar (all), a list in modality order, or ``{name: value}`` (omitted names
    get ``default``); a wrong length, an unknown name or a non-number is one ``ConfigError`` line naming ``key``."""
    if isinstance(value, Mapping):
        unknown = [str(k) for k in value if k not in modalities]
        if unknown:
            raise ConfigError(f"{key}: unknown modality {unknown[0]!r}; valid modalities: {list(modalities)}")
    try:
        if isinstance(value, Mapping):
            return [float(value.get(m, default)) for m in modalities]
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, (int, float)):
            return [float(value)] * len(modalities)
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key}: expected a number, a list of one number per modality or {{name: number}}, got {value!r}"
        ) from None
    if len(values) != len(modalities):
        raise ConfigError(f"{key}: need one value per modality {list(modalities)}, got {len(values)}")
    return values


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
