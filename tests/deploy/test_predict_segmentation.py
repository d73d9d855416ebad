"""``mmrobust predict`` on a segmentation run (synthetic RGB-D: no file reader, so the inputs are ``.npy``
arrays in model-input space): one uint8 label PNG per row and an index CSV; the maps are the model's argmax."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from mmrobust.batch import Batch
from mmrobust.data import DATASETS
from mmrobust.deploy import load_deployed
from tests.deploy.conftest import cli

pytestmark = pytest.mark.slow

RGBD = {"size": [16, 16], "samples_per_split": [8, 4, 4], "num_classes": 5}


def test_segmentation_predict_writes_label_maps(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = cli(
        "train",
        "dataset=synthetic_rgbd",
        "dataset.size=[16,16]",
        "dataset.samples_per_split=[8,4,4]",
        "dataset.num_classes=5",
        "model=seg_small",
        "model.encoder.channels=[4,8]",
        "model.head.hidden=8",
        "trainer.max_epochs=1",
        "trainer.batch_size=4",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "method=full",
        "eval.splits=[test]",
        f"hydra.run.dir={run}",
        capsys=capsys,
    )
    assert code == 0, err
    model, spec = load_deployed(run)
    assert (
        spec.task == "segmentation" and spec.inputs["rgb"].reader is None and spec.inputs["depth"].shape == (1, 16, 16)
    )
    test = DATASETS.build("synthetic_rgbd", {**RGBD, "split": "test"})
    rows = []
    for i in range(3):
        sample = test[i]
        for m in ("rgb", "depth"):
            np.save(tmp_path / f"{m}{i}.npy", sample.inputs[m].numpy())
        rows.append([f"{i}", f"rgb{i}.npy", "" if i == 1 else f"depth{i}.npy"])
    with (tmp_path / "in.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["id", "rgb", "depth"], *rows])
    code, _out, err = cli("predict", str(run), str(tmp_path / "in.csv"), "--out", str(tmp_path / "pred"), capsys=capsys)
    assert code == 0, err
    with (tmp_path / "pred/predictions.csv").open(newline="") as f:
        index = list(csv.DictReader(f))
    assert [r["subset"] for r in index] == ["rgb+depth", "rgb", "rgb+depth"]
    for i, r in enumerate(index):
        labels = np.asarray(Image.open(tmp_path / "pred" / r["labels"]))
        assert labels.dtype == np.uint8 and labels.shape == (16, 16) and labels.max() < 5
        sample = test[i]
        present = torch.tensor([[True, i != 1]])
        inputs = {m: sample.inputs[m][None] for m in spec.modalities}
        batch = Batch(inputs, present, torch.zeros(1, dtype=torch.long), spec.modalities).with_present(present)
        with torch.no_grad():
            expected = model(batch).argmax(dim=1)[0].numpy()
        np.testing.assert_array_equal(labels, expected)
