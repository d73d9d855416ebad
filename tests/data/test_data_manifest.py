"""Manifest dataset and its readers, each test on a fake on-disk copy generated in ``tmp_path``.

Layout written by these tests (the real one, see ``mmrobust/data/manifest.py``)::

    root/manifest.csv            columns: vec, rgb, depth, audio, label[, split]
    root/vec/<i>.npy             float vector whose first entry is the row id
    root/rgb/<i>.png             8-bit RGB
    root/depth/<i>.png           16-bit grayscale ('I;16')
    root/audio/<i>.wav           8 kHz mono PCM
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from mmrobust.data import DATASETS, Collate, DatasetLayoutError
from mmrobust.registry import ConfigError

RGB = (255, 0, 128)  # constant colour of every RGB image
DEPTH = 40000  # constant 16-bit depth value
TONE, FILE_RATE, FILE_SECONDS = 440.0, 8000, 0.25
READERS = {
    "rgb": {"type": "image", "size": [4, 6], "channels": 3},
    "depth": {"type": "image", "size": [4, 6], "channels": 1},
    "audio": {"type": "audio", "sample_rate": 16000, "seconds": 1.0, "features": "waveform"},
}
MODALITIES = ["vec", "rgb", "depth", "audio"]


# ----------------------------------------------------------------------------- fake layout writers


def write_csv(root: Path, header: list[str], rows: list[list[object]], name: str = "manifest.csv") -> None:
    with (root / name).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_npy(root: Path, rel: str, arr: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / rel, arr)
    return rel


def write_rgb(root: Path, rel: str, color: tuple[int, int, int] = RGB, size: tuple[int, int] = (10, 12)) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(root / rel)
    return rel


def write_depth16(root: Path, rel: str, values: np.ndarray) -> str:
    """A 16-bit grayscale PNG written with Pillow mode 'I;16' (values ``[H, W]`` uint16)."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    h, w = values.shape
    img = Image.new("I;16", (w, h))
    img.frombytes(values.astype("<u2").tobytes())
    img.save(root / rel)
    return rel


def tone(rate: int = FILE_RATE, seconds: float = FILE_SECONDS) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * TONE * t)).astype(np.float32)


def write_wav(root: Path, rel: str, wave: np.ndarray, rate: int = FILE_RATE) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(root / rel, wave, rate)
    return rel


def make_root(
    tmp_path: Path,
    labels: list[object],
    splits: list[str] | None = None,
    dim: int = 5,
) -> Path:
    """Write a complete four-modality layout; row ``i``'s vector is ``[i, 0.5 i, ..., ]``."""
    root = tmp_path / "root"
    root.mkdir()
    depth = np.full((12, 10), DEPTH, dtype=np.uint16)
    header = [*MODALITIES, "label"] + (["split"] if splits else [])
    rows = []
    for i, label in enumerate(labels):
        vec = (i * np.linspace(1.0, 0.2, dim)).astype(np.float32)
        row: list[object] = [
            write_npy(root, f"vec/{i}.npy", vec),
            write_rgb(root, f"rgb/{i}.png"),
            write_depth16(root, f"depth/{i}.png", depth),
            write_wav(root, f"audio/{i}.wav", tone()),
            label,
        ]
        rows.append(row + ([splits[i]] if splits else []))
    write_csv(root, header, rows)
    return root


def build(root: Path, **config: object):
    cfg: dict[str, object] = {"root": str(root), "modalities": MODALITIES, "readers": READERS}
    cfg.update(config)
    return DATASETS.build("manifest", cfg)


def row_id(sample) -> int:
    return round(float(sample.inputs["vec"][0]))


