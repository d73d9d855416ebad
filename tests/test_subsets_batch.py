import pytest
import torch

from mmrobust.batch import Batch
from mmrobust.subsets import (
    all_subsets,
    dot_row,
    masks_to_subsets,
    subset_from_names,
    subset_name,
    subsets_to_masks,
)

MODS = ("rgb", "depth", "ir")


def test_all_subsets_counts_and_order():
    subsets = all_subsets(3)
    assert len(subsets) == 7 and len(all_subsets(6)) == 63
    assert [s.bit_count() for s in subsets] == [1, 1, 1, 2, 2, 2, 3]
    assert subsets[-1] == 0b111
    with pytest.raises(ValueError):
        all_subsets(0)


def test_names_round_trip_and_dots():
    for s in all_subsets(3):
        assert subset_from_names(subset_name(s, MODS), MODS) == s
    assert subset_name(0b011, MODS) == "rgb+depth"
    assert dot_row(0b101, 3) == ["●", "○", "●"]
    with pytest.raises(ValueError, match="valid modalities"):
        subset_from_names("rgb+thermal", MODS)
    with pytest.raises(ValueError):
        subset_name(0, MODS)


def test_mask_encoding_round_trip():
    present = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    codes = masks_to_subsets(present)
    assert codes.tolist() == [0b101, 0b010, 0b111]
    assert torch.equal(subsets_to_masks(codes, 3), present)


def make_batch():
    inputs = {m: torch.ones(2, 4) * (j + 1) for j, m in enumerate(MODS)}
    present = torch.tensor([[True, True, False], [True, False, True]])
    return Batch(inputs=inputs, present=present, target=torch.tensor([0, 1]), modalities=MODS)


def test_restrict_ands_mask_and_zeroes_inputs():
    b = make_batch().restrict(0b011)  # rgb+depth
    assert b.present.tolist() == [[True, True, False], [True, False, False]]
    assert torch.all(b.inputs["ir"] == 0)
    assert torch.all(b.inputs["depth"][1] == 0) and torch.all(b.inputs["depth"][0] == 2)


def test_batch_contract_errors():
    with pytest.raises(ValueError, match="bool"):
        Batch(inputs={}, present=torch.ones(2, 3), target=torch.zeros(2), modalities=MODS)
    with pytest.raises(ValueError, match="lack modalities"):
        Batch(
            inputs={"rgb": torch.zeros(2)},
            present=torch.ones(2, 3, dtype=torch.bool),
            target=torch.zeros(2),
            modalities=MODS,
        )
