"""Cityscapes loader on a fake copy of the download layout (``make_cityscapes``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.fake_seg_layouts import CITY_SIZE, make_cityscapes, write_png8

from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.base import IGNORE_INDEX
from mmrobust.data.cityscapes import DISPARITY_MEAN, DISPARITY_STD, TRAIN_IDS

SIZE = list(CITY_SIZE)


@pytest.fixture
def root(tmp_path):
    return make_cityscapes(tmp_path / "cityscapes")


def build(root, split="train", **config):
    return DATASETS.build("cityscapes", {"root": str(root), "size": SIZE, **config, "split": split})


def test_splits_test_is_published_val_and_val_is_carved_from_train(root):
    train, val, test = (build(root, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (9, 1, 4)
    assert all("frankfurt" in i.name for i in test.items)
    assert {i.name for i in train.items}.isdisjoint(i.name for i in val.items)
    assert {i.name.split("_")[0] for i in train.items + val.items} == {"aachen", "bochum"}
    sample = train[0]
    assert sample.inputs["rgb"].shape == (3, *SIZE) and sample.inputs["depth"].shape == (1, *SIZE)
    assert sample.target.dtype == torch.int64 and train.num_classes == 19 and train.class_names[13] == "car"


def test_label_ids_map_to_the_19_train_ids(root):
    ds = build(root, "test")
    raw = np.asarray(Image.open(ds.items[0].label)).astype(np.int64)
    target = ds[0].target.numpy()
    assert (target[raw == 7] == 0).all() and (target[raw == 26] == 13).all() and (target[raw == 33] == 18).all()
    assert (target[raw == 0] == IGNORE_INDEX).all() and (target[raw == 4] == IGNORE_INDEX).all()
    expected = np.vectorize(lambda v: TRAIN_IDS.get(v, IGNORE_INDEX))(raw)
    assert np.array_equal(target, expected)


def test_disparity_is_p_minus_1_over_256_and_invalid_stays_zero(root):
    ds = build(root, "test")
    raw = np.asarray(Image.open(ds.items[0].label)).astype(np.float64)
    depth = ds[0].inputs["depth"][0]
    disparity = (1000 + 100 * raw[:, 1:] - 1) / 256
    assert (depth[:, 0] == 0).all()
    assert torch.allclose(depth[:, 1:], torch.from_numpy((disparity - DISPARITY_MEAN) / DISPARITY_STD).float())


def test_missing_disparity_marks_depth_absent_missing_label_is_a_layout_error(root):
    ds = build(root, "test")
    ds.items[2].depth.unlink()
    assert ds[2].inputs["depth"] is None and ds[2].inputs["rgb"] is not None and ds.unreadable["depth"] == 1
    ds.items[3].label.unlink()
    with pytest.raises(DatasetLayoutError, match=r"gtFine_labelIds\.png is missing; expected layout"):
        build(root, "test")
    ds.items[3].rgb.unlink()  # a sample with neither image nor label is no longer listed
    assert len(build(root, "test")) == 3


def test_unknown_label_ids_and_wrong_size_are_named(root):
    ds = build(root, "test")
    bad = np.full(CITY_SIZE, 7)
    bad[0, 0] = 40
    write_png8(ds.items[0].label, bad)
    with pytest.raises(DatasetLayoutError, match=r"has values 40 outside the classes; expected Cityscapes label ids"):
        ds[0]
    write_png8(ds.items[1].label, np.full((16, 32), 7))
    with pytest.raises(DatasetLayoutError, match=r"is 16x32 but its rgb file .*leftImg8bit\.png is 32x64"):
        ds[1]


def test_missing_split_folder_is_a_layout_error_and_status_says_so(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"leftImg8bit/train is missing; expected layout"):
        build(tmp_path, "train")
    rows = dict(DATASETS.get("cityscapes").layout_status({"root": str(tmp_path)}))  # type: ignore[attr-defined]
    assert rows["leftImg8bit/val"].startswith("MISSING") and rows["gtFine/train"].startswith("MISSING")
