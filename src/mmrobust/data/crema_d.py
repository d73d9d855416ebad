"""CREMA-D audio-visual emotion recognition, 6 classes, in the layout of OGM-GE's and DMRNet's loaders.

Layout::

    root/train.csv, root/test.csv        one clip per row: ``<clip>,<EMO>`` (6698 / 744 rows; the published
                                         files have no header and may start with a UTF-8 BOM; a header row
                                         whose label is not an emotion is skipped)
    root/AudioWAV/<clip>.wav             the published sound files (16 kHz; resampled to 22.05 kHz)
    root/Image-01-FPS/<clip>/*.jpg       frames extracted at 1 fps (``fps`` selects Image-<fps>-FPS)

Classes in the reference's index order: 0 NEU (neutral), 1 HAP (happy), 2 SAD, 3 FEA (fear), 4 DIS (disgust),
5 ANG (anger).

Audio: 22.05 kHz, tiled to at least 3 s, the first 3 s, clipped to [−1, 1], log-magnitude STFT (n_fft 512,
hop 353) → ``[1, 257, 188]`` (see ``mmrobust.data.av_common``); ``zscore_audio`` standardizes each
spectrogram as DMRNet's loader does (OGM-GE's does not). The reference tiles the wave exactly 3 times, which
equals ours for every clip of at least 1 s; shorter clips would give it fewer than 188 frames.

Visual: ``frames`` frames ``[T, 3, image_size, image_size]``, random in training and deterministic (segment
centres) at test; the reference takes the first ``os.listdir`` entries at both. Training RandomResizedCrop
and flip, test resize, ImageNet statistics.

Splits: ``test`` is the published test list. The published split has no validation set (the papers report
the test split); ``val`` is a seeded, stratified ``val_fraction`` (default 10 %) of the published train list
and ``train`` the rest. The reference loaders silently drop clips lacking the sound file or the frame folder;
we keep them with that modality absent (``drop_incomplete: true`` drops them as the reference does).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mmrobust.data.av_common import AudioPipeline, AudioVisualClips, Clip
from mmrobust.data.base import DatasetLayoutError
from mmrobust.data.seg_common import count_files

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
CLASS_NAMES = ("neutral", "happy", "sad", "fear", "disgust", "anger")
LAYOUT = "root/{train,test}.csv (rows clip,EMO), root/AudioWAV/<clip>.wav, root/Image-01-FPS/<clip>/*.jpg"


def audio_pipeline(zscore: bool = False) -> AudioPipeline:
    """The reference CREMA-D audio pipeline: 22.05 kHz, 3 s, n_fft 512, hop 353 → ``[1, 257, 188]``."""
    return AudioPipeline(sample_rate=22050, min_seconds=3.0, crop_seconds=3.0, n_fft=512, hop=353, zscore=zscore)


def read_list(path: Path) -> list[tuple[str, int]]:
    """``(clip, class index)`` rows of a published csv; one ``DatasetLayoutError`` line for a bad file."""
    if not path.is_file():
        raise DatasetLayoutError(f"list file {path} is missing; expected layout: {LAYOUT}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetLayoutError(f"{path}: not UTF-8 text ({error.reason}); expected rows clip,EMO") from error
    rows: list[tuple[str, int]] = []
    for line, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        fields = [f.strip() for f in fields]
        if not any(fields):
            continue
        emotion = fields[1].upper() if len(fields) >= 2 else ""
        if emotion not in EMOTIONS:
            if line == 1 and len(fields) >= 2:
                continue  # a header row such as "clip,label"
            raise DatasetLayoutError(
                f"{path}:{line}: expected clip,EMO with EMO one of {', '.join(EMOTIONS)}; got {','.join(fields)!r}"
            )
        rows.append((fields[0], EMOTIONS.index(emotion)))
    return rows


class CremaD(AudioVisualClips):
    """CREMA-D (see the module docstring).

    Args:
        root: the dataset folder.
        split: ``train``, ``val`` (carved from the published train list) or ``test``.
        frames: number of frames T per sample.
        image_size: frames are ``image_size × image_size``.
        fps: the frame folder is ``Image-<fps:02d>-FPS``.
        zscore_audio: standardize each spectrogram (DMRNet).
        val_fraction, split_seed: the validation split carved (stratified) from train.
        drop_incomplete: drop clips lacking the sound file or the frame folder (the reference's counts).
        max_samples: keep only the first N clips of the split (quick runs).
        strict: stop at the first missing/unreadable file instead of marking the modality absent.
    """

    num_classes = 6
    class_names = CLASS_NAMES
    layout = f"expected layout: {LAYOUT}"

    def __init__(
        self,
        root: str,
        split: str = "train",
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
        self.root = Path(root).expanduser()
        rows = read_list(self.root / ("test.csv" if split == "test" else "train.csv"))
        audio_dir, frame_dir = self.root / "AudioWAV", self.root / f"Image-{int(fps):02d}-FPS"
        if rows and not audio_dir.is_dir() and not frame_dir.is_dir():
            raise DatasetLayoutError(f"neither {audio_dir} nor {frame_dir} exists; expected layout: {LAYOUT}")
        clips = [Clip(name, audio_dir / f"{name}.wav", frame_dir / name, label) for name, label in rows]
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
        """What ``mmrobust data check`` shows: each list file, and how many clips have their files."""
        root = Path(str(spec.get("root", "."))).expanduser()
        frame_dir = f"Image-{int(spec.get('fps', 1)):02d}-FPS"
        rows: list[tuple[str, str]] = []
        for published in ("train", "test"):
            path = root / f"{published}.csv"
            if not path.is_file():
                rows.append((path.name, "MISSING (rows clip,EMO)"))
                continue
            names = [name for name, _ in read_list(path)]
            rows.append((path.name, f"{len(names)} clips"))
            rows.append(
                (
                    f"AudioWAV/<clip>.wav ({published})",
                    count_files([root / "AudioWAV" / f"{n}.wav" for n in names], root),
                )
            )
            folders = [root / frame_dir / n for n in names]
            present = sum(1 for f in folders if f.is_dir())
            rows.append((f"{frame_dir}/<clip>/ ({published})", f"{present}/{len(folders)} folders present"))
        return rows
