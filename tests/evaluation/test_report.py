"""The paper-layout report: per-seed Average/Worst rows, mean ± std over seeds, and input errors."""

import json

import pytest

from mmrobust.evaluation.report import load_results, markdown, result_rows, summary
from mmrobust.registry import ConfigError

MODS = ("rgb", "depth")


def result(method, seed, accs, modalities=MODS):
    names = ["rgb", "depth", "rgb+depth"] if modalities == MODS else ["a"]
    metrics = {n: {"accuracy": a} for n, a in zip(names, accs)}
    return {"method": method, "seed": seed, "modalities": list(modalities), "metrics": {"test": metrics}}


def test_average_and_worst_are_per_seed_then_over_seeds():
    rows = result_rows([result("md", 0, [0.5, 0.7, 0.9]), result("md", 1, [0.7, 0.5, 1.0])])
    s = summary(rows, MODS, "accuracy")["md"]
    assert s["rgb"][:2] == pytest.approx((60.0, 14.142135), rel=1e-5)  # mean ± sample std of 50, 70
    assert s["Average"][:2] == pytest.approx((71.666667, 2.357023), rel=1e-5)  # seeds: 70.0 and 73.33
    assert s["Worst"][:2] == pytest.approx((50.0, 0.0))  # min per seed: 50 (rgb) and 50 (depth)
    table = markdown(rows, MODS, ["accuracy"])
    assert "| ● | ○ | 60.00 ± 14.14 |" in table and "| ○ | ● | 60.00 ± 14.14 |" in table
    assert "| Average |  | 71.67 ± 2.36 |" in table and "mean ± std over 2 seeds" in table


def test_error_rates_take_the_maximum_as_worst():
    rows = [
        {"method": "m", "seed": 0, "split": "test", "subset": n, "metric": "acer", "value": v}
        for n, v in (("rgb", 0.1), ("depth", 0.3), ("rgb+depth", 0.05))
    ]
    assert summary(rows, MODS, "acer")["m"]["Worst"][0] == pytest.approx(30.0)


def test_load_results_refuses_runs_of_different_modality_sets(tmp_path):
    for name, r in (("one", result("md", 0, [0.5, 0.6, 0.7])), ("two", result("md", 0, [0.9], modalities=("a",)))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    with pytest.raises(ConfigError, match="different modality sets .*rgb\\+depth.*a: .*report each set separately"):
        load_results([tmp_path])
    assert len(load_results([tmp_path / "one"])) == 1
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_results([tmp_path / "missing"])
