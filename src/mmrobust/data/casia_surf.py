"""CASIA-SURF face anti-spoofing (Zhang et al. 2019): RGB, Depth and IR of one face, bona fide vs attack.

Layout::

    root/train_list.txt          training samples (about 29k)
    root/val_private_list.txt    validation (about 1k): model selection, MMANet's weak-combination mining
    root/test_private_list.txt   test (about 57k)
    root/<paths in the lists>    the images (JPG/PNG; any size, resized by the loader)

One line per sample, space separated: ``rgb_path depth_path ir_path label``, paths relative to ``root``,
label 1 = bona fide (real face), 0 = attack. Targets keep this encoding (class names ``attack``,
``bona fide``; ``eval.bona_fide_class=1`` for APCER/BPCER/ACER). Splits: ``train`` ← ``train_list.txt``,
``val`` ← ``val_private_list.txt``, ``test`` ← ``test_private_list.txt`` (the intra-testing protocol).

Preprocessing (``mmrobust.data.face_common``): each file read as a 3-channel image; train: resize to 144,
random rotation ±30°, random crop 112, horizontal flip, one transform shared by the three modalities;
val/test: resize to 112; then ``(255·x − 127.5)/128``. A missing or unreadable image marks its modality
absent for that sample (strict mode: stop); a malformed list line stops with ``file:line``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.face_common import FACE_MODALITIES, FaceAntiSpoofing, FaceItem
from mmrobust.data.seg_common import count_files
from mmrobust.registry import ConfigError

LIST_FILES = {"train": "train_list.txt", "val": "val_private_list.txt", "test": "test_private_list.txt"}
LINE_FORMAT = "'rgb_path depth_path ir_path label' (4 space-separated fields, label 0 = attack or 1 = bona fide)"
LAYOUT = f"root/{{train_list,val_private_list,test_private_list}}.txt with lines {LINE_FORMAT}, paths relative to root"


def read_list(root: Path, split: str) -> list[FaceItem]:
    """The samples of one split from its list file; a malformed line stops with ``file:line``."""
    path = root / LIST_FILES[split]
    if not path.is_file():
        raise DatasetLayoutError(f"list file {path} is missing; expected layout: {LAYOUT}")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[3] not in ("0", "1"):
            got = f"{len(fields)} fields" if len(fields) != 4 else f"label {fields[3]!r}"
            raise DatasetLayoutError(f"{path}:{number}: expected {LINE_FORMAT}, got {got}: {line.strip()!r}")
        paths = {m: root / f for m, f in zip(FACE_MODALITIES, fields[:3], strict=True)}
        items.append(FaceItem(paths, int(fields[3])))
    return items


class CasiaSurf(FaceAntiSpoofing):
    """CASIA-SURF (see the module docstring).

    Args:
        root: the folder holding the three list files.
        split: ``train``, ``val`` or ``test``.
        size: the side of the square network input (112 in the papers).
        resize: the side images are resized to before the random rotation and crop of the train split (144).
        augment: ``PairedAugment`` keys for the train split (``rotate``, ``flip``, ...), or null for none
            (train images are then resized to ``size`` like val/test).
        max_samples: keep only the first N samples of the split (quick runs).
        strict: stop at the first missing/unreadable image instead of marking its modality absent.
    """

    layout = LAYOUT

    def __init__(
        self,
        root: str,
        split: str = "train",
        size: int = 112,
        resize: int = 144,
        augment: dict[str, Any] | None = None,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        self.root = Path(root).expanduser()
        if split not in LIST_FILES:
            raise ConfigError(f"dataset.split: expected one of {list(LIST_FILES)}, got {split!r}")
        self.setup(
            read_list(self.root, split), split=split, size=size, resize=resize, augment=augment, max_samples=max_samples
        )

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: each list file and, per modality, how many listed files exist."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows: list[tuple[str, str]] = []
        for split, name in LIST_FILES.items():
            if not (root / name).is_file():
                rows.append((name, f"MISSING (lines {LINE_FORMAT})"))
                continue
            try:
                items = read_list(root, split)
            except DatasetLayoutError as error:
                rows.append((name, f"BAD: {error}"))
                continue
            bona = sum(item.target for item in items)
            rows.append((name, f"{len(items)} samples ({bona} bona fide, {len(items) - bona} attack)"))
            for m in FACE_MODALITIES:
                rows.append((f"{name}: {m} files", count_files([item.paths[m] for item in items], root)))
        return rows
