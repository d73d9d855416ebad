"""Methods declare the architecture they train (``Method.model_config``); the run builds it, saves it in
``config.yaml`` and the checkpoints, and ``mmrobust eval`` rebuilds exactly the trained model."""

import pytest
import torch
import yaml

from mmrobust import api
from mmrobust.engine.checkpoint import load_checkpoint
from mmrobust.experiment import build_data, build_job_model, job_model_config, to_run_config
from mmrobust.methods import METHODS
from mmrobust.methods.full import Full
from mmrobust.models import build_model
from mmrobust.models.necks import IdentityNeck, ProbabilisticNeck
from tests.conftest import MLP, TINY_CLI, TINY_SPEC, method_context

TINY_RUN = ["dataset=synthetic", *TINY_CLI]


def run_config(method: dict, model: dict | None = None):
    return to_run_config(
        {
            "dataset": {"name": "synthetic", **TINY_SPEC},
            "model": model or MLP,
            "method": method,
            "trainer": {"progress": False},
        }
    )


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("test_")])
def test_every_method_declares_an_idempotent_config_without_changing_its_input(name):
    method = METHODS.build(name, {}, context=method_context())
    given = {**MLP, "encoders": {"b": dict(MLP["encoder"])}}
    snapshot = yaml.safe_dump(given)
    declared = method.model_config(given)
    assert yaml.safe_dump(given) == snapshot and declared is not given
    assert method.model_config(declared) == declared  # eval applies it again to the saved config


class DrawsAtConstruction(Full):
    """A method whose constructor consumes random numbers (e.g. one that initializes a training-only head)."""

    def __init__(self, context):
        super().__init__(context)
        self.extra = torch.nn.Linear(4, 4)


def test_declaring_the_model_config_does_not_change_the_initialization(monkeypatch):
    """job_model_config builds the method under a forked RNG: the model that follows is initialized as before."""
    monkeypatch.setitem(METHODS._items, "test_draws", DrawsAtConstruction)  # removed again after the test
    cfg = run_config({"name": "test_draws"})
    data = build_data(cfg)
    torch.manual_seed(0)
    model = build_job_model(cfg, data)
    torch.manual_seed(0)
    plain = build_model(MLP, data.modalities, data.train.shapes, data.train.num_classes)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))


def test_build_job_model_builds_the_declared_architecture_and_plain_the_given_one():
    cfg = run_config({"name": "dmrnet"})
    data = build_data(cfg)
    assert job_model_config(cfg, data)["neck"] == {"name": "probabilistic"}
    assert isinstance(build_job_model(cfg, data).neck_module, ProbabilisticNeck)
    assert isinstance(build_job_model(cfg, data, plain=True).neck_module, IdentityNeck)  # teachers, pretraining


@pytest.mark.slow
def test_a_dmrnet_run_saves_the_neck_it_trained_and_eval_rebuilds_it(tmp_path):
    run = tmp_path / "dmrnet"
    results = api.train(
        [*TINY_RUN, "method=dmrnet", "method.begin_epoch=1", "method.neck.name=probabilistic_pooled"], run
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["neck"] == {"name": "probabilistic_pooled"}  # the model config had an identity neck
    assert load_checkpoint(run / "checkpoints/best.ckpt")["provenance"]["config"]["model"] == saved["model"]
    again = api.evaluate(run)
    assert again["metrics"]["test"] == results["metrics"]["test"]
