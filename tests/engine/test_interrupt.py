"""Ctrl-C during ``mmrobust train``: one stderr line naming the checkpoint to resume from and the command that
resumes, exit status 130, no traceback; the command it prints does resume."""

import shlex

import pytest

from mmrobust.methods import METHODS, TrainState
from mmrobust.methods.full import Full
from tests.conftest import TINY_CLI, run_cli


class CtrlCAtStep(Full):
    """Complete-modality training whose step raises KeyboardInterrupt at global step ``STEP`` while armed (as
    Ctrl-C does in the middle of an epoch)."""

    STEP = 10  # 128 samples / batch 16 = 8 steps per epoch: epoch 0 is saved, epoch 1 is interrupted
    armed = True

    def forward(self, model, batch, state: TrainState):
        if CtrlCAtStep.armed and state.step == self.STEP:
            raise KeyboardInterrupt
        return super().forward(model, batch, state)


if "test_ctrl_c_at_step" not in METHODS:
    METHODS.register("test_ctrl_c_at_step")(CtrlCAtStep)


@pytest.mark.slow  # two tiny in-process trainings: ~6 s
def test_ctrl_c_prints_one_line_with_the_checkpoint_and_the_resume_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMROBUST_DEBUG", raising=False)
    run_dir = tmp_path / "run dir"  # a space: the printed command must quote it
    overrides = ["dataset=synthetic", *TINY_CLI, "method=full", "method.name=test_ctrl_c_at_step"]
    CtrlCAtStep.armed = True
    code, _, err = run_cli(["train", *overrides, f"hydra.run.dir={run_dir}"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130 and len(lines) == 1, err
    line = lines[0]
    assert line.startswith("mmrobust: interrupted: stopped by the user; resume from ") and "Traceback" not in err
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert f"resume from {checkpoint} with: " in line and checkpoint.is_file()
    command = shlex.split(line.split(" with: ", 1)[1])
    assert command[:2] == ["mmrobust", "train"] and command[-2:] == ["resume=true", f"hydra.run.dir={run_dir}"]
    assert command[2:-2] == overrides  # the same overrides: resume accepts only an unchanged config

    CtrlCAtStep.armed = False
    code, _, err = run_cli(command[1:], capsys)  # the printed command, as the user would paste it
    assert code == 0, err
    assert (run_dir / "results.json").is_file()
