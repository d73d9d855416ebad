"""Kinetics-Sounds audio-visual action recognition in the layout of DMRNet's loader (31–34 classes).

Layout::

    root/visual/train_img/Image-01-FPS/<class>/<video>/*.jpg   frames at 1 fps of the published train videos
    root/visual/val_img/Image-01-FPS/<class>/<video>/*.jpg     ... of the published test (validation) videos
    root/audio/train/<class>/<video>.wav                       16 kHz sound of the train videos (.flac too)
    root/audio/test/<class>/<video>.wav                        ... of the test videos
    root/class.txt                                             optional class list (see below)

Classes: ``class_list`` (default ``root/class.txt``) in DMRNet's format, class names separated by commas or
new lines, the spaces inside a name replaced by ``_`` (``playing bass guitar`` → folder ``playing_bass_guitar``);
the class index is the position in that list. Without a class file the 33 classes of DMRNet's published
``class.txt`` are used in its order. Class folders not in the list are ignored (with a warning).

Clips: every ``<video>`` folder and every sound file of a listed class; a clip lacking one of them has that
modality absent. Like DMRNet, video folders with fewer than ``min_frames`` (default 3) frames are dropped with
their sound. ``lists`` (e.g. ``my_{split}.txt``, OGM-GE's lists, ``{split}`` = train/test) keeps only the clips
named in the first comma-separated field of each line of that file under root. DMRNet pairs sound files and
frame folders by their sorted position within a class; we pair them by name.

Audio: 16 kHz, tiled to at least 10 s, a 5 s crop starting uniformly in [0, 5 s] in training (as the
reference) and at 2.5 s at test (the reference crops at random at test too), log-magnitude STFT (n_fft 256,
hop 128) → ``[1, 129, 626]`` (see ``mmrobust.data.av_common``). Visual: as CREMA-D (``frames`` frames,
random in training, segment centres at test; RandomResizedCrop + flip / resize; ImageNet statistics).

Splits: ``test`` is the published validation set (``val_img``, ``audio/test``); ``val`` is a seeded,
stratified ``val_fraction`` (default 10 %) of the published train set and ``train`` the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mmrobust.data.av_common import AUDIO_SUFFIXES, AudioPipeline, AudioVisualClips, Clip, list_frames
from mmrobust.data.base import DatasetLayoutError
from mmrobust.registry import ConfigError

log = logging.getLogger(__name__)

DMRNET_CLASSES = (
    "blowing_nose", "bowling", "chopping_wood", "ripping_paper", "shuffling_cards", "singing", "tapping_pen",
    "tying_tie", "blowing_out_candles", "dribbling_basketball", "laughing", "mowing_lawn", "shoveling_snow",
    "stomping_grapes", "tap_dancing", "tapping_guitar", "tickling", "finger_snapping", "playing_accordion",
    "playing_bagpipes", "playing_bass_guitar", "playing_clarinet", "playing_drums", "playing_guitar",
    "playing_harmonica", "playing_keyboard", "playing_organ", "playing_piano", "playing_saxophone",
    "playing_trombone", "playing_trumpet", "playing_violin", "playing_xylophone",
)  # fmt: skip
LAYOUT = (
    "root/visual/{train_img,val_img}/Image-01-FPS/<class>/<video>/*.jpg, root/audio/{train,test}/<class>/<video>.wav, "
    "optional root/class.txt (class names separated by commas)"
)
FOLDERS = {"train": ("train_img", "train"), "test": ("val_img", "test")}  # published split -> (visual, audio)


def audio_pipeline(zscore: bool = False) -> AudioPipeline:
    """The reference Kinetics-Sounds audio pipeline: 16 kHz, 10 s tiles, 5 s crops → ``[1, 129, 626]``."""
    return AudioPipeline(
        sample_rate=16000,
        min_seconds=10.0,
        crop_seconds=5.0,
        n_fft=256,
        hop=128,
        max_start_seconds=5.0,
        test_start_seconds=2.5,
        zscore=zscore,
    )


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names from a DMRNet-style class file (comma or newline separated, inner spaces → ``_``)."""
    names = ["_".join(part.split()) for line in path.read_text().splitlines() for part in line.split(",")]
    names = [n for n in names if n]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates:
        raise DatasetLayoutError(f"class list {path}: expected distinct class names separated by commas, got {names}")
    return tuple(names)


def resolve_classes(root: Path, class_list: str | None) -> tuple[tuple[str, ...], str]:
    """The class names and where they come from (the file, or DMRNet's published list)."""
    if class_list is None:
        path = root / "class.txt"
        if not path.is_file():
            return DMRNET_CLASSES, "DMRNet's published class.txt (33 classes)"
    else:
        path = Path(class_list).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DatasetLayoutError(f"class list {path} is missing (dataset.class_list); expected layout: {LAYOUT}")
    return read_classes(path), str(path)


def split_folders(root: Path, published: str, fps: int) -> tuple[Path, Path]:
    """The frame folder and the sound folder of a published split (``train`` or ``test``)."""
    visual, audio = FOLDERS[published]
    return root / "visual" / visual / f"Image-{fps:02d}-FPS", root / "audio" / audio


