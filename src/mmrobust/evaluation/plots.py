"""Plots of a report: a heatmap of one metric per subset (rows) × method (columns), for many subsets a
compact figure of the metric against the number of modalities present, and the confusion matrices of a
classification run (``confusion.png``: every modality together and each one alone).

Readability rules: a cell's number is black on light colours and white on dark ones (chosen from the
colour's relative luminance ``L = 0.2126 R + 0.7152 G + 0.0722 B``, threshold 0.5); numbers (with ± std when
there are several seeds) are written only when the table is small enough to read them; the figure grows
with the number of rows, so 63 subsets stay legible. A modality has one colour in every figure:
``modality_colour(j)`` of its index ``j`` in the dataset's modality order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mmrobust.subsets import all_subsets, subset_name

ANNOTATE_MAX_CELLS = 160  # above this many cells the numbers are left out (read them in the .md table)
COMPACT_MIN_MODALITIES = 4  # from 4 modalities (15 subsets) on, the by-size figure is written too
CONFUSION_ANNOTATE_MAX = 20  # classes up to which a confusion matrix shows its counts and class names
FUSED_COLOUR = "black"  # the all-modalities line of a per-modality figure
CONFUSION_NAME = "confusion.png"


def modality_colour(index: int) -> tuple[float, float, float, float]:
    """The RGBA colour of the modality at ``index`` in the dataset's modality order, the same in every figure
    (tab10, then tab20b for indices 10..29, then repeating)."""
    if index < 0:
        raise ValueError(f"modality_colour: index {index} is negative")
    index %= 30
    rgba = plt.get_cmap("tab10")(index) if index < 10 else plt.get_cmap("tab20b")(index - 10)
    return tuple(float(c) for c in rgba)  # type: ignore[return-value]


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as a 120-dpi PNG (creating the folder) and close ``fig``; returns ``path``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def text_colour(rgba: Sequence[float] | np.ndarray) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell colour)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def cell_text(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f}±{std:.1f}" if n > 1 and np.isfinite(std) else f"{mean:.1f}"


def heatmap(summary: Mapping[str, Mapping[str, Any]], modalities: Sequence[str], metric: str, path: Path) -> Path:
    """Save a PNG heatmap of ``summary[method][subset] = (mean, std, n)`` (percent) and return its path."""
    methods = list(summary)
    subsets = [subset_name(s, modalities) for s in all_subsets(len(modalities))]
    subsets = [s for s in subsets if any(s in summary[m] for m in methods)]
    cells = [[tuple(summary[m].get(s, (np.nan, np.nan, 0))) for m in methods] for s in subsets]
    values = np.array([[c[0] for c in row] for row in cells], dtype=float)
    annotate = values.size <= ANNOTATE_MAX_CELLS
    with_std = annotate and any(c[2] > 1 for row in cells for c in row)
    column_width = 1.5 if with_std else 1.1
    fig, ax = plt.subplots(figsize=(2.6 + column_width * len(methods), 1.4 + 0.3 * len(subsets)))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(subsets)), subsets, fontsize=8 if len(subsets) <= 31 else 7)
    if annotate:
        for i, row in enumerate(cells):
            for j, (mean, std, n) in enumerate(row):
                if np.isfinite(mean):
                    colour = text_colour(image.cmap(image.norm(mean)))
                    ax.text(j, i, cell_text(mean, std, n), ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    ax.set_title(f"{metric} per modality subset" + ("" if annotate else " (values in the .md table)"))
    return save_figure(fig, path)


def by_subset_size(
    summary: Mapping[str, Mapping[str, Any]], modalities: Sequence[str], metric: str, path: Path
) -> Path:
    """Save the compact figure for many subsets: per method, the mean of ``metric`` over the subsets with
    ``k`` modalities present (line), and the worst-to-best subset of that size (band), ``k = 1..M``."""
    names = {subset_name(s, modalities): bin(s).count("1") for s in all_subsets(len(modalities))}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method, cells in summary.items():
        sizes = sorted({names[s] for s in cells if s in names})
        per_size = [[cells[s][0] for s in cells if names.get(s) == k] for k in sizes]
        means = [float(np.mean(v)) for v in per_size]
        line = ax.plot(sizes, means, marker="o", label=method)[0]
        ax.fill_between(sizes, [min(v) for v in per_size], [max(v) for v in per_size], alpha=0.15,
                        color=line.get_color())  # fmt: skip
    ax.set_xlabel("modalities present")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_xticks(range(1, len(modalities) + 1))
    ax.set_title(f"{metric}: mean over subsets of each size (band: worst to best subset)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def confusion_panels(results: Mapping[str, Any], split: str) -> dict[str, list[list[int]]]:
    """``{subset name: confusion matrix}`` of the subset with every modality, then each modality alone, from a
    ``results.json`` dict's ``details[split]``; empty when the task has no confusion matrix (segmentation)."""
    details = results.get("details", {}).get(split, {})
    modalities = list(results["modalities"])
    names = ["+".join(modalities), *(m for m in modalities if len(modalities) > 1)]
    return {n: details[n]["confusion_matrix"] for n in names if "confusion_matrix" in details.get(n, {})}


def confusion_figure(results: Mapping[str, Any], split: str, path: Path) -> Path | None:
    """Save the confusion matrices of ``confusion_panels`` side by side and return ``path`` (None when there are
    none). Colour = the row-normalized share (the recall of each true class), text = the count; rows are the
    true class, columns the prediction; counts and class names are written up to ``CONFUSION_ANNOTATE_MAX``
    classes. A panel's title has its modality's colour (``modality_colour``)."""
    panels = confusion_panels(results, split)
    if not panels:
        return None
    modalities = list(results["modalities"])
    first = np.asarray(next(iter(panels.values())))
    c = first.shape[0]
    names = list(results.get("details", {}).get(split, {}).get(next(iter(panels)), {}).get("class_names", []))
    names = names if len(names) == c else [str(k) for k in range(c)]
    annotate = c <= CONFUSION_ANNOTATE_MAX
    side = min(max(2.6, 0.42 * c + 1.4), 12.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side + 0.6), squeeze=False)
    for ax, (subset, matrix) in zip(axes[0], panels.items()):
        counts = np.asarray(matrix, dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        image = ax.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0)
        colour = modality_colour(modalities.index(subset)) if subset in modalities else FUSED_COLOUR
        ax.set_title(f"{subset} ({split})", fontsize=9, color=colour)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        if annotate:
            ax.set_xticks(range(c), names, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(c), names, fontsize=7)
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                            color=text_colour(image.cmap(image.norm(share[i, j]))))  # fmt: skip
        else:
            ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=list(axes[0]), label="share of the true class", shrink=0.8)
    fig.suptitle("confusion matrices (rows: true class)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # colorbar over several axes: no tight_layout
    plt.close(fig)
    return path
