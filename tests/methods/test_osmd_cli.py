"""OS-MD end to end through the real command line: train (pretraining included), report, re-evaluate.

The model config names no osmd encoder: the method declares it (``OSMD.model_config``), the run saves the
declared config and ``mmrobust eval`` rebuilds the trained model from it."""

import json

import pytest
from omegaconf import OmegaConf

from mmrobust.engine.checkpoint import load_checkpoint
from tests.conftest import TINY_CLI

TINY = [
    "dataset=synthetic",
    "dataset.modalities=[rgb,depth]",
    "dataset.snr=[0.5,2.0]",
    *TINY_CLI[:6],
    "method=osmd_ae",
    "method.ordinary=[rgb]",
    "method.privileged=[depth]",
    "trainer.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.progress=false",
    "trainer.tensorboard=false",
]


@pytest.mark.slow
def test_train_with_pretraining_then_eval_reports_ordinary_inputs_only(tmp_path, cli):
    run_dir = tmp_path / "osmd"
    out = cli(["train", *TINY, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    assert "| rgb | depth | osmd-CTN+AE |" in out.stdout and "| ● | ○ |" in out.stdout and "| ○ | ● |" not in out.stdout
    for sub in ("pretrain_ordinary", "pretrain_privileged", "."):
        assert (run_dir / sub / "checkpoints/best.ckpt").is_file(), sub
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["metrics"]["test"]) == ["rgb"]  # the deployed model is evaluated on rgb alone
    # osmd declared the rgb encoder (the config has none); the saved config is the trained, rebuildable model
    saved = results["config"]["model"]["encoders"]["rgb"]
    assert saved == {"name": "osmd", "encoder": results["config"]["model"]["encoder"], "translator": "autoencoder"}
    assert OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))["model"]["encoders"]["rgb"] == saved
    history = json.loads((run_dir / "history.json").read_text())
    assert {"train/alpha", "train/beta", "train/ce", "train/mmd", "train/translation"} <= set(history[-1])
    best = load_checkpoint(run_dir / "checkpoints/best.ckpt")
    assert any(k.startswith("encoders.rgb.hallucination_encoder.") for k in best["model"])  # deployed: φ_s ...
    assert any(k.startswith("privileged_model.encoders.depth.") for k in best["method"])  # training-only: φ_p

    out = cli(["eval", str(run_dir)])
    assert out.returncode == 0, out.stderr
    again = json.loads((run_dir / "eval_test/results.json").read_text())
    assert again["metrics"]["test"] == results["metrics"]["test"]
