"""CASIA-SURF loader on a fake copy of its list-file layout (``fake_face_layouts.make_casia_surf``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data.fake_face_layouts import TINY_FACE, make_casia_surf

from mmrobust.cli import main
from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.face_common import normalize_face
from mmrobust.registry import ConfigError

AUGMENT = {"rotate": 30, "flip": True}


@pytest.fixture
def root(tmp_path):
    return make_casia_surf(tmp_path / "surf")


def build(root, split="train", **config):
    return DATASETS.build("casia_surf", {"root": str(root), **config, "split": split})


def test_splits_counts_shapes_and_labels_from_the_lists(root):
    splits = {"train": build(root, "train", augment=AUGMENT)}  # the defaults: 112 px
    splits |= {s: build(root, s, size=32) for s in ("val", "test")}
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 6, "val": 2, "test": 4}
    for ds in splits.values():
        assert ds.modalities == ("rgb", "depth", "ir") and ds.num_classes == 2
        assert ds.class_names == ("attack", "bona fide") and ds.shapes["ir"] == (3, ds.size, ds.size)
        sample = ds[1]
        assert {m: tuple(x.shape) for m, x in sample.inputs.items()} == dict.fromkeys(ds.modalities, ds.shapes["ir"])
        assert sample.target == 0 and ds[0].target == 1  # the list's label: 1 = bona fide, 0 = attack
    assert splits["train"].shapes["rgb"] == (3, 112, 112)
    assert splits["test"].targets() == [1, 0, 1, 0] == [splits["test"][i].target for i in range(4)]
    assert splits["train"].targets() == [1, 0, 1, 0, 1, 0]


def test_test_split_is_resized_and_normalized_like_the_reference(root):
    ds = build(root, "test", size=24)
    line = (root / "test_private_list.txt").read_text().splitlines()[0].split()
    with Image.open(root / line[2]) as img:  # the ir file: greyscale, repeated over three channels
        grey = torch.from_numpy(np.asarray(img.resize((24, 24), Image.Resampling.BILINEAR), dtype=np.float32))
    ir = ds[0].inputs["ir"]
    assert torch.equal(ir[0], ir[1]) and torch.equal(ir[0], ir[2])
    assert torch.allclose(ir[0], (grey - 127.5) / 128, atol=0.05)  # (x − 127.5)/128 of 8-bit values
    assert normalize_face(torch.tensor([0.0, 1.0])).tolist() == [-127.5 / 128, 127.5 / 128]


def test_paired_augmentation_moves_the_three_modalities_identically(tmp_path):
    root = make_casia_surf(tmp_path / "same", same_content=True)
    train, test = build(root, "train", size=32, resize=40, augment=AUGMENT), build(root, "test", size=32)
    assert train.augment is not None and test.augment is None
    for seed in range(4):
        torch.manual_seed(seed)
        sample = train[0]
        assert torch.equal(sample.inputs["rgb"], sample.inputs["depth"])
        assert torch.equal(sample.inputs["rgb"], sample.inputs["ir"])
    torch.manual_seed(0)
    a = train[0].inputs["rgb"]
    torch.manual_seed(1)
    b = train[0].inputs["rgb"]
    unaugmented = build(root, "train", size=32, augment=None)[0].inputs["rgb"]
    assert not torch.equal(a, b) and not torch.equal(a, unaugmented)  # the transform is random and not identity


def test_missing_file_marks_the_modality_absent_and_strict_stops(root, caplog):
    line = (root / "train_list.txt").read_text().splitlines()[2].split()
    (root / line[1]).unlink()  # depth of train sample 2
    ds = build(root, "train")
    with caplog.at_level(logging.WARNING):
        sample = ds[2]
    assert sample.inputs["depth"] is None and sample.inputs["rgb"] is not None and sample.inputs["ir"] is not None
    assert ds.unreadable["depth"] == 1 and ds.unreadable_summary() == {"depth": {"missing": 1}}
    assert ds.check()["depth"] == {"present": 5, "empty": 0, "unreadable": 1}
    with pytest.raises(DatasetLayoutError, match=r"cannot read depth file .*0003\.jpg \(missing\)") as info:
        build(root, "train", strict=True)[2]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("line", "what"),
    [("a.jpg b.jpg 1", "got 3 fields"), ("a.jpg b.jpg c.jpg 2", "got label '2'"), ("a b c real", "label 'real'")],
)
def test_bad_list_line_is_one_error_naming_file_and_line(root, line, what):
    path = root / "val_private_list.txt"
    path.write_text(path.read_text() + "\n" + line + "\n")  # line 4: the blank line 3 is skipped
    with pytest.raises(DatasetLayoutError, match=rf"val_private_list\.txt:4: expected 'rgb_path .*{what}") as info:
        build(root, "val")
    assert "\n" not in str(info.value)


def test_options_are_checked(root):
    with pytest.raises(ConfigError, match=r"dataset\.augment\.scal"):
        build(root, augment={"scal": [1, 2]})
    with pytest.raises(ConfigError, match=r"dataset\.max_samples"):
        build(root, max_samples=0)
    assert len(build(root, "test", max_samples=3)) == 3


def test_data_check_reports_counts_and_the_expected_layout(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps table cells at the terminal width
    line = (root / "test_private_list.txt").read_text().splitlines()[1].split()
    (root / line[2]).unlink()
    with pytest.raises(SystemExit) as bad:  # one ir file missing: exit status 1
        main(["data", "check", "dataset=casia_surf", f"dataset.root={root}"])
    assert bad.value.code == 1
    out = capsys.readouterr().out
    assert "train_list.txt" in out and "6 samples (3 bona fide, 3 attack)" in out
    assert "test_private_list.txt: ir files" in out and "3/4 present; missing e.g. Testing/fake_part" in out
    rows = {tuple(c.strip() for c in r.split("│")[1:7]) for r in out.splitlines() if r.count("│") >= 7}
    assert ("test", "4", "ir", "3", "0", "1") in rows and ("train", "6", "rgb", "6", "0", "0") in rows

    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", "dataset=casia_surf", f"dataset.root={tmp_path / 'nowhere'}"])
    assert exit_.value.code != 0
    captured = capsys.readouterr()
    assert "MISSING (lines 'rgb_path depth_path ir_path label'" in captured.out and "Layout::" in captured.out
    errors = [e for e in captured.err.splitlines() if e.strip()]
    assert len(errors) == 1 and "train_list.txt is missing" in errors[0]


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
    main(["train", "dataset=casia_surf", f"dataset.root={root}", *TINY_FACE, f"hydra.run.dir={run_dir}"])
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["metrics"]["test"]) == 7  # every non-empty subset of rgb, depth, ir
    for scores in results["metrics"]["test"].values():
        assert 0.0 <= scores["acer"] <= 1.0 and 0.0 <= scores["accuracy"] <= 1.0
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
