"""Trainer behaviour through the real Fabric loop on tiny synthetic data."""

import json

import pytest
import torch

from mmrobust.config import SchedulerConfig
from mmrobust.engine.checkpoint import load_checkpoint, save_atomic
from mmrobust.engine.optim import lr_factor
from mmrobust.engine.trainer import NonFiniteLossError
from mmrobust.experiment import run
from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.registry import ConfigError
from tests.conftest import MLP


class CrashOnce(ModalityDropout):
    """Modality dropout that dies once at a given global step (a killed run)."""

    armed = False

    def __init__(self, context, crash_at_step: int = 0):
        super().__init__(context)
        self.crash_at_step = crash_at_step

    def forward(self, model, batch, state: TrainState):
        if CrashOnce.armed and state.step == self.crash_at_step:
            CrashOnce.armed = False
            raise KeyboardInterrupt("simulated kill")
        return super().forward(model, batch, state)


class NanFromEpoch(ModalityDropout):
    def forward(self, model, batch, state: TrainState):
        step = super().forward(model, batch, state)
        if state.epoch >= 1:
            step.loss = step.loss * float("nan")
        return step


class LateFullLoss(ModalityDropout):
    """A method whose full loss starts at epoch 2 (as MMANet's MAD/MAR or DMRNet's HCR at begin_epoch)."""

    def full_loss_epoch(self) -> int:
        return 2


for _name, _cls in (
    ("test_crash_once", CrashOnce),
    ("test_nan_from_epoch", NanFromEpoch),
    ("test_late_full_loss", LateFullLoss),
):
    if _name not in METHODS:
        METHODS.register(_name)(_cls)


def config(method: dict, epochs: int = 4, **trainer) -> dict:
    return {
        "dataset": {
            "name": "synthetic",
            "modalities": ["a", "b", "c"],
            "snr": [2.0, 1.0, 0.5],
            "num_classes": 3,
            "dim": 6,
            "samples_per_split": [96, 48, 48],
        },
        "model": MLP,
        "method": method,
        "trainer": {
            "max_epochs": epochs,
            "batch_size": 16,
            "progress": False,
            "tensorboard": False,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        }
        | trainer,
        "seed": 3,
    }


def test_resume_after_a_kill_reaches_the_uninterrupted_result(tmp_path):
    crash = {"name": "test_crash_once", "crash_at_step": 14}  # 6 steps/epoch: dies inside epoch 2
    CrashOnce.armed = False
    reference = run(config(crash), tmp_path / "reference")
    CrashOnce.armed = True
    with pytest.raises(KeyboardInterrupt):
        run(config(crash), tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed/checkpoints/last.ckpt")["epoch"] == 1
    resumed = run(config(crash) | {"resume": True}, tmp_path / "killed")
    a = load_checkpoint(tmp_path / "reference/checkpoints/last.ckpt")
    b = load_checkpoint(tmp_path / "killed/checkpoints/last.ckpt")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 24
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert resumed["metrics"] == reference["metrics"]


def test_non_finite_loss_stops_with_step_terms_and_keeps_last_checkpoint(tmp_path):
    with pytest.raises(
        NonFiniteLossError, match=r"epoch 1, step 6; terms: \{'ce'.*last good checkpoint kept: .*last.ckpt"
    ):
        run(config({"name": "test_nan_from_epoch"}), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints/last.ckpt")["epoch"] == 0


def test_best_checkpoint_is_the_best_validation_epoch_and_files_are_complete(tmp_path):
    results = run(config({"name": "modality_dropout", "label": "md"}, epochs=5), tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    scores = [h["val/avg_accuracy"] for h in history]
    best = load_checkpoint(tmp_path / "checkpoints/best.ckpt")
    assert best["epoch"] == scores.index(max(scores))
    assert len(results["metrics"]["test"]) == 7 and results["method"] == "md"
    for name in [
        "results.json",
        "table.md",
        "table.csv",
        "table.json",
        "table.tex",
        "table_heatmap.png",
        "config.yaml",
        "logs/metrics.csv",
    ]:
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.rglob("*.tmp"))
    assert "train_step/ce" in (tmp_path / "logs/metrics.csv").read_text().splitlines()[0]


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.ckpt"
    save_atomic({"model": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"model": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert not list(tmp_path.glob(".*tmp"))


def test_checkpoints_load_with_weights_only_and_reject_foreign_files(tmp_path):
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.ckpt: it is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="missing.ckpt: the file does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_learning_rate_schedules():
    cos = SchedulerConfig(name="cosine", warmup_epochs=1, warmup_start_factor=0.0, min_lr_ratio=0.0)
    assert lr_factor(0, 10, 11, cos) == 0.0 and lr_factor(5, 10, 11, cos) == pytest.approx(0.5)
    assert lr_factor(10, 10, 11, cos) == pytest.approx(1.0)
    assert lr_factor(60, 10, 11, cos) == pytest.approx(0.5)
    assert lr_factor(110, 10, 11, cos) == pytest.approx(0.0, abs=1e-12)
    step = SchedulerConfig(name="multistep", milestones=[2, 4], gamma=0.1)
    assert [lr_factor(s, 10, 6, step) for s in (0, 19, 20, 40)] == pytest.approx([1, 1, 0.1, 0.01])


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"precision": "bad"}, r"trainer.precision: expected one of .*got 'bad'"),
        ({"strategy": "foo"}, r"trainer.accelerator/devices/num_nodes/strategy/precision .*foo"),
        ({"select_metric": "acer"}, r"trainer.select_metric: 'acer' is not a metric of this classification task; valid: \['accuracy', 'macro_f1'\]"),
    ],
)
def test_trainer_settings_lightning_or_the_metrics_reject_name_the_keys(tmp_path, trainer, message):
    with pytest.raises(ConfigError, match=message):
        run(config({"name": "modality_dropout"}, epochs=1, **trainer), tmp_path)


def test_selection_never_picks_an_epoch_before_the_full_loss_or_select_from_epoch(tmp_path):
    late = run(config({"name": "test_late_full_loss"}, epochs=4), tmp_path / "late")
    assert late["fits"]["."]["selected_from_epoch"] == 2
    assert late["fits"]["."]["best_epoch"] >= 2
    assert load_checkpoint(tmp_path / "late/checkpoints/best.ckpt")["epoch"] >= 2
    pinned = run(config({"name": "modality_dropout"}, epochs=4, select_from_epoch=3), tmp_path / "pinned")
    assert pinned["fits"]["."] | {"best_val_score": None} == {
        "best_epoch": 3,
        "best_val_score": None,
        "selected_from_epoch": 3,
        "early_stopped_epoch": None,
    }
