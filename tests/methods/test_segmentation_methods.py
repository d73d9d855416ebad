"""The method contract on the segmentation task: every method that supports segmentation trains the small
late-fusion model and ESANet on generated RGB-D scenes; the others refuse with their one-line reason."""

import tempfile
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric

from mmrobust.data.collate import Collate
from mmrobust.data.synthetic_rgbd import SyntheticRgbd
from mmrobust.experiment import Data, check_method_task, fit_submodel, to_run_config
from mmrobust.methods import METHODS, MethodContext, TrainState
from mmrobust.models import build_model
from mmrobust.registry import ConfigError
from mmrobust.tasks import Segmentation

SPEC = {"size": [32, 32], "num_classes": 5, "samples_per_split": [32, 8, 8], "seed": 0}
SEG_SMALL = {
    "encoder": {"name": "seg_cnn", "channels": [8, 8], "blocks": 1},
    "fusion": {"name": "concat", "keep_maps": True},
    "neck": {"name": "identity"},
    "head": {"name": "segmentation", "scale": 4, "hidden": 8},
}
ESANET = {
    "architecture": "esanet",
    "encoder": "resnet18",
    "channels_decoder": [16, 16, 16],
    "decoder_blocks": [1, 1, 1],
}
SEGMENTATION_METHODS = [
    n for n in METHODS.names() if "segmentation" in METHODS.get(n).supported_tasks and not n.startswith("test_")
]


def seg_context(model_config) -> tuple[MethodContext, Data]:
    splits = [SyntheticRgbd(split=s, **SPEC) for s in ("train", "val", "test")]
    data = Data(*splits, task=Segmentation(SPEC["num_classes"]))
    cfg = to_run_config(
        {
            "dataset": {"name": "synthetic_rgbd", **SPEC},
            "model": model_config,
            "trainer": {"max_epochs": 1, "batch_size": 8, "progress": False, "tensorboard": False},
        }
    )
    run_dir = Path(tempfile.mkdtemp(prefix="mmrobust-seg-"))

    def fresh():
        torch.manual_seed(0)
        return build_model(model_config, data.modalities, data.train.shapes, data.train.num_classes)

    context = MethodContext(
        modalities=data.modalities,
        num_classes=data.train.num_classes,
        build_model=fresh,
        fit=partial(fit_submodel, cfg, Fabric(accelerator="cpu", devices=1), data, run_dir, {}),
        run_dir=run_dir,
        task=data.task,
    )
    return context, data


# every segmentation method on the small model; ESANet with the papers' missing-modality methods
CASES = [(n, SEG_SMALL, "seg_small") for n in SEGMENTATION_METHODS] + [
    (n, ESANET, "esanet") for n in ("modality_dropout", "dmrnet", "mmanet")
]


@pytest.mark.parametrize(("name", "model_config"), [c[:2] for c in CASES], ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_segmentation_step_gives_dense_logits_a_finite_loss_and_trains_the_deployed_encoders(name, model_config):
    context, data = seg_context(model_config)
    options = {"regularizer": "head"} if name == "mmanet" and model_config is ESANET else {}
    method = METHODS.build(name, options, context=context)
    torch.manual_seed(0)
    model = build_model(method.model_config(model_config), data.modalities, data.train.shapes, data.train.num_classes)
    method.prepare(model)
    batch = Collate(data.modalities, data.train.shapes, data.task.collate_targets)([data.train[i] for i in range(4)])
    step = method(model, batch, TrainState(epoch=10, max_epochs=20, seed=0))  # every loss term active
    assert step.loss.dim() == 0 and torch.isfinite(step.loss)
    assert step.output is not None and step.output.shape == (4, SPEC["num_classes"], 32, 32)
    step.loss.backward()
    deployed = method.deployed_modalities() or model.modalities
    for m in deployed:
        grads = [p.grad for p in model.encoders[m].parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), m


def test_methods_that_compare_encoder_features_refuse_a_model_that_fuses_inside_its_encoders():
    context, _ = seg_context(ESANET)
    with pytest.raises(ConfigError, match="osmd .* fuses inside its encoders; use a late-fusion model"):
        METHODS.build("osmd", {}, context=context).prepare(context.build_model())
    with pytest.raises(ConfigError, match="regularizer=fusion .* use method.regularizer=head"):
        METHODS.build("mmanet", {"teacher_epochs": 1}, context=context).prepare(context.build_model())


@pytest.mark.parametrize("name", [n for n in METHODS.names() if n not in SEGMENTATION_METHODS and not n.startswith("test_")])
def test_classification_only_methods_refuse_segmentation_with_a_reason(name):
    with pytest.raises(ConfigError, match=rf"^method.name: {name} does not support segmentation \(.+\)$"):
        check_method_task({"name": name}, Segmentation(3))
