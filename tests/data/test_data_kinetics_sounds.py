"""Kinetics-Sounds loader on a fake copy of DMRNet's layout (``fake_av_layouts.make_kinetics_sounds``)."""

from __future__ import annotations

import shutil

import pytest
import torch
from tests.data.fake_av_layouts import make_kinetics_sounds, write_frames
from tests.data.test_data_crema_d import colour_of, table_rows

from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.av_common import read_wave
from mmrobust.data.kinetics_sounds import DMRNET_CLASSES, audio_pipeline
from mmrobust.registry import ConfigError


@pytest.fixture
def root(tmp_path):
    return make_kinetics_sounds(tmp_path / "ks")


def build(root, split="train", **config):
    spec = {"root": str(root), "image_size": 16, "val_fraction": 1 / 3, **config, "split": split}
    return DATASETS.build("kinetics_sounds", spec)


def test_splits_counts_shapes_and_class_file(root):
    splits = {s: build(root, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 6, "val": 3, "test": 3}
    assert sorted(splits["val"].targets()) == [0, 1, 2]  # stratified
    ds = splits["test"]
    assert ds.class_names == ("bowling", "playing_piano", "singing") and ds.num_classes == 3
    assert ds.targets() == [0, 1, 2]
    assert ds.clips[1].frames.parts[-4:] == ("val_img", "Image-01-FPS", "playing_piano", ds.clips[1].name)
    sample = ds[0]
    assert sample.inputs["audio"].shape == (1, 129, 626) and sample.inputs["visual"].shape == (1, 3, 16, 16)
    assert ds.shapes["audio"] == (1, 129, 626)


def test_without_class_file_the_published_dmrnet_order_is_used(tmp_path):
    root = make_kinetics_sounds(tmp_path / "ks", class_file=False)
    ds = build(root, "test")
    assert ds.num_classes == 33 and ds.class_names == DMRNET_CLASSES
    labels = sorted(DMRNET_CLASSES.index(c) for c in ("bowling", "playing_piano", "singing"))
    assert ds.targets() == labels  # clips are listed class by class, in the class list's order


def test_audio_crop_random_in_training_and_fixed_at_test(root):
    ds = build(root, "test")
    wave = read_wave(ds.clips[0].audio, 16000)
    a, b = ds[0].inputs["audio"], ds[0].inputs["audio"]
    assert torch.equal(a, b) and torch.equal(a, audio_pipeline()(wave, start=40000))  # 2.5 s into the 10 s tile
    train = build(root, "train")
    crops = set()
    for seed in range(4):
        torch.manual_seed(seed)
        crops.add(float(train[0].inputs["audio"][0, :, :3].sum()))
    assert len(crops) > 1


def test_frames_middle_at_test(root):
    assert colour_of(build(root, "test")[0].inputs["visual"]) == [2]  # 4 frames: the centre of [0, 4) is frame 2
    assert colour_of(build(root, "test", frames=2)[0].inputs["visual"]) == [1, 3]


def test_short_frame_folders_dropped_and_audio_only_clips_kept(root):
    test_img = root / "visual" / "val_img" / "Image-01-FPS"
    video = sorted((test_img / "singing").iterdir())[0]
    shutil.rmtree(video)
    write_frames(video, 2)  # fewer than min_frames=3: dropped with its sound, as DMRNet
    assert len(build(root, "test")) == 2 and len(build(root, "test", min_frames=1)) == 3
    shutil.rmtree(sorted((test_img / "bowling").iterdir())[0])  # no frames at all: kept, visual absent
    ds = build(root, "test", min_frames=1)
    assert len(ds) == 3 and ds[0].inputs["visual"] is None and ds[0].inputs["audio"] is not None
    assert ds.check()["visual"] == {"present": 2, "empty": 0, "unreadable": 1}
    assert len(build(root, "test", min_frames=1, drop_incomplete=True)) == 2


def test_lists_and_layout_errors(root):
    names = [c.name for c in build(root, "test").clips]
    (root / "my_test.txt").write_text(f"{names[1]},10,1\n")
    assert [c.name for c in build(root, "test", lists="my_{split}.txt").clips] == [names[1]]
    with pytest.raises(DatasetLayoutError, match=r"clip list .*my_train\.txt is missing"):
        build(root, "train", lists="my_{split}.txt")
    with pytest.raises(ConfigError, match=r"dataset\.lists"):
        build(root, "test", lists="my_list.txt")
    with pytest.raises(DatasetLayoutError, match=r"class list .*nope\.txt is missing"):
        build(root, "test", class_list="nope.txt")
    shutil.rmtree(root / "audio" / "test")
    shutil.rmtree(root / "visual" / "val_img")
    with pytest.raises(DatasetLayoutError, match=r"neither .*val_img/Image-01-FPS nor .*audio/test exists"):
        build(root, "test")


def test_data_check_shows_counts_per_split_and_modality(root, capsys, monkeypatch):
    from mmrobust.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    (root / "audio" / "test" / "bowling").joinpath(next((root / "audio" / "test" / "bowling").iterdir()).name).unlink()
    with pytest.raises(SystemExit) as bad:  # one sound file missing: exit status 1
        main(["data", "check", "dataset=kinetics_sounds", f"dataset.root={root}", "dataset.val_fraction=0.34"])
    assert bad.value.code == 1
    out = capsys.readouterr().out
    assert "3 classes from" in out and "9 frame folders in 3/3 class folders" in out
    assert "2 sound files in 3/3 class folders" in out
    rows = {(r[0], r[2]): r[1:] for r in table_rows(out) if r[0] in ("train", "val", "test")}
    assert rows[("test", "audio")] == ["3", "audio", "2", "0", "1", "0"]
    assert rows[("train", "visual")][:3] == ["6", "visual", "6"]
