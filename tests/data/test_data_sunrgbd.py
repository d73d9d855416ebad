"""SUN RGB-D loader on a fake copy of ESANet's prepared list-file layout (``make_sunrgbd``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.data.fake_seg_layouts import SUN_SIZES, make_sunrgbd

from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.base import IGNORE_INDEX
from mmrobust.data.sunrgbd import DEPTH_STATS

SIZE = [32, 48]


@pytest.fixture
def root(tmp_path):
    return make_sunrgbd(tmp_path / "sun")


def build(root, split="train", **config):
    return DATASETS.build("sunrgbd", {"root": str(root), "size": SIZE, **config, "split": split})


def test_every_split_loads_and_cameras_of_other_sizes_are_resized(root):
    splits = {s: build(root, s) for s in ("train", "val", "test")}
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (9, 1, 4)
    for ds in splits.values():
        assert ds.task == "segmentation" and ds.num_classes == 37 and len(ds.class_names) == 37
        for i in range(len(ds)):
            sample = ds[i]
            assert sample.inputs["rgb"].shape == (3, *SIZE) and sample.inputs["depth"].shape == (1, *SIZE)
            assert sample.target.shape == tuple(SIZE) and sample.target.dtype == torch.int64
            assert set(sample.target.unique().tolist()) <= set(range(37)) | {IGNORE_INDEX}
    test = splits["test"]
    assert test.items[1].rgb.suffix == ".jpg"  # the second camera: JPEG colour, 24x40 on disk
    assert tuple(SUN_SIZES[1]) != tuple(SIZE)


def test_labels_npy_void_to_255_and_classes_shifted_down(root):
    ds = build(root, "test")
    raw = np.load(ds.items[0].label).astype(np.int64)  # the kv1 camera: stored at the configured size
    target = ds[0].target.numpy()
    assert np.array_equal(target, np.where(raw == 0, IGNORE_INDEX, raw - 1))
    assert (target[raw == 37] == 36).all() and (target[raw == 0] == 255).all()


def test_raw_depth_reads_the_depth_sibling_of_depth_bfx(root):
    refined, raw = build(root, "test"), build(root, "test", depth="raw")
    assert refined.items[0].depth.parent.name == "depth_bfx" and raw.items[0].depth.parent.name == "depth"
    d = raw[0].inputs["depth"][0]
    assert (d[:, 0] == 0).all() and (refined[0].inputs["depth"][0][:, 0] != 0).all()
    label = np.load(raw.items[0].label).astype(np.float64)
    mean, std = DEPTH_STATS["raw"]
    assert torch.allclose(d[:, 1], torch.from_numpy((1000 + 100 * label[:, 1] - mean) / std).float())


def test_lists_that_are_not_aligned_or_missing_are_layout_errors(root):
    lines = (root / "test_depth.txt").read_text().splitlines()
    (root / "test_depth.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"not aligned: line counts .*'test_depth.txt': 3"):
        build(root, "test")
    (root / "train_label.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"train_label\.txt is missing"):
        build(root, "train")


def test_label_of_another_size_and_unknown_values_are_named(root):
    ds = build(root, "test")
    np.save(ds.items[0].label, np.ones((10, 10), dtype=np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"label\.npy is 10x10 but its rgb file .* is 32x48"):
        ds[0]
    bad = np.ones(SUN_SIZES[1], dtype=np.uint8)
    bad[0, 0] = 38
    np.save(ds.items[1].label, bad)
    with pytest.raises(DatasetLayoutError, match=r"label\.npy has values 38 outside the classes"):
        ds[1]


def test_missing_or_unreadable_rgb_marks_rgb_absent_and_8_bit_depth_is_refused(root):
    ds = build(root, "test")
    ds.items[0].rgb.unlink()
    ds.items[1].rgb.write_bytes(b"not an image")
    assert ds[0].inputs["rgb"] is None and ds[1].inputs["rgb"] is None and ds[0].inputs["depth"] is not None
    assert ds.unreadable["rgb"] == 2
    assert ds.check()["rgb"] == {"present": 2, "empty": 0, "unreadable": 2}
    from PIL import Image

    Image.fromarray(np.zeros(SUN_SIZES[0], dtype=np.uint8)).convert("RGB").save(ds.items[2].depth)
    with pytest.raises(DatasetLayoutError, match=r"is not a 16-bit greyscale PNG \(Pillow mode 'RGB'\)"):
        ds[2]


def test_layout_status_counts_listed_files(root):
    (root / "SUNRGBD/kv1/sample00001/depth/d00001.png").unlink()
    rows = dict(DATASETS.get("sunrgbd").layout_status({"root": str(root), "depth": "raw"}))  # type: ignore[attr-defined]
    assert rows["train_rgb.txt -> listed files"] == "10/10 present"
    assert rows["train_depth.txt -> raw 'depth' siblings"].startswith("9/10 present; missing e.g. SUNRGBD/kv1/")
