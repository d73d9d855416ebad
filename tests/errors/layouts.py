"""Tiny bad inputs generated on disk for the bad-input catalogue: manifests, arrays, images, checkpoints.

The default layout (``make_manifest``)::

    root/manifest.csv    columns vec, img, label, split; 12 rows: 8 train, 2 val, 2 test; labels 0/1
    root/vec/<i>.npy     float32 [4], row i = i + [0, 1, 2, 3] (class 1 rows shifted by +5)
    root/img/<i>.png     6x6 RGB
"""

from __future__ import annotations

import csv
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SPLIT_OF_ROW = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
MODALITIES = "dataset.modalities=[vec,img]"


def write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def vec(i: int, label: int) -> np.ndarray:
    return (np.arange(4) + i + 5 * label).astype(np.float32)


def make_manifest(root: Path, labels: list[object] | None = None, *, split: bool = True, rows: int = 12) -> Path:
    """Write the default layout (see the module docstring) and return ``root``."""
    (root / "vec").mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    labels = list(labels if labels is not None else [i % 2 for i in range(rows)])
    table = []
    for i, label in enumerate(labels):
        np.save(root / f"vec/{i}.npy", vec(i, label if isinstance(label, int) else 0))
        Image.new("RGB", (6, 6), (40 * (i % 6), 100, 200)).save(root / f"img/{i}.png")
        row: list[object] = [f"vec/{i}.npy", f"img/{i}.png", label]
        table.append(row + ([SPLIT_OF_ROW[i % 12]] if split else []))
    write_csv(root / "manifest.csv", ["vec", "img", "label"] + (["split"] if split else []), table)
    return root


def edit_manifest(root: Path, row: int, column: str, value: str) -> None:
    path = root / "manifest.csv"
    with path.open(newline="") as f:
        table = list(csv.reader(f))
    table[row + 1][table[0].index(column)] = value
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(table)


def npy_with_header(path: Path, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b"\0" * 16) -> Path:
    """A ``.npy`` whose header declares ``shape`` but which holds only ``data`` (nothing is allocated)."""
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(data)
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose header declares ``width x height`` grayscale pixels (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


class Unsafe:
    """Pickles as a call of a global that ``weights_only`` loading refuses (harmless if ever called)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getpid, ())


def bad_checkpoint(path: Path, kind: str) -> Path:
    """A file at ``path`` that is not a loadable mmrobust checkpoint, of one ``kind``."""
    if kind == "truncated":
        torch.save({"model": {"w": torch.zeros(64, 64)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "json":
        path.write_text(json.dumps({"model": {"w": [1, 2, 3]}}))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "unsafe":
        torch.save({"model": {}, "extra": Unsafe()}, path)
    elif kind == "no_model":
        torch.save({"weights": {"w": torch.zeros(2)}}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    return path
