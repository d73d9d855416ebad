"""NYUv2 loader on a fake copy of ESANet's prepared layout (``fake_seg_layouts.make_nyuv2``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.fake_seg_layouts import NYU_SIZE, label_colour, make_nyuv2, write_depth16, write_png8

from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.base import IGNORE_INDEX
from mmrobust.data.nyuv2 import DEPTH_STATS
from mmrobust.data.seg_common import IMAGENET_MEAN, IMAGENET_STD
from mmrobust.registry import ConfigError

SIZE = list(NYU_SIZE)


@pytest.fixture
def root(tmp_path):
    return make_nyuv2(tmp_path / "nyuv2")


def build(root, split="train", **config):
    return DATASETS.build("nyuv2", {"root": str(root), "size": SIZE, **config, "split": split})


def raw_of(root, split, name):
    return np.asarray(Image.open(root / split / "labels_40" / f"{name}.png")).astype(np.int64)


def test_every_split_loads_with_the_right_shapes_and_types(root):
    splits = {s: build(root, s) for s in ("train", "val", "test")}
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (9, 1, 4)
    train_names = {i.name for i in splits["train"].items} | {i.name for i in splits["val"].items}
    assert train_names == {f"{n:04d}" for n in range(1, 11)}  # val carved from train, disjoint
    assert not {i.name for i in splits["train"].items} & {i.name for i in splits["val"].items}
    for ds in splits.values():
        assert ds.task == "segmentation" and ds.num_classes == 40 and len(ds.class_names) == 40
        sample = ds[0]
        assert sample.inputs["rgb"].shape == (3, *SIZE) and sample.inputs["rgb"].dtype == torch.float32
        assert sample.inputs["depth"].shape == (1, *SIZE) and sample.inputs["depth"].dtype == torch.float32
        assert sample.target.shape == tuple(SIZE) and sample.target.dtype == torch.int64
        assert ds.shapes == {"rgb": (3, *SIZE), "depth": (1, *SIZE)}


def test_labels_void_to_255_and_one_to_forty_shifted_down(root):
    ds = build(root, "test")
    raw = raw_of(root, "test", ds.items[0].name)
    target = ds[0].target.numpy()
    assert np.array_equal(target, np.where(raw == 0, IGNORE_INDEX, raw - 1))
    assert (target[raw == 0] == 255).all() and (target[raw == 40] == 39).all() and (target[raw == 1] == 0).all()


def test_rgb_and_depth_are_normalized_and_raw_depth_keeps_invalid_at_zero(root):
    ds = build(root, "test")
    raw = raw_of(root, "test", ds.items[0].name)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    colour = torch.from_numpy(label_colour(raw)).permute(2, 0, 1).float() / 255
    assert torch.allclose(ds[0].inputs["rgb"], (colour - mean) / std, atol=1e-5)
    d_mean, d_std = DEPTH_STATS["refined"]
    assert torch.allclose(ds[0].inputs["depth"][0], torch.from_numpy((1000.0 + 100 * raw - d_mean) / d_std).float())
    raw_ds = build(root, "test", depth="raw")
    depth = raw_ds[0].inputs["depth"][0]
    r_mean, r_std = DEPTH_STATS["raw"]
    assert (depth[:, 0] == 0).all() and torch.allclose(
        depth[:, 1], torch.from_numpy((1000.0 + 100 * raw[:, 1] - r_mean) / r_std).float()
    )


def test_resize_bilinear_inputs_nearest_labels_and_max_samples(root):
    ds = build(root, "test", size=[16, 24], max_samples=2)
    assert len(ds) == 2
    sample = ds[1]
    assert sample.inputs["rgb"].shape == (3, 16, 24) and sample.target.shape == (16, 24)
    raw = raw_of(root, "test", ds.items[1].name)
    assert set(sample.target.unique().tolist()) <= set(np.where(raw == 0, 255, raw - 1).ravel().tolist())


def test_augment_applies_to_train_only_and_keeps_label_values(root):
    augment = {"scale": [0.5, 1.5], "flip": True, "rotate": 10, "jitter": 0.2}
    train, test = build(root, "train", augment=augment), build(root, "test", augment=augment)
    assert train.augment is not None and test.augment is None and train.augment.nearest == ("depth",)
    torch.manual_seed(0)
    a = train[0]
    torch.manual_seed(1)
    b = train[0]
    assert not torch.equal(a.target, b.target) or not torch.equal(a.inputs["rgb"], b.inputs["rgb"])
    assert set(a.target.unique().tolist()) <= set(range(40)) | {255} and a.target.shape == tuple(SIZE)
    assert torch.equal(test[0].target, test[0].target)


def test_depth_png_that_is_not_16_bit_is_refused_in_one_line(root):
    write_png8(root / "test" / "depth" / "0011.png", np.full(NYU_SIZE, 7))
    with pytest.raises(DatasetLayoutError, match=r"0011\.png is not a 16-bit") as info:
        build(root, "test")[0]
    assert "\n" not in str(info.value)


def test_label_map_of_another_size_names_the_file_and_both_sizes(root):
    write_png8(root / "test" / "labels_40" / "0012.png", np.ones((20, 30)))
    with pytest.raises(DatasetLayoutError, match=r"labels_40/0012\.png is 20x30 but its rgb file .*0012\.png is 32x48"):
        build(root, "test")[1]


def test_label_values_outside_the_classes_are_named(root):
    raw = np.ones(NYU_SIZE)
    raw[0, :3] = [41, 200, 0]
    write_png8(root / "test" / "labels_40" / "0013.png", raw)
    with pytest.raises(DatasetLayoutError, match=r"0013\.png has values 41, 200 outside the classes"):
        build(root, "test")[2]


def test_missing_list_or_label_file_is_a_layout_error_naming_the_path(root):
    (root / "test" / "labels_40" / "0014.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"label file .*0014\.png is missing; expected layout"):
        build(root, "test")
    (root / "train.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"train\.txt is missing"):
        build(root, "val")


def test_missing_depth_marks_depth_absent_and_strict_mode_stops(root, caplog):
    (root / "test" / "depth" / "0011.png").unlink()
    ds = build(root, "test")
    with caplog.at_level(logging.WARNING):
        sample = ds[0]
    assert sample.inputs["depth"] is None and sample.inputs["rgb"] is not None and ds.unreadable["depth"] == 1
    assert ds[1].inputs["depth"] is not None
    assert ds.check()["depth"] == {"present": 3, "empty": 0, "unreadable": 1}
    with pytest.raises(DatasetLayoutError, match=r"cannot read depth file .*0011\.png"):
        build(root, "test", strict=True)[0]


def test_unknown_depth_mode_is_a_config_error(root):
    with pytest.raises(ConfigError, match="dataset.depth"):
        build(root, depth="filled")


def test_data_check_reports_the_layout(root, capsys, monkeypatch):
    from mmrobust.datacheck import check

    monkeypatch.setenv("COLUMNS", "400")  # rich wraps table cells at the terminal width
    (root / "train" / "depth_raw" / "0002.png").unlink()
    write_depth16(root / "test" / "depth" / "0011.png", np.zeros(NYU_SIZE, dtype=np.uint16))
    check(["dataset=nyuv2", f"dataset.root={root}", f"dataset.size=[{SIZE[0]},{SIZE[1]}]"])
    out = capsys.readouterr().out
    assert "expected layout" in out and "4/4 present" in out and "9/10 present" in out


def test_layout_status_of_an_empty_root_says_what_is_missing(tmp_path):
    rows = DATASETS.get("nyuv2").layout_status({"root": str(tmp_path)})  # type: ignore[attr-defined]
    assert [status.startswith("MISSING") for _, status in rows] == [True, True]
