"""``mmrobust prepare kinetics_sounds RAW OUT``: per-class video folders → the layout the loader reads.

Raw: ``RAW/<class>/<video>.mp4`` (also .mkv .webm .avi .flv .mov), one folder per class. Class names with
spaces become folder names with underscores (``playing drums`` → ``playing_drums``), as the references do.

Written (DMRNet's layout; train → ``train_img`` / ``train``, test → ``val_img`` / ``test``):
``OUT/visual/{train_img,val_img}/Image-01-FPS/<class>/<video>/{i:05d}.jpg`` (frames at 1 fps),
``OUT/audio/{train,test}/<class>/<video>.wav`` (the video's audio, mono 16-bit PCM at 16 kHz, decoded with the
same package), ``OUT/class.txt`` (the class names on one line, comma-separated, in label order, as DMRNet's
``class.txt``: DMRNet's order when all classes are among its 33, else sorted) and ``OUT/my_train.txt`` /
``OUT/my_test.txt`` (rows ``<video>,<seconds>,<label>`` as OGM-GE's lists, ``label`` = position in
``class.txt``, ``seconds`` = frames written // fps), listing the clips whose outputs are complete.

The split: with ``--lists DIR``, the lists found there (``my_train.txt``/``my_test.txt``, ``train.txt``/
``test.txt`` or ``train.csv``/``test.csv``; the first comma-separated field of each line names a video, with or
without folder and extension). Without it, a seeded split per class by YouTube id (``<id>_<start>_<end>``
clips of one source video stay on one side), a fraction ``test_fraction`` of each class's ids in test.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from mmrobust.atomic_io import write_text_atomic
from mmrobust.data.base import DatasetLayoutError
from mmrobust.prepare.runner import Clip, Summary, run_clips

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".flv", ".mov")
LIST_NAMES = (("my_train.txt", "my_test.txt"), ("train.txt", "test.txt"), ("train.csv", "test.csv"))
FOLDERS = {"train": ("train_img", "train"), "test": ("val_img", "test")}
EXPECTED = "RAW/<class>/<video>.mp4 (one folder per class)"
_SEGMENT = re.compile(r"^(.+)_\d+_\d+$")


def class_folder(name: str) -> str:
    """The output folder of a class: spaces → underscores."""
    return "_".join(name.split())


def video_id(entry: str) -> str:
    """``a/b/xyz_000001_000011.mp4`` → ``xyz_000001_000011``."""
    name = Path(entry.strip()).name
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_EXTS else name


def source_id(video: str) -> str:
    """The YouTube id of a Kinetics clip name ``<id>_<start>_<end>`` (the whole name otherwise)."""
    match = _SEGMENT.match(video)
    return match.group(1) if match else video


def class_order(classes: list[str]) -> list[str]:
    """Label order: DMRNet's ``class.txt`` order when every class is one of its 33 (so labels match the
    reference code's), else sorted by name."""
    from mmrobust.data.kinetics_sounds import DMRNET_CLASSES

    if set(classes) <= set(DMRNET_CLASSES):
        return [name for name in DMRNET_CLASSES if name in classes]
    return sorted(classes)


def find_videos(raw: Path) -> dict[str, list[Path]]:
    """``{raw class folder: [video paths]}``; a layout error when there is none."""
    if not raw.is_dir():
        raise DatasetLayoutError(f"{raw}: not a folder; expected {EXPECTED}")
    found = {}
    for folder in sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
        if videos:
            found[folder.name] = videos
    if not found:
        raise DatasetLayoutError(f"{raw}: no class folder holds a video ({' '.join(VIDEO_EXTS)}); expected {EXPECTED}")
    folders = [class_folder(name) for name in found]
    clashes = sorted({f for f in folders if folders.count(f) > 1})
    if clashes:
        raise DatasetLayoutError(f"{raw}: class folders that differ only in spaces/underscores: {clashes}")
    return found


