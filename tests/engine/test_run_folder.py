"""Run-folder policy through ``experiment.run``: a used folder refuses unless resume/overwrite, resume
validates the config, logs survive a resume, ``eval.splits`` is what gets evaluated."""

import csv
import logging
import os

import pytest
import torch

from mmrobust.engine.checkpoint import load_checkpoint
from mmrobust.engine.metrics_log import MetricsCSV
from mmrobust.engine.run_folder import RESUME_MUTABLE, changed_keys, flatten
from mmrobust.engine.run_lock import LOCK_NAME, RunFolderError, RunLock
from mmrobust.experiment import run
from mmrobust.registry import ConfigError
from tests.engine.test_trainer import CrashOnce, config

MD = {"name": "modality_dropout", "label": "md"}


def test_rerun_into_a_used_folder_refuses_and_overwrite_deletes_the_old_run(tmp_path, caplog):
    run(config(MD, epochs=1), tmp_path)
    (tmp_path / "checkpoints" / ".last.ckpt.abc.tmp").write_bytes(b"orphan")  # a killed writer's temp file
    with pytest.raises(
        RunFolderError, match=rf"run folder {tmp_path} already holds a run .*resume=true.*overwrite=true"
    ):
        run(config(MD, epochs=1), tmp_path)
    (tmp_path / "eval_test").mkdir()
    with caplog.at_level(logging.WARNING):
        run(config(MD, epochs=1) | {"overwrite": True}, tmp_path)
    assert "overwrite=true: deleted the previous run in" in caplog.text and "checkpoints/" in caplog.text
    assert not (tmp_path / "eval_test").exists() and not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end of the run


def test_a_run_into_a_locked_folder_refuses_naming_the_holder(tmp_path):
    busy = rf"{tmp_path} is in use by another run \(pid {os.getpid()} "
    with RunLock(tmp_path), pytest.raises(RunFolderError, match=busy):
        run(config(MD, epochs=1), tmp_path)
    assert not (tmp_path / "config.yaml").exists()


def test_a_run_that_fails_on_its_config_leaves_no_used_folder(tmp_path):
    with pytest.raises(ConfigError, match="method.alpha"):
        run(config(MD | {"alpha": 3}, epochs=1), tmp_path)
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / LOCK_NAME).exists()
    run(config(MD, epochs=1), tmp_path)  # the corrected run may use the folder


def test_resume_refuses_a_changed_config_naming_keys_and_values(tmp_path):
    run(config(MD, epochs=1), tmp_path)
    changed = config(MD, epochs=1, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9}) | {"resume": True}
    with pytest.raises(RunFolderError, match=r"trainer.optimizer.lr: 0.05 -> 0.1 \(only"):
        run(changed, tmp_path)
    with pytest.raises(
        RunFolderError, match=r"method.label: 'md' -> 'full'; method.name: 'modality_dropout' -> 'full'"
    ):
        run(config({"name": "full", "label": "full"}, epochs=1) | {"resume": True}, tmp_path)


def test_resume_refuses_a_folder_without_run_or_checkpoint(tmp_path):
    with pytest.raises(RunFolderError, match=rf"resume=true: {tmp_path / 'empty'} holds no run to resume"):
        run(config(MD, epochs=1) | {"resume": True}, tmp_path / "empty")
    (tmp_path / "started").mkdir()
    (tmp_path / "started/config.yaml").write_text("seed: 3\n")
    with pytest.raises(RunFolderError, match=rf"{tmp_path / 'started'} holds no checkpoint"):
        run(config(MD, epochs=1) | {"resume": True}, tmp_path / "started")
    with pytest.raises(RunFolderError, match="resume=true and overwrite=true: choose one"):
        run(config(MD, epochs=1) | {"resume": True, "overwrite": True}, tmp_path / "started")


