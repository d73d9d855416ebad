"""Absent modalities are zeroed with ``torch.where``: a NaN/Inf in an absent input or feature never leaks."""

from __future__ import annotations

import pytest
import torch

from mmrobust.subsets import all_subsets
from tests.conftest import batch_of, tiny_dataset, tiny_model


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_absent_input_leaves_every_subset_finite_and_equal_to_zero_input(bad: float) -> None:
    ds = tiny_dataset()
    model = tiny_model(ds).eval()
    batch = batch_of(ds, 8)
    poisoned = dict(batch.inputs)
    poisoned["c"] = poisoned["c"].clone()
    poisoned["c"][::2] = bad  # rows 0, 2, 4, 6 of modality c hold non-finite values ...
    present = batch.present.clone()
    present[::2, 2] = False  # ... and c is absent for exactly those rows
    clean = dict(batch.inputs)
    clean["c"] = torch.where(present[:, 2:3], clean["c"], torch.zeros(()))
    dirty_batch = type(batch)(poisoned, present, batch.target, batch.modalities, batch.index)
    clean_batch = type(batch)(clean, present, batch.target, batch.modalities, batch.index)
    with torch.no_grad():
        for subset in all_subsets(3):
            dirty = model(dirty_batch.restrict(subset))
            assert torch.isfinite(dirty).all(), subset
            assert torch.equal(dirty, model(clean_batch.restrict(subset))), subset


def test_fuse_zeroes_a_non_finite_feature_of_an_absent_modality() -> None:
    ds = tiny_dataset()
    model = tiny_model(ds).eval()
    batch = batch_of(ds, 4)
    with torch.no_grad():
        feats = model.encode(batch)
        bad = dict(feats)
        bad["a"] = feats["a"].clone()
        bad["a"][1] = float("nan")
        present = batch.present.clone()
        present[1, 0] = False
        zeroed = dict(feats)
        zeroed["a"] = feats["a"].clone()
        zeroed["a"][1] = 0.0
        out = model.head(model.neck(model.fuse(bad, present)))
        assert torch.isfinite(out).all()
        assert torch.equal(out, model.head(model.neck(model.fuse(zeroed, present))))


def test_with_present_keeps_present_values_bit_exact() -> None:
    batch = batch_of(tiny_dataset(), 4)
    kept = batch.with_present(batch.present)
    for m in batch.modalities:
        assert torch.equal(kept.inputs[m], batch.inputs[m])
    none = batch.with_present(torch.zeros_like(batch.present))
    assert all(torch.count_nonzero(none.inputs[m]) == 0 for m in batch.modalities)
