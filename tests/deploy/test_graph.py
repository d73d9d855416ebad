"""``DeployedGraph`` (the module that is exported) equals ``model(batch)`` on every subset: late fusion, a
model deploying fewer modalities than it has (OS-MD-style), and ESANet's fusion inside the encoders, also
once traced (the traced branches are the all-present ones; the mask must still select)."""

from __future__ import annotations

import warnings

import pytest
import torch

from mmrobust.batch import Batch
from mmrobust.deploy import DeployedGraph, InputSpec, ModelSpec
from mmrobust.models import build_model
from mmrobust.subsets import all_subsets, subset_mask
from tests.conftest import MLP

ESANET_TINY = {
    "architecture": "esanet",
    "encoder": "resnet18",
    "width": 8,
    "channels_decoder": [8, 8, 8],
    "decoder_blocks": [0, 0, 0],
    "context_bins": [1],
    "se_reduction": 4,
}


def make(config, shapes: dict[str, tuple[int, ...]], deployed: tuple[str, ...], task: str = "classification"):
    torch.manual_seed(0)
    mods = tuple(shapes)
    model = build_model(config, mods, shapes, 3).eval()
    spec = ModelSpec(task, mods, ("x", "y", "z"), {m: InputSpec(s) for m, s in shapes.items()}, deployed, config)
    return model, spec


def check_every_subset(model, spec, graph, batch: int = 2) -> None:
    torch.manual_seed(1)
    inputs = {m: torch.randn(batch, *spec.inputs[m].shape) for m in spec.modalities}
    d = len(spec.deployed)
    for s in all_subsets(d):
        present = subset_mask(s, d).expand(batch, d).clone()
        full = torch.zeros(batch, len(spec.modalities), dtype=torch.bool)
        for j, m in enumerate(spec.deployed):
            full[:, spec.modalities.index(m)] = present[:, j]
        b = Batch(inputs, full, torch.zeros(batch, dtype=torch.long), spec.modalities).with_present(full)
        with torch.no_grad():
            expected = model(b)
            got = graph(*(b.inputs[m] for m in spec.deployed), present)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("config", "shapes", "deployed"),
    [
        (MLP, {"a": (5,), "b": (4,), "c": (3,)}, ("a", "b", "c")),
        (MLP, {"a": (5,), "b": (4,), "c": (3,)}, ("a", "c")),  # b: training-only (privileged)
        pytest.param(ESANET_TINY, {"rgb": (3, 16, 16), "depth": (1, 16, 16)}, ("rgb", "depth"), marks=pytest.mark.slow),
    ],
    ids=["late-fusion", "fewer-deployed", "esanet"],
)
def test_deployed_graph_equals_the_model_on_every_subset_also_traced(config, shapes, deployed):
    model, spec = make(config, shapes, deployed)
    graph = DeployedGraph(model, spec).eval()
    if not model.fusion_inside_encoders:  # (ESANet: only the traced graph, the stricter check, to save time)
        check_every_subset(model, spec, graph)
    example = (*(torch.randn(2, *spec.inputs[m].shape) for m in deployed), torch.ones(2, len(deployed), dtype=bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, example, check_trace=False)
    with torch.jit.optimized_execution(False):  # the profiling executor's first runs are slow; same values
        check_every_subset(model, spec, traced, batch=4)  # another batch size than traced
