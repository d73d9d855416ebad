"""Per-epoch imbalance diagnostics: JSON and PNG written by real runs, kept across a resume."""

import csv
import json

import pytest
import torch

from mmrobust.evaluation.imbalance_plots import diagnostic_groups, plot_diagnostics
from mmrobust.experiment import run
from mmrobust.methods import METHODS, EpochContext, TrainState
from mmrobust.methods.diagnostics import ImbalanceDiagnostics
from tests.conftest import MLP, TINY_CLI, method_context, tiny_dataset, tiny_model

TINY_TWO = [
    "dataset=synthetic",
    "dataset.modalities=[a,b]",
    "dataset.snr=[2.0,0.5]",
    *TINY_CLI,
]


@pytest.mark.slow
def test_cli_run_writes_diagnostics_json_png_and_logs(tmp_path, cli):
    run_dir = tmp_path / "arl"
    args = ["train", *TINY_TWO, "method=arl", "method.start_epoch=1", f"hydra.run.dir={run_dir}"]
    out = cli(args)
    assert out.returncode == 0, out.stderr
    history = json.loads((run_dir / "diagnostics.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1]
    for m in "ab":
        assert 0 <= history[-1][f"val_acc/{m}"] <= 1 and history[-1][f"grad_norm/{m}"] > 0
        assert {f"arl/{k}/{m}" for k in "qdw"} <= set(history[-1])
    torch.testing.assert_close(history[-1]["arl/w/a"] + history[-1]["arl/w/b"], 1.0)
    assert (run_dir / "diagnostics.png").stat().st_size > 5000
    with open(run_dir / "logs/metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"diag/val_acc/a", "diag/arl/w/b", "train_step/w_a", "train_epoch/ce_b"} <= set(header)


CASES = {
    "dgl": {"grad_norm/a"},
    "ogm_ge": {"ogm/rho/a", "ogm/k/b"},
    "diagnosed": {"grad_norm/b"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_imbalance_method_writes_its_curves(name, tmp_path):
    config = {
        "dataset": {
            "name": "synthetic",
            "modalities": ["a", "b"],
            "snr": [2.0, 0.5],
            "num_classes": 3,
            "dim": 6,
            "samples_per_split": [64, 32, 32],
        },
        "model": MLP,
        "method": {"name": name},
        "trainer": {"max_epochs": 2, "batch_size": 16, "progress": False, "tensorboard": False},
    }
    run(config, tmp_path)
    history = json.loads((tmp_path / "diagnostics.json").read_text())
    assert len(history) == 2 and CASES[name] | {"val_acc/a", "val_acc/b", "val_acc/fused"} <= set(history[1])
    assert (tmp_path / "diagnostics.png").is_file()


def test_history_is_method_state_and_a_resumed_epoch_replaces_its_record(tmp_path):
    ds = tiny_dataset()
    model = tiny_model(ds)
    method = METHODS.build("diagnosed", {}, context=method_context())
    logged = []
    preds = {s: _Pred(torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 1])) for s in range(1, 8)}
    ctx = EpochContext(validate=lambda subsets: {s: preds[s] for s in subsets}, log=lambda d, s: logged.append(d))
    for epoch in range(3):
        method.on_epoch_end(model, TrainState(epoch=epoch, max_epochs=5), ctx)
    assert logged[-1]["diag/val_acc/fused"] == 0.75
    restored = METHODS.build("diagnosed", {}, context=method_context())
    restored.load_state_dict(method.state_dict())
    assert restored.diagnostics.history == method.diagnostics.history
    restored.on_epoch_end(model, TrainState(epoch=1, max_epochs=5), ctx)  # re-running epoch 1 after a resume
    assert [r["epoch"] for r in restored.diagnostics.history] == [0, 1]


class _Pred:
    def __init__(self, logits, target):
        self.logits, self.target = logits, target


def test_steps_are_averaged_and_encoders_without_gradient_are_skipped():
    diag = ImbalanceDiagnostics(("a", "b"))
    diag.add({"x/a": torch.tensor(1.0)})
    diag.add({"x/a": 3.0, "x/b": 5.0})
    model = tiny_model(tiny_dataset(modalities=["a", "b"], snr=[1.0, 1.0]))
    for p in model.encoders["a"].parameters():
        p.grad = torch.ones_like(p)
    diag.add_gradient_norms(model)
    n = sum(p.numel() for p in model.encoders["a"].parameters())
    ctx = EpochContext(
        validate=lambda s: {k: _Pred(torch.eye(2), torch.tensor([0, 1])) for k in s}, log=lambda d, s: None
    )
    record = diag.epoch_end(model, TrainState(), ctx)
    assert record["x/a"] == 2.0 and record["x/b"] == 5.0 and "grad_norm/b" not in record
    assert record["grad_norm/a"] == pytest.approx(n**0.5)
    assert diag.epoch_end(model, TrainState(epoch=1), ctx).keys() == {
        "epoch",
        "step",
        "val_acc/a",
        "val_acc/b",
        "val_acc/fused",
    }


def test_plot_groups_and_errors(tmp_path):
    history = [{"epoch": 0, "ogm/k/a": 0.5, "val_acc/a": 0.9, "grad_norm/a": 1.0}, {"epoch": 1, "ogm/k/a": 0.4}]
    assert list(diagnostic_groups(history)) == ["val_acc", "grad_norm", "ogm/k"]
    assert plot_diagnostics(history, tmp_path / "d.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no 'group/series'"):
        plot_diagnostics([{"epoch": 0}], tmp_path / "e.png")
