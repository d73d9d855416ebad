"""``mmrobust prepare crema_d RAW OUT``: the published CREMA-D files → the layout the ``crema_d`` loader reads.

Raw (as published): ``RAW/VideoFlash/<clip>.flv`` and ``RAW/AudioWAV/<clip>.wav``, clip names
``ACTOR_SENTENCE_EMOTION_LEVEL`` (``1001_DFA_ANG_XX``; emotion one of NEU HAP SAD FEA DIS ANG).

Written (the references' layout): ``OUT/Image-01-FPS/<clip>/{i:05d}.jpg`` (frames at 1 fps),
``OUT/AudioWAV/<clip>.wav`` (hard link to the raw file when on one filesystem, else a copy) and
``OUT/train.csv`` / ``OUT/test.csv`` (rows ``clip,EMO``, no header) listing the clips whose outputs are complete.

The split: with ``--lists DIR``, the ``train.csv`` / ``test.csv`` found there (the references' published
split, 6698 / 744 rows); without it, a seeded split by actor (speaker-independent: no actor in both), a
fraction ``test_fraction`` of the actors (at least one) in test. The published split is not
speaker-independent, so the two give different numbers.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from mmrobust.atomic_io import write_text_atomic
from mmrobust.data.base import DatasetLayoutError
from mmrobust.prepare.runner import Clip, Summary, run_clips

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
SPLITS = ("train", "test")
EXPECTED = "RAW/VideoFlash/<clip>.flv and RAW/AudioWAV/<clip>.wav (clip names like 1001_DFA_ANG_XX)"


def emotion_of(clip: str) -> str | None:
    """The emotion field of a clip name (``1001_DFA_ANG_XX`` → ``ANG``), or ``None`` if the name is not
    ``ACTOR_SENTENCE_EMOTION_LEVEL`` with a known emotion."""
    parts = clip.split("_")
    if len(parts) != 4 or not parts[0].isdigit() or parts[2] not in EMOTIONS:
        return None
    return parts[2]


def read_lists(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """``{split: [(clip, EMO), ...]}`` from ``folder/train.csv`` and ``folder/test.csv`` (rows ``clip,EMO``)."""
    lists: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS:
        path = folder / f"{split}.csv"
        if not path.is_file():
            raise DatasetLayoutError(
                f"--lists {folder}: no {split}.csv (expected train.csv and test.csv, rows clip,EMO)"
            )
        rows = []
        with path.open(encoding="utf-8-sig", newline="") as f:
            for line_no, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2 or row[1].strip() not in EMOTIONS:
                    raise DatasetLayoutError(
                        f"{path}:{line_no}: expected clip,EMO with EMO one of {' '.join(EMOTIONS)}, got {row!r}"
                    )
                rows.append((row[0].strip(), row[1].strip()))
        lists[split] = rows
    return lists


def actor_split(clips: list[str], test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Speaker-independent split: shuffle the sorted actor ids with ``random.Random(seed)`` and put the first
    ``max(1, round(test_fraction · n_actors))`` in test."""
    actors = sorted({c.split("_")[0] for c in clips})
    if len(actors) < 2:
        raise DatasetLayoutError(
            f"a speaker-independent split needs at least 2 actors, found {len(actors)}; give --lists DIR"
        )
    random.Random(seed).shuffle(actors)
    n_test = min(len(actors) - 1, max(1, round(test_fraction * len(actors))))
    test_actors = set(actors[:n_test])
    return {
        "train": sorted(c for c in clips if c.split("_")[0] not in test_actors),
        "test": sorted(c for c in clips if c.split("_")[0] in test_actors),
    }


def prepare_crema_d(
    raw: Path,
    out: Path,
    *,
    lists: Path | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    fps: int = 1,
    workers: int = 1,
    progress: bool = True,
) -> tuple[Summary, list[str]]:
    """Prepare CREMA-D (module docstring); return the run summary and lines describing the split."""
    video_dir, audio_dir = raw / "VideoFlash", raw / "AudioWAV"
    if not video_dir.is_dir() or not audio_dir.is_dir():
        missing = " and ".join(str(p) for p in (video_dir, audio_dir) if not p.is_dir())
        raise DatasetLayoutError(f"{raw}: no {missing}; expected {EXPECTED}")
    unreadable: dict[str, str] = {}
    if lists is not None:
        published = read_lists(lists)
        labels = {clip: emo for rows in published.values() for clip, emo in rows}
        split = {name: [clip for clip, _ in rows] for name, rows in published.items()}
        notes = [f"split: the lists in {lists} ({len(split['train'])} train / {len(split['test'])} test rows)"]
    else:
        names = sorted({p.stem for p in video_dir.glob("*.flv")} | {p.stem for p in audio_dir.glob("*.wav")})
        if not names:
            raise DatasetLayoutError(f"{raw}: no clips found; expected {EXPECTED}")
        labels = {}
        for name in names:
            emotion = emotion_of(name)
            if emotion is None:
                unreadable[name] = f"the name is not ACTOR_SENTENCE_EMOTION_LEVEL with EMOTION in {' '.join(EMOTIONS)}"
            else:
                labels[name] = emotion
        split = actor_split(sorted(labels), test_fraction, seed)
        n_actors = {k: len({c.split("_")[0] for c in v}) for k, v in split.items()}
        notes = [
            f"split: seeded by actor (speaker-independent), seed {seed}, test fraction {test_fraction}: "
            f"{n_actors['train']} train actors / {n_actors['test']} test actors; this is NOT the references' "
            "published split (give --lists DIR with their train.csv and test.csv for that)"
        ]
    frames_root = out / f"Image-{fps:02d}-FPS"
    clips = [
        Clip(
            name=name,
            video=video_dir / f"{name}.flv",
            frames_dir=frames_root / name,
            audio_out=out / "AudioWAV" / f"{name}.wav",
            audio_src=audio_dir / f"{name}.wav",
            fps=fps,
        )
        for name in dict.fromkeys(split["train"] + split["test"])
    ]
    summary = run_clips(clips, out, description="crema_d", workers=workers, progress=progress, unreadable=unreadable)
    done = summary.done
    for name in SPLITS:
        rows = [clip for clip in split[name] if clip in done]
        path = write_text_atomic("".join(f"{clip},{labels[clip]}\n" for clip in rows), out / f"{name}.csv")
        notes.append(f"wrote {path} ({len(rows)} clips)")
    return summary, notes
