"""Example predictions of a segmentation model on every modality subset, as one figure.

One row per example sample; columns: each input modality (min-max scaled per image for display), the ground
truth, then the prediction of every subset (``rgb``, ``depth``, ``rgb+depth`` ...). Void pixels are black.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from mmrobust.batch import Batch
from mmrobust.data.base import IGNORE_INDEX
from mmrobust.evaluation.evaluator import subset_outputs
from mmrobust.subsets import subset_name
from mmrobust.tasks.segmentation import to_label_size


def palette(num_classes: int) -> np.ndarray:
    """``[K + 1, 3]`` colours: one per class (tab20, then hsv), and black for void (last row)."""
    cmap = plt.get_cmap("tab20" if num_classes <= 20 else "hsv", max(num_classes, 2))
    colours = np.array([cmap(k)[:3] for k in range(num_classes)] + [(0.0, 0.0, 0.0)])
    return colours


def colourize(labels: torch.Tensor, colours: np.ndarray) -> np.ndarray:
    """Label map ``[H, W]`` -> RGB image ``[H, W, 3]``; void -> black."""
    idx = labels.cpu().numpy().copy()
    idx[idx == IGNORE_INDEX] = len(colours) - 1
    return colours[idx]


def display(x: torch.Tensor) -> np.ndarray:
    """An input ``[C, H, W]`` as a displayable ``[H, W, 3]`` or ``[H, W]`` array scaled to [0, 1]."""
    x = x.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-8)
    return x[:3].permute(1, 2, 0).numpy() if x.shape[0] >= 3 else x[0].numpy()


@torch.no_grad()
def save_examples(model: Any, batch: Batch, subsets: Sequence[int], num_classes: int, path: Path) -> Path:
    """Save the example figure of ``batch`` (a few samples) and return its path."""
    was_training = model.training
    model.eval()
    preds = {s: to_label_size(logits, batch.target).argmax(1) for s, logits in subset_outputs(model, batch, subsets)}
    model.train(was_training)
    colours = palette(num_classes)
    names = [subset_name(s, batch.modalities) for s in subsets]
    columns = [*batch.modalities, "ground truth", *names]
    rows = len(batch)
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.8 * len(columns), 1.8 * rows), squeeze=False)
    for i in range(rows):
        images = [display(batch.inputs[m][i]) for m in batch.modalities]
        images += [colourize(batch.target[i], colours), *(colourize(preds[s][i], colours) for s in subsets)]
        for j, image in enumerate(images):
            ax = axes[i, j]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
