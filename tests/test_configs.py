"""Every shipped config composes, validates and builds (DESIGN: validate every shipped config)."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmrobust.api import compose_config
from mmrobust.experiment import build_data, to_run_config
from mmrobust.methods import METHODS
from mmrobust.models import build_model
from mmrobust.runners import RUNNERS
from tests.conftest import method_context

CONFIGS = Path(__file__).resolve().parents[1] / "src/mmrobust/configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


DATA_MODEL = [
    ("uci_mfeat", "mlp"),
    ("uci_mfeat", "mlp_sum"),
    ("synthetic", "mlp"),
    ("synthetic_faces", "surf_baseline"),
    ("synthetic_faces", "auto"),
    ("synthetic_rgbd", "seg_small"),
    ("synthetic_rgbd", "esanet_r18"),
    ("synthetic_rgbd", "esanet_r34"),
]
# need a root on disk: built in their loader tests
ROOTED = {"manifest", "nyuv2", "sunrgbd", "cityscapes", "casia_surf", "cefa", "crema_d", "kinetics_sounds", "avmnist"}
# models for audio-visual data (every AV dataset needs a root): tests/models/test_av_resnet.py builds them
AV_MODELS = {"av_resnet18"}


def test_every_dataset_and_model_config_is_covered():
    assert {d for d, _ in DATA_MODEL} | ROOTED == set(options("dataset"))
    assert {m for _, m in DATA_MODEL} | AV_MODELS == set(options("model"))


@pytest.mark.parametrize(("dataset", "model"), DATA_MODEL)
def test_dataset_and_model_configs_build(dataset, model):
    cfg = to_run_config(compose_config([f"dataset={dataset}", f"model={model}"]))
    data = build_data(cfg)
    net = build_model(cfg.model, data.modalities, data.train.shapes, data.train.num_classes)
    assert len(data.train) > len(data.val) > 0 and set(net.encoders) == set(data.modalities)


@pytest.mark.parametrize("method", options("method"))
def test_method_configs_build(method):
    cfg = to_run_config(compose_config([f"method={method}", "dataset=synthetic"]))
    spec = {k: v for k, v in cfg.method.items() if k not in ("name", "label", "runner")}
    METHODS.build(cfg.method["name"], spec, where="method", context=method_context())
    assert len(RUNNERS.get(cfg.method.get("runner", "single"))(("a", "b", "c"))) in (1, 7)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_configs_validate(trainer):
    cfg = to_run_config(compose_config([f"trainer={trainer}"]))
    assert cfg.trainer.max_epochs > 0


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs_compose(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert OmegaConf.select(cfg, "dataset.name")


def test_manifest_config_requires_root_and_modalities():
    cfg = compose_config(["dataset=manifest"])
    assert OmegaConf.is_missing(cfg.dataset, "root") and OmegaConf.is_missing(cfg.dataset, "modalities")
