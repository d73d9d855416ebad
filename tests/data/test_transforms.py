"""Paired augmentation: one geometry for every modality and the label map, jitter on RGB only."""

from __future__ import annotations

import pytest
import torch

from mmrobust.data.base import IGNORE_INDEX
from mmrobust.data.transforms import PairedAugment
from mmrobust.registry import ConfigError

VALUES = torch.tensor([0, 1, 2, 3, 7, 12])  # label values used (not contiguous on purpose)


def scene(h: int = 32, w: int = 40, block: int = 8, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A label map of ``block``-sized squares and images that are exact functions of the label."""
    g = torch.Generator().manual_seed(seed)
    coarse = VALUES[torch.randint(len(VALUES), (h // block + 1, w // block + 1), generator=g)]
    label = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    return images_of(label), label


def images_of(label: torch.Tensor) -> dict[str, torch.Tensor]:
    f = label.float()
    rgb = torch.stack([0.1 + f / 20, 0.9 - f / 20, 0.2 + f / 40])  # [3, H, W] in (0, 1)
    return {"rgb": rgb, "depth": (100 + 10 * f)[None], "ir": (0.5 + f / 30)[None]}


GEOMETRY = {"scale": (0.5, 2.0), "flip": True, "rotate": 30.0}


@pytest.mark.parametrize("seed", range(6))
def test_same_geometry_for_every_modality_and_the_label(seed):
    inputs, label = scene(seed=seed)
    aug = PairedAugment(size=(24, 36), photometric=(), nearest=("rgb", "depth", "ir"), **GEOMETRY)
    torch.manual_seed(seed)
    out, warped = aug(inputs, label)
    assert warped is not None and warped.dtype == torch.int64 and warped.shape == (24, 36)
    assert set(warped.unique().tolist()) <= set(VALUES.tolist()) | {IGNORE_INDEX}
    inside = warped != IGNORE_INDEX
    assert inside.sum() > 0
    expected = images_of(warped.clamp_max(VALUES.max()))
    for m in ("rgb", "depth", "ir"):
        assert out[m] is not None and out[m].shape == (inputs[m].shape[0], 24, 36)
        assert torch.allclose(out[m][:, inside], expected[m][:, inside]), m
        assert (out[m][:, ~inside] == 0).all(), f"{m} is padded with 0 where the label is padded with 255"


def test_bilinear_images_stay_aligned_with_the_nearest_label():
    inputs, label = scene(h=48, w=48, block=12, seed=3)
    aug = PairedAugment(size=(40, 40), photometric=(), **GEOMETRY)  # bilinear images
    for seed in range(5):
        torch.manual_seed(seed)
        out, warped = aug(inputs, label)
        inside = warped != IGNORE_INDEX
        rgb = out["rgb"]
        assert rgb is not None
        agree = torch.isclose(rgb, images_of(warped.clamp_max(12))["rgb"], atol=1e-4).all(dim=0)
        assert agree[inside].float().mean() > 0.75  # only block borders blend; a misaligned label agrees ~1/6


def test_flip_is_drawn_and_is_an_exact_mirror_of_all_modalities():
    inputs, label = scene(seed=1)
    aug = PairedAugment(scale=(1.0, 1.0), flip=True, photometric=())
    flipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out, warped = aug(inputs, label)
        is_flip = torch.equal(warped, label.flip(-1))
        assert is_flip or torch.equal(warped, label)
        for m in ("depth", "ir"):
            reference = inputs[m].flip(-1) if is_flip else inputs[m]
            assert torch.allclose(out[m], reference, atol=1e-5)
        flipped += is_flip
    assert 3 <= flipped <= 17


def test_jitter_changes_rgb_only_and_leaves_depth_untouched():
    inputs, label = scene(seed=2)
    plain = PairedAugment(scale=(1.0, 1.0), flip=False, jitter=0.0)
    jittered = PairedAugment(scale=(1.0, 1.0), flip=False, jitter=0.4)
    torch.manual_seed(0)
    out_plain, _ = plain(inputs, label)
    torch.manual_seed(0)
    out_jit, warped = jittered(inputs, label)
    assert torch.equal(warped, label)
    assert torch.allclose(out_jit["depth"], inputs["depth"], atol=1e-4)
    assert torch.allclose(out_jit["ir"], inputs["ir"], atol=1e-6)
    assert torch.allclose(out_plain["rgb"], inputs["rgb"], atol=1e-5)
    assert (out_jit["rgb"] - inputs["rgb"]).abs().mean() > 0.01
    assert out_jit["rgb"].min() >= 0 and out_jit["rgb"].max() <= 1


def test_seeded_by_torch_rng_or_a_generator():
    inputs, label = scene(seed=4)
    aug = PairedAugment(size=(20, 20), jitter=0.2, **GEOMETRY)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(aug(inputs, label))
    assert torch.equal(runs[0][1], runs[1][1]) and torch.equal(runs[0][0]["rgb"], runs[1][0]["rgb"])
    a = aug(inputs, label, generator=torch.Generator().manual_seed(5))
    b = aug(inputs, label, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[1], b[1]) and torch.equal(a[0]["depth"], b[0]["depth"])


def test_without_label_and_with_an_absent_modality():
    inputs, _ = scene(seed=5)
    aug = PairedAugment(size=(16, 16), **GEOMETRY)
    torch.manual_seed(0)
    out, warped = aug({"rgb": inputs["rgb"], "depth": None, "ir": inputs["ir"]})
    assert warped is None and out["depth"] is None
    assert out["rgb"].shape == (3, 16, 16) and out["ir"].shape == (1, 16, 16)


def test_misaligned_inputs_and_bad_config_fail_clearly():
    inputs, label = scene()
    with pytest.raises(ValueError, match="aligned images"):
        PairedAugment()(inputs, label[:-1])
    with pytest.raises(ConfigError, match="augment.colour: unknown key"):
        PairedAugment.from_config({"colour": 0.1}, (8, 8))
    with pytest.raises(ConfigError, match="augment.scale"):
        PairedAugment.from_config({"scale": [2.0, 1.0]}, (8, 8))
    assert PairedAugment.from_config(None, (8, 8)) is None
    built = PairedAugment.from_config({"scale": [0.5, 2.0], "jitter": 0.2}, (8, 8), nearest=["depth"])
    assert built is not None and built.nearest == ("depth",) and built.scale == (0.5, 2.0)
