"""AV-MNIST loader on a fake copy of MultiBench's npy layout (``fake_av_layouts.make_avmnist``)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from tests.data.fake_av_layouts import make_avmnist
from tests.data.test_data_crema_d import table_rows

from mmrobust.cli import main
from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.registry import ConfigError


@pytest.fixture
def root(tmp_path):
    return make_avmnist(tmp_path / "avmnist")


def build(root, split="train", **config):
    return DATASETS.build("avmnist", {"root": str(root), "val_size": 4, **config, "split": split})


def pixels(i: int, n: int) -> torch.Tensor:
    return torch.from_numpy(((7 * i + np.arange(n)) % 256).astype(np.float32) / 255)


def test_splits_are_multibench_s_and_values_are_scaled(root):
    train, val, test = (build(root, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (8, 4, 4)
    assert val.rows.tolist() == [8, 9, 10, 11] and val.targets() == [8, 9, 0, 1]  # the last val_size of train
    sample = val[1]
    assert sample.inputs["image"].shape == (1, 28, 28) and sample.inputs["audio"].shape == (1, 112, 112)
    assert torch.equal(sample.inputs["image"].flatten(), pixels(9, 784)) and sample.target == 9
    assert torch.equal(sample.inputs["audio"].flatten(), pixels(9, 112 * 112))
    assert all(isinstance(a, np.memmap) for a in train.arrays().values())  # rows read on demand
    assert train.modalities == ("image", "audio") and train.shapes == {"image": (1, 28, 28), "audio": (1, 112, 112)}
    assert len(build(root, "test", max_samples=2)) == 2
    clone = pickle.loads(pickle.dumps(train))  # worker processes reopen the memory maps
    assert clone._arrays is None and torch.equal(clone[3].inputs["audio"], train[3].inputs["audio"])


def test_missing_modality_array_marks_it_absent_and_bad_arrays_are_layout_errors(root):
    (root / "audio" / "test_data.npy").unlink()
    ds = build(root, "test")
    assert ds[0].inputs["audio"] is None and ds[0].inputs["image"] is not None
    assert ds.check() == {
        "image": {"present": 4, "empty": 0, "unreadable": 0},
        "audio": {"present": 0, "empty": 0, "unreadable": 4},
    }
    with pytest.raises(DatasetLayoutError, match=r"cannot read audio file .*test_data\.npy \(missing\)"):
        build(root, "test", strict=True)
    np.save(root / "image" / "train_data.npy", np.zeros((11, 784), dtype=np.float32))
    with pytest.raises(DatasetLayoutError, match=r"train_data\.npy has shape \(11, 784\); expected \[12, 28, 28\]"):
        build(root, "train")
    (root / "test_labels.npy").unlink()
    with pytest.raises(DatasetLayoutError, match=r"label file .*test_labels\.npy is missing; expected layout"):
        build(root, "test")
    with pytest.raises(ConfigError, match=r"dataset\.val_size"):
        build(make_avmnist(root.parent / "other"), "val", val_size=12)


def test_data_check_shows_counts_per_split_and_modality(root, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    main(["data", "check", "dataset=avmnist", f"dataset.root={root}", "dataset.val_size=4"])
    out = capsys.readouterr().out
    assert "shape [12, 784]" in out and "shape [4, 112, 112]" in out
    rows = {(r[0], r[2]): r[1:] for r in table_rows(out) if r[0] in ("train", "val", "test")}
    assert rows[("train", "image")] == ["8", "image", "8", "0", "0", "0"]
    assert rows[("val", "audio")] == ["4", "audio", "4", "0", "0", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["arl", "dgl", "ogm_ge", "modality_dropout", "dmrnet"])
def test_av_resnet18_trains_each_method_on_the_fake_layout(method, root, tmp_path, capsys):
    """The issue's check: model=av_resnet18 trains with the imbalance and missing-modality methods on AV-MNIST's
    layout through the real CLI (narrow ResNets so that it takes seconds)."""
    run = tmp_path / method
    main([
        "train", "dataset=avmnist", f"dataset.root={root}", "dataset.val_size=4", "model=av_resnet18",
        "model.encoder.width=8", "model.encoders.audio.width=8", f"method={method}", "trainer.max_epochs=1",
        "trainer.batch_size=4", "trainer.progress=false", "trainer.loggers=[csv]", f"hydra.run.dir={run}",
    ])  # fmt: skip
    results = json.loads((run / "results.json").read_text())
    assert set(results["metrics"]["test"]) == {"image", "audio", "image+audio"}
    assert results["config"]["model"]["encoders"]["audio"]["name"] == "audio_resnet"