def read_lists(folder: Path) -> dict[str, set[str]]:
    """``{"train": ids, "test": ids}`` from the first pair of list files present in ``folder``."""
    for train_name, test_name in LIST_NAMES:
        if (folder / train_name).is_file() and (folder / test_name).is_file():
            lists = {}
            for split, name in (("train", train_name), ("test", test_name)):
                lines = (folder / name).read_text(encoding="utf-8-sig").splitlines()
                lists[split] = {video_id(line.split(",")[0]) for line in lines if line.split(",")[0].strip()}
            both = sorted(lists["train"] & lists["test"])
            if both:
                raise DatasetLayoutError(f"--lists {folder}: {len(both)} video(s) in both lists, e.g. {both[0]}")
            return lists
    pairs = ", ".join(f"{a}/{b}" for a, b in LIST_NAMES)
    raise DatasetLayoutError(f"--lists {folder}: none of the list pairs {pairs} is there")


def seeded_split(videos: dict[str, list[Path]], test_fraction: float, seed: int) -> dict[str, set[str]]:
    """Per class (sorted), shuffle the sorted source ids with one ``random.Random(seed)`` and put the first
    ``round(test_fraction · n_ids)`` (at least 1 when the class has 2 or more ids) in test."""
    rng = random.Random(seed)
    test: set[str] = set()
    train: set[str] = set()
    for paths in videos.values():
        ids = [video_id(p.name) for p in paths]
        sources = sorted({source_id(v) for v in ids})
        rng.shuffle(sources)
        n_test = max(1, round(test_fraction * len(sources))) if len(sources) >= 2 else 0
        test_sources = set(sources[:n_test])
        for v in ids:
            (test if source_id(v) in test_sources else train).add(v)
    return {"train": train, "test": test}


def prepare_kinetics_sounds(
    raw: Path,
    out: Path,
    *,
    lists: Path | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    fps: int = 1,
    audio_rate: int = 16000,
    workers: int = 1,
    progress: bool = True,
) -> tuple[Summary, list[str]]:
    """Prepare Kinetics-Sounds (module docstring); return the run summary and lines describing the split."""
    videos = find_videos(raw)
    unreadable: dict[str, str] = {}
    if lists is not None:
        split = read_lists(lists)
        present = {video_id(p.name) for paths in videos.values() for p in paths}
        for split_name, ids in split.items():
            for vid in sorted(ids - present):
                unreadable[vid] = f"in the {split_name} list but not found under {raw}"
        listed = split["train"] | split["test"]
        n_unlisted = len(present - listed)
        notes = [
            f"split: the lists in {lists}; {n_unlisted} video(s) under {raw} are in neither list and were left out"
        ]
    else:
        split = seeded_split(videos, test_fraction, seed)
        notes = [
            f"split: seeded per class by source video id, seed {seed}, test fraction {test_fraction}; this is NOT "
            "a published split (give --lists DIR with the train/test lists for that)"
        ]
    classes = class_order([class_folder(name) for name in videos])
    clips: list[Clip] = []
    members: dict[str, list[tuple[str, str, Clip]]] = {"train": [], "test": []}
    for raw_name, paths in videos.items():
        cls = class_folder(raw_name)
        for path in paths:
            vid = video_id(path.name)
            side = "train" if vid in split["train"] else "test" if vid in split["test"] else None
            if side is None:
                continue
            img, aud = FOLDERS[side]
            clip = Clip(
                name=f"{cls}/{vid}",
                video=path,
                frames_dir=out / "visual" / img / f"Image-{fps:02d}-FPS" / cls / vid,
                audio_out=out / "audio" / aud / cls / f"{vid}.wav",
                audio_rate=audio_rate,
                fps=fps,
            )
            clips.append(clip)
            members[side].append((vid, cls, clip))
    summary = run_clips(
        clips, out, description="kinetics_sounds", workers=workers, progress=progress, unreadable=unreadable
    )
    done = summary.done
    notes.append(f"wrote {write_text_atomic(', '.join(classes), out / 'class.txt')} ({len(classes)} classes)")
    for side, rows in members.items():
        lines = []
        for vid, cls, clip in rows:
            if clip.name in done:
                seconds = sum(1 for p in clip.frames_dir.iterdir() if p.suffix == ".jpg") // fps
                lines.append(f"{vid},{seconds},{classes.index(cls)}\n")
        path = write_text_atomic("".join(lines), out / f"my_{side}.txt")
        notes.append(f"wrote {path} ({len(lines)} clips)")
    return summary, notes
