"""``mmrobust train method=mmanet`` end to end through the real command line (in process: the ``cli`` fixture)."""

import json

import pytest

from tests.test_cli import TINY

SHORT = ["trainer.max_epochs=3", "method.begin_epoch=2", "method.mining_start=0"]  # mine after epochs 0, 1


@pytest.mark.slow
def test_train_mmanet_runs_teacher_mining_and_evaluation_in_one_command(tmp_path, cli):
    run_dir = tmp_path / "mmanet"
    out = cli(["train", *TINY, "method=mmanet", *SHORT, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    assert (run_dir / "teacher/checkpoints/best.ckpt").is_file() and (run_dir / "teacher/history.json").is_file()
    teacher = json.loads((run_dir / "teacher.json").read_text())
    assert teacher["source"] == "trained" and teacher["val_metric"] == "accuracy"
    assert teacher["checkpoint"].endswith("last.ckpt") and teacher["epoch"] == 2  # the converged teacher
    teacher_history = json.loads((run_dir / "teacher/history.json").read_text())
    assert teacher["val_score"] == teacher_history[-1]["val/avg_accuracy"]  # the full set's validation accuracy
    mining = json.loads((run_dir / "mar_mining.json").read_text())
    assert mining["strong"] in ("a", "b", "c") and mining["mining_epochs"] == [0, 1]
    assert len(mining["weak"]) == 3 and all(mining["strong"] not in w for w in mining["weak"])
    assert all(len(c["shift_per_epoch"]) == 2 for c in mining["candidates"])
    history = json.loads((run_dir / "history.json").read_text())
    assert history[1]["train/mad"] == 0 and history[2]["train/mad"] > 0 and history[2]["train/mar"] > 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "mmanet" and len(results["metrics"]["test"]) == 7
    assert "| ● | ● | ● |" in out.stdout

    # the SP ablation reusing that teacher: nothing is retrained, the provenance points at the checkpoint
    sp_dir = tmp_path / "sp"
    given = teacher["checkpoint"]
    out = cli(["train", *TINY, "method=mmanet_sp", *SHORT, f"method.teacher={given}", f"hydra.run.dir={sp_dir}"])
    assert out.returncode == 0, out.stderr
    assert not (sp_dir / "teacher").exists() and not (sp_dir / "mar_mining.json").exists()
    reused = json.loads((sp_dir / "teacher.json").read_text())
    assert reused["source"] == "checkpoint" and reused["checkpoint"] == teacher["checkpoint"]
    assert json.loads((sp_dir / "results.json").read_text())["method"] == "mmanet_sp"
