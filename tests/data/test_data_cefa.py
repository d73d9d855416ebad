"""CeFA loader on a fake copy of its folder layout (``fake_face_layouts.make_cefa``): protocols, label
normalization, frame alignment and errors."""

from __future__ import annotations

import logging

import pytest
import torch
from tests.data.fake_face_layouts import CEFA_FRAMES, TINY_FACE, make_cefa

from mmrobust.cli import main
from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.registry import ConfigError

AUGMENT = {"rotate": 30, "flip": True}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_cefa(tmp_path_factory.mktemp("cefa") / "cefa")  # read-only for the tests that share it


@pytest.fixture
def own_root(tmp_path):
    return make_cefa(tmp_path / "cefa")  # for tests that damage the layout


def build(root, split="train", **config):
    return DATASETS.build("cefa", {"root": str(root), "size": 16, **config, "split": split})


def videos(ds):
    return sorted(v.folder.name for v in ds.videos)


def test_protocol_4_at_5_is_the_default_train_val_on_ea_test_on_af(root):
    splits = {s: build(root, s) for s in ("train", "val", "test")}
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 6, "val": 6, "test": 12}
    assert videos(splits["train"]) == ["3_005_1_1_1", "3_005_3_2_4"]  # ids 0-199, PAI {real, screen}, devices 1/3
    assert videos(splits["val"]) == ["3_201_1_1_1", "3_201_3_2_4"]  # ids 200-299
    assert videos(splits["test"]) == ["1_301_1_1_1", "1_301_1_1_2", "1_320_1_1_1", "1_320_1_1_2"]  # AF, {real, cloth}
    sample = splits["test"][0]
    assert {m: tuple(x.shape) for m, x in sample.inputs.items()} == dict.fromkeys(("rgb", "depth", "ir"), (3, 16, 16))
    assert splits["train"].class_names == ("attack", "bona fide")


def test_labels_are_normalized_to_one_for_bona_fide(root):
    ds = build(root, "test")
    expected = [1 if v.folder.name.endswith("_1") else 0 for v in ds.videos for _ in range(CEFA_FRAMES)]
    assert ds.targets() == expected == [ds[i].target for i in range(len(ds))]
    assert sum(expected) == 6  # published encoding: real 0; here real (PAI 1) -> 1, attacks -> 0


def test_other_protocols_races_and_frames_per_video(root):
    assert videos(build(root, "test", protocol=1, train_race="AF", test_race="CA")) == [
        f"2_{i}_{rest}" for i in ("301", "320") for rest in ("1_1_1", "1_1_2", "3_2_4")
    ]
    test_21 = build(root, "test", protocol="2@1")  # all races, test PAI {real, screen}
    assert len(test_21.videos) == 3 * 2 * 2 and {v.pai for v in test_21.videos} == {1, 4}
    assert {v.pai for v in build(root, "train", protocol="2@1").videos} == {1, 2}
    assert {v.pai for v in build(root, "train", protocol="2@2").videos} == {1, 4}
    assert len(build(root, "val", protocol=3).videos) == 3 * 3
    assert len(build(root, "test", frames_per_video=2)) == 4 * 2
    with pytest.raises(ConfigError, match=r"dataset\.protocol: expected one of \['1', '2@1', '2@2', '3', '4'\]"):
        build(root, protocol="4@5")
    with pytest.raises(ConfigError, match=r"dataset\.train_race"):
        build(root, train_race="XX")
    with pytest.raises(ConfigError, match="another race"):
        build(root, train_race="AF", test_race="AF")


def test_paired_augmentation_moves_the_three_modalities_identically(tmp_path):
    root = make_cefa(tmp_path / "same", frames=1, same_content=True)
    ds = build(root, "train", size=24, resize=32, augment=AUGMENT)
    for seed in range(3):
        torch.manual_seed(seed)
        x = ds[1].inputs
        assert torch.equal(x["rgb"], x["depth"]) and torch.equal(x["rgb"], x["ir"]) and x["rgb"].shape == (3, 24, 24)


def test_missing_frame_marks_the_modality_absent_and_strict_stops(own_root, caplog):
    (own_root / "AF/AF-301/1_301_1_1_1/ir/0002.jpg").unlink()
    ds = build(own_root, "test")
    with caplog.at_level(logging.WARNING):
        sample = ds[1]
    assert sample.inputs["ir"] is None and sample.inputs["rgb"] is not None and ds.unreadable["ir"] == 1
    assert len(ds) == 12  # the frame stays: aligned by name across the modality folders
    assert ds.check()["ir"] == {"present": 11, "empty": 0, "unreadable": 1}
    with pytest.raises(DatasetLayoutError, match=r"cannot read ir file .*1_301_1_1_1/ir/0002\.jpg") as info:
        build(own_root, "test", strict=True)[1]
    assert "\n" not in str(info.value)


def test_layout_errors_name_the_folder(own_root):
    bad = own_root / "EA/EA-005/3_005_1_1"
    bad.mkdir()
    with pytest.raises(DatasetLayoutError, match=r"3_005_1_1 is not named race_id_device_session_pai"):
        build(own_root, "train")
    bad.rmdir()
    (own_root / "EA/EA-005/3_005_1_1_1").rename(own_root / "CA/CA-005/3_005_1_1_1")
    with pytest.raises(DatasetLayoutError, match=r"has race field 3 but lies under CA/"):
        build(own_root, "test", protocol=3)
    for frame in (own_root / "AF/AF-320/1_320_1_1_2/depth").iterdir():
        frame.rename(frame.with_name("d" + frame.name))
    with pytest.raises(DatasetLayoutError, match=r"1_320_1_1_2: frame file names differ"):
        build(own_root, "test")


def test_data_check_reports_counts_and_the_expected_layout(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    main(["data", "check", "dataset=cefa", f"dataset.root={root}"])
    out = capsys.readouterr().out
    assert "EA/" in out and "5 subject folders, 18 videos" in out
    assert "protocol 4 test (AF, PAI [1, 2])" in out and "4 videos (2 real, 2 attack)" in out
    rows = {tuple(c.strip() for c in r.split("│")[1:7]) for r in out.splitlines() if r.count("│") >= 7}
    assert ("test", "12", "depth", "12", "0", "0") in rows and ("val", "6", "ir", "6", "0", "0") in rows

    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", "dataset=cefa", f"dataset.root={tmp_path / 'nowhere'}"])
    assert exit_.value.code != 0
    captured = capsys.readouterr()
    assert "MISSING (root/{AF,CA,EA}/<RACE-ID>" in captured.out and "Layout::" in captured.out
    errors = [e for e in captured.err.splitlines() if e.strip()]
    assert len(errors) == 1 and "nowhere/EA is missing" in errors[0]


@pytest.fixture
def drop_hydra_log_handlers():
    """In-process Hydra runs attach handlers to the root logger bound to this test's captured streams."""
    before = list(logging.root.handlers)
    yield
    for handler in [h for h in logging.root.handlers if h not in before]:
        logging.root.removeHandler(handler)


@pytest.mark.slow
def test_trains_one_epoch_in_process_and_reports_acer_per_subset(root, tmp_path, drop_hydra_log_handlers):
    import json

    run_dir = tmp_path / "run"
    main(["train", "dataset=cefa", f"dataset.root={root}", *TINY_FACE, f"hydra.run.dir={run_dir}"])
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["metrics"]["test"]) == {"rgb", "depth", "ir", "rgb+depth", "rgb+ir", "depth+ir", "rgb+depth+ir"}
    for scores in results["metrics"]["test"].values():
        assert 0.0 <= scores["acer"] <= 1.0
