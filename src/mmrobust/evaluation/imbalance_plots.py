"""Curves of the per-epoch imbalance diagnostics (``diagnostics.json`` -> ``diagnostics.png``).

Keys of a record are ``group/series`` (``val_acc/rgb``, ``grad_norm/depth``, ``arl/w/rgb``): one panel
per group, one curve per series, epochs on the x axis. A modality's curve has the same colour in every panel
(``plots.modality_colour`` of its index in the modality order), ``fused`` is black, and any other series
takes the next colours, also the same in every panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mmrobust.evaluation.plots import FUSED_COLOUR, modality_colour

TITLES = {
    "val_acc": "validation accuracy (shared head)",
    "grad_norm": "gradient norm reaching each encoder",
    "arl/q": "ARL q (inverse prediction variance)",
    "arl/d": "ARL d (dependence)",
    "arl/w": "ARL w (gradient-residual coefficient)",
    "ogm/rho": "OGM-GE ρ (score ratio)",
    "ogm/k": "OGM-GE k (gradient coefficient)",
}


def diagnostic_groups(history: Sequence[Mapping[str, float]]) -> dict[str, list[str]]:
    """``{group: [series, ...]}`` over every record: the groups of ``TITLES`` in its order, then the others."""
    groups: dict[str, list[str]] = {}
    for record in history:
        for key in record:
            if "/" in key:
                group, series = key.rsplit("/", 1)
                if series not in groups.setdefault(group, []):
                    groups[group].append(series)
    order = [g for g in TITLES if g in groups] + [g for g in groups if g not in TITLES]
    return {g: groups[g] for g in order if groups[g]}


def series_colours(groups: Mapping[str, Sequence[str]], modalities: Sequence[str] = ()) -> dict[str, Any]:
    """``{series: colour}``, one colour per series name across all panels: modality ``j`` of ``modalities``
    gets ``modality_colour(j)``, ``fused`` black, the other names the next colours in first-seen order. Without
    ``modalities`` the order is the first-seen order of the series (``val_acc`` lists the modalities in order)."""
    seen = list(dict.fromkeys(name for series in groups.values() for name in series if name != "fused"))
    order = list(modalities) or seen
    others = [name for name in seen if name not in order]
    colours: dict[str, Any] = {name: modality_colour(j) for j, name in enumerate([*order, *others])}
    return colours | {"fused": FUSED_COLOUR}


def diagnostics_figure(
    history: Sequence[Mapping[str, float]], columns: int = 3, modalities: Sequence[str] = ()
) -> Figure:
    """The figure of ``plot_diagnostics`` (one panel per diagnostic group), not saved."""
    groups = diagnostic_groups(history)
    if not groups:
        raise ValueError("plot_diagnostics: the history holds no 'group/series' values")
    colours = series_colours(groups, modalities)
    rows = -(-len(groups) // columns)
    width = min(columns, len(groups))
    fig, axes = plt.subplots(rows, width, figsize=(4.2 * width, 3.0 * rows), squeeze=False)
    for ax, (group, series) in zip(axes.flat, groups.items()):
        for name in series:
            points = [(r["epoch"], r[f"{group}/{name}"]) for r in history if f"{group}/{name}" in r]
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=name,
                    color=colours[name])  # fmt: skip
        ax.set_title(TITLES.get(group, group), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_diagnostics(
    history: Sequence[Mapping[str, float]], path: Path, columns: int = 3, modalities: Sequence[str] = ()
) -> Path:
    """Save one panel per diagnostic group and return ``path``; ``modalities``: the dataset's modality order
    (the colours; default the first-seen order of the series)."""
    fig = diagnostics_figure(history, columns, modalities)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