def test_resume_may_raise_max_epochs_and_keeps_every_log_row(tmp_path):
    run(config(MD, epochs=2, log_every_n_steps=1), tmp_path)
    rows_before = list(csv.DictReader((tmp_path / "logs/metrics.csv").open()))
    longer = config(MD, epochs=3, log_every_n_steps=1, progress=True) | {"resume": True}
    results = run(longer, tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints/last.ckpt")["epoch"] == 2
    rows = list(csv.DictReader((tmp_path / "logs/metrics.csv").open()))
    assert rows[: len(rows_before)] == rows_before  # earlier rows kept, not deleted
    assert [int(r["step"]) for r in rows if r["epoch"]] == [6, 12, 18]  # one epoch row per epoch, none twice
    assert results["config"]["trainer"]["max_epochs"] == 3


def test_csv_log_of_a_killed_run_equals_the_uninterrupted_one_after_resume(tmp_path):
    crash = {"name": "test_crash_once", "crash_at_step": 9}  # 6 steps/epoch: dies inside epoch 1
    CrashOnce.armed = False
    run(config(crash, epochs=2, log_every_n_steps=1), tmp_path / "ref")
    CrashOnce.armed = True
    with pytest.raises(KeyboardInterrupt):
        run(config(crash, epochs=2, log_every_n_steps=1), tmp_path / "killed")
    killed_rows = (tmp_path / "killed/logs/metrics.csv").read_text().splitlines()
    assert len(killed_rows) == 1 + 6 + 1 + 3  # header, epoch 0 (6 steps + epoch row), 3 steps of epoch 1: on disk
    assert not (tmp_path / "killed" / LOCK_NAME).exists()  # released on the exception
    run(config(crash, epochs=2, log_every_n_steps=1) | {"resume": True}, tmp_path / "killed")
    ref = (tmp_path / "ref/logs/metrics.csv").read_text()
    assert (tmp_path / "killed/logs/metrics.csv").read_text() == ref


def test_eval_splits_are_exactly_the_evaluated_splits(tmp_path):
    results = run(config(MD, epochs=1) | {"eval": {"splits": ["val", "train"]}}, tmp_path)
    assert list(results["metrics"]) == ["val", "train"]
    assert (tmp_path / "table.md").is_file() and (tmp_path / "table_train.md").is_file()
    assert not (tmp_path / "table_val.md").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"trainer": {"max_epochs": 0}}, r"trainer.max_epochs: expected an integer > 0, got 0"),
        ({"eval": {"splits": []}}, r"eval.splits: expected a non-empty list"),
        ({"dataset": {"samples_per_split": [96, 0, 48]}}, r"dataset.samples_per_split: expected 3 sizes >= 1"),
    ],
)
def test_bad_epochs_splits_and_empty_splits_stop_before_training(tmp_path, override, message):
    cfg = config(MD, epochs=1)
    for key, value in override.items():
        cfg[key] = cfg.get(key, {}) | value
    with pytest.raises(ConfigError, match=message):
        run(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_metrics_csv_widens_its_header_and_truncates_later_steps(tmp_path):
    log = MetricsCSV(tmp_path / "m.csv")
    log.log_metrics({"b": 1.0}, 1)
    log.log_metrics({"a": 2.0, "b": 3.0}, 2)
    log.log_metrics({"b": torch.tensor(4.0)}, 3)
    assert (tmp_path / "m.csv").read_text().splitlines() == ["step,a,b", "1,,1.0", "2,2.0,3.0", "3,,4.0"]
    assert MetricsCSV(tmp_path / "m.csv").truncate_after(1) == 2
    assert (tmp_path / "m.csv").read_text().splitlines() == ["step,a,b", "1,,1.0"]


def test_resume_mutable_keys_exist_in_the_schema_and_only_they_may_differ():
    from omegaconf import OmegaConf

    from mmrobust.config import RunConfig

    keys = flatten(OmegaConf.to_container(OmegaConf.structured(RunConfig)))
    assert keys.keys() >= RESUME_MUTABLE
    changed = {k: ("new" if k in RESUME_MUTABLE else v) for k, v in keys.items()}
    assert changed_keys(keys, changed) == {}
    assert changed_keys(keys, changed | {"seed": 9}) == {"seed": (0, 9)}
