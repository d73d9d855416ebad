"""Every multirun job gets its own folder, whatever is swept (mmrobust/sweeps.py)."""

from __future__ import annotations

import json
import sys

import pytest

from mmrobust.cli import main
from mmrobust.sweeps import is_sweep, sweep_suffix, swept_keys
from tests.conftest import TINY_CLI


@pytest.mark.parametrize(
    ("value", "swept"),
    [
        ("0.1,0.2", True),
        ("range(0,3)", True),
        ("choice(a,b)", True),
        ("[1,2]", False),
        ("{a: 1, b: 2}", False),
        ("'x,y'", False),
        ("0.1", False),
        ("[[1,2],[3,4]],[[5,6]]", True),
    ],
)
def test_is_sweep(value: str, swept: bool) -> None:
    assert is_sweep(value) is swept


def test_swept_keys_leave_out_method_seed_and_hydra() -> None:
    argv = ["--multirun", "method=a,b", "seed=0,1", "trainer.optimizer.lr=0.1,0.2", "hydra.sweep.dir=x,y", "+k=1"]
    assert swept_keys(argv, {"dataset.dim": "4,8", "seed": "0,1,2"}) == ["trainer.optimizer.lr", "dataset.dim"]


def test_sweep_suffix_names_this_jobs_values() -> None:
    argv = ["trainer.optimizer.lr=0.1,0.2", "dataset.root=/d", "method=a,b"]
    job = ["trainer.optimizer.lr=0.2", "dataset.root=/d", "method=b"]
    assert sweep_suffix(job, None, argv) == "/trainer.optimizer.lr=0.2"
    assert sweep_suffix(["method=b"], None, ["method=a,b"]) == ""
    assert sweep_suffix(["dataset.root=/a/b"], {"dataset.root": "/a/b,/c"}, []) == "/dataset.root=_a_b"


@pytest.mark.slow
def test_an_lr_sweep_writes_one_folder_per_job(tmp_path, monkeypatch) -> None:
    sweep = tmp_path / "sweep"
    argv = [
        "--multirun",
        "dataset=synthetic",
        *TINY_CLI,
        "trainer.max_epochs=1",
        "trainer.optimizer.lr=0.01,0.002",
        f"hydra.sweep.dir={sweep}",
    ]
    monkeypatch.setattr(sys, "argv", ["mmrobust", "train", *argv])
    main(["train", *argv])
    folders = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("results.json"))
    assert folders == [
        "modality_dropout/seed0/trainer.optimizer.lr=0.002",
        "modality_dropout/seed0/trainer.optimizer.lr=0.01",
    ]
    lrs = {
        json.loads((sweep / f / "results.json").read_text())["config"]["trainer"]["optimizer"]["lr"] for f in folders
    }
    assert lrs == {0.01, 0.002}


@pytest.mark.slow
def test_an_optuna_sweep_optimizes_the_returned_validation_score(tmp_path, monkeypatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import yaml

    sweep = tmp_path / "optuna"
    argv = [
        "--multirun", "dataset=synthetic", *TINY_CLI, "trainer.max_epochs=1", "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize", "trainer.optimizer.lr=interval(0.001,0.1)",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["mmrobust", "train", *argv])
    main(["train", *argv])
    runs = sorted(sweep.rglob("results.json"))
    assert len(runs) == 2  # one folder per trial
    scores = [json.loads(r.read_text())["fits"]["."]["best_val_score"] for r in runs]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(max(scores))


def fake_result(method: str, seed: int, lr: float, progress: bool = False) -> dict:
    config = {
        "seed": seed,
        "method": {"name": method, "label": method},
        "trainer": {"optimizer": {"lr": lr}, "progress": progress},
    }
    return {"method": method, "seed": seed, "modalities": ["a", "b"], "config": config,
            "metrics": {"test": {"a": {"accuracy": lr}, "b": {"accuracy": lr}, "a+b": {"accuracy": lr}}}}  # fmt: skip


def test_report_never_merges_different_configurations(tmp_path) -> None:
    from mmrobust.evaluation.report import load_results, result_rows, summary

    for i, (seed, lr, progress) in enumerate([(0, 0.1, True), (1, 0.1, False), (0, 0.2, False), (1, 0.2, False)]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(fake_result("md", seed, lr, progress)))
    results = load_results([tmp_path])
    table = summary(result_rows(results), ["a", "b"], "accuracy")
    assert set(table) == {"md (trainer.optimizer.lr=0.1)", "md (trainer.optimizer.lr=0.2)"}  # progress: not a config
    assert table["md (trainer.optimizer.lr=0.2)"]["a+b"] == (pytest.approx(20.0), 0.0, 2)


def test_report_refuses_the_same_run_twice(tmp_path) -> None:
    from mmrobust.errors import ConfigError
    from mmrobust.evaluation.report import load_results

    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(fake_result("md", 0, 0.1)))
    with pytest.raises(ConfigError, match="md seed 0"):
        load_results([tmp_path])


def test_report_names_a_results_json_that_is_not_a_run(tmp_path, capsys) -> None:
    from tests.conftest import run_cli

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(fake_result("md", 0, 0.1)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text("3")
    code, _, err = run_cli(["report", str(tmp_path)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "other/results.json: not a results.json of an mmrobust run" in lines[0]
