"""``mmrobust data check`` on a three-modality manifest (8×8 ``.npy`` image, ``.wav`` audio, 16-dim vector):
the clean copy passes with its shapes, readers and class counts; a broken copy lists every bad file."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mmrobust.data.base import MultimodalDataset, Sample
from mmrobust.data.readers import NpyReader
from mmrobust.datacheck import SHOWN, check_file, check_samples
from tests.conftest import run_cli

RATE = 8000
SPLITS = ["train"] * 6 + ["val"] * 3 + ["test"] * 3
MODALITIES = "dataset.modalities=[img,audio,vec]"


def make_root(root: Path) -> Path:
    """12 rows, labels cat/dog alternating; every file a valid one."""
    rng = np.random.default_rng(0)
    for sub in ("img", "audio", "vec"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img", "audio", "vec", "label", "split"])
        for i, split in enumerate(SPLITS):
            np.save(root / f"img/{i}.npy", rng.random((1, 8, 8), dtype=np.float32))
            soundfile.write(root / f"audio/{i}.wav", rng.uniform(-0.5, 0.5, RATE // 10).astype("f4"), RATE)
            np.save(root / f"vec/{i}.npy", rng.random(16, dtype=np.float32))
            writer.writerow([f"img/{i}.npy", f"audio/{i}.wav", f"vec/{i}.npy", "cat" if i % 2 else "dog", split])
    return root


def argv(root: Path) -> list[str]:
    return ["data", "check", "dataset=manifest", f"dataset.root={root}", MODALITIES]


def rows(out: str) -> dict[tuple[str, str], list[str]]:
    """The counts table: ``(split, modality) -> [present, empty cell, unreadable, non-finite]``."""
    cells = [[c.strip() for c in line.strip().strip("│").split("│")] for line in out.splitlines() if "│" in line]
    return {(r[0], r[2]): r[3:7] for r in cells if len(r) == 7 and r[0] in ("train", "val", "test")}


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return make_root(tmp_path / "clean")


def test_clean_manifest_exits_zero_with_readers_shapes_and_class_counts(clean, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv(clean), capsys)
    assert code == 0 and "Traceback" not in err and err.strip() == "", err
    assert rows(out)[("train", "img")] == ["6", "0", "0", "0"] and rows(out)[("test", "audio")] == ["3", "0", "0", "0"]
    assert re.search(r"│\s*img\s*│\s*npy\b.*│\s*\[1, 8, 8\]", out), out
    assert re.search(r"│\s*vec\s*│\s*npy\b.*│\s*\[16\]", out), out
    assert re.search(r"│\s*audio\s*│\s*audio \(.*sample_rate=16000", out), out
    assert re.search(r"│\s*cat\s*│\s*3\s*│\s*1\s*│\s*2\s*│", out), out  # class counts: train, val, test
    assert re.search(r"│\s*dog\s*│\s*3\s*│\s*2\s*│\s*1\s*│", out), out
    assert "no problem found" in out and not (tmp_path / "data_check_problems.txt").exists()


def test_broken_copy_lists_every_bad_file_with_its_reason_and_exits_nonzero(clean, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "broken"
    shutil.copytree(clean, root)
    (root / "img/1.npy").unlink()  # train
    np.save(root / "img/7.npy", np.zeros((1, 9, 9), "f4"))  # val
    np.save(root / "vec/2.npy", np.full(16, np.nan, "f4"))  # train
    (root / "audio/3.wav").write_bytes((root / "audio/3.wav").read_bytes()[:30])  # train: truncated header
    (root / "audio/10.wav").write_bytes(b"RIFF garbage, not a wave at all" * 4)  # test
    (root / "vec/11.npy").write_text("0.1, 0.2, 0.3\n")  # test: text named .npy
    code, out, err = run_cli(argv(root), capsys)
    assert code == 1 and "Traceback" not in err and "6 bad inputs" in err, err
    lines = [line.strip() for line in out.splitlines()]
    expected = {
        "train/img": ("1.npy", "missing"),
        "val/img": ("7.npy", r"wrong shape: got \[1, 9, 9\] expected \[1, 8, 8\]"),
        "train/vec": ("2.npy", r"non-finite: 16 of 16 values"),
        "train/audio": ("3.wav", "not that format"),
        "test/audio": ("10.wav", "not that format"),
        "test/vec": ("11.npy", "not that format"),
    }
    for where, (file, reason) in expected.items():
        assert any(re.match(rf"{where}: .*[/\\]{re.escape(file)}: {reason}", line) for line in lines), (where, out)
    assert sum(bool(re.match(r"(train|val|test)/\w+: ", line)) for line in lines) == 6
    table = rows(out)
    assert table[("train", "img")] == ["5", "0", "1", "0"] and table[("train", "vec")] == ["5", "0", "0", "1"]
    assert table[("val", "img")] == ["2", "0", "1", "0"] and table[("test", "audio")] == ["2", "0", "1", "0"]


def test_a_long_list_goes_to_a_file_and_empty_cells_are_not_problems(clean, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.chdir(tmp_path)
    text = (clean / "manifest.csv").read_text().splitlines()
    extra = [f"vec/{100 + i}.npy,,vec/{100 + i}.npy,dog,train" for i in range(SHOWN + 5)]  # missing files
    (clean / "manifest.csv").write_text(
        "\n".join([text[0], "img/0.npy,,vec/0.npy,cat,train", *text[1:], *extra]) + "\n"
    )
    code, out, err = run_cli(argv(clean), capsys)
    assert code == 1 and "Traceback" not in err
    listed = (tmp_path / "data_check_problems.txt").read_text().splitlines()
    assert len(listed) == 2 * (SHOWN + 5) and all(": missing" in line for line in listed)
    assert f"all {len(listed)} are listed in {tmp_path / 'data_check_problems.txt'}" in out
    assert rows(out)[("train", "audio")] == ["6", str(SHOWN + 6), "0", "0"]  # empty cells, not problems


def test_check_file_turns_any_reader_exception_into_a_reason(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones(4, "f4"))

    def broken(p: Path) -> None:
        raise RuntimeError("decoder exploded")

    assert check_file(broken, path, (4,)) == ("unreadable", "decode error: decoder exploded")
    small = NpyReader()
    small.max_array_bytes = 8
    kind, reason = check_file(small, path, (4,))
    assert kind == "unreadable" and reason.startswith("over a memory cap:")
    assert check_file(NpyReader(), path, (4,)) == ("present", "")


class Flaky(MultimodalDataset):
    """Any dataset (the generic path): sample 1 has a NaN input, sample 2 raises, sample 3 marks a file."""

    modalities = ("a", "b")
    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.shapes = {"a": (3,), "b": (2,)}

    def __len__(self) -> int:
        return 5

    def load(self, index: int) -> Sample:
        if index == 2:
            raise RuntimeError("the decoder crashed")
        a = torch.full((3,), float("nan")) if index == 1 else torch.zeros(3)
        b = None if index in (3, 4) else torch.zeros(2)
        if index == 3:
            self.mark_unreadable("b", "/data/b3.bin", "bad magic", "unreadable")
        return Sample({"a": a, "b": b}, index % 2, index)


def test_generic_path_turns_every_failure_into_a_listed_problem():
    report = check_samples(Flaky(), "test", lambda: None)
    assert [(p.modality, p.where, p.reason.split(":")[0]) for p in report.problems] == [
        ("b", "/data/b3.bin", "unreadable"),
        ("a", "sample 1", "non-finite"),
        ("*", "sample 2", "load error"),
    ]
    assert dict(report.counts["a"]) == {"present": 3, "non-finite": 1, "unreadable": 1}
    assert dict(report.counts["b"]) == {"present": 2, "unreadable": 2, "empty": 1}  # sample 4: absent by design
    assert report.classes == {0: 2, 1: 2}
