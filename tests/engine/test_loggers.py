"""The run's loggers (``engine.loggers``) and the progress bar during evaluation, through ``experiment.run``."""

import csv
from typing import Any, ClassVar

import pytest
from lightning.fabric.loggers import Logger

import mmrobust.engine.trainer as trainer_module
from mmrobust.engine.progress import progress_bar
from mmrobust.experiment import run, to_run_config
from mmrobust.registry import ConfigError
from tests.engine.test_trainer import config

MD = {"name": "modality_dropout"}
STEPS = 6  # 96 training samples, batch 16


class Recorder(Logger):
    """A user's logger plugged in by class path: records what it receives."""

    made: ClassVar[list["Recorder"]] = []

    def __init__(self, tag: str, run_dir: Any = None) -> None:
        self.tag, self.run_dir = tag, run_dir
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.status = ""
        Recorder.made.append(self)

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.params |= dict(params)

    def finalize(self, status: str) -> None:
        self.status = status


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_and_tensorboard_get_distinct_tags_and_hparams_and_a_resume_appends(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = config(MD, epochs=1, log_every_n_steps=1, tensorboard=True)
    run(cfg, tmp_path)
    first = rows(tmp_path / "logs/metrics.csv")
    step_rows = [r for r in first if r["train_step/loss"]]
    epoch_rows = [r for r in first if r["train_epoch/loss"]]
    assert len(step_rows) == STEPS and all(r["lr"] and not r["epoch"] for r in step_rows)
    assert [(r["step"], r["epoch"]) for r in epoch_rows] == [(str(STEPS), "0")]
    assert epoch_rows[0]["val/avg_accuracy"] and epoch_rows[0]["val/avg_macro_f1"] and not epoch_rows[0]["lr"]
    assert not any(k.startswith("train/") for k in first[0])  # no tag mixes step values and epoch means

    run(config(MD, epochs=2, log_every_n_steps=1, tensorboard=True) | {"resume": True}, tmp_path)
    after = rows(tmp_path / "logs/metrics.csv")
    assert after[: len(first)] == first and len(after) == 2 * len(first)  # appended, not rewritten from scratch

    events = EventAccumulator(str(tmp_path / "logs/tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train_step/loss", "train_step/ce", "train_epoch/loss", "val/avg_accuracy", "lr", "epoch"} <= scalars
    assert [e.step for e in events.Scalars("train_epoch/loss")] == [STEPS, 2 * STEPS]  # both runs' event files
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["trainer.optimizer.lr"].number_value == pytest.approx(0.05)
    assert hparams["method.name"].string_value == "modality_dropout"


def test_a_plugged_in_logger_class_receives_the_config_and_the_metrics(tmp_path):
    Recorder.made.clear()
    plugin = {"name": f"{__name__}.Recorder", "tag": "mine"}
    run(config(MD, epochs=2, loggers=[plugin], log_every_n_steps=3), tmp_path)
    (logger,) = Recorder.made
    assert logger.tag == "mine" and logger.run_dir == tmp_path and logger.status == "success"
    assert logger.params["seed"] == 3 and logger.params["trainer.batch_size"] == 16
    assert logger.params["trainer.loggers"] == str([plugin])  # lists are logged as their text
    steps = [s for s, m in logger.metrics if "train_step/loss" in m]
    epochs = [(s, m["epoch"]) for s, m in logger.metrics if "train_epoch/loss" in m]
    assert steps == [3, 6, 9, 12] and epochs == [(STEPS, 0), (2 * STEPS, 1)]
    assert not (tmp_path / "logs/metrics.csv").exists()  # only the listed loggers


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"loggers": ["csv", "neptune"]}, r"trainer.loggers\[1\]: unknown logger 'neptune'; valid logger names: "
         r"csv, tensorboard, wandb, mlflow, or a dotted path"),
        ({"loggers": ["tests.engine.test_loggers.rows"]}, r"trainer.loggers\[0\]: .*rows is not a "
         r"lightning.fabric.loggers.Logger subclass"),
        ({"loggers": ["csv", "csv"]}, r"trainer.loggers\[1\]: logger 'csv' is listed twice"),
        ({"logger_options": {"mlflow": {"run_name": "x"}}}, r"trainer.logger_options: options for \['mlflow'\]"),
    ],
)  # fmt: skip
def test_bad_logger_configs_are_one_line_before_training(tmp_path, trainer, message):
    with pytest.raises(ConfigError, match=message):
        run(config(MD, epochs=1, **trainer), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_tensorboard_false_drops_tensorboard_and_wandb_needs_its_package():
    from mmrobust.engine.loggers import logger_specs

    cfg = to_run_config({"trainer": {"tensorboard": False}})
    assert [s.name for s in logger_specs(cfg.trainer)] == ["csv"]
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"trainer.loggers\[0\]: .*needs the wandb package: pip install wandb$"):
            to_run_config({"trainer": {"loggers": ["wandb"]}})


@pytest.mark.slow
def test_mlflow_logger_writes_params_and_metrics_to_a_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # set by the logger for a file store
    uri = f"file:{tmp_path / 'mlruns'}"
    options = {"mlflow": {"tracking_uri": uri, "experiment_name": "tiny"}}
    run(config(MD, epochs=1, loggers=["csv", "mlflow"], logger_options=options, log_every_n_steps=2), tmp_path / "run")
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert found.data.params["trainer.optimizer.name"] == "sgd"
    assert {"train_step/loss", "train_epoch/loss", "val/avg_accuracy", "lr", "epoch"} <= set(found.data.metrics)
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train_epoch/loss")] == [STEPS]


def test_progress_bar_advances_per_validation_and_test_batch(tmp_path, monkeypatch):
    bars = []

    def recording_bar(enabled: bool):
        bars.append(progress_bar(enabled))
        return bars[-1]

    monkeypatch.setattr(trainer_module, "progress_bar", recording_bar)
    run(config(MD, epochs=2, progress=True, eval_batch_size=16), tmp_path)  # val and test: 48 samples, 3 batches
    fit_bar = bars[0]
    tasks = {t.description.split()[0]: t for t in fit_bar.tasks}
    assert not fit_bar.disable and set(tasks) == {"epoch", "val"}  # the train task shows "epoch i/n loss ..."
    assert tasks["epoch"].completed == tasks["epoch"].total == 2 * STEPS
    assert tasks["val"].completed == tasks["val"].total == 3  # reset each epoch, then advanced per batch
    after = {t.description: (t.completed, t.total) for b in bars[1:] for t in b.tasks}
    assert after == {"val": (3, 3), "test": (3, 3)}  # the final evaluation of each split has its own task

    bars.clear()
    run(config(MD, epochs=1) | {"overwrite": True}, tmp_path)  # config() turns the bar off
    assert bars and all(b.disable for b in bars)
