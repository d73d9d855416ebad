"""Tables and figures of ``mmrobust analyze dmrnet``: per run a σ²-per-subset table and bar plot (paper
Fig. 3), across runs D_channel histograms (Fig. 1) and a summary per method label (Table 6)."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from mmrobust.atomic_io import write_json_atomic, write_text_atomic
from mmrobust.subsets import dot_row, subset_from_names

from .dmrnet import RunAnalysis


def fmt(values: Sequence[float | None], decimals: int = 3) -> str:
    """``mean ± std`` of the values given (``–`` for none)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{decimals}f}"
    return f"{statistics.fmean(vals):.{decimals}f} ± {statistics.stdev(vals):.{decimals}f}"


def setting(values: Sequence[Any]) -> str:
    """A config value shared by a group of runs (or the distinct values, comma-separated)."""
    distinct = list(dict.fromkeys("–" if v is None else f"{v:g}" for v in values))
    return ", ".join(distinct)


def overlaps(values: Sequence[str]) -> str:
    """Per-seed ``hits/k`` values side by side (one ``–`` when no run has σ²)."""
    return "–" if all(v == "–" for v in values) else " ".join(values)


def mean_of(values: dict[str, torch.Tensor]) -> float | None:
    return float(torch.cat(list(values.values())).mean()) if values else None


def tags_of(runs: Sequence[RunAnalysis]) -> list[str]:
    """A unique file-name-safe tag per run: ``<label>_seed<seed>``."""
    tags: list[str] = []
    for run in runs:
        tag = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{run.label}_seed{run.seed}")
        while tag in tags:
            tag += "_"
        tags.append(tag)
    return tags


