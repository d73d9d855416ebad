"""Early stopping (``trainer.early_stopping``): the rule on hand-written histories, then a tiny real run that
stops, records it, and stops at the same epoch when it was interrupted and resumed."""

import json

import pytest

from mmrobust.engine.early_stopping import STOP_KEY, early_stop_epoch
from mmrobust.experiment import run, to_run_config
from mmrobust.registry import ConfigError
from tests.conftest import MLP

KEY = "val/avg_accuracy"


def history(scores: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, KEY: s} for e, s in enumerate(scores)]


def stop(scores: list[float], patience: int, min_delta: float = 0.0, sign: float = 1.0, select_from: int = 0):
    return early_stop_epoch(
        history(scores), KEY, sign=sign, select_from=select_from, patience=patience, min_delta=min_delta
    )


def test_the_rule_on_hand_written_histories():
    scores = [0.50, 0.60, 0.60, 0.59, 0.70, 0.70, 0.70]
    assert stop(scores, patience=0) is None  # off
    assert stop(scores, patience=2) == 3  # 0.60 at epoch 1, then two epochs without a strict improvement
    assert stop(scores, patience=3) is None  # epoch 4 improves; two stale epochs after it are not three
    assert stop(scores, patience=2, min_delta=0.1) == 2  # +0.10 over 0.50 is not more than 0.1: stale from epoch 1
    assert stop([0.9, 0.8, 0.7, 0.8], patience=2, sign=-1.0) is None  # lower is better: each epoch improves
    assert stop([0.9, 0.1, 0.1, 0.1], patience=2, select_from=2) is None  # epochs before select_from never count
    assert stop([0.9, 0.1, 0.1, 0.1, 0.1], patience=2, select_from=2) == 4


def test_a_negative_patience_is_one_config_error():
    with pytest.raises(ConfigError, match=r"trainer\.early_stopping\.patience: expected an integer >= 0"):
        to_run_config({"trainer": {"early_stopping": {"patience": -1}}})  # validated on conversion


def config(max_epochs: int, **extra) -> dict:
    return {
        "dataset": {"name": "synthetic", "modalities": ["a", "b"], "snr": [2.0, 1.0], "num_classes": 3, "dim": 6,
                    "samples_per_split": [64, 32, 32]},
        "model": MLP,
        "method": {"name": "full", "label": "full"},
        "trainer": {"max_epochs": max_epochs, "batch_size": 16, "progress": False, "tensorboard": False,
                    "loggers": ["csv"], "scheduler": {"name": "none"},
                    # min_delta 1.0: no accuracy change counts, so the stop is after epoch patience = 2
                    "early_stopping": {"patience": 2, "min_delta": 1.0}},
        "seed": 1,
    } | extra  # fmt: skip


@pytest.mark.slow  # four tiny runs with their evaluation: ~10 s
def test_a_run_stops_records_it_and_a_resumed_run_stops_at_the_same_epoch(tmp_path):
    whole = run(config(8), tmp_path / "whole")
    kept = json.loads((tmp_path / "whole/history.json").read_text())
    assert [r["epoch"] for r in kept] == [0, 1, 2]  # 3 of 8 epochs
    assert [r.get(STOP_KEY, False) for r in kept] == [False, False, True]
    assert whole["fits"]["."]["early_stopped_epoch"] == 2
    saved = json.loads((tmp_path / "whole/results.json").read_text())
    assert saved["fits"]["."]["early_stopped_epoch"] == 2

    part = tmp_path / "part"
    first = run(config(2), part)  # interrupted after 2 epochs (max_epochs may change on resume)
    assert first["fits"]["."]["early_stopped_epoch"] is None
    resumed = run(config(8, resume=True), part)
    again = json.loads((part / "history.json").read_text())
    assert [r["epoch"] for r in again] == [0, 1, 2] and again[-1][STOP_KEY] is True
    assert [r[KEY] for r in again] == pytest.approx([r[KEY] for r in kept])
    assert resumed["fits"]["."]["early_stopped_epoch"] == 2
    assert run(config(8, resume=True), part)["fits"]["."]["early_stopped_epoch"] == 2  # trains nothing more
    assert json.loads((part / "history.json").read_text()) == again


@pytest.mark.slow  # one tiny run: ~4 s
def test_a_run_with_diagnostics_stopped_early_still_gets_its_diagnostics_figure(tmp_path):
    run(config(8, method={"name": "diagnosed", "label": "joint"}), tmp_path)
    assert [r["epoch"] for r in json.loads((tmp_path / "diagnostics.json").read_text())] == [0, 1, 2]
    assert (tmp_path / "diagnostics.png").stat().st_size > 5000  # drawn although epoch 7 never came
