"""``mmrobust eval`` through the real CLI: the run's ``eval.splits`` by default, and a DMRNet run whose method
changed the model's neck (it used to fail: the rebuilt model had no probabilistic neck)."""

import json

import pytest

from tests.conftest import TINY_CLI

pytestmark = pytest.mark.slow


def test_eval_of_a_dmrnet_run_reproduces_its_metrics_on_the_run_eval_splits(tmp_path, cli):
    run_dir = tmp_path / "dmrnet"  # method=dmrnet puts a probabilistic neck on a model configured without one
    args = [
        "train",
        "dataset=synthetic",
        *TINY_CLI,
        "method=dmrnet",
        "method.begin_epoch=1",
        "eval.splits=[test,train]",
    ]
    out = cli([*args, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    trained = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert list(trained) == ["val", "test", "train"] and (run_dir / "table_train.md").is_file()
    out = cli(["eval", str(run_dir)])
    assert out.returncode == 0, out.stderr
    again = json.loads((run_dir / "eval_test_train/results.json").read_text())["metrics"]
    assert again == {"test": trained["test"], "train": trained["train"]}
    out = cli(["eval", str(run_dir / "checkpoints/best.ckpt"), "--split", "val", "--out", str(tmp_path / "v")])
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "v/results.json").read_text())["metrics"] == {"val": trained["val"]}
