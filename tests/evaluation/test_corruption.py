"""The corruption registry: determinism, batch independence, exact fractions, strengths in the documented units,
shapes/dtypes kept, and one-line errors for a kind that does not fit a shape or a bad ``corrupt=`` string."""

from __future__ import annotations

import math

import pytest
import torch

from mmrobust.batch import Batch
from mmrobust.config import TrainCorruptConfig
from mmrobust.corruption import (
    CORRUPTIONS,
    augment_batch,
    chosen_samples,
    corrupt,
    corrupt_fraction,
    corrupt_indexed,
    parse_corruptions,
)
from mmrobust.registry import ConfigError

IMAGE, SPEC, VECTOR = (6, 3, 12, 10), (6, 8, 20), (6, 9)
FITS = {  # kind -> a shape it fits
    "gaussian": IMAGE,
    "salt": VECTOR,
    "blur": IMAGE,
    "occlusion": IMAGE,
    "time_mask": SPEC,
    "feature_noise": VECTOR,
}
RANDOM_KINDS = [k for k in FITS if k != "blur"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", list(FITS))
def test_same_seed_same_output_shape_and_dtype_kept(kind):
    x = torch.randn(FITS[kind], dtype=torch.float64)
    a, b = corrupt(x, kind, 20, gen(3)), corrupt(x, kind, 20, gen(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, x)
    if kind in RANDOM_KINDS:
        assert not torch.equal(a, corrupt(x, kind, 20, gen(4)))


@pytest.mark.parametrize("kind", list(FITS))
def test_strength_zero_is_identity(kind):
    x = torch.randn(FITS[kind])
    assert torch.equal(corrupt(x, kind, 0, gen(0)), x)


@pytest.mark.parametrize("kind", list(FITS))
def test_indexed_corruption_does_not_depend_on_the_batch_split(kind):
    x, index = torch.randn(FITS[kind]), torch.arange(10, 16)
    whole = corrupt_indexed(x, kind, 10, index, seed=7, stream=1)
    parts = torch.cat(
        [corrupt_indexed(x[:2], kind, 10, index[:2], 7, 1), corrupt_indexed(x[2:], kind, 10, index[2:], 7, 1)]
    )
    assert torch.equal(whole, parts)
    if kind in RANDOM_KINDS:  # another modality stream draws other noise
        assert not torch.equal(whole, corrupt_indexed(x, kind, 10, index, seed=7, stream=2))


@pytest.mark.parametrize("fraction,expected", [(0.5, 5), (0.3, 3), (0.25, 3), (0.0, 0), (1.0, 10)])
def test_corrupt_fraction_changes_exactly_the_requested_samples_and_keeps_the_rest_bit_for_bit(fraction, expected):
    x = torch.randn(10, 3, 8, 8)
    y, mask = corrupt_fraction(x, "gaussian", 5, fraction, gen(1))
    assert mask.dtype == torch.bool and int(mask.sum()) == expected == math.floor(fraction * 10 + 0.5)
    assert torch.equal(y[~mask], x[~mask])
    assert all(not torch.equal(y[i], x[i]) for i in torch.nonzero(mask).flatten())
    y2, mask2 = corrupt_fraction(x, "gaussian", 5, fraction, gen(1))
    assert torch.equal(mask, mask2) and torch.equal(y, y2)


def test_chosen_samples_is_exact_and_seeded():
    a = chosen_samples(101, 0.5, seed=0, stream=0)
    assert int(a.sum()) == 51 and torch.equal(a, chosen_samples(101, 0.5, 0, 0))
    assert not torch.equal(a, chosen_samples(101, 0.5, 0, 1))


def _ranged(b: int, d: int) -> torch.Tensor:
    """Samples of range exactly [0, 1]: 0.5 everywhere but one 0 and one 1 per sample."""
    x = torch.full((b, d), 0.5, dtype=torch.float64)
    x[:, 0], x[:, 1] = 0.0, 1.0
    return x


@pytest.mark.parametrize("s", [5.0, 10.0])
def test_gaussian_std_is_10s_over_255_of_the_sample_range_and_stays_in_range(s):
    x = _ranged(64, 2000)
    y = corrupt(x, "gaussian", s, gen(0))
    noise = (y - x)[:, 2:]
    sigma = 10 * s / 255  # QMF: std 10·s on the 0–255 scale; here the sample's range is 1
    clipped = 2 * (1 - torch.distributions.Normal(0, 1).cdf(torch.tensor(0.5 / sigma))).item()
    assert (noise.abs() >= 0.5 - 1e-12).double().mean().item() == pytest.approx(clipped, abs=0.01)
    assert y.min() >= 0 and y.max() <= 1
    normal, c = torch.distributions.Normal(0.0, 1.0), torch.tensor(0.5 / sigma, dtype=torch.float64)
    q, phi = 1 - normal.cdf(c), normal.log_prob(c).exp()
    clipped_var = (1 - 2 * q) - 2 * c * phi + 2 * q * c**2  # E[clip(z, -c, c)^2], z ~ N(0, 1)
    assert noise.std().item() == pytest.approx(sigma * clipped_var.sqrt().item(), rel=0.02)


def test_gaussian_on_images_scales_with_each_channel_range_and_shares_the_noise_map():
    x = torch.rand(4, 2, 32, 32, dtype=torch.float64) * 0.2 + 0.4
    x[:, 1] = x[:, 0] * 3  # channel 1 has 3x the range of channel 0
    noise = corrupt(x, "gaussian", 1, gen(0)) - x
    assert (noise[:, 0] != 0).double().mean() > 0.9
    torch.testing.assert_close(noise[:, 1], 3 * noise[:, 0])  # clip bounds scale with the range too


@pytest.mark.parametrize("s", [5.0, 10.0])
def test_salt_sets_s_percent_of_elements_to_the_sample_min_or_max_half_each(s):
    x = _ranged(64, 2000)
    y = corrupt(x, "salt", s, gen(0))[:, 2:]
    pepper, salt_ = (y == 0).double().mean().item(), (y == 1).double().mean().item()
    assert pepper + salt_ == pytest.approx(s / 100, abs=0.004)
    assert pepper == pytest.approx(salt_, abs=0.004)
    assert torch.all((y == 0) | (y == 1) | (y == 0.5))


def test_salt_on_images_hits_whole_pixels_with_each_channel_extreme():
    x = torch.rand(2, 3, 40, 40)
    y = corrupt(x, "salt", 30, gen(0))
    hit = (y != x).any(dim=1)  # [B, H, W]
    low, high = x.amin(dim=(2, 3)), x.amax(dim=(2, 3))
    for b, i, j in torch.nonzero(hit).tolist():
        assert torch.equal(y[b, :, i, j], low[b]) or torch.equal(y[b, :, i, j], high[b])


@pytest.mark.parametrize("channels", [1, 5])
def test_blur_keeps_constants_and_spreads_an_impulse_with_std_sigma(channels):
    const = torch.full((2, channels, 9, 9), 0.7)
    torch.testing.assert_close(corrupt(const, "blur", 1.5), const)
    impulse = torch.zeros(1, channels, 41, 41)
    impulse[..., 20, 20] = 1.0
    y = corrupt(impulse, "blur", 2.0)[0, -1]
    assert y.sum().item() == pytest.approx(1.0, abs=1e-5)
    t = torch.arange(41.0) - 20
    std_rows = (y.sum(dim=1) * t**2).sum().sqrt().item()
    assert std_rows == pytest.approx(2.0, rel=0.02)
    big = corrupt(torch.rand(1, 1, 3, 3), "blur", 5.0)  # kernel larger than the image: replicate padding
    assert big.shape == (1, 1, 3, 3) and torch.isfinite(big).all()


def test_occlusion_zeroes_one_square_of_s_percent_of_the_area():
    x = torch.ones(5, 2, 16, 16)
    y = corrupt(x, "occlusion", 25, gen(0))
    for b in range(5):
        zero = y[b, 0] == 0
        rows, cols = torch.nonzero(zero.any(dim=1)).flatten(), torch.nonzero(zero.any(dim=0)).flatten()
        assert int(zero.sum()) == 64 and len(rows) == len(cols) == 8  # side round(sqrt(0.25·256)) = 8
        assert torch.equal(y[b, 0], y[b, 1])


def test_time_mask_zeroes_s_percent_of_consecutive_frames():
    y = corrupt(torch.ones(4, 8, 20), "time_mask", 10, gen(0))
    for b in range(4):
        frames = torch.nonzero((y[b] == 0).all(dim=0)).flatten().tolist()
        assert len(frames) == 2 and frames[1] == frames[0] + 1
        assert int((y[b] == 0).sum()) == 16


def test_feature_noise_std_is_s_over_10_of_the_sample_std():
    x = torch.randn(32, 4000, dtype=torch.float64) * torch.linspace(0.5, 3, 32, dtype=torch.float64)[:, None]
    noise = corrupt(x, "feature_noise", 5, gen(0)) - x
    ratio = noise.std(dim=1) / x.std(dim=1, unbiased=False)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.5), rtol=0.05, atol=0)


