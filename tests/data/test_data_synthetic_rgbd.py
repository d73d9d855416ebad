"""Generated RGB-D scenes: deterministic, right shapes, every class, and a real RGB / depth information split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrobust.data import DATASETS
from mmrobust.registry import ConfigError

SMALL = {"samples_per_split": [60, 30, 20]}


def build(split="train", **config):
    return DATASETS.build("synthetic_rgbd", {**SMALL, **config, "split": split})


def test_deterministic_from_seed_split_and_index():
    a, b = build("val"), build("val")
    for i in (0, 7, 29):
        sa, sb = a[i], b[i]
        assert torch.equal(sa.inputs["rgb"], sb.inputs["rgb"]) and torch.equal(sa.target, sb.target)
    assert not torch.equal(a[0].target, a[1].target)
    assert not torch.equal(build("test")[0].inputs["rgb"], a[0].inputs["rgb"])
    assert not torch.equal(build("val", seed=1)[0].inputs["rgb"], a[0].inputs["rgb"])
    assert torch.equal(a[5].target, build("val")[5].target)  # any order: index 5 first here


def test_shapes_types_and_class_coverage():
    ds = build("train")
    assert len(ds) == 60 and ds.task == "segmentation" and ds.modalities == ("rgb", "depth")
    assert ds.shapes == {"rgb": (3, 64, 64), "depth": (1, 64, 64)} and len(ds.class_names) == ds.num_classes == 6
    counts = torch.zeros(6, dtype=torch.long)
    for i in range(len(ds)):
        s = ds[i]
        assert s.inputs["rgb"].shape == (3, 64, 64) and s.inputs["depth"].shape == (1, 64, 64)
        assert s.target.dtype == torch.int64 and s.target.shape == (64, 64)
        counts += torch.bincount(s.target.flatten(), minlength=6)
    assert (counts > 0).all() and counts[0] < 0.8 * counts.sum()  # every class, not only background
    small = build("test", size=[32, 40], num_classes=7)
    assert small[0].inputs["depth"].shape == (1, 32, 40) and int(small[0].target.max()) < 7


def pixels(ds):
    rgb, depth, label = [], [], []
    for i in range(len(ds)):
        r, d, lab = ds.scene(i)
        rgb.append(r.reshape(-1, 3))
        depth.append(d.reshape(-1))
        label.append(lab.reshape(-1))
    return np.concatenate(rgb), np.concatenate(depth), np.concatenate(label)


def per_pixel_rule_accuracy(bins_fit, labels_fit, bins_eval, labels_eval, classes):
    """Accuracy of the best per-pixel rule (majority class of each bin, fitted on one split) on another split,
    restricted to pixels of ``classes``; and the accuracy of always answering the most frequent class."""
    fit, ev = np.isin(labels_fit, classes), np.isin(labels_eval, classes)
    table = np.zeros((int(max(bins_fit.max(), bins_eval.max())) + 1, max(classes) + 1))
    np.add.at(table, (bins_fit[fit], labels_fit[fit]), 1)
    accuracy = float((table.argmax(1)[bins_eval[ev]] == labels_eval[ev]).mean())
    chance = float(np.bincount(labels_eval[ev]).max() / ev.sum())
    return accuracy, chance


def rgb_bins(rgb):
    q = np.clip((rgb * 8).astype(int), 0, 7)  # 512 colour cells
    return q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2]


def depth_bins(depth):
    return np.clip((depth * 10).astype(int), 0, 60)  # 10 cm cells


def test_depth_alone_separates_the_depth_classes_and_rgb_alone_does_not():
    (r1, d1, l1), (r2, d2, l2) = pixels(build("train")), pixels(build("val"))
    classes = [1, 3, 5]
    by_depth, chance = per_pixel_rule_accuracy(depth_bins(d1), l1, depth_bins(d2), l2, classes)
    by_rgb, _ = per_pixel_rule_accuracy(rgb_bins(r1), l1, rgb_bins(r2), l2, classes)
    assert by_depth > 0.97
    assert by_rgb < chance + 0.05  # same colour: no per-pixel colour rule beats always guessing one class


def test_rgb_alone_separates_the_texture_classes_and_depth_alone_does_not():
    (r1, d1, l1), (r2, d2, l2) = pixels(build("train")), pixels(build("val"))
    classes = [0, 2, 4]  # background and the flat textured regions lying on it
    by_rgb, chance = per_pixel_rule_accuracy(rgb_bins(r1), l1, rgb_bins(r2), l2, classes)
    by_depth, _ = per_pixel_rule_accuracy(depth_bins(d1), l1, depth_bins(d2), l2, classes)
    assert by_rgb > 0.95 and chance < 0.95
    assert by_depth < chance + 0.02


def test_missing_rate_drops_one_modality_never_both():
    ds = build("train", missing_rate=0.5)
    present = [(ds[i].inputs["rgb"] is not None, ds[i].inputs["depth"] is not None) for i in range(len(ds))]
    assert all(any(p) for p in present)
    assert 5 < sum(not r for r, _ in present) < 40 and 5 < sum(not d for _, d in present) < 40
    assert present == [(ds[i].inputs["rgb"] is not None, ds[i].inputs["depth"] is not None) for i in range(len(ds))]


def test_augment_in_train_only_and_bad_config():
    ds = build("train", augment={"scale": [0.8, 1.2], "flip": True})
    assert ds.augment is not None and build("val", augment={"scale": [0.8, 1.2]}).augment is None
    torch.manual_seed(0)
    s = ds[0]
    assert s.target.shape == (64, 64) and set(s.target.unique().tolist()) <= set(range(6)) | {255}
    with pytest.raises(ConfigError, match="num_classes"):
        build(num_classes=4)
    with pytest.raises(ConfigError, match="samples_per_split"):
        build(samples_per_split=[10, 0, 5])