def rewrite_cell(root: Path, row: int, column: str, value: str) -> None:
    with (root / "manifest.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    rows[row + 1][rows[0].index(column)] = value
    with (root / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


# ----------------------------------------------------------------------------- loading and values


def test_loads_every_modality_with_expected_shapes_and_values(tmp_path: Path) -> None:
    splits = ["train", "train", "val", "train", "test", "train"]
    root = make_root(tmp_path, [0, 1, 0, 1, 2, 0], splits)
    ds = build(root, split="train")

    assert len(ds) == 4
    assert ds.modalities == tuple(MODALITIES)
    assert ds.num_classes == 3  # integer labels 0..max over the whole manifest, not only this split
    assert ds.shapes == {"vec": (5,), "rgb": (3, 4, 6), "depth": (1, 4, 6), "audio": (1, 16000)}
    assert ds.targets() == [0, 1, 1, 0]

    for k, i in enumerate([0, 1, 3, 5]):  # train rows, in manifest order
        s = ds[k]
        assert s.index == k and s.target == [0, 1, 0, 1, 2, 0][i]
        for m in MODALITIES:
            assert s.inputs[m] is not None and s.inputs[m].dtype == torch.float32
            assert tuple(s.inputs[m].shape) == ds.shapes[m]
        # npy round-trips exactly
        np.testing.assert_array_equal(s.inputs["vec"].numpy(), (i * np.linspace(1.0, 0.2, 5)).astype(np.float32))
    s = ds[0]
    # 8-bit RGB: resized, channels first, divided by 255
    expected_rgb = torch.tensor(RGB, dtype=torch.float32).view(3, 1, 1) / 255
    torch.testing.assert_close(s.inputs["rgb"], expected_rgb.expand(3, 4, 6), atol=1.5 / 255, rtol=0)
    # 16-bit depth: divided by 65535 (not 255), so it stays in [0, 1]
    torch.testing.assert_close(s.inputs["depth"], torch.full((1, 4, 6), DEPTH / 65535), atol=1e-3, rtol=0)
    assert ds.unreadable.total() == 0


def test_sixteen_bit_depth_keeps_its_full_range(tmp_path: Path) -> None:
    root = tmp_path
    values = np.zeros((8, 8), dtype=np.uint16)
    values[:, 4:] = 65535
    write_depth16(root, "d/0.png", values)
    assert Image.open(root / "d/0.png").mode.startswith("I")  # really a 16-bit file
    write_csv(root, ["depth", "label"], [["d/0.png", 0], ["d/0.png", 1]])  # two classes
    ds = DATASETS.build(
        "manifest",
        {
            "root": str(root),
            "modalities": ["depth"],
            "readers": {"depth": {"type": "image", "channels": 3}},
            "fractions": [1.0, 0.0, 0.0],
        },
    )
    x = ds[0].inputs["depth"]
    assert x.shape == (3, 8, 8)  # grayscale repeated to the requested channels
    assert torch.equal(x[:, :, :4], torch.zeros(3, 8, 4))
    assert torch.equal(x[:, :, 4:], torch.ones(3, 8, 4))


def test_image_without_size_keeps_its_own_size(tmp_path: Path) -> None:
    write_rgb(tmp_path, "a.png", size=(7, 5))
    write_csv(tmp_path, ["rgb", "label"], [["a.png", 0], ["a.png", 1]])
    ds = DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["rgb"], "fractions": [1.0, 0.0, 0.0]})
    assert ds.shapes == {"rgb": (3, 5, 7)}  # reader guessed from the suffix, shape from the first file


