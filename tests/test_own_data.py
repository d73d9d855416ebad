"""Issue 16's done-when: a user's own three-modality manifest (an 8×8 ``.npy`` image, a ``.wav`` recording and a
16-dimensional vector, each carrying the class on its own) trains with the default model of ``dataset=manifest``
(``model=auto``, not named on the command line) through the real CLI, with every modality clearly above chance
when it is the only one present."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from tests.conftest import run_cli

CLASSES = 3
PER_CLASS = {"train": 30, "val": 10, "test": 10}
TONES_HZ = (300.0, 700.0, 1500.0)  # class k: a tone of TONES_HZ[k] in noise
RATE = 8000  # the files' rate; the audio reader resamples to its 16 kHz default


def write_manifest(root) -> None:
    """Files and ``manifest.csv`` of the three-modality dataset (fixed seed)."""
    import soundfile

    rng = np.random.default_rng(0)
    image_templates = np.zeros((CLASSES, 8, 8))  # class k: a stroke, as in a scan of a digit
    image_templates[0, 3:5, 1:7] = 1.0  # horizontal
    image_templates[1, 1:7, 3:5] = 1.0  # vertical
    image_templates[2][np.eye(8, dtype=bool) | np.eye(8, k=1, dtype=bool)] = 1.0  # diagonal
    vector_means = rng.normal(size=(CLASSES, 16))
    t = np.arange(RATE // 2) / RATE  # 0.5 s (the reader tiles it to 1 s)
    rows = []
    for split, n in PER_CLASS.items():
        for k in range(CLASSES):
            for i in range(n):
                stem = f"{split}_{k}_{i}"
                image = image_templates[k] + rng.normal(scale=0.5, size=(8, 8))
                np.save(root / f"{stem}_image.npy", image.astype(np.float32))  # [8, 8]: no channel axis
                phase, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.5)
                wave = amplitude * np.sin(2 * np.pi * TONES_HZ[k] * t + phase) + rng.normal(scale=0.1, size=t.shape)
                soundfile.write(root / f"{stem}_audio.wav", wave.astype(np.float32), RATE)
                np.save(root / f"{stem}_vector.npy", (vector_means[k] + rng.normal(size=16)).astype(np.float32))
                rows.append([f"{stem}_image.npy", f"{stem}_audio.wav", f"{stem}_vector.npy", f"c{k}", split])
    with (root / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["image", "audio", "vector", "label", "split"], *rows])


@pytest.mark.slow
def test_own_three_modality_data_trains_with_the_auto_model(tmp_path, capsys):
    data, run_dir = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    write_manifest(data)
    code, _, err = run_cli(
        [
            "train",
            "dataset=manifest",
            f"dataset.root={data}",
            "dataset.modalities=[image,audio,vector]",
            "trainer.max_epochs=6",
            "trainer.batch_size=8",
            "trainer.progress=false",
            "trainer.loggers=[csv]",
            f"hydra.run.dir={run_dir}",
        ],
        capsys,
    )
    assert code == 0, err[-2000:]
    chosen = yaml.safe_load((run_dir / "model_resolved.yaml").read_text())["modalities"]
    assert {m: (c["kind"], c["input_shape"], c["encoder"]["name"], c["output_shape"]) for m, c in chosen.items()} == {
        "image": ("image", [8, 8], "conv", [128]),
        "audio": ("audio", [1, 64, 101], "spectrogram_cnn", [128]),  # the reader's default log-mel
        "vector": ("vector", [16], "mlp", [128]),
    }
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    assert "auto" not in saved and saved["encoders"]["audio"]["name"] == "spectrogram_cnn"  # eval rebuilds it
    accuracy = {
        s: v["accuracy"] for s, v in json.loads((run_dir / "results.json").read_text())["metrics"]["test"].items()
    }
    for modality in ("image", "audio", "vector"):  # chance is 1/3 (30 test samples)
        assert accuracy[modality] >= 0.7, accuracy
