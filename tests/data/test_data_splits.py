"""Seeded stratified splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mmrobust.data.splits import stratified_split

LABELS = [0] * 50 + [1] * 30 + [2] * 20


def test_parts_are_disjoint_sorted_and_cover_everything() -> None:
    parts = stratified_split(LABELS, [0.6, 0.2, 0.2], seed=0)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(100)) and len(joined) == 100
    assert all(np.array_equal(p, np.sort(p)) and p.dtype == np.int64 for p in parts)


def test_each_part_keeps_the_class_proportions() -> None:
    parts = stratified_split(LABELS, [0.6, 0.2, 0.2], seed=0)
    counts = [Counter(np.asarray(LABELS)[p].tolist()) for p in parts]
    assert counts == [{0: 30, 1: 18, 2: 12}, {0: 10, 1: 6, 2: 4}, {0: 10, 1: 6, 2: 4}]


def test_interleaved_string_labels_are_stratified() -> None:
    labels = ["x", "y", "y", "y"] * 10  # 10 x, 30 y
    parts = stratified_split(labels, [0.5, 0.5], seed=3)
    for p in parts:
        assert Counter(np.asarray(labels)[p].tolist()) == {"x": 5, "y": 15}


def test_deterministic_and_seed_dependent() -> None:
    a = stratified_split(LABELS, [0.6, 0.2, 0.2], seed=0)
    b = stratified_split(LABELS, [0.6, 0.2, 0.2], seed=0)
    c = stratified_split(LABELS, [0.6, 0.2, 0.2], seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_zero_fraction_gives_an_empty_part() -> None:
    parts = stratified_split(LABELS, [1.0, 0.0, 0.0], seed=0)
    assert len(parts[0]) == 100 and len(parts[1]) == 0 and len(parts[2]) == 0


@pytest.mark.parametrize("fractions", [[0.6, 0.2, 0.1], [0.7, 0.2, 0.2], [1.2, -0.2]])
def test_fractions_must_be_non_negative_and_sum_to_one(fractions: list[float]) -> None:
    with pytest.raises(ValueError, match=r"dataset\.fractions: .*sum to 1"):
        stratified_split(LABELS, fractions, seed=0)
