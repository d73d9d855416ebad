"""Plots: a heatmap of one metric per subset (rows) × method (columns)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mmrobust.subsets import all_subsets, subset_name


def heatmap(summary: Mapping[str, Mapping[str, Any]], modalities: Sequence[str], metric: str, path: Path) -> Path:
    """Save a PNG heatmap of ``summary[method][subset] = (mean, std, n)`` (percent) and return its path."""
    methods = list(summary)
    subsets = [subset_name(s, modalities) for s in all_subsets(len(modalities))]
    subsets = [s for s in subsets if any(s in summary[m] for m in methods)]
    values = np.array([[summary[m].get(s, (np.nan,))[0] for m in methods] for s in subsets], dtype=float)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(methods), 1.0 + 0.26 * len(subsets)))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(subsets)), subsets, fontsize=7)
    if values.size <= 400:
        for i in range(len(subsets)):
            for j in range(len(methods)):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    ax.set_title(f"{metric} per modality subset")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