def video_folders(folder: Path) -> set[str]:
    """The names of the sub-folders of ``folder`` (none if it does not exist)."""
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def sound_files(folder: Path) -> dict[str, Path]:
    """The sound files of ``folder`` by stem (none if it does not exist)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES}


def find_clips(
    root: Path, published: str, classes: tuple[str, ...], fps: int, min_frames: int, keep: set[str] | None
) -> list[Clip]:
    """Every clip of the published split: the union of frame folders and sound files, class by class."""
    visual_root, audio_root = split_folders(root, published, fps)
    if not visual_root.is_dir() and not audio_root.is_dir():
        raise DatasetLayoutError(f"neither {visual_root} nor {audio_root} exists; expected layout: {LAYOUT}")
    unknown = sorted((video_folders(visual_root) | video_folders(audio_root)) - set(classes))
    if unknown:
        log.warning("Kinetics-Sounds: ignoring %d class folders not in the class list: %s", len(unknown), unknown[:5])
    clips = []
    for label, name in enumerate(classes):
        videos, sounds = video_folders(visual_root / name), sound_files(audio_root / name)
        for video in sorted(videos | set(sounds)):
            if keep is not None and video not in keep:
                continue
            frames = visual_root / name / video
            if video in videos and len(list_frames(frames)) < min_frames:
                continue  # DMRNet drops videos with fewer than 3 frames, and their sound
            clips.append(Clip(video, sounds.get(video, audio_root / name / f"{video}.wav"), frames, label))
    return clips


class KineticsSounds(AudioVisualClips):
    """Kinetics-Sounds (see the module docstring).

    Args:
        root: the dataset folder.
        split: ``train``, ``val`` (carved from the published train set) or ``test``.
        class_list: the class file (relative to root or absolute); null: ``root/class.txt`` if present, else
            DMRNet's published list.
        lists: a file name pattern with ``{split}`` (train/test) of clip lists under root, or null (all clips).
        min_frames: frame folders with fewer frames are dropped with their sound (DMRNet: 3).
        frames, image_size, fps: as for CREMA-D.
        zscore_audio: standardize each spectrogram.
        val_fraction, split_seed: the validation split carved (stratified) from train.
        drop_incomplete: drop clips lacking the sound file or the frame folder.
        max_samples: keep only the first N clips of the split.
        strict: stop at the first missing/unreadable file instead of marking the modality absent.
    """

    layout = f"expected layout: {LAYOUT}"

    def __init__(
        self,
        root: str,
        split: str = "train",
        class_list: str | None = None,
        lists: str | None = None,
        min_frames: int = 3,
        frames: int = 1,
        image_size: int = 224,
        fps: int = 1,
        zscore_audio: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        drop_incomplete: bool = False,
        max_samples: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict=strict)
        if lists is not None and "{split}" not in str(lists):
            raise ConfigError(f"dataset.lists: expected a file name pattern containing {{split}}, got {lists!r}")
        self.root = Path(root).expanduser()
        self.class_names, self.class_source = resolve_classes(self.root, class_list)
        self.num_classes = len(self.class_names)
        published = "test" if split == "test" else "train"
        keep = None
        if lists is not None:
            path = self.root / str(lists).format(split=published)
            if not path.is_file():
                raise DatasetLayoutError(f"clip list {path} is missing (dataset.lists); expected one clip per line")
            keep = {line.split(",")[0].strip() for line in path.read_text().splitlines() if line.strip()}
        clips = find_clips(self.root, published, self.class_names, int(fps), int(min_frames), keep)
        self.setup(
            clips,
            split=split,
            audio=audio_pipeline(zscore_audio),
            frames=frames,
            image_size=image_size,
            val_fraction=val_fraction,
            split_seed=split_seed,
            max_samples=max_samples,
            drop_incomplete=drop_incomplete,
        )

    @classmethod
    def layout_status(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """What ``mmrobust data check`` shows: the class list, and per split the frame and sound folders."""
        root = Path(str(spec.get("root", "."))).expanduser()
        fps = int(spec.get("fps", 1))
        try:
            classes, source = resolve_classes(root, spec.get("class_list"))
        except DatasetLayoutError as error:
            return [("class list", f"MISSING ({error})")]
        rows = [("class list", f"{len(classes)} classes from {source}")]
        for published in ("train", "test"):
            visual_root, audio_root = split_folders(root, published, fps)
            for kind, folder in (("frame folders", visual_root), ("sound files", audio_root)):
                rel = folder.relative_to(root)
                if not folder.is_dir():
                    rows.append((f"{rel}/<class>/", "MISSING"))
                    continue
                per_class = [folder / c for c in classes]
                count = video_folders if kind == "frame folders" else sound_files
                n = sum(len(count(d)) for d in per_class)
                present = sum(1 for d in per_class if d.is_dir())
                rows.append((f"{rel}/<class>/", f"{n} {kind} in {present}/{len(classes)} class folders"))
        return rows
