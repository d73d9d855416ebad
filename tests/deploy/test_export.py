"""``mmrobust export``: one ONNX / TorchScript graph whose outputs equal the PyTorch model's on every subset
(all ``2^M − 1`` masks, absent inputs passed as zeros), with a dynamic batch axis and its spec beside it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmrobust.batch import Batch
from mmrobust.deploy import load_deployed
from mmrobust.subsets import all_subsets, subset_mask
from tests.deploy.conftest import CLASSES, DIM, cli

pytestmark = pytest.mark.slow


def reference(model, spec, inputs: dict[str, torch.Tensor], present: torch.Tensor) -> np.ndarray:
    """The PyTorch model's logits on the batch as the evaluator builds it (absent inputs zeroed)."""
    batch = Batch(inputs, present, torch.zeros(len(present), dtype=torch.long), spec.modalities).with_present(present)
    with torch.no_grad():
        return model(batch).numpy()


def masks(n: int, batch: int) -> list[torch.Tensor]:
    """Every non-empty subset as a ``[batch, n]`` mask, and one mask mixing subsets across rows."""
    out = [subset_mask(s, n).expand(batch, n).clone() for s in all_subsets(n)]
    mixed = torch.stack([subset_mask(all_subsets(n)[i % (2**n - 1)], n) for i in range(batch)])
    return [*out, mixed]


def test_onnx_and_torchscript_graphs_match_pytorch_on_every_subset(manifest_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    model, spec = load_deployed(manifest_run["run"])
    rng = torch.Generator().manual_seed(1)
    batch = 5  # not the batch size the graph was traced with: the batch axis is dynamic
    inputs = {m: torch.randn(batch, DIM, generator=rng) for m in spec.modalities}

    code, out, err = cli("export", str(manifest_run["run"]), "--out", str(tmp_path / "m.onnx"), capsys=capsys)
    assert code == 0 and "saved:" in out, err
    described = json.loads((tmp_path / "m.onnx.json").read_text())
    assert described["exporter"] in ("dynamo", "legacy") and described["class_names"] == list(CLASSES)
    assert [i["name"] for i in described["inputs"]] == ["a", "b", "present"]
    assert described["inputs"][2] == {"name": "present", "shape": ["batch", 2], "dtype": "bool", "columns": ["a", "b"]}
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["a", "b", "present"]

    code, _out, err = cli(
        "export", str(manifest_run["ckpt"]), "--format", "torchscript", "--out", str(tmp_path / "m.pt"), capsys=capsys
    )
    assert code == 0, err
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    assert json.loads((tmp_path / "m.pt.json").read_text())["format"] == "torchscript"

    for present in masks(len(spec.modalities), batch):
        expected = reference(model, spec, inputs, present)
        zeroed = {m: torch.where(present[:, j, None], inputs[m], 0.0) for j, m in enumerate(spec.modalities)}
        feed = {m: zeroed[m].numpy() for m in spec.modalities} | {"present": present.numpy()}
        (got,) = session.run(["logits"], feed)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        with torch.no_grad():
            traced = scripted(*zeroed.values(), present).numpy()
        np.testing.assert_allclose(traced, expected, atol=1e-4)
