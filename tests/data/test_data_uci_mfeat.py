"""UCI Multiple Features: views, split sizes, stratification and train-only z-scoring."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mmrobust.data import DATASETS, Collate
from mmrobust.data.uci_mfeat import load_views
from mmrobust.registry import ConfigError

DIMS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}


@pytest.fixture(scope="module")
def splits():
    return {s: DATASETS.build("uci_mfeat", {"split": s}) for s in ("train", "val", "test")}


def test_six_views_with_their_dimensions(splits) -> None:
    ds = splits["train"]
    assert ds.modalities == tuple(DIMS)
    assert ds.shapes == {v: (d,) for v, d in DIMS.items()}
    assert ds.num_classes == 10
    s = ds[0]
    assert {v: tuple(x.shape) for v, x in s.inputs.items()} == ds.shapes
    batch = Collate(ds.modalities, ds.shapes)([ds[i] for i in range(4)])
    assert batch.present.all() and batch.inputs["fac"].shape == (4, 216)


def test_split_sizes_disjoint_and_stratified(splits) -> None:
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1200, 400, 400]
    rows = [set(splits[s].rows.tolist()) for s in ("train", "val", "test")]
    assert set.union(*rows) == set(range(2000))
    assert sum(len(r) for r in rows) == 2000  # hence disjoint
    labels = load_views()["labels"]
    for s, per_class in {"train": 120, "val": 40, "test": 40}.items():
        ds = splits[s]
        assert Counter(ds.targets()) == {c: per_class for c in range(10)}
        assert ds.targets() == labels[ds.rows].tolist()  # targets belong to the rows


def test_split_is_deterministic_and_seeded(splits) -> None:
    again = DATASETS.build("uci_mfeat", {"split": "test"})
    assert again.rows.tolist() == splits["test"].rows.tolist()
    assert torch.equal(again.features["zer"], splits["test"].features["zer"])
    other = DATASETS.build("uci_mfeat", {"split": "test", "split_seed": 1})
    assert other.rows.tolist() != splits["test"].rows.tolist()


def test_features_are_z_scored_with_train_statistics(splits) -> None:
    raw = load_views()
    for v in DIMS:
        x = splits["train"].features[v].double()
        assert x.mean(0).abs().max() < 1e-4
        assert (x.std(0, unbiased=False) - 1).abs().max() < 1e-3
        # val/test use the train statistics, not their own: reconstruct them from the raw rows
        train_raw = torch.from_numpy(raw[v][splits["train"].rows]).double()
        mean, std = train_raw.mean(0), train_raw.std(0, unbiased=False) + 1e-6
        test_raw = torch.from_numpy(raw[v][splits["test"].rows]).double()
        torch.testing.assert_close(splits["test"].features[v].double(), (test_raw - mean) / std, atol=1e-4, rtol=1e-4)
    assert splits["test"].features["pix"].mean(0).abs().max() > 1e-3  # so not z-scored on itself


def test_view_subset_keeps_the_given_order() -> None:
    ds = DATASETS.build("uci_mfeat", {"split": "val", "views": ["mor", "fou"]})
    assert ds.modalities == ("mor", "fou")
    assert ds.shapes == {"mor": (6,), "fou": (76,)}
    assert set(ds[0].inputs) == {"mor", "fou"}


@pytest.mark.parametrize(
    "config, match",
    [({"views": ["fou", "rgb"]}, r"rgb.*fou"), ({"split": "dev"}, "dev"), ({"views": "fou"}, r"views")],
)
def test_bad_config_is_a_config_error(config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DATASETS.build("uci_mfeat", config)
