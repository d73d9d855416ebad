"""``mmrobust predict`` from a checkpoint alone: after the dataset folder is deleted, rows with a missing
modality, class names, probabilities, agreement with ``mmrobust eval``, and one-line errors on bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrobust import api
from mmrobust.data.readers import full_config
from mmrobust.deploy import ModelSpec, load_deployed
from tests.deploy.conftest import CLASSES, DIM, cli, sample

pytestmark = pytest.mark.slow  # shares one tiny training (a few seconds) with the other deploy tests


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_checkpoint_holds_the_spec_of_the_deployed_model(manifest_run):
    ckpt = torch.load(manifest_run["ckpt"], map_location="cpu", weights_only=True)
    spec = ModelSpec.from_dict(ckpt["provenance"]["spec"])
    assert spec.task == "classification" and spec.modalities == ("a", "b") and spec.deployed == ("a", "b")
    assert spec.class_names == CLASSES and spec.num_classes == 3
    assert spec.inputs["a"].shape == (DIM,) and spec.inputs["a"].reader == full_config("npy", {})
    assert spec.model["encoder"]["hidden"] == [16] and spec.dataset == "manifest"
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()


def test_predict_after_the_dataset_is_deleted(manifest_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(manifest_run["run"], run)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(5)
    rows = []
    for i, label in enumerate([0, 1, 2, 0]):
        for m, x in sample(rng, label).items():
            np.save(inputs / f"{m}{i}.npy", x)
        rows.append([f"s{i}", f"a{i}.npy", "" if i == 1 else f"b{i}.npy", CLASSES[label]])
    rows.append(["s4", "", "", "cat"])  # nothing to predict from
    manifest = write_csv(inputs / "predict.csv", ["id", "a", "b", "truth"], rows)
    data, hidden = manifest_run["data"], manifest_run["data"].with_name("hidden")
    data.rename(hidden)  # the dataset is gone: predict reads the checkpoint only
    try:
        code, _, err = cli("predict", str(run), str(manifest), "--out", str(tmp_path / "p.csv"), capsys=capsys)
    finally:
        hidden.rename(data)
    assert code == 0, err
    assert "1 rows have no usable modality" in err
    out = read_rows(tmp_path / "p.csv")
    assert list(out[0]) == ["id", "truth", "subset", "prediction", "p_cat", "p_dog", "p_eel"]
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3", "s4"]
    assert [r["subset"] for r in out] == ["a+b", "a", "a+b", "a+b", ""]
    for r in out[:4]:
        probs = [float(r[f"p_{c}"]) for c in CLASSES]
        assert abs(sum(probs) - 1) < 1e-4 and r["prediction"] == CLASSES[int(np.argmax(probs))]
    assert out[4]["prediction"] == "" and out[4]["p_cat"] == ""
    # the API gives the same rows, and a single sample from --input pairs the same prediction as its row
    rows_api = api.predict(run, manifest)
    assert [r["prediction"] for r in rows_api] == [r["prediction"] for r in out]
    code, single, err = cli(
        "predict", str(run), "--input", f"a={inputs / 'a0.npy'}", "--input", f"b={inputs / 'b0.npy'}", capsys=capsys
    )
    assert code == 0, err
    assert single.splitlines()[1].split(",")[:2] == ["a+b", out[0]["prediction"]]


def test_predictions_agree_with_mmrobust_eval(manifest_run, tmp_path, capsys):
    """The test split predicted from its files (both modalities, then ``a`` alone: the b column left out)
    gives the confusion matrices that ``mmrobust eval`` computes for the subsets a+b and a."""
    data = manifest_run["data"]
    test = [r for r in read_rows(data / "manifest.csv") if r["split"] == "test"]
    code, _, err = cli(
        "eval", str(manifest_run["run"]), "--split", "test", "--out", str(tmp_path / "ev"), capsys=capsys
    )
    assert code == 0, err
    details = json.loads((tmp_path / "ev/results.json").read_text())["details"]["test"]
    for subset, columns in (("a+b", ["a", "b"]), ("a", ["a"])):
        manifest = write_csv(
            data / f"only_{subset}.csv", [*columns, "label"], [[r[c] for c in [*columns, "label"]] for r in test]
        )
        rows = api.predict(manifest_run["ckpt"], manifest)
        confusion = np.zeros((3, 3), dtype=int)
        for r, truth in zip(rows, test):
            assert r["subset"] == subset
            confusion[CLASSES.index(truth["label"]), CLASSES.index(r["prediction"])] += 1
        assert confusion.tolist() == details[subset]["confusion_matrix"]


def test_bad_inputs_are_one_line(manifest_run, tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    np.save(data / "good.npy", np.zeros(DIM, dtype=np.float32))
    np.save(data / "wide.npy", np.zeros(DIM + 1, dtype=np.float32))
    ckpt = str(manifest_run["ckpt"])
    typo = write_csv(data / "typo.csv", ["a", "bb"], [["good.npy", "good.npy"]])
    code, _, err = cli("predict", ckpt, str(typo), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "column 'bb' holds data files" in err and "['a', 'b']" in err
    # a wrong-shaped file: that modality is missing for the row, with a warning; --strict stops
    wide = write_csv(data / "wide.csv", ["a", "b"], [["good.npy", "wide.npy"]])
    code, out, err = cli("predict", ckpt, str(wide), capsys=capsys)
    assert code == 0 and "1 input files not usable" in err and "wrong shape (7,)" in err
    assert out.splitlines()[1].startswith("a,")
    code, _, err = cli("predict", ckpt, str(wide), "--strict", capsys=capsys)
    assert code == 2 and "wide.npy" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("predict", ckpt, "--input", f"c={data / 'good.npy'}", capsys=capsys)
    assert code == 2 and "'c' is not a modality" in err
    # a checkpoint written before checkpoints held a spec
    old = torch.load(ckpt, map_location="cpu", weights_only=True)
    del old["provenance"]["spec"]
    torch.save(old, tmp_path / "old.ckpt")
    code, _, err = cli("predict", str(tmp_path / "old.ckpt"), str(wide), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no model spec" in err and "mmrobust eval" in err
    # a run of several models (one per job) names its checkpoints
    for job in ("subsets/a", "subsets/b"):
        (tmp_path / "multi" / job / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpt, tmp_path / "multi" / job / "checkpoints" / "best.ckpt")
    code, _, err = cli("export", str(tmp_path / "multi"), capsys=capsys)
    assert code == 2 and "subsets/a/checkpoints/best.ckpt, subsets/b/checkpoints/best.ckpt" in err
    model, spec = load_deployed(tmp_path / "multi/subsets/a/checkpoints/best.ckpt")
    assert not model.training and spec.deployed == ("a", "b")
