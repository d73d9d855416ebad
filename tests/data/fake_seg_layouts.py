"""Tiny fake copies of the RGB-D segmentation datasets' real on-disk layouts, written into a folder.

Each ``make_*`` function writes a complete layout (right file names, 8-bit RGB, 16-bit PNG depth, label
PNG/NPY, list files) and returns its root, so loader tests and end-to-end training tests can share them::

    root = make_nyuv2(tmp_path / "nyuv2")                    # then dataset=nyuv2 dataset.root=<root>
    root = make_sunrgbd(tmp_path / "sun")
    root = make_cityscapes(tmp_path / "cityscapes")

Content is a function of the sample number ``i`` and the pixel, so tests can check what was read:
the raw label at ``(y, x)`` is ``raw_label(i, y, x, n_values)``; the RGB colour of a pixel is
``label_colour(raw)`` (PNG, lossless), and depth is ``depth_value(raw)`` (16-bit). Pass ``size=(H, W)``
to the dataset config (``dataset.size=[H,W]``) to keep the fake resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

NYU_SIZE = (32, 48)
SUN_SIZES = ((32, 48), (24, 40))  # two cameras of different resolutions
CITY_SIZE = (32, 64)
CITY_LABEL_IDS = (0, 1, 4, 7, 8, 11, 21, 23, 24, 26, 33)  # void-ish ids and evaluated ones


# ------------------------------------------------------------------------------------------ content
def raw_label(i: int, size: tuple[int, int], values: Sequence[int]) -> np.ndarray:
    """Raw label map of sample ``i``: 4x4 blocks cycling through ``values`` (row-major), starting at ``i``.

    Every value appears in every sample when there are at least ``len(values)`` blocks. Shape: ``[H, W]`` (uint8).
    """
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    block = (y // 4) * (-(-w // 4)) + x // 4
    return np.asarray(values, dtype=np.uint8)[(block + i) % len(values)]


def label_colour(raw: np.ndarray) -> np.ndarray:
    """A distinct 8-bit colour per raw label value (so a label is a function of the image). ``[H, W, 3]``."""
    r = raw.astype(np.int64)
    return np.stack([(r * 6) % 256, 255 - (r * 6) % 256, (r * 37 + 11) % 256], axis=-1).astype(np.uint8)


def depth_value(raw: np.ndarray) -> np.ndarray:
    """16-bit depth per raw label value: ``1000 + 100 · raw`` (never 0). ``[H, W]`` uint16."""
    return (1000 + 100 * raw.astype(np.int64)).astype(np.uint16)


# ------------------------------------------------------------------------------------------ writers
def write_rgb(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB image (PNG or JPEG by suffix) from ``[H, W, 3]`` uint8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path)


def write_png8(path: Path, values: np.ndarray) -> None:
    """An 8-bit single-channel PNG (label maps; or a wrongly 8-bit depth) from ``[H, W]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


def write_depth16(path: Path, values: np.ndarray) -> None:
    """A 16-bit greyscale PNG written through Pillow mode 'I;16' from ``[H, W]`` uint16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = values.shape
    img = Image.new("I;16", (w, h))
    img.frombytes(values.astype("<u2").tobytes())
    img.save(path)


def write_list(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


# ------------------------------------------------------------------------------------------ layouts
def make_nyuv2(root: Path, n_train: int = 10, n_test: int = 4, size: tuple[int, int] = NYU_SIZE) -> Path:
    """ESANet's NYUv2 layout: ``{train,test}.txt`` and ``{split}/{rgb,depth,depth_raw,labels_40}/<name>.png``.

    Labels cycle through 0..40; ``depth_raw`` is ``depth`` with its left column set to 0 (no measurement).
    """
    number = 1
    for split, n in (("train", n_train), ("test", n_test)):
        names = []
        for _ in range(n):
            name = f"{number:04d}"
            raw = raw_label(number, size, range(41))
            write_rgb(root / split / "rgb" / f"{name}.png", label_colour(raw))
            depth = depth_value(raw)
            write_depth16(root / split / "depth" / f"{name}.png", depth)
            depth_raw = depth.copy()
            depth_raw[:, 0] = 0
            write_depth16(root / split / "depth_raw" / f"{name}.png", depth_raw)
            write_png8(root / split / "labels_40" / f"{name}.png", raw)
            names.append(name)
            number += 1
        write_list(root / f"{split}.txt", names)
    return root


def make_sunrgbd(root: Path, n_train: int = 10, n_test: int = 4, sizes: Sequence[tuple[int, int]] = SUN_SIZES) -> Path:
    """ESANet's SUN RGB-D layout: ``{train,test}_{rgb,depth,label}.txt`` listing camera folders.

    Samples alternate between the cameras ``kv1`` (PNG colour, ``sizes[0]``) and ``realsense`` (JPEG,
    ``sizes[1]``); depth in ``depth_bfx`` (refined) and ``depth`` (raw, left column 0); labels ``.npy`` uint8
    cycling through 0..37.
    """
    number = 1
    for split, n in (("train", n_train), ("test", n_test)):
        lists: dict[str, list[str]] = {"rgb": [], "depth": [], "label": []}
        for k in range(n):
            camera, size, ext = ("kv1", sizes[0], "png") if k % 2 == 0 else ("realsense", sizes[1], "jpg")
            folder = f"SUNRGBD/{camera}/sample{number:05d}"
            raw = raw_label(number, size, range(38))
            write_rgb(root / folder / "image" / f"img{number:05d}.{ext}", label_colour(raw))
            depth = depth_value(raw)
            write_depth16(root / folder / "depth_bfx" / f"d{number:05d}.png", depth)
            depth_raw = depth.copy()
            depth_raw[:, 0] = 0
            write_depth16(root / folder / "depth" / f"d{number:05d}.png", depth_raw)
            (root / folder / "label").mkdir(parents=True, exist_ok=True)
            np.save(root / folder / "label" / "label.npy", raw.astype(np.uint8))
            lists["rgb"].append(f"{folder}/image/img{number:05d}.{ext}")
            lists["depth"].append(f"{folder}/depth_bfx/d{number:05d}.png")
            lists["label"].append(f"{folder}/label/label.npy")
            number += 1
        for kind, lines in lists.items():
            write_list(root / f"{split}_{kind}.txt", lines)
    return root


def city_stem(city: str, k: int) -> str:
    return f"{city}_{k:06d}_000019"


def make_cityscapes(root: Path, n_train: int = 10, n_val: int = 4, size: tuple[int, int] = CITY_SIZE) -> Path:
    """The Cityscapes download layout: ``{leftImg8bit,disparity,gtFine}/{train,val}/<city>/<stem>_*.png``.

    Train samples come from two cities (aachen, bochum), val from frankfurt; label ids cycle through
    ``CITY_LABEL_IDS``; disparity PNG values are ``depth_value(raw)`` with the left column 0 (invalid).
    """
    number = 0
    for split, n, cities in (("train", n_train, ("aachen", "bochum")), ("val", n_val, ("frankfurt",))):
        for k in range(n):
            city = cities[k % len(cities)]
            stem = city_stem(city, k)
            raw = raw_label(number, size, CITY_LABEL_IDS)
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", label_colour(raw))
            disparity = depth_value(raw)
            disparity[:, 0] = 0
            write_depth16(root / "disparity" / split / city / f"{stem}_disparity.png", disparity)
            write_png8(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
            number += 1
    return root
