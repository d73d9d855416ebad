"""What the audio-visual clip datasets (CREMA-D, Kinetics-Sounds) share: the reference audio pipeline in torch,
frame selection and the frame transforms, the validation split carved from train, and one base class.

Audio (OGM-GE's and DMRNet's loaders, re-written with soundfile + soxr + ``torch.stft``; no librosa)::

    w ← mono(wave), resampled to ``sample_rate``                 (channel mean, as librosa.load(mono=True))
    w ← w tiled (repeated end to end) to at least ``min_seconds``
    w ← w[s : s + L],  L = crop_seconds · sample_rate            (s = the crop start; 0 for CREMA-D)
    w ← clip(w, −1, 1)
    S ← log(|STFT(w)| + 1e−7)                                   (periodic Hann window of n_fft, hop, centred
                                                                 frames, zero padding of n_fft/2 at both ends)
    S ← (S − mean S) / (std S + 1e−9)                           (only with ``zscore``; DMRNet's CREMA-D loader)

so the output has ``n_fft/2 + 1`` frequency bins and ``1 + L // hop`` frames: CREMA-D (22.05 kHz, 3 s,
n_fft 512, hop 353) 257×188, Kinetics-Sounds (16 kHz, 5 s, n_fft 256, hop 128) 129×626. ``librosa.stft``
pads centred frames with zeros since librosa 0.10 (with reflection before); we pad with zeros.

Frames (``Image-01-FPS/<clip>/*.jpg``, frames extracted at 1 fps): the sorted image files of the clip's folder.
``frames`` (T) of them are used: in training T distinct frames drawn at random (sorted by time; with
replacement when the clip has fewer than T); at test the centres of T equal segments of the clip, frame
``floor((i + 1/2) · N / T)`` for i = 0..T−1 (the middle frame for T = 1). The reference code takes the first
entries of ``os.listdir`` (an order that depends on the file system, which the authors blame for results
that differ between machines); our test choice is deterministic everywhere.

Visual transform (torchvision's, written in torch): training ``RandomResizedCrop(image_size)`` (area fraction
U[0.08, 1], log aspect ratio U[log 3/4, log 4/3], 10 tries then a centre crop) and a horizontal flip with
probability 1/2, the same crop and flip for every frame of one sample; test ``Resize((image_size,
image_size))``. Resizing is bilinear with antialiasing. Then ``(x/255 − mean) / std`` with ImageNet statistics.

Missing or unreadable files mark that modality absent for the sample (``mark_unreadable``; strict: stop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmrobust.data.base import SPLITS, DatasetLayoutError, MultimodalDataset, Sample
from mmrobust.data.readers import DEFAULT_MAX_ARRAY_BYTES
from mmrobust.data.seg_common import IMAGENET_MEAN, IMAGENET_STD
from mmrobust.data.splits import stratified_split
from mmrobust.registry import ConfigError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac")
READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, SyntaxError)  # soundfile/PIL failures: not an image


# ---------------------------------------------------------------------------------------------- audio
def read_wave(path: Path, sample_rate: int, max_bytes: int = DEFAULT_MAX_ARRAY_BYTES) -> np.ndarray:
    """A sound file as a mono float32 waveform at ``sample_rate`` (channel mean; soxr resampling).

    The header is checked first: an empty file, or one that would take more than ``max_bytes`` as float32,
    is refused before decoding. Shape: ``[samples]``.
    """
    import soundfile
    import soxr

    info = soundfile.info(str(path))
    if info.frames <= 0:
        raise ValueError("empty audio file")
    if info.frames * info.channels * 4 > max_bytes:
        raise ValueError(f"{info.frames} frames x {info.channels} channels is over {max_bytes} bytes as float32")
    wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = wave.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    if mono.size == 0 or not np.isfinite(mono).all():
        raise ValueError("empty or non-finite audio samples")
    return np.ascontiguousarray(mono, dtype=np.float32)


def tile_wave(wave: np.ndarray, length: int) -> np.ndarray:
    """Repeat ``wave`` end to end until it has at least ``length`` samples. Shape: ``[n] -> [k·n]``, k·n ≥ length."""
    return np.tile(wave, max(1, -(-length // len(wave))))


def log_spectrogram(wave: torch.Tensor, n_fft: int, hop: int, eps: float = 1e-7) -> torch.Tensor:
    """``log(|STFT| + eps)`` with a periodic Hann window and zero-padded centred frames (as librosa ≥ 0.10).

    Shape: ``[L] -> [n_fft // 2 + 1, 1 + L // hop]``.
    """
    window = torch.hann_window(n_fft, periodic=True, dtype=wave.dtype)
    spec = torch.stft(wave, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return torch.log(spec.abs() + eps)


@dataclass(frozen=True)
class AudioPipeline:
    """The reference audio pipeline of one dataset (see the module docstring).

    ``max_start`` is the last crop start (in samples) drawn in training; at test the crop starts at
    ``test_start``.
    """

    sample_rate: int
    min_seconds: float
    crop_seconds: float
    n_fft: int
    hop: int
    max_start_seconds: float = 0.0
    test_start_seconds: float = 0.0
    zscore: bool = False

    @property
    def crop(self) -> int:
        return round(self.crop_seconds * self.sample_rate)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The output shape ``[1, F, T]``."""
        return (1, self.n_fft // 2 + 1, 1 + self.crop // self.hop)

    def start(self, train: bool, generator: torch.Generator | None = None) -> int:
        """The crop start in samples: uniform on ``0..max_start`` (inclusive) in training, fixed at test."""
        if not train:
            return round(self.test_start_seconds * self.sample_rate)
        high = round(self.max_start_seconds * self.sample_rate)
        return int(torch.randint(0, high + 1, (), generator=generator)) if high > 0 else 0

    def __call__(self, wave: np.ndarray, start: int = 0) -> torch.Tensor:
        """Tile, crop at ``start``, clip, log-STFT (and z-score). Shape: ``[samples] -> [1, F, T]``."""
        length = max(round(self.min_seconds * self.sample_rate), start + self.crop)
        cut = np.clip(tile_wave(wave, length)[start : start + self.crop], -1.0, 1.0)
        spec = log_spectrogram(torch.from_numpy(np.ascontiguousarray(cut)), self.n_fft, self.hop)
        if self.zscore:
            spec = (spec - spec.mean()) / (spec.std(unbiased=False) + 1e-9)
        return spec[None]


# --------------------------------------------------------------------------------------------- frames
def list_frames(folder: Path) -> list[Path]:
    """The image files of a clip's frame folder, sorted by name (hidden files skipped); [] if no folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))


def select_frames(n: int, t: int, train: bool, generator: torch.Generator | None = None) -> list[int]:
    """Indices of ``t`` of ``n`` sorted frames: random sorted (train) or segment centres (test)."""
    if train:
        if n >= t:
            return sorted(torch.randperm(n, generator=generator)[:t].tolist())
        return sorted(torch.randint(0, n, (t,), generator=generator).tolist())
    return [min(n - 1, int((i + 0.5) * n / t)) for i in range(t)]


def read_frame(path: Path) -> torch.Tensor:
    """An image as RGB floats in [0, 1]. Shape: ``[3, H, W]``."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def random_resized_box(
    h: int, w: int, generator: torch.Generator | None = None, scale: Sequence[float] = (0.08, 1.0)
) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box as fractions ``(top, left, height, width)`` of an ``h × w`` image."""
    area = h * w
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        u = torch.rand(3, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            return top / h, left / w, ch / h, cw / w
    ratio = w / h  # fallback: the largest centre crop with the aspect ratio clamped to [3/4, 4/3]
    cw, ch = (w, round(w / (4 / 3))) if ratio > 4 / 3 else (round(h * 3 / 4), h) if ratio < 3 / 4 else (w, h)
    return (h - ch) // 2 / h, (w - cw) // 2 / w, ch / h, cw / w


class FrameTransform:
    """Crop/flip (train) or resize (test) a clip's frames to ``size × size`` and normalize (module docstring).

    Shape: list of ``[3, H_i, W_i]`` in [0, 1] -> ``[T, 3, size, size]``.
    """

    def __init__(self, size: int, train: bool) -> None:
        self.size = int(size)
        self.train = train
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x[None], (self.size, self.size), mode="bilinear", align_corners=False, antialias=True)[0]

    def __call__(self, frames: Sequence[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        out = []
        h0, w0 = frames[0].shape[-2:]
        box = random_resized_box(int(h0), int(w0), generator=generator) if self.train else None
        flip = self.train and bool(torch.rand((), generator=generator) < 0.5)
        for x in frames:
            if box is not None:
                h, w = x.shape[-2:]
                top, left = round(box[0] * h), round(box[1] * w)
                ch, cw = max(1, round(box[2] * h)), max(1, round(box[3] * w))
                x = x[:, top : top + ch, left : left + cw]
            x = self._resize(x)
            out.append(x.flip(-1) if flip else x)
        return (torch.stack(out) - self.mean) / self.std


# ---------------------------------------------------------------------------------------------- splits
def carve_stratified(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded, per-class ``fraction`` of ``labels`` is the validation split."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction: expected a fraction in (0, 1), got {fraction}")
    train, val = stratified_split(list(labels), [1.0 - fraction, fraction], seed)
    if len(val) == 0 or len(train) == 0:
        raise DatasetLayoutError(
            f"cannot carve a validation fraction {fraction} from {len(labels)} training clips (one part is empty)"
        )
    return train, val


# ------------------------------------------------------------------------------------------ base class
@dataclass(frozen=True)
class Clip:
    """The files of one clip: its sound file and its frame folder, and its class index."""

    name: str
    audio: Path
    frames: Path
    label: int


class AudioVisualClips(MultimodalDataset):
    """Base class of the audio-visual clip datasets (see the module docstring).

    Subclasses list the published split's ``Clip``s and call ``setup``; ``modalities`` are ``audio`` and
    ``visual``. ``layout`` describes the expected layout for error messages.
    """

    modalities = ("audio", "visual")
    layout = ""

    def setup(
        self,
        clips: Sequence[Clip],
        *,
        split: str,
        audio: AudioPipeline,
        frames: int,
        image_size: int,
        val_fraction: float,
        split_seed: int,
        max_samples: int | None,
        drop_incomplete: bool,
    ) -> None:
        """Drop incomplete clips (if asked), carve val from the published train split, keep ``max_samples``."""
        if split not in SPLITS:
            raise ConfigError(f"dataset.split: expected one of {list(SPLITS)}, got {split!r}")
        if int(frames) < 1 or int(image_size) < 1:
            raise ConfigError(
                f"dataset.frames and dataset.image_size: expected positive integers, got {frames}, {image_size}"
            )
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"dataset.max_samples: expected a positive integer or null, got {max_samples}")
        clips = list(clips)
        if drop_incomplete:  # the reference loaders keep only clips with both a sound file and a frame folder
            clips = [c for c in clips if c.audio.is_file() and list_frames(c.frames)]
        if split in ("train", "val") and clips:
            train_idx, val_idx = carve_stratified([c.label for c in clips], val_fraction, split_seed)
            clips = [clips[i] for i in (train_idx if split == "train" else val_idx)]
        self.clips = clips[:max_samples] if max_samples else clips
        if not self.clips:
            raise DatasetLayoutError(f"the {split} split of {type(self).__name__} has no clips; {self.layout}")
        self.split = split
        self.audio = audio
        self.frames = int(frames)
        self.transform = FrameTransform(int(image_size), train=split == "train")
        self.shapes = {"audio": audio.shape, "visual": (self.frames, 3, int(image_size), int(image_size))}

    def __len__(self) -> int:
        return len(self.clips)

    def targets(self) -> list[Any]:
        return [c.label for c in self.clips]

    # ---------------------------------------------------------------------------------------- reading
    def _fail(self, modality: str, path: Path, error: Exception | str, reason: str, problems: list) -> None:
        self.mark_unreadable(modality, str(path), error, reason)
        problems.append((modality, str(path), reason))

    def read_audio(self, clip: Clip, problems: list) -> torch.Tensor | None:
        if not clip.audio.is_file():
            self._fail("audio", clip.audio, "no such file", "missing", problems)
            return None
        try:
            wave = read_wave(clip.audio, self.audio.sample_rate)
        except READ_ERRORS as error:
            self._fail("audio", clip.audio, error, "unreadable", problems)
            return None
        return self.audio(wave, self.audio.start(self.split == "train"))

    def read_visual(self, clip: Clip, problems: list) -> torch.Tensor | None:
        files = list_frames(clip.frames)
        if not files:
            self._fail("visual", clip.frames, "no frame folder or no image in it", "missing", problems)
            return None
        chosen = [files[i] for i in select_frames(len(files), self.frames, self.split == "train")]
        images = []
        for path in chosen:
            try:
                images.append(read_frame(path))
            except READ_ERRORS as error:
                self._fail("visual", path, error, "unreadable", problems)
                return None
        return self.transform(images)

    def load(self, index: int) -> Sample:
        clip = self.clips[index]
        problems: list[tuple[str, str, str]] = []
        inputs = {"audio": self.read_audio(clip, problems), "visual": self.read_visual(clip, problems)}
        return Sample(inputs, clip.label, index, tuple(problems))

    # ----------------------------------------------------------------------------------------- checks
    def check(self) -> dict[str, dict[str, int]]:
        """Per modality: clips whose file opens (headers only: the sound-file header, the first frame's image
        header) and clips where it is missing or unreadable."""
        import soundfile
        from PIL import Image

        counts = {m: {"present": 0, "empty": 0, "unreadable": 0} for m in self.modalities}
        for clip in self.clips:
            try:
                ok = clip.audio.is_file() and soundfile.info(str(clip.audio)).frames > 0
            except READ_ERRORS:
                ok = False
            counts["audio"]["present" if ok else "unreadable"] += 1
            files = list_frames(clip.frames)
            try:
                if files:
                    with Image.open(files[0]):
                        pass
                ok = bool(files)
            except READ_ERRORS:
                ok = False
            counts["visual"]["present" if ok else "unreadable"] += 1
        return counts
