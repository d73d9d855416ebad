"""CASIA-SURF CeFA (cross-ethnicity face anti-spoofing): RGB ("profile"), Depth and IR video frames.

Layout::

    root/{AF,CA,EA}/<RACE-ID>/<video>/{profile,depth,ir}/<frame>.jpg

``<RACE-ID>`` is e.g. ``EA-012``; a video is named ``race_id_device_session_pai`` (e.g. ``3_012_1_1_1``) with
race 1 = AF, 2 = CA, 3 = EA; device 1 = rssdk, 2 = mp4, 3 = bag, 4 = MOV; session 1 = indoor, 2 = outdoor,
3 = random; PAI (presentation attack instrument) 1 = real, 2 = cloth, 3 = photo, 4 = screen. One sample is one
frame: the three modalities are aligned by frame file name (sorted); a frame missing in one modality marks
that modality absent for the sample. The modality ``rgb`` is read from ``profile``.

Labels: the published encoding is real → 0, attack → 1. **We normalize it to the CASIA-SURF encoding:
target 1 = bona fide (PAI 1), 0 = attack (PAI 2–4)**, class names ``attack``, ``bona fide`` (use
``eval.bona_fide_class=1`` for APCER/BPCER/ACER).

Protocols. Source: the authors' loaders ``cefa_protocol_class.py`` (class ``CASIA_Race_RDI``) and
``cefa_dataset_class.py`` in shicaiwei123/MMANet-CVPR2023 (``classification/datasets``), identical in
shicaiwei123/ECCV2024-DMRNet; their default is ``race_prot_rdi_4@5``. Every protocol keeps device ∈ {1, 3} and
session ∈ {1, 2}, and the subject IDs train 0–199, val ("dev") 200–299, test 300–499. The PAIs:

    protocol   train and val PAI    test PAI      races
    1          {1, 2, 4}            {1, 2, 4}     train_race → test_race
    2@1        {1, 2}               {1, 4}        AF, CA and EA in every split
    2@2        {1, 4}               {1, 2}        AF, CA and EA in every split
    3          {1, 2, 4}            {1, 2, 4}     AF, CA and EA in every split
    4          {1, 4}               {1, 2}        train_race → test_race

The published sub-protocols ``1@k`` and ``4@k`` pick the races: @1 AF → CA, @2 AF → EA, @3 CA → AF,
@4 CA → EA, @5 EA → AF, @6 EA → CA (train and val on the first race, test on the second); here these are the
options ``train_race`` and ``test_race`` (default EA → AF, i.e. 4@5). Protocols 2 and 3 ignore them.

Not pinned, so not implemented: protocol 3's cross-modality pairs ("R&R-D, R&R-I, ...": which modality is
trained and which tested) are not in the loader code; protocol 3 here is only its data split, and which
modalities a model sees is the method's business. The CeFA challenge's own protocol files (lists of videos)
were not available; the rules above are the loader's. The reference trains and tests on every frame of a
video (its ``ratio`` of 1 and ``num='all'``); ``frames_per_video`` keeps the first N sorted frames instead.

Preprocessing: as CASIA-SURF (``mmrobust.data.face_common``; the MMANet CeFA dataloader uses the same
transforms): train resize 144, rotation ±30°, crop 112, flip (one transform for the three modalities);
val/test resize 112; ``(255·x − 127.5)/128``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.face_common import FaceAntiSpoofing, FaceItem
from mmrobust.registry import ConfigError

RACES = ("AF", "CA", "EA")  # race field 1, 2, 3 of a video name
FOLDERS = {"rgb": "profile", "depth": "depth", "ir": "ir"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)_(\d+)$")
SPLIT_IDS = {"train": range(0, 200), "val": range(200, 300), "test": range(300, 500)}
DEVICES = (1, 3)
SESSIONS = (1, 2)
# protocol -> ((train/val PAIs), (test PAIs), cross-race?)
PROTOCOLS: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool]] = {
    "1": ((1, 2, 4), (1, 2, 4), True),
    "2@1": ((1, 2), (1, 4), False),
    "2@2": ((1, 4), (1, 2), False),
    "3": ((1, 2, 4), (1, 2, 4), False),
    "4": ((1, 4), (1, 2), True),
}
LAYOUT = "root/{AF,CA,EA}/<RACE-ID>/<race_id_device_session_pai>/{profile,depth,ir}/<frame>.jpg"


@dataclass(frozen=True)
class Video:
    """One video folder and the fields of its name."""

    folder: Path
    race: str
    subject: int
    device: int
    session: int
    pai: int


def scan_videos(root: Path, races: tuple[str, ...]) -> list[Video]:
    """Every video folder under ``root/<race>/<RACE-ID>/`` of the given races, sorted by path."""
    videos = []
    for race in races:
        race_dir = root / race
        if not race_dir.is_dir():
            raise DatasetLayoutError(f"folder {race_dir} is missing; expected layout: {LAYOUT}")
        for subject in sorted(p for p in race_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for folder in sorted(p for p in subject.iterdir() if p.is_dir() and not p.name.startswith(".")):
                match = VIDEO_NAME.match(folder.name)
                if match is None:
                    raise DatasetLayoutError(
                        f"video folder {folder} is not named race_id_device_session_pai (e.g. 3_012_1_1_1); "
                        f"expected layout: {LAYOUT}"
                    )
                fields = [int(f) for f in match.groups()]
                if not 1 <= fields[0] <= len(RACES) or RACES[fields[0] - 1] != race:
                    raise DatasetLayoutError(
                        f"video folder {folder} has race field {fields[0]} but lies under {race}/ "
                        f"(race fields: 1 = AF, 2 = CA, 3 = EA)"
                    )
                videos.append(Video(folder, race, *fields[1:]))
    return videos


def protocol_rules(
    protocol: str, split: str, train_race: str, test_race: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The races and PAIs of ``split`` under ``protocol`` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"dataset.protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    train_pai, test_pai, cross_race = PROTOCOLS[protocol]
    pais = test_pai if split == "test" else train_pai
    if not cross_race:
        return RACES, pais
    for key, race in (("train_race", train_race), ("test_race", test_race)):
        if race not in RACES:
            raise ConfigError(f"dataset.{key}: expected one of {list(RACES)}, got {race!r}")
    if train_race == test_race:
        raise ConfigError(
            f"dataset.train_race / dataset.test_race: protocol {protocol} tests on another race than it trains on, "
            f"got {train_race} for both"
        )
    return ((test_race if split == "test" else train_race),), pais


def select_videos(videos: list[Video], split: str, pais: tuple[int, ...]) -> list[Video]:
    """The videos of ``split``: its subject IDs, devices {1, 3}, sessions {1, 2} and the given PAIs."""
    ids = SPLIT_IDS[split]
    return [v for v in videos if v.subject in ids and v.device in DEVICES and v.session in SESSIONS and v.pai in pais]


def video_frames(video: Video, frames_per_video: int | None) -> list[FaceItem]:
    """The samples of one video: frames aligned by file name across the modality folders (sorted)."""
    names: dict[str, set[str]] = {}
    for m, sub in FOLDERS.items():
        folder = video.folder / sub
        files = folder.iterdir() if folder.is_dir() else iter(())
        names[m] = {p.name for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
    union = sorted(set().union(*names.values()))
    if not union:
        raise DatasetLayoutError(f"video folder {video.folder} has no frames in {'/, '.join(FOLDERS.values())}/")
    non_empty = [s for s in names.values() if s]
    if len(non_empty) > 1 and not set.intersection(*non_empty):
        raise DatasetLayoutError(
            f"video folder {video.folder}: frame file names differ between {', '.join(FOLDERS.values())} "
            "(frames are aligned by name)"
        )
    target = 1 if video.pai == 1 else 0  # normalized: 1 = bona fide (published: real 0, attack 1)
    return [
        FaceItem({m: video.folder / sub / name for m, sub in FOLDERS.items()}, target)
        for name in union[:frames_per_video]
    ]


class CeFA(FaceAntiSpoofing):
    """CASIA-SURF CeFA (see the module docstring).

    Args:
        root: the folder holding ``AF``, ``CA`` and ``EA``.
        split: ``train``, ``val`` (the protocol's "dev") or ``test``.
        protocol: ``1``, ``2@1``, ``2@2``, ``3`` or ``4`` (see the module docstring).
        train_race, test_race: the races of protocols 1 and 4 (train/val on one, test on the other).
        frames_per_video: keep the first N sorted frames of each video (null: all frames).
        size, resize, augment, max_samples, strict: as for CASIA-SURF.
    """

    layout = LAYOUT

    def __init__(
        self,
        root: str,
        split: str = "train",
        protocol: str | int = "4",
        train_race: str = "EA",
        test_race: str = "AF",
        frames_per_video: int | None = None,
        size: int = 112,
        resize: int = 144,
        augment: dict[str, Any] | None = None,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if split not in SPLIT_IDS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLIT_IDS)}, got {split!r}")
        if frames_per_video is not None and frames_per_video < 1:
            raise ConfigError(f"dataset.frames_per_video: expected a positive integer or null, got {frames_per_video}")
        self.root = Path(root).expanduser()
        self.protocol = str(protocol)
        races, pais = protocol_rules(self.protocol, split, str(train_race), str(test_race))
        self.videos = select_videos(scan_videos(self.root, races), split, pais)
        items = [item for video in self.videos for item in video_frames(video, frames_per_video)]
        self.setup(items, split=split, size=size, resize=resize, augment=augment, max_samples=max_samples)

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: each race folder and the protocol's videos per split."""
        root = Path(str(spec.get("root", "."))).expanduser()
        rows: list[tuple[str, str]] = []
        found = []
        for race in RACES:
            if not (root / race).is_dir():
                rows.append((f"{race}/", f"MISSING ({LAYOUT})"))
                continue
            try:
                videos = scan_videos(root, (race,))
            except DatasetLayoutError as error:
                rows.append((f"{race}/", f"BAD: {error}"))
                continue
            found += videos
            subjects = len({v.folder.parent for v in videos})
            rows.append((f"{race}/", f"{subjects} subject folders, {len(videos)} videos"))
        protocol = str(spec.get("protocol", "4"))
        for split in SPLIT_IDS:
            try:
                races, pais = protocol_rules(
                    protocol, split, str(spec.get("train_race", "EA")), str(spec.get("test_race", "AF"))
                )
            except ConfigError as error:
                rows.append((f"protocol {protocol} {split}", f"BAD: {error}"))
                continue
            chosen = select_videos([v for v in found if v.race in races], split, pais)
            real = sum(v.pai == 1 for v in chosen)
            where = f"protocol {protocol} {split} ({'+'.join(races)}, PAI {list(pais)})"
            rows.append((where, f"{len(chosen)} videos ({real} real, {len(chosen) - real} attack)"))
        return rows