def subset_table(run: RunAnalysis) -> str:
    """Markdown: one row per subset with the mined training σ² (★ = hard set H), the eval-mode σ² (★ = its
    top-k), D_channel(μ) and accuracy; then how the top-k σ² subsets overlap the k worst-performing ones."""
    eval_top = run.eval_top()
    head = [*run.modalities, "train σ² (mined)", "H", "eval σ²", "top-k", "D_channel(μ)", "accuracy (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":-:"] * len(run.modalities) + ["--:"] * 6) + "|"]
    for name in run.subsets:
        cells = dot_row(subset_from_names(name, run.modalities), len(run.modalities))
        cells += [
            fmt([run.train_sigma2.get(name)]),
            "★" if name in run.hard else "",
            fmt([run.eval_sigma2.get(name)]),
            "★" if name in eval_top else "",
            fmt([run.mu_diversity.get(name)]),
            f"{100 * run.accuracy[name]:.2f}" if name in run.accuracy else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- worst-{run.k} accuracy: {', '.join(run.worst_accuracy())}",
        f"- mined hard set H: {', '.join(run.hard) or '–'} (overlap {run.overlap(run.hard)})",
        f"- eval-mode top-{run.k} σ²: {', '.join(eval_top) or '–'} (overlap {run.overlap(eval_top)})",
    ]
    return f"### {run.label}, seed {run.seed} ({run.path})\n\n" + "\n".join(lines) + "\n"


def sigma2_plot(run: RunAnalysis, path: Path) -> Path | None:
    """σ² per subset (training d_S if logged, else eval σ²), the top-k circled in red (paper Fig. 3)."""
    table = {k: v for k, v in run.train_sigma2.items() if v is not None} or run.eval_sigma2
    if not table:
        return None
    names = [s for s in run.subsets if s in table]
    top = [i for i, s in enumerate(names) if s in set(run.hard if run.train_sigma2 else run.eval_top())]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.22 * len(names) + 2), 3.2))
    ax.plot(range(len(names)), [table[s] for s in names], "o-", color="tab:gray", markersize=4)
    ax.scatter(top, [table[names[i]] for i in top], s=150, facecolors="none", edgecolors="tab:red", linewidths=1.5)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7 if len(names) > 10 else 9)
    kind = "training σ² (mined)" if run.train_sigma2 else "eval σ²"
    ax.set_ylabel(kind)
    ax.set_title(f"{run.label} seed {run.seed}: top-{len(top)} σ² circled", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def diversity_histograms(runs: Sequence[RunAnalysis], path: Path) -> Path:
    """D_channel histograms per method label (seeds and modalities pooled): intra and inter (paper Fig. 1)."""
    kinds = [k for k in ("intra", "inter") if any(getattr(r, k) for r in runs)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.0 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        pooled: dict[str, list[torch.Tensor]] = defaultdict(list)
        for run in runs:
            pooled[run.label] += list(getattr(run, kind).values())
        for label, values in pooled.items():
            if values:
                v = torch.cat(values).float()
                top = max(1.0, float(v.max()))
                ax.hist(
                    v.numpy(),
                    bins=50,
                    range=(0.0, top),
                    density=True,
                    histtype="step",
                    linewidth=1.5,
                    label=f"{label} ({v.mean():.3f})",
                )
        ax.set_xlabel("D_channel (cosine distance between channels)")
        ax.set_title(f"{kind}-modality channel diversity (legend: mean)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_table(runs: Sequence[RunAnalysis]) -> str:
    """Markdown: one row per method label, mean ± std over its seeds (paper Table 6 with α per label)."""
    by: dict[str, list[RunAnalysis]] = defaultdict(list)
    for run in runs:
        by[run.label].append(run)
    head = ["label", "seeds", "α", "β", "σ² train (last epoch)", "σ² eval", "accuracy avg (%)", "accuracy worst (%)"]
    head += ["D intra", "D inter", "D(μ) avg", "H ∩ worst-k", "eval top-k ∩ worst-k"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    for label, group in by.items():
        cells = [
            label,
            str(len(group)),
            setting([r.method.get("alpha") for r in group]),
            setting([r.method.get("beta") for r in group]),
            fmt([r.last_sigma2 for r in group]),
            fmt([statistics.fmean(r.eval_sigma2.values()) if r.eval_sigma2 else None for r in group]),
            fmt([100 * statistics.fmean(r.accuracy.values()) for r in group], 2),
            fmt([100 * min(r.accuracy.values()) for r in group], 2),
            fmt([mean_of(r.intra) for r in group]),
            fmt([mean_of(r.inter) for r in group]),
            fmt([statistics.fmean(r.mu_diversity.values()) for r in group]),
            overlaps([r.overlap(r.hard) for r in group]),
            overlaps([r.overlap(r.eval_top()) for r in group]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "### DMRNet analysis — mean ± std over seeds\n\n" + "\n".join(lines) + "\n"


def as_json(run: RunAnalysis, tag: str) -> dict[str, Any]:
    return {
        "tag": tag,
        "path": str(run.path),
        "label": run.label,
        "seed": run.seed,
        "method": run.method,
        "accuracy": run.accuracy,
        "train_sigma2": run.train_sigma2,
        "last_sigma2": run.last_sigma2,
        "hard": run.hard,
        "eval_sigma2": run.eval_sigma2,
        "eval_top_k_sigma2": run.eval_top(),
        "worst_k_accuracy": run.worst_accuracy(),
        "mu_diversity": run.mu_diversity,
        "intra_diversity": {m: float(v.mean()) for m, v in run.intra.items()},
        "inter_diversity": {m: float(v.mean()) for m, v in run.inter.items()},
    }


def write_outputs(runs: Sequence[RunAnalysis], out: Path) -> dict[str, Path]:
    """Write every table and figure into ``out``; returns their paths (``summary`` is the Markdown summary)."""
    tags = tags_of(runs)
    paths: dict[str, Path] = {}
    for run, tag in zip(runs, tags):
        paths[f"{tag}_subsets"] = write_text_atomic(subset_table(run), out / f"{tag}_subsets.md")
        plot = sigma2_plot(run, out / f"{tag}_sigma2.png")
        if plot is not None:
            paths[f"{tag}_sigma2"] = plot
    paths["d_channel_hist"] = diversity_histograms(runs, out / "d_channel_hist.png")
    paths["summary"] = write_text_atomic(summary_table(runs), out / "summary.md")
    paths["json"] = write_json_atomic([as_json(r, t) for r, t in zip(runs, tags)], out / "analysis.json")
    return paths
