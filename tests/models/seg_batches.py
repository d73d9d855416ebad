"""A random RGB-D segmentation batch for the model tests (64×64 inputs, label maps of K classes)."""

from __future__ import annotations

import torch

from mmrobust.batch import Batch

MODS = ("rgb", "depth")
SHAPES = {"rgb": (3, 64, 64), "depth": (1, 64, 64)}


def random_seg_batch(present: list[list[bool]], num_classes: int, seed: int = 0) -> Batch:
    """Random inputs and labels; ``present`` is the ``[B, 2]`` availability mask (rgb, depth)."""
    g = torch.Generator().manual_seed(seed)
    b = len(present)
    return Batch(
        inputs={m: torch.randn(b, *SHAPES[m], generator=g) for m in MODS},
        present=torch.tensor(present, dtype=torch.bool),
        target=torch.randint(0, num_classes, (b, *SHAPES["rgb"][1:]), generator=g),
        modalities=MODS,
    )
