"""Tiny fake copies of the audio-visual datasets' on-disk layouts (CREMA-D, Kinetics-Sounds, AV-MNIST).

Sound files are short (0.5 s, so the loaders' tiling is exercised) 16-bit WAVs written with soundfile; frames
are small solid-colour JPEGs, frame ``j`` of every clip in ``FRAME_COLOURS[j]``, so a test can tell from the
decoded pixels which frame was chosen::

    root = make_crema_d(tmp_path / "cremad")          # then dataset=crema_d dataset.root=<root>
    root = make_kinetics_sounds(tmp_path / "ks")
    root = make_avmnist(tmp_path / "avmnist")

Pass a small ``dataset.image_size`` (e.g. 16) so the tests stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

FRAME_SIZE = (12, 16)  # H, W
FRAME_COLOURS = ((230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230))
EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
KS_CLASSES = ("bowling", "playing piano", "singing")  # as written in class.txt; folders use "_"


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave. Shape: ``[round(seconds · rate)]`` float32."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave, rate, subtype=subtype)


def write_frames(folder: Path, n: int, size: tuple[int, int] = FRAME_SIZE) -> None:
    """``n`` solid-colour JPEG frames ``00001.jpg ...`` (frame j in ``FRAME_COLOURS[j]``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for j in range(n):
        rgb = np.broadcast_to(np.asarray(FRAME_COLOURS[j], dtype=np.uint8), (*size, 3))
        Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(folder / f"{j + 1:05d}.jpg", quality=95)


def nearest_colour(rgb: Sequence[float]) -> int:
    """The index in ``FRAME_COLOURS`` of the colour nearest to an RGB triple in 0..255."""
    return int(np.argmin([sum((a - b) ** 2 for a, b in zip(c, rgb, strict=True)) for c in FRAME_COLOURS]))


# ------------------------------------------------------------------------------------------ layouts
def crema_clip(i: int, emotion: str) -> str:
    return f"{1001 + i}_IEO_{emotion}_XX"


def make_crema_d(
    root: Path, train_per_class: int = 2, test_per_class: int = 1, frames: int = 3, header: bool = False
) -> Path:
    """CREMA-D: ``{train,test}.csv`` (no header, BOM on train as the published files may have), 0.5 s 16 kHz
    WAVs in ``AudioWAV`` and ``frames`` JPEGs per clip in ``Image-01-FPS/<clip>/``."""
    i = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        lines = ["clip,label"] if header else []
        for _ in range(per_class):
            for emotion in EMOTIONS:
                clip = crema_clip(i, emotion)
                write_wav(root / "AudioWAV" / f"{clip}.wav", tone(300 + 50 * i, 0.5, 16000), 16000)
                write_frames(root / "Image-01-FPS" / clip, frames)
                lines.append(f"{clip},{emotion}")
                i += 1
        text = "".join(f"{line}\n" for line in lines)
        (root / f"{split}.csv").write_text(text, encoding="utf-8-sig" if split == "train" else "utf-8")
    return root


def make_kinetics_sounds(
    root: Path, train_per_class: int = 3, test_per_class: int = 1, frames: int = 4, class_file: bool = True
) -> Path:
    """Kinetics-Sounds in DMRNet's layout: ``class.txt`` (comma separated, spaces inside names), frame folders
    ``visual/{train_img,val_img}/Image-01-FPS/<class>/<video>/`` and 0.5 s WAVs ``audio/{train,test}/<class>/``."""
    if class_file:
        root.mkdir(parents=True, exist_ok=True)
        (root / "class.txt").write_text(", ".join(KS_CLASSES))
    i = 0
    for visual, audio, per_class in (("train_img", "train", train_per_class), ("val_img", "test", test_per_class)):
        for name in KS_CLASSES:
            folder = name.replace(" ", "_")
            for _ in range(per_class):
                video = f"vid{i:03d}_000010_000020"
                write_frames(root / "visual" / visual / "Image-01-FPS" / folder / video, frames)
                write_wav(root / "audio" / audio / folder / f"{video}.wav", tone(200 + 40 * i, 0.5, 16000), 16000)
                i += 1
    return root


def make_avmnist(root: Path, n_train: int = 12, n_test: int = 4) -> Path:
    """AV-MNIST in MultiBench's layout: image ``[N, 784]`` float32, audio ``[N, 112, 112]`` uint8 and labels
    ``i % 10``; pixel values are ``(7 · i + k) % 256`` for sample i and flat pixel k."""
    for split, n in (("train", n_train), ("test", n_test)):
        (root / "image").mkdir(parents=True, exist_ok=True)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        i = np.arange(n)[:, None]
        np.save(root / "image" / f"{split}_data.npy", ((7 * i + np.arange(784)) % 256).astype(np.float32))
        audio = ((7 * i + np.arange(112 * 112)) % 256).astype(np.uint8).reshape(n, 112, 112)
        np.save(root / "audio" / f"{split}_data.npy", audio)
        np.save(root / f"{split}_labels.npy", np.arange(n) % 10)
    return root
