"""Report figures: readable cell text, ± std with seeds, numbers only on small tables, the by-size figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mmrobust.evaluation import plots
from mmrobust.subsets import all_subsets, subset_name


def test_text_colour_follows_the_cell_luminance() -> None:
    cmap = plt.get_cmap("viridis")
    assert plots.text_colour(cmap(1.0)) == "black"  # viridis' bright yellow end
    assert plots.text_colour(cmap(0.0)) == "white"  # its dark purple end
    assert plots.text_colour((1.0, 1.0, 1.0, 1.0)) == "black"


def test_cell_text_shows_std_only_for_several_seeds() -> None:
    assert plots.cell_text(91.234, 0.51, 3) == "91.2±0.5"
    assert plots.cell_text(91.234, 0.0, 1) == "91.2"
    assert plots.cell_text(91.234, float("nan"), 2) == "91.2"


def summary_of(modalities: list[str], methods: list[str], n: int) -> dict[str, dict[str, tuple[float, float, int]]]:
    rng = np.random.default_rng(0)
    return {
        m: {subset_name(s, modalities): (float(rng.uniform(50, 99)), 0.4, n) for s in all_subsets(len(modalities))}
        for m in methods
    }


def texts(path: Path, monkeypatch: pytest.MonkeyPatch, draw: object) -> list[str]:
    """The cell texts the heatmap writes (captured from Axes.text)."""
    seen: list[str] = []
    original = plt.Axes.text

    def spy(self: plt.Axes, x: float, y: float, s: str, *args: object, **kwargs: object) -> object:
        seen.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "text", spy)
    assert callable(draw)
    draw()
    assert path.stat().st_size > 1000
    return seen


def test_small_table_is_annotated_with_std(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mods = ["rgb", "depth", "ir"]
    summary = summary_of(mods, ["a", "b"], n=3)
    out = tmp_path / "h.png"
    seen = texts(out, monkeypatch, lambda: plots.heatmap(summary, mods, "acc", out))
    assert len(seen) == 7 * 2 and all("±0.4" in s for s in seen)


def test_large_table_is_not_annotated_and_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mods = [f"v{i}" for i in range(6)]  # 63 subsets x 3 methods = 189 cells
    summary = summary_of(mods, ["a", "b", "c"], n=3)
    out = tmp_path / "h.png"
    assert texts(out, monkeypatch, lambda: plots.heatmap(summary, mods, "acc", out)) == []
    height = plt.imread(out).shape[0]
    small = tmp_path / "s.png"
    plots.heatmap(summary_of(mods[:2], ["a", "b", "c"], 3), mods[:2], "acc", small)
    assert height > 4 * plt.imread(small).shape[0]


def report_rows(mods: list[str]) -> list[dict[str, object]]:
    return [
        {"method": m, "seed": seed, "subset": subset_name(s, mods), "metric": "accuracy", "value": 0.8 + seed / 100}
        for m in ("a", "b")
        for seed in (0, 1)
        for s in all_subsets(len(mods))
    ]


def test_by_size_figure_is_written_by_the_report_for_many_subsets(tmp_path: Path) -> None:
    from mmrobust.evaluation.report import write_report

    many = [f"v{i}" for i in range(5)]
    assert write_report(report_rows(many), many, tmp_path)["by_size"].stat().st_size > 1000
    assert "by_size" not in write_report(report_rows(many[:3]), many[:3], tmp_path / "few")