def test_normalization_mean_std_is_applied_per_channel(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"], dim=3)
    readers = {
        **READERS,
        "rgb": {**READERS["rgb"], "mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 2.0]},
        "vec": {"type": "npy", "mean": [1.0, 0.0, -1.0], "std": [2.0, 1.0, 0.5]},
    }
    raw, norm = build(root), build(root, readers=readers)
    r, n = raw[1], norm[1]
    mean, std = torch.tensor([0.5, 0.25, 0.0]).view(3, 1, 1), torch.tensor([0.5, 0.25, 2.0]).view(3, 1, 1)
    torch.testing.assert_close(n.inputs["rgb"], (r.inputs["rgb"] - mean) / std)
    torch.testing.assert_close(
        n.inputs["vec"], (r.inputs["vec"] - torch.tensor([1.0, 0.0, -1.0])) / torch.tensor([2.0, 1.0, 0.5])
    )
    assert not torch.allclose(n.inputs["rgb"], r.inputs["rgb"])


def test_audio_is_resampled_and_tiled_to_exact_length(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"])
    x = build(root)[0].inputs["audio"][0]  # 0.25 s at 8 kHz read at 16 kHz for 1 s
    period = round(16000 * FILE_SECONDS)  # 4000 resampled samples, tiled 4 times
    assert x.shape == (16000,)
    for k in range(1, 4):
        assert torch.equal(x[k * period : (k + 1) * period], x[:period])
    t = torch.arange(period, dtype=torch.float64) / 16000
    expected = (0.5 * torch.sin(2 * torch.pi * TONE * t)).float()
    torch.testing.assert_close(x[100 : period - 100], expected[100:-100], atol=2e-3, rtol=0)


def test_long_stereo_audio_is_mixed_and_cut(tmp_path: Path) -> None:
    t = np.arange(16000 * 2) / 16000
    left = 0.6 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype(np.float32)  # 2 s, 2 channels
    write_wav(tmp_path, "a.wav", stereo, rate=16000)
    write_csv(tmp_path, ["audio", "label"], [["a.wav", 0], ["a.wav", 1]])
    ds = DATASETS.build(
        "manifest",
        {
            "root": str(tmp_path),
            "modalities": ["audio"],
            "fractions": [1.0, 0.0, 0.0],
            "readers": {"audio": {"type": "audio", "sample_rate": 16000, "seconds": 0.5, "features": "waveform"}},
        },
    )
    x = ds[0].inputs["audio"]
    assert x.shape == (1, 8000)
    torch.testing.assert_close(x[0], torch.from_numpy(left[:8000] / 2).float(), atol=1e-3, rtol=0)


def test_stft_output_shape_and_peak_frequency(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"])
    readers = {
        **READERS,
        "audio": {
            "type": "audio",
            "sample_rate": 16000,
            "seconds": 1.0,
            "features": "log_stft",
            "n_fft": 256,
            "hop": 64,
        },
    }
    ds = build(root, readers=readers)
    assert ds.shapes["audio"] == (1, 129, 251)  # n_fft // 2 + 1 bins, 1 + 16000 // 64 frames
    spec = ds[0].inputs["audio"]
    assert spec.shape == (1, 129, 251) and torch.isfinite(spec).all()
    peak = spec[0, :, 10:-10].mean(dim=1).argmax().item()
    assert peak == round(TONE / 16000 * 256)  # the 440 Hz tone lands in bin 7


def test_string_labels_are_sorted_into_class_indices(tmp_path: Path) -> None:
    labels = ["dog", "cat", "bird", "cat", "dog", "dog"]
    root = make_root(tmp_path, labels, ["train", "train", "train", "train", "test", "test"])
    train, test = build(root, split="train"), build(root, split="test")
    assert train.class_names == test.class_names == ("bird", "cat", "dog")
    assert train.num_classes == test.num_classes == 3
    assert train.targets() == [2, 1, 0, 1]
    assert test.targets() == [2, 2]  # same index for "dog" although the test split has no other class
    assert [train[i].target for i in range(len(train))] == [2, 1, 0, 1]


# ----------------------------------------------------------------------------- missing and unreadable


def test_empty_cell_is_a_missing_modality_zero_filled_by_collate(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1, 0], ["train"] * 3)
    rewrite_cell(root, 1, "depth", "")
    rewrite_cell(root, 2, "vec", "")
    ds = build(root)
    samples = [ds[i] for i in range(3)]
    assert samples[1].inputs["depth"] is None and samples[1].inputs["rgb"] is not None
    assert samples[2].inputs["vec"] is None
    batch = Collate(ds.modalities, ds.shapes)(samples)
    d, v = ds.modalities.index("depth"), ds.modalities.index("vec")
    expected = torch.ones(3, 4, dtype=torch.bool)
    expected[1, d] = expected[2, v] = False
    assert torch.equal(batch.present, expected)
    assert torch.count_nonzero(batch.inputs["depth"][1]) == 0
    assert torch.count_nonzero(batch.inputs["vec"][2]) == 0
    assert torch.count_nonzero(batch.inputs["depth"][0]) > 0
    assert ds.unreadable.total() == 0  # an empty cell is missing by design, not unreadable


BAD_FILES = {
    "missing": None,
    "garbage": b"this is not a file of that type" * 4,
    "zero_bytes": b"",
}


@pytest.mark.parametrize("modality", ["vec", "rgb", "depth", "audio"])
@pytest.mark.parametrize("damage", sorted(BAD_FILES))
def test_missing_or_corrupt_file_is_absent_and_counted(tmp_path: Path, modality: str, damage: str) -> None:
    root = make_root(tmp_path, [0, 1, 0], ["train"] * 3)
    bad = root / {"vec": "vec/2.npy", "rgb": "rgb/2.png", "depth": "depth/2.png", "audio": "audio/2.wav"}[modality]
    bad.unlink()
    if BAD_FILES[damage] is not None:
        bad.write_bytes(BAD_FILES[damage])
    ds = build(root)
    assert ds.unreadable[modality] == 1  # found when the split's files are probed at build time
    samples = [ds[i] for i in range(3)]
    assert samples[2].inputs[modality] is None
    assert all(samples[2].inputs[m] is not None for m in MODALITIES if m != modality)
    assert ds.unreadable[modality] == 1 and ds.unreadable.total() == 1
    batch = Collate(ds.modalities, ds.shapes)(samples)
    j = ds.modalities.index(modality)
    assert batch.present[:, j].tolist() == [True, True, False]
    assert torch.count_nonzero(batch.inputs[modality][2]) == 0


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_strict_mode_stops_with_the_file_name(tmp_path: Path, damage: str) -> None:
    root = make_root(tmp_path, [0, 1], ["train"] * 2)
    bad = root / "rgb/1.png"
    bad.unlink()
    if damage == "garbage":
        bad.write_bytes(b"not a png")
    with pytest.raises(DatasetLayoutError, match=r"rgb/1\.png"):
        build(root, strict=True)  # every file is probed from its header when the split is built


def test_strict_mode_stops_on_a_bad_first_file_at_construction(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train"] * 2)
    (root / "vec/0.npy").unlink()  # the npy shape is inferred from the first file
    with pytest.raises(DatasetLayoutError, match=r"vec/0\.npy"):
        build(root, strict=True)


def test_file_of_wrong_shape_is_absent_and_counted(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1, 0], ["train"] * 3)
    write_npy(root, "vec/2.npy", np.zeros(7, dtype=np.float32))
    ds = build(root)
    assert ds.shapes["vec"] == (5,)
    assert ds[1].inputs["vec"] is not None and ds[2].inputs["vec"] is None
    assert ds.unreadable["vec"] == 1
    assert ds.unreadable_summary() == {"vec": {"wrong shape": 1}}
    with pytest.raises(DatasetLayoutError, match=r"vec/2\.npy.*wrong shape.*\(7,\).*\(5,\)"):
        build(root, strict=True)


def test_declared_npy_shape_is_checked(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train"] * 2)
    with pytest.raises(ConfigError, match=r"dataset\.readers\.vec\.shape: declared \(6,\).*vec/0\.npy: \(5,\)"):
        build(root, readers={**READERS, "vec": {"type": "npy", "shape": [6]}})


# ----------------------------------------------------------------------------- layout and config errors


def test_missing_manifest_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"manifest\.csv"):
        build(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"other\.csv"):
        build(tmp_path, file="other.csv")


@pytest.mark.parametrize("column", ["depth", "label"])
def test_missing_column_names_it(tmp_path: Path, column: str) -> None:
    root = tmp_path
    header = [c for c in [*MODALITIES, "label"] if c != column]
    write_csv(root, header, [["x"] * len(header)])
    with pytest.raises(DatasetLayoutError, match=rf"missing columns \['{column}'\]"):
        build(root)


def test_unknown_split_value_is_a_layout_error(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "training"])
    with pytest.raises(DatasetLayoutError, match="training"):
        build(root)


def test_bad_split_argument_is_a_config_error(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"])
    with pytest.raises(ConfigError, match="validation"):
        build(root, split="validation")


def test_unknown_reader_type_lists_valid_readers(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"])
    with pytest.raises(ConfigError) as info:
        build(root, readers={**READERS, "rgb": {"type": "jpeg2000"}})
    assert "jpeg2000" in str(info.value)
    assert all(name in str(info.value) for name in ("audio", "image", "npy"))


def test_unknown_reader_option_names_the_key(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1], ["train", "train"])
    with pytest.raises(ConfigError, match=r"dataset\.readers\.rgb\.sizes"):
        build(root, readers={**READERS, "rgb": {"type": "image", "sizes": [4, 4]}})


def test_unguessable_suffix_asks_for_a_reader(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\0" * 8)
    write_csv(tmp_path, ["x", "label"], [["a.bin", 0], ["a.bin", 1]])
    with pytest.raises(ConfigError, match=r"dataset\.readers\.x\.type"):
        DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["x"], "fractions": [1.0, 0.0, 0.0]})


# ----------------------------------------------------------------------------- split and check


def test_without_split_column_a_seeded_stratified_split_is_made(tmp_path: Path) -> None:
    labels = [0] * 20 + [1] * 12
    root = make_root(tmp_path, labels, dim=2)
    cfg = {"readers": {}, "modalities": ["vec"], "fractions": [0.5, 0.25, 0.25]}

    def rows(split: str, seed: int = 0) -> list[int]:
        ds = build(root, split=split, split_seed=seed, **cfg)
        ids = [row_id(ds[i]) for i in range(len(ds))]
        assert ds.targets() == [labels[i] for i in ids]
        return ids

    parts = {s: rows(s) for s in ("train", "val", "test")}
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(32))  # disjoint, covers all
    for split, (n0, n1) in {"train": (10, 6), "val": (5, 3), "test": (5, 3)}.items():
        got = [labels[i] for i in parts[split]]
        assert (got.count(0), got.count(1)) == (n0, n1)
    assert rows("train") == parts["train"]  # deterministic
    assert rows("train", seed=1) != parts["train"]  # and the seed matters


def test_check_counts_present_empty_and_unreadable(tmp_path: Path) -> None:
    root = make_root(tmp_path, [0, 1, 0, 1, 0], ["train"] * 5)
    rewrite_cell(root, 1, "depth", "")
    (root / "depth/3.png").write_bytes(b"broken")
    (root / "audio/4.wav").unlink()
    rewrite_cell(root, 0, "audio", "")
    counts = build(root).check()
    assert counts == {
        "vec": {"present": 5, "empty": 0, "unreadable": 0},
        "rgb": {"present": 5, "empty": 0, "unreadable": 0},
        "depth": {"present": 3, "empty": 1, "unreadable": 1},
        "audio": {"present": 3, "empty": 1, "unreadable": 1},
    }
