"""Synthetic data: determinism, shapes, the SNR knob, missingness and redundancy."""

from __future__ import annotations

import pytest
import torch

from mmrobust.data import DATASETS
from mmrobust.registry import ConfigError


def make(**config):
    return DATASETS.build("synthetic", config)


def class_means(ds, m: str) -> torch.Tensor:
    x = ds.features[m].flatten(1)
    return torch.stack([x[ds.labels == c].mean(0) for c in range(ds.num_classes)])


def nearest_mean_accuracy(train, test, m: str) -> float:
    means = class_means(train, m)
    pred = torch.cdist(test.features[m].flatten(1), means).argmin(1)
    return (pred == test.labels).float().mean().item()


def test_deterministic_for_a_seed() -> None:
    cfg = {"modalities": ["a", "b"], "snr": [1.0, 0.5], "missing_rate": 0.3, "samples_per_split": [64, 8, 8]}
    one, two, other = make(**cfg), make(**cfg), make(**cfg, seed=1)
    for m in ("a", "b"):
        assert torch.equal(one.features[m], two.features[m])
        assert not torch.equal(one.features[m], other.features[m])
    assert torch.equal(one.labels, two.labels) and torch.equal(one.available, two.available)
    s1, s2 = one[5], two[5]
    assert s1.target == s2.target and all(
        (s1.inputs[m] is None and s2.inputs[m] is None) or torch.equal(s1.inputs[m], s2.inputs[m]) for m in "ab"
    )


def test_splits_are_different_draws_of_the_same_classes() -> None:
    cfg = {"snr": [4.0, 4.0], "samples_per_split": [256, 128, 128]}
    train, test = make(**cfg), make(split="test", **cfg)
    assert len(train) == 256 and len(test) == 128
    assert not torch.equal(train.features["a"][:128], test.features["a"])
    assert nearest_mean_accuracy(train, test, "a") > 0.9  # same prototypes across splits


def test_vector_and_image_shapes() -> None:
    vec = make(dim=7, samples_per_split=[10, 2, 2])
    assert vec.shapes == {"a": (7,), "b": (7,)} and vec[0].inputs["a"].shape == (7,)
    img = make(image_size=8, channels=3, modalities=["rgb"], samples_per_split=[10, 2, 2])
    assert img.shapes == {"rgb": (3, 8, 8)} and img[3].inputs["rgb"].shape == (3, 8, 8)
    assert img.features["rgb"].dtype == torch.float32


def test_snr_zero_carries_no_class_signal_while_high_snr_does() -> None:
    cfg = {
        "modalities": ["noise", "clear"],
        "snr": [0.0, 3.0],
        "num_classes": 4,
        "dim": 16,
        "samples_per_split": [2000, 10, 2000],
    }
    train, test = make(**cfg), make(split="test", **cfg)
    assert nearest_mean_accuracy(train, test, "clear") > 0.95
    assert abs(nearest_mean_accuracy(train, test, "noise") - 0.25) < 0.05
    # noise is N(0, 1) whatever the class
    x = train.features["noise"]
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


def test_image_modality_also_carries_its_signal() -> None:
    cfg = {"modalities": ["rgb"], "snr": [2.0], "image_size": 8, "samples_per_split": [400, 10, 400]}
    assert nearest_mean_accuracy(make(**cfg), make(split="test", **cfg), "rgb") > 0.95


def test_missing_rate_fraction_and_never_all_missing() -> None:
    rate = 0.4
    ds = make(modalities=["a", "b", "c"], missing_rate=rate, samples_per_split=[20000, 10, 10])
    missing = (~ds.available).float().mean(0)
    # modality 0 is restored when all three were dropped, so it misses rate - rate^3 of the time
    assert abs(missing[0].item() - (rate - rate**3)) < 0.02
    assert (missing[1:] - rate).abs().max().item() < 0.02
    assert ds.available.any(1).all()
    for i in range(50):
        s = ds[i]
        assert [s.inputs[m] is not None for m in "abc"] == ds.available[i].tolist()
    assert make(samples_per_split=[50, 2, 2]).available.all()  # default: complete data


@pytest.mark.parametrize("shared", [0.0, 0.5])
def test_redundant_modality_has_the_same_class_means(shared: float) -> None:
    cfg = {
        "modalities": ["a", "b", "c"],
        "snr": [5.0, 5.0, 5.0],
        "redundant_with": {"b": "a"},
        "shared": shared,
        "samples_per_split": [4000, 10, 10],
    }
    ds = make(**cfg)
    a, b, c = (class_means(ds, m) for m in "abc")
    noise = 6 * (2 / (4000 / 4)) ** 0.5  # six standard errors of a difference of two noisy class means
    assert (a - b).abs().max().item() < noise
    assert (a - c).abs().max().item() > 5 * noise  # an independent modality does differ


def test_shared_signal_correlates_modalities() -> None:
    def corr(shared: float) -> float:
        ds = make(
            modalities=["a", "b"],
            snr=[5.0, 5.0],
            shared=shared,
            num_classes=8,
            samples_per_split=[4000, 2, 2],
        )
        a, b = class_means(ds, "a"), class_means(ds, "b")
        # W_m is orthogonal, so with shared = 1 both modalities have the Gram matrix of the shared prototypes
        ga, gb = a @ a.T, b @ b.T
        off = ~torch.eye(8, dtype=torch.bool)
        return torch.corrcoef(torch.stack([ga[off], gb[off]]))[0, 1].item()

    assert corr(1.0) > 0.9
    assert abs(corr(0.0)) < 0.6


@pytest.mark.parametrize(
    "config, match",
    [
        ({"snr": [1.0]}, "snr"),
        ({"shared": 1.5}, "shared"),
        ({"missing_rate": 1.0}, "missing_rate"),
        ({"redundant_with": {"b": "b"}}, "redundant_with"),
        ({"redundant_with": {"b": "z"}}, "redundant_with"),
        ({"split": "dev"}, "dev"),
        ({"snr": "high"}, "snr"),
    ],
)
def test_bad_arguments_are_config_errors(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(**config)
