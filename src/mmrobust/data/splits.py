"""Seeded, stratified train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmrobust.registry import ConfigError


def stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split sample indices into parts with the given fractions, class by class.

    Every part keeps the class proportions of ``labels`` (up to rounding); the result depends only on
    ``labels``, ``fractions`` and ``seed``. Returns one sorted index array per fraction.

    Raises:
        ConfigError: naming ``dataset.fractions`` unless they are non-negative and sum to 1.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
        raise ConfigError(f"dataset.fractions: expected non-negative fractions that sum to 1, got {list(fractions)}")
    labels_arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    bounds = np.cumsum(fractions)
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        cuts = np.round(bounds * len(idx)).astype(int)
        start = 0
        for p, end in enumerate(cuts):
            parts[p].extend(idx[start:end].tolist())
            start = end
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
