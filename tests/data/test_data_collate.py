"""Collate: stacking, the presence mask, zero-filling and shape errors."""

from __future__ import annotations

import pytest
import torch

from mmrobust.batch import Batch
from mmrobust.data import Collate, Sample

SHAPES = {"rgb": (3, 2, 2), "audio": (5,)}


def sample(index: int, rgb: torch.Tensor | None, audio: torch.Tensor | None, target: int = 0) -> Sample:
    return Sample({"rgb": rgb, "audio": audio}, target, index)


def test_stacks_present_modalities_and_zero_fills_absent_ones() -> None:
    rgb = torch.rand(3, 2, 2) + 0.5
    audio = torch.rand(5) + 0.5
    batch = Collate(["rgb", "audio"], SHAPES)(
        [sample(7, rgb, audio, 1), sample(3, None, audio * 2, 2), sample(9, rgb * 3, None, 0)]
    )
    assert isinstance(batch, Batch)
    assert batch.modalities == ("rgb", "audio")
    assert batch.present.tolist() == [[True, True], [False, True], [True, False]]
    assert batch.inputs["rgb"].shape == (3, 3, 2, 2) and batch.inputs["audio"].shape == (3, 5)
    assert torch.equal(batch.inputs["rgb"][0], rgb) and torch.equal(batch.inputs["rgb"][2], rgb * 3)
    assert torch.equal(batch.inputs["rgb"][1], torch.zeros(3, 2, 2))
    assert torch.equal(batch.inputs["audio"][2], torch.zeros(5))
    assert batch.target.tolist() == [1, 2, 0] and batch.index.tolist() == [7, 3, 9]


def test_modality_order_follows_the_collate_not_the_sample() -> None:
    batch = Collate(["audio", "rgb"], SHAPES)([sample(0, None, torch.ones(5))])
    assert batch.present.tolist() == [[True, False]]


def test_modality_absent_in_the_whole_batch_still_has_a_zero_tensor() -> None:
    batch = Collate(["rgb", "audio"], SHAPES)([sample(0, None, torch.ones(5)), sample(1, None, torch.ones(5))])
    assert not batch.present[:, 0].any()
    assert torch.equal(batch.inputs["rgb"], torch.zeros(2, 3, 2, 2))


def test_wrong_shape_names_sample_index_and_modality() -> None:
    collate = Collate(["rgb", "audio"], SHAPES)
    good = sample(11, torch.zeros(3, 2, 2), torch.zeros(5))
    bad = sample(42, torch.zeros(3, 2, 2), torch.zeros(6))
    with pytest.raises(ValueError, match=r"sample 42: modality 'audio' has shape \(6,\), expected \(5,\)"):
        collate([good, bad])


def test_collate_is_picklable_for_dataloader_workers() -> None:
    import pickle

    collate = pickle.loads(pickle.dumps(Collate(["rgb", "audio"], SHAPES)))
    batch = collate([sample(0, torch.ones(3, 2, 2), None)])
    assert batch.present.tolist() == [[True, False]]
