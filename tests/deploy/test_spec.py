"""ModelSpec: plain-value round trip, one-line errors on a malformed spec, and the datasets' ``input_spec``
(the reader stored in the spec turns a file into exactly the input the dataset gave the model)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from mmrobust.data import DATASETS
from mmrobust.data.readers import READERS, full_config
from mmrobust.deploy import InputSpec, ModelSpec
from tests.deploy.conftest import write_manifest

SPEC = ModelSpec(
    task="classification",
    modalities=("rgb", "depth"),
    class_names=("live", "spoof"),
    inputs={"rgb": InputSpec((3, 8, 8), reader={"type": "image", "size": [8, 8]}), "depth": InputSpec((1, 8, 8))},
    deployed=("rgb",),
    model={"encoder": {"name": "mlp", "hidden": [4]}},
    dataset="manifest",
)


def test_spec_round_trips_through_json():
    data = json.loads(json.dumps(SPEC.to_dict()))
    assert ModelSpec.from_dict(data) == SPEC
    assert data["num_classes"] == 2 and data["inputs"]["depth"] == {
        "shape": [1, 8, 8],
        "dtype": "float32",
        "reader": None,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 99}, "format 99"),
        ({"num_classes": 3}, "2 class names for num_classes=3"),
        ({"deployed": ["ir"]}, "deployed modalities ['ir']"),
        ({"inputs": {"rgb": {"shape": [3, 8, 8]}}}, "do not match modalities"),
    ],
)
def test_a_malformed_spec_is_one_line(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelSpec.from_dict(SPEC.to_dict() | change)
    bad = SPEC.to_dict()
    del bad["model"]
    with pytest.raises(ValueError, match=r"missing keys \['model'\]"):
        ModelSpec.from_dict(bad)


def build(spec: dict) -> object:
    options = dict(spec)
    return READERS.build(options.pop("type"), options, where="spec")


def test_uci_mfeat_input_spec_zscores_raw_features_as_the_dataset(tmp_path):
    from mmrobust.data.uci_mfeat import load_views

    test = DATASETS.build("uci_mfeat", {"split": "test", "views": ["fou", "kar"]})
    spec = test.input_spec("kar")
    assert spec["type"] == "npy" and spec["shape"] == [64] and len(spec["mean"]) == 64
    raw = load_views()["kar"][test.rows[3]]
    np.save(tmp_path / "x.npy", raw)
    torch.testing.assert_close(build(spec)(tmp_path / "x.npy"), test.features["kar"][3], atol=1e-4, rtol=1e-4)


def test_manifest_input_spec_is_the_resolved_reader(tmp_path):
    write_manifest(tmp_path, {"train": 2, "val": 1, "test": 1})
    readers = {"b": {"type": "npy", "mean": [1.0], "std": [2.0]}}
    train = DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["a", "b"], "readers": readers})
    assert train.input_spec("a") == full_config("npy", {})  # guessed from the suffix; every option recorded
    assert train.input_spec("b") == full_config("npy", {"mean": [1.0], "std": [2.0]})
    path = train.path(0, "b")
    torch.testing.assert_close(build(train.input_spec("b"))(path), train[0].inputs["b"])