@pytest.mark.parametrize(
    "kind,shape,needs",
    [
        ("blur", VECTOR, "images"),
        ("occlusion", SPEC, "images"),
        ("time_mask", VECTOR, "spectrograms"),
        ("feature_noise", IMAGE, "vectors"),
    ],
)
def test_a_kind_that_does_not_fit_the_shape_is_one_config_error_line(kind, shape, needs):
    with pytest.raises(ConfigError) as error:
        corrupt(torch.zeros(shape), kind, 5)
    message = str(error.value)
    assert "\n" not in message and kind in message and needs in message and str(tuple(shape)) in message


def test_bad_kind_strength_or_dtype_is_one_config_error_line():
    for call in (
        lambda: corrupt(torch.zeros(2, 3), "speckle", 5),
        lambda: corrupt(torch.zeros(2, 3), "gaussian", -1),
        lambda: corrupt(torch.zeros(2, 3), "salt", 150),
        lambda: corrupt(torch.zeros(2, 3, dtype=torch.long), "gaussian", 5),
    ):
        with pytest.raises(ConfigError) as error:
            call()
        assert "\n" not in str(error.value)


def test_parse_corruptions():
    assert parse_corruptions("gaussian:5,salt:10") == [("gaussian", 5.0), ("salt", 10.0)]
    assert parse_corruptions(["blur:1.5", "blur:1.5"]) == [("blur", 1.5)]
    for bad in ("gauss:5", "gaussian", "gaussian:x", "gaussian:-1", "gaussian:5,,salt:1", "", "gaussian:nan"):
        with pytest.raises(ConfigError, match="expected KIND:STRENGTH") as error:
            parse_corruptions(bad)
        assert "\n" not in str(error.value)
    assert set(CORRUPTIONS) == set(FITS)


