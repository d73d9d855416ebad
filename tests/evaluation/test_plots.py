"""Report figures: readable cell text, ± std with seeds, numbers only on small tables, the by-size figure, one
colour per modality in every panel, the confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

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


def test_a_modality_has_one_colour_in_every_diagnostics_panel() -> None:
    from mmrobust.evaluation.imbalance_plots import diagnostics_figure

    # the panels list the series in different orders, and one panel lacks a modality: colours must not shift
    history = [
        {"epoch": e, "val_acc/rgb": 0.5, "val_acc/depth": 0.4, "val_acc/ir": 0.3, "val_acc/fused": 0.6,
         "grad_norm/ir": 1.0, "grad_norm/depth": 2.0, "arl/w/depth": 0.1, "arl/w/rgb": 0.2}
        for e in range(3)
    ]  # fmt: skip
    modalities = ["rgb", "depth", "ir"]
    fig = diagnostics_figure(history, modalities=modalities)
    try:
        colours: dict[str, set[tuple[float, ...]]] = {}
        panels = 0
        for ax in fig.axes:
            for line in ax.get_lines():
                colours.setdefault(str(line.get_label()), set()).add(tuple(to_rgba(line.get_color())))
            panels += bool(ax.get_lines())
    finally:
        plt.close(fig)
    assert panels == 3
    assert all(len(c) == 1 for c in colours.values()), colours
    for j, m in enumerate(modalities):
        assert colours[m] == {tuple(to_rgba(plots.modality_colour(j)))}
    assert colours["fused"] == {tuple(to_rgba("black"))}
    assert len({next(iter(colours[m])) for m in modalities}) == 3  # distinct modalities, distinct colours


def test_heatmap_text_is_black_on_bright_cells_and_white_on_dark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mods = ["a", "b"]
    summary = {"m": {"a": (10.0, 1.0, 3), "b": (50.0, 2.0, 3), "a+b": (90.0, 0.5, 3)}}
    seen: dict[str, str] = {}
    original = plt.Axes.text

    def spy(self: plt.Axes, x: float, y: float, s: str, *args: object, **kwargs: object) -> object:
        seen[s] = str(kwargs.get("color"))
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "text", spy)
    plots.heatmap(summary, mods, "accuracy", tmp_path / "h.png")
    assert seen == {"10.0±1.0": "white", "50.0±2.0": "white", "90.0±0.5": "black"}  # viridis: dark -> yellow


def confusion_results(modalities: list[str], names: list[str]) -> dict[str, object]:
    c = len(names)
    subsets = [subset_name(s, modalities) for s in all_subsets(len(modalities))]
    details = {
        s: {"class_names": names, "confusion_matrix": (np.eye(c, dtype=int) * (k + 2) + 1).tolist()}
        for k, s in enumerate(subsets)
    }
    return {"modalities": modalities, "details": {"test": details}}


def test_confusion_figure_has_the_full_subset_then_each_modality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = confusion_results(["rgb", "depth", "ir"], ["cat", "dog"])
    assert list(plots.confusion_panels(results, "test")) == ["rgb+depth+ir", "rgb", "depth", "ir"]
    titles: list[tuple[str, tuple[float, ...]]] = []
    original = plt.Axes.set_title

    def spy(self: plt.Axes, label: str, *args: object, **kwargs: object) -> object:
        titles.append((label, tuple(to_rgba(kwargs.get("color", "k")))))  # type: ignore[arg-type]
        return original(self, label, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "set_title", spy)
    out = texts(tmp_path / "confusion.png", monkeypatch,
                lambda: plots.confusion_figure(results, "test", tmp_path / "confusion.png"))  # fmt: skip
    # each panel writes its 2x2 counts: the diagonal of subset k (full = index 6) is k + 3, off-diagonal 1
    assert out == ["9", "1", "1", "9", "3", "1", "1", "3", "4", "1", "1", "4", "5", "1", "1", "5"]
    assert [t for t, _ in titles] == ["rgb+depth+ir (test)", "rgb (test)", "depth (test)", "ir (test)"]
    assert [c for _, c in titles[1:]] == [tuple(to_rgba(plots.modality_colour(j))) for j in range(3)]
    assert plots.confusion_figure({"modalities": ["a"], "details": {"test": {"a": {"iou": {}}}}}, "test",
                                  tmp_path / "none.png") is None  # fmt: skip
