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


def reference_collate(modalities, shapes, samples):
    """The former per-sample loop (``stacked[i] = x``): the semantics the vectorized collate must keep."""
    present = torch.zeros(len(samples), len(modalities), dtype=torch.bool)
    inputs = {}
    for j, name in enumerate(modalities):
        stacked = torch.zeros(len(samples), *shapes[name])
        for i, s in enumerate(samples):
            x = s.inputs.get(name)
            if x is not None:
                stacked[i] = x
                present[i, j] = True
        inputs[name] = stacked
    return inputs, present


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
@pytest.mark.parametrize("pattern", ["all", "mixed", "none_of_rgb", "empty"])
def test_vectorized_collate_equals_the_per_sample_loop(dtype, pattern) -> None:
    g = torch.Generator().manual_seed(0)
    n = 0 if pattern == "empty" else 7
    samples = []
    for i in range(n):
        rgb = (torch.rand(3, 2, 2, generator=g) * 200).to(dtype)
        audio = (torch.rand(5, generator=g) * 200).to(dtype)
        if pattern == "mixed" and i % 3 == 1:
            rgb = None
        if pattern == "mixed" and i % 2 == 0:
            audio = None
        if pattern == "none_of_rgb":
            rgb = None
        samples.append(sample(100 + i, rgb, audio, i % 3))
    batch = Collate(["rgb", "audio"], SHAPES)(samples)
    inputs, present = reference_collate(["rgb", "audio"], SHAPES, samples)
    assert torch.equal(batch.present, present)
    for name in ("rgb", "audio"):
        assert batch.inputs[name].dtype == torch.float32
        assert torch.equal(batch.inputs[name], inputs[name])
    assert batch.index.tolist() == [100 + i for i in range(n)]


def test_vectorized_collate_does_not_alias_the_samples() -> None:
    rgb = torch.ones(3, 2, 2)
    batch = Collate(["rgb", "audio"], SHAPES)([sample(0, rgb, None), sample(1, rgb, None)])
    batch.inputs["rgb"][0] += 1
    assert torch.equal(rgb, torch.ones(3, 2, 2))
