"""``trainer.precision`` takes effect on the unwrapped model (``engine.precision``): real runs on tiny synthetic data."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from mmrobust.engine.checkpoint import load_checkpoint
from mmrobust.engine.precision import cast_inputs, cast_to_model
from mmrobust.experiment import evaluate, run
from mmrobust.methods import METHODS
from mmrobust.methods.modality_dropout import ModalityDropout
from mmrobust.registry import ConfigError
from tests.conftest import batch_of, tiny_dataset, tiny_model
from tests.engine.test_trainer import config


class RecordDtypes(ModalityDropout):
    """Modality dropout that records, at every call of the model's head (training steps and evaluations), the
    mode, the dtype of the head's output and whether CPU autocast was on."""

    seen: ClassVar[set[tuple[bool, torch.dtype, bool]]] = set()

    def prepare(self, model):
        super().prepare(model)

        def hook(module, args, output):
            RecordDtypes.seen.add((module.training, output.dtype, torch.is_autocast_enabled("cpu")))

        model.head_module.register_forward_hook(hook)


if "test_record_dtypes" not in METHODS:
    METHODS.register("test_record_dtypes")(RecordDtypes)


def recorded_run(tmp_path, precision: str, epochs: int = 1) -> dict:
    RecordDtypes.seen = set()
    return run(config({"name": "test_record_dtypes"}, epochs=epochs, precision=precision), tmp_path)


def float_dtypes(path) -> set[torch.dtype]:
    return {t.dtype for t in load_checkpoint(path)["model"].values() if t.is_floating_point()}


def test_fp32_never_autocasts_and_is_deterministic(tmp_path):
    first = recorded_run(tmp_path / "a", "32-true")
    assert RecordDtypes.seen == {(True, torch.float32, False), (False, torch.float32, False)}
    second = recorded_run(tmp_path / "b", "32-true")
    assert first["metrics"] == second["metrics"] and first["fits"] == second["fits"]
    assert float_dtypes(tmp_path / "a/checkpoints/best.ckpt") == {torch.float32}


def test_bf16_mixed_keeps_fp32_parameters_and_runs_every_forward_in_bf16(tmp_path):
    recorded_run(tmp_path, "bf16-mixed")
    # training steps and the validation / test evaluations: all under autocast, bf16 activations
    assert RecordDtypes.seen == {(True, torch.bfloat16, True), (False, torch.bfloat16, True)}
    assert float_dtypes(tmp_path / "checkpoints/best.ckpt") == {torch.float32}


def test_bf16_true_trains_bf16_parameters_differs_from_fp32_and_evaluates_from_its_checkpoint(tmp_path):
    run(config({"name": "modality_dropout"}, epochs=2), tmp_path / "fp32")
    bf16 = recorded_run(tmp_path / "bf16", "bf16-true", epochs=2)
    assert RecordDtypes.seen == {(True, torch.bfloat16, False), (False, torch.bfloat16, False)}
    assert float_dtypes(tmp_path / "bf16/checkpoints/best.ckpt") == {torch.bfloat16}
    assert float_dtypes(tmp_path / "bf16/checkpoints/last.ckpt") == {torch.bfloat16}
    # the same seed and data: the training losses differ (the accuracies of 48 samples may coincide)
    fp32_loss, bf16_loss = (
        [h["train/loss"] for h in load_checkpoint(tmp_path / r / "checkpoints/last.ckpt")["history"]]
        for r in ("fp32", "bf16")
    )
    assert bf16_loss != fp32_loss and bf16_loss == pytest.approx(fp32_loss, rel=0.05)
    # `mmrobust eval`: the bf16 state dict loads into a freshly built model, converted as in training
    again = evaluate(tmp_path / "bf16", out_dir=tmp_path / "eval")
    assert again["metrics"]["test"] == bf16["metrics"]["test"]


def test_a_multi_forward_method_trains_under_bf16_mixed(tmp_path):
    # MMANet: a teacher trained first (a sub-fit), then per step the teacher's and the student's forwards,
    # the regularizer's forward on dropped features and the MAD loss (from epoch 1 on)
    method = {"name": "mmanet", "begin_epoch": 1, "mining_start": 0, "teacher_epochs": 1}
    results = run(config(method, epochs=2, precision="bf16-mixed"), tmp_path)
    history = load_checkpoint(tmp_path / "checkpoints/last.ckpt")["history"]
    assert history[-1]["train/mad"] > 0 and all(torch.isfinite(torch.tensor(h["train/loss"])) for h in history)
    assert len(results["metrics"]["test"]) == 7


def test_fp16_autocast_on_the_cpu_is_refused_in_one_line(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^trainer.precision: 16-mixed \(fp16 autocast\) needs a GPU; on the CPU use bf16-mixed"
    ):
        run(config({"name": "modality_dropout"}, epochs=1, precision="16-mixed"), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_cast_inputs_casts_floating_inputs_only():
    ds = tiny_dataset()
    batch = batch_of(ds, 4)
    model = tiny_model(ds)
    assert cast_to_model(batch, model) is batch  # float32 model: the same batch, nothing copied
    cast = cast_to_model(batch, model.to(torch.bfloat16))
    assert {x.dtype for x in cast.inputs.values()} == {torch.bfloat16}
    assert cast.present.dtype == torch.bool and cast.target.dtype == batch.target.dtype
    assert torch.equal(cast.inputs["a"], batch.inputs["a"].to(torch.bfloat16))
    assert cast_inputs(batch, None) is batch
