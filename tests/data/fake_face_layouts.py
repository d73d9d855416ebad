"""Tiny fake copies of the face anti-spoofing datasets' real on-disk layouts, written into a folder.

    root = make_casia_surf(tmp_path / "surf")   # list files + JPG images; then dataset=casia_surf dataset.root=<root>
    root = make_cefa(tmp_path / "cefa")         # {AF,CA,EA}/<RACE-ID>/<video>/{profile,depth,ir}/*.jpg

Images are ``FACE_SIZE`` (24x20 pixels, H x W). Their content is ``pattern(seed)`` (an asymmetric grey pattern:
a horizontal ramp plus a bright block whose place depends on the seed), made different per modality (rgb:
a colour mapping of it, depth: the pattern, ir: its negative). With ``same_content=True`` the three modalities
of a sample are the same greyscale image (byte-identical files), so paired augmentation must keep them equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

FACE_SIZE = (24, 20)  # H, W
MODALITY_DIRS = {"rgb": "color", "depth": "depth", "ir": "ir"}  # CASIA-SURF folder names
CEFA_DIRS = {"rgb": "profile", "depth": "depth", "ir": "ir"}
CEFA_RACES = ("AF", "CA", "EA")
# `mmrobust train` overrides for a smoke run of a few seconds on these layouts (tiny SURF baseline, 16 px)
TINY_FACE = [
    "model=surf_baseline",
    "model.encoder.width=8",
    "model.fusion.width=8",
    "dataset.size=16",
    "dataset.resize=20",
    "trainer.max_epochs=1",
    "trainer.batch_size=3",
    "trainer.progress=false",
    "trainer.tensorboard=false",
    "eval.bona_fide_class=1",
]


def pattern(seed: int, size: tuple[int, int] = FACE_SIZE) -> np.ndarray:
    """An asymmetric greyscale pattern: a horizontal ramp and a bright 6x6 block placed by ``seed``. ``[H, W]``."""
    h, w = size
    img = np.tile(np.linspace(20, 160, w), (h, 1))
    y, x = 2 + (seed * 5) % (h - 8), 2 + (seed * 3) % (w // 2 - 6)
    img[y : y + 6, x : x + 6] = 250
    return img.astype(np.uint8)


def modality_image(seed: int, modality: str, same_content: bool = False) -> Image.Image:
    """The image of one modality of sample ``seed`` (see the module docstring)."""
    p = pattern(seed)
    if same_content:
        return Image.fromarray(p, mode="L")
    if modality == "rgb":
        return Image.fromarray(np.stack([p, 255 - p, (p // 2 + 60).astype(np.uint8)], axis=-1), mode="RGB")
    return Image.fromarray(p if modality == "depth" else 255 - p, mode="L")


def write_image(path: Path, img: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=95)


# ---------------------------------------------------------------------------------------------- CASIA-SURF
def make_casia_surf(root: Path, counts: Sequence[int] = (6, 2, 4), same_content: bool = False) -> Path:
    """CASIA-SURF: ``{train_list,val_private_list,test_private_list}.txt`` and the images they list.

    ``counts`` are the samples of train, val and test; labels alternate 1 (bona fide), 0 (attack), starting
    with 1. Train images lie under ``Training/{real,fake}_part/<subject>/{color,depth,ir}/``, val/test images
    under ``Val/`` and ``Testing/`` (as the published archives).
    """
    lists = {"train_list.txt": "Training", "val_private_list.txt": "Val", "test_private_list.txt": "Testing"}
    seed = 0
    for (name, folder), n in zip(lists.items(), counts, strict=True):
        lines = []
        for k in range(n):
            label = 1 - k % 2
            part = "real_part" if label else "fake_part"
            rel = {m: f"{folder}/{part}/S{seed:03d}/{d}/{k + 1:04d}.jpg" for m, d in MODALITY_DIRS.items()}
            for m, path in rel.items():
                write_image(root / path, modality_image(seed, m, same_content))
            lines.append(f"{rel['rgb']} {rel['depth']} {rel['ir']} {label}")
            seed += 1
        (root / name).write_text("".join(f"{line}\n" for line in lines))
    return root


# ---------------------------------------------------------------------------------------------- CeFA
# (subject id, device, session, pai) of every video of every race; ids 0-199 train, 200-299 dev, 300-499 test,
# 510 is outside every split; device 2, session 3 and PAI 3 (photo) are outside every protocol.
CEFA_VIDEOS = (
    (5, 1, 1, 1), (5, 1, 1, 2), (5, 3, 2, 4), (5, 2, 1, 1), (5, 1, 3, 1), (5, 1, 1, 3),
    (201, 1, 1, 1), (201, 1, 1, 2), (201, 3, 2, 4),
    (301, 1, 1, 1), (301, 1, 1, 2), (301, 3, 2, 4),
    (320, 1, 1, 1), (320, 1, 1, 2), (320, 3, 2, 4),
    (510, 1, 1, 1), (510, 1, 1, 2), (510, 1, 1, 4),
)  # fmt: skip
CEFA_FRAMES = 3


def cefa_video_name(race: str, subject: int, device: int, session: int, pai: int) -> str:
    return f"{CEFA_RACES.index(race) + 1}_{subject:03d}_{device}_{session}_{pai}"


def make_cefa(root: Path, frames: int = CEFA_FRAMES, same_content: bool = False) -> Path:
    """CeFA: ``{AF,CA,EA}/<RACE>-<id>/<race_id_device_session_pai>/{profile,depth,ir}/<frame>.jpg``.

    Every race has the videos ``CEFA_VIDEOS`` with ``frames`` frames each (``0001.jpg`` ...). Protocol 4@5
    (train/val EA, test AF) then has 6 train frames (3 bona fide), 6 val frames and 12 test frames.
    """
    seed = 0
    for race in CEFA_RACES:
        for subject, device, session, pai in CEFA_VIDEOS:
            video = cefa_video_name(race, subject, device, session, pai)
            folder = root / race / f"{race}-{subject:03d}" / video
            for k in range(frames):
                for m, d in CEFA_DIRS.items():
                    write_image(folder / d / f"{k + 1:04d}.jpg", modality_image(seed, m, same_content))
                seed += 1
    return root
