"""Atomic writes (mode, fsync, temp files, disk full) and checked loads of ``engine/checkpoint.py``."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

import mmrobust.atomic_io as ckpt_io
from mmrobust.engine.checkpoint import (
    CheckpointError,
    clean_orphan_temps,
    load_checkpoint,
    save_atomic,
    write_json_atomic,
    write_text_atomic,
)
from tests.errors.layouts import bad_checkpoint


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_not_0600(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        paths = [
            save_atomic({"model": {}}, tmp_path / "a.ckpt"),
            write_text_atomic("x", tmp_path / "b.md"),
            write_json_atomic({"k": 1}, tmp_path / "c.json"),
        ]
    finally:
        os.umask(old)
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


def test_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    path = save_atomic({"model": {"w": torch.arange(3.0)}, "epoch": 2}, tmp_path / "sub" / "last.ckpt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(3.0))
    write_json_atomic({"é": 1}, tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == '{\n  "é": 1\n}\n'
    assert not list(tmp_path.rglob("*.tmp"))


def test_text_is_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(ckpt_io.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    write_text_atomic("hello", tmp_path / "t.txt")
    assert len(synced) >= 2  # the file and its folder


def test_disk_full_names_the_destination_and_removes_the_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_io.os, "fsync", full)
    (tmp_path / "last.ckpt").write_bytes(b"previous")
    with pytest.raises(OSError, match=r"no space left on device while writing.*last\.ckpt") as info:
        save_atomic({"model": {}}, tmp_path / "last.ckpt")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").read_bytes() == b"previous"  # the old file is intact
    assert not list(tmp_path.glob("*.tmp"))


def test_clean_orphan_temps_removes_only_writer_temps(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    orphans = [tmp_path / "checkpoints" / ".last.ckpt.abc123.tmp", tmp_path / ".results.json.x.tmp"]
    for p in orphans:
        p.write_bytes(b"\0" * 100)
    keep = [tmp_path / "checkpoints" / "best.ckpt", tmp_path / "notes.tmp", tmp_path / "results.json"]
    for p in keep:
        p.write_bytes(b"1")
    assert sorted(clean_orphan_temps(tmp_path)) == sorted(orphans)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in orphans)
    assert clean_orphan_temps(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("truncated", "truncated or corrupt"),
        ("random", "not a PyTorch checkpoint"),
        ("json", "JSON/text file"),
        ("empty", "the file is empty"),
        ("unsafe", "refused as unsafe"),
        ("no_model", "no 'model' entry"),
        ("tensor", "not an mmrobust checkpoint"),
    ],
)
def test_every_load_failure_is_one_checkpoint_error_line(tmp_path: Path, kind: str, why: str) -> None:
    path = bad_checkpoint(tmp_path / f"{kind}.ckpt", kind)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and why in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_folder_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)