def _batch(index: list[int]) -> Batch:
    g = gen(5)
    n = len(index)
    full = {"a": torch.randn(100, 3, 8, 8, generator=g), "b": torch.randn(100, 7, generator=g)}
    return Batch(
        inputs={k: v[index] for k, v in full.items()},
        present=torch.ones(n, 2, dtype=torch.bool),
        target=torch.zeros(n, dtype=torch.long),
        modalities=("a", "b"),
        index=torch.tensor(index),
    )


def test_training_augmentation_uses_per_modality_rates_and_is_keyed_by_sample_and_epoch():
    options = TrainCorruptConfig(kinds=["gaussian", "salt"], max_strength=10, rates={"a": 1.0, "b": 0.0})
    batch = _batch(list(range(12)))
    out = augment_batch(batch, options, seed=0, epoch=0)
    assert torch.equal(out.inputs["b"], batch.inputs["b"])  # rate 0: untouched
    changed = [not torch.equal(out.inputs["a"][i], batch.inputs["a"][i]) for i in range(12)]
    assert sum(changed) >= 11  # rate 1 (a level drawn exactly 0 would leave one unchanged)
    halves = [augment_batch(_batch(list(range(s, s + 6))), options, 0, 0).inputs["a"] for s in (0, 6)]
    assert torch.equal(torch.cat(halves), out.inputs["a"])
    assert not torch.equal(augment_batch(batch, options, 0, 1).inputs["a"], out.inputs["a"])
    half = augment_batch(_batch(list(range(100))), TrainCorruptConfig(kinds=["gaussian"], fraction=0.5), 0, 0)
    hit = sum(not torch.equal(half.inputs["b"][i], _batch(list(range(100))).inputs["b"][i]) for i in range(100))
    assert 35 <= hit <= 65
    assert augment_batch(batch, TrainCorruptConfig(), 0, 0) is batch
