"""SUN RGB-D semantic segmentation, 37 classes, in the layout ESANet's preparation script writes.

Layout::

    root/{train,test}_rgb.txt     one path per line, relative to root (JPG/PNG colour images)
    root/{train,test}_depth.txt   refined depth paths (a ``depth_bfx`` folder), 16-bit PNG
    root/{train,test}_label.txt   label paths: ``.npy`` uint8 arrays, 0 = void, 1..37 = classes
    root/<the listed files>       e.g. SUNRGBD/kv1/NYUdata/NYU0001/{image/...jpg,depth_bfx/...png}

The three lists of a split are aligned by line (5285 train / 5050 test lines). Raw depth (``depth: raw``)
is read from the sibling ``depth`` folder of each listed ``depth_bfx`` file. Four cameras (realsense, kv2,
kv1, xtion) give images of different sizes, so every sample is resized to ``size`` (default 480x640;
labels by nearest neighbour): scores are measured at that size, not at each camera's own resolution.

Labels: 0 (void) -> 255 (ignored), ``k`` -> ``k − 1`` for k = 1..37. Depth is normalized with ESANet's
published statistics (refined: mean 19025.1, std 9880.9; raw: 18320.3 / 8898.7), invalid pixels stay 0.

Splits: ``test`` is the published test split. The published code selected models on that test split; we
do not: ``val`` is a seeded ``val_fraction`` (default 10 %) of the published train split, ``train`` the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.seg_common import RGBDSegmentation, SegItem, carve_validation, count_files, label_lookup
from mmrobust.registry import ConfigError

CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "fridge", "tv", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag",
)  # fmt: skip
DEPTH_STATS = {"refined": (19025.14930492213, 9880.916071806689), "raw": (18320.348967710495, 8898.658819551309)}
LAYOUT = (
    "root/{train,test}_{rgb,depth,label}.txt, one path per line relative to root, aligned by line "
    "(rgb JPG/PNG, depth 16-bit PNG in depth_bfx folders, labels .npy uint8) (ESANet's SUN RGB-D preparation)"
)
KINDS = ("rgb", "depth", "label")


def read_lists(root: Path, published: str) -> dict[str, list[str]]:
    """The three aligned path lists of a published split (``train`` or ``test``)."""
    lists: dict[str, list[str]] = {}
    for kind in KINDS:
        path = root / f"{published}_{kind}.txt"
        if not path.is_file():
            raise DatasetLayoutError(f"list file {path} is missing; expected layout: {LAYOUT}")
        lists[kind] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    lengths = {f"{published}_{k}.txt": len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetLayoutError(f"list files of {root} are not aligned: line counts {lengths}; expected equal")
    return lists


def raw_depth_path(refined: Path) -> Path:
    """The raw-depth sibling of a refined depth file: the ``depth_bfx`` folder replaced by ``depth``."""
    parts = ["depth" if p == "depth_bfx" else p for p in refined.parts]
    return Path(*parts)


class SunRgbd(RGBDSegmentation):
    """SUN RGB-D, 37 classes (see the module docstring).

    Args:
        root: the prepared dataset folder (holding the list files).
        split: ``train``, ``val`` (carved from the published train split) or ``test``.
        depth: ``refined`` (the listed ``depth_bfx`` files) or ``raw`` (their ``depth`` siblings).
        size: ``[H, W]`` every sample is resized to.
        augment: paired augmentation of the train split (``PairedAugment`` keys) or null.
        val_fraction, split_seed: the validation split carved from train.
        depth_mean, depth_std: override the published depth statistics.
        max_samples: keep only the first N samples of the split.
        strict: stop at the first missing/unreadable rgb or depth file instead of marking it absent.
    """

    num_classes = 37
    class_names = CLASS_NAMES
    layout = LAYOUT
    label_lut, label_known = label_lookup({0: 255, **{k: k - 1 for k in range(1, 38)}})
    label_expected = "0 (void) or 1..37"

    def __init__(
        self,
        root: str,
        split: str = "train",
        depth: str = "refined",
        size: list[int] | None = None,
        augment: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        depth_mean: float | None = None,
        depth_std: float | None = None,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if depth not in DEPTH_STATS:
            raise ConfigError(f"dataset.depth: expected one of {list(DEPTH_STATS)}, got {depth!r}")
        self.root = Path(root).expanduser()
        published = "test" if split == "test" else "train"
        lists = read_lists(self.root, published)
        rows = list(range(len(lists["rgb"])))
        if split in ("train", "val"):
            train_idx, val_idx = carve_validation(len(rows), val_fraction, split_seed)
            rows = (train_idx if split == "train" else val_idx).tolist()
        items = []
        for i in rows:
            depth_path = self.root / lists["depth"][i]
            items.append(
                SegItem(
                    Path(lists["rgb"][i]).stem,
                    self.root / lists["rgb"][i],
                    raw_depth_path(depth_path) if depth == "raw" else depth_path,
                    self.root / lists["label"][i],
                )
            )
        mean, std = DEPTH_STATS[depth]
        self.setup(
            items,
            split=split,
            size=size or [480, 640],
            augment=augment,
            depth_mean=mean if depth_mean is None else depth_mean,
            depth_std=std if depth_std is None else depth_std,
            max_samples=max_samples,
        )

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: each list file and how many of its listed files exist."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows: list[tuple[str, str]] = []
        for published in ("train", "test"):
            for kind in KINDS:
                path = root / f"{published}_{kind}.txt"
                if not path.is_file():
                    rows.append((path.name, "MISSING (one path per line, relative to root)"))
                    continue
                listed = [root / line.strip() for line in path.read_text().splitlines() if line.strip()]
                rows.append((f"{path.name} -> listed files", count_files(listed, root)))
                if kind == "depth" and spec.get("depth") == "raw":
                    raw = [raw_depth_path(p) for p in listed]
                    rows.append((f"{path.name} -> raw 'depth' siblings", count_files(raw, root)))
        return rows
