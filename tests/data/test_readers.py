"""Readers of the manifest dataset: the mel filterbank, audio features, npy channel/resize options and the
``dataset.readers`` / ``dataset.reader_defaults`` config, each on files generated in ``tmp_path``."""

from __future__ import annotations

import csv
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from omegaconf import OmegaConf
from PIL import Image

from mmrobust.data import DATASETS
from mmrobust.data.mel import hz_to_mel, mel_filterbank, mel_points, mel_to_hz
from mmrobust.data.readers import READERS, AudioReader, NpyReader, full_config, upgrade_config
from mmrobust.hydra_app import CONFIG_DIR
from mmrobust.registry import ConfigError


def write_wav(path: Path, hz: float, rate: int = 16000, seconds: float = 1.0) -> Path:
    t = np.arange(round(rate * seconds)) / rate
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)
    return path


def write_manifest(root: Path, columns: dict[str, list[str]]) -> None:
    """Two rows per class, all in the train split."""
    n = len(next(iter(columns.values())))
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*columns, "label", "split"])
        for i in range(n):
            w.writerow([columns[c][i] for c in columns] + [i % 2, "train"])


# ----------------------------------------------------------------------------- mel filterbank


def test_htk_mel_scale_values() -> None:
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2))  # 781.17
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)  # the scale's anchor
    f = torch.tensor([0.0, 440.0, 4000.0, 8000.0])
    torch.testing.assert_close(mel_to_hz(hz_to_mel(f)), f.double())


def test_filterbank_matches_a_hand_computed_case() -> None:
    # 16 kHz, n_fft 16: bins every 1000 Hz (0..8000). mel(8000) = 2840.02, so the 4 corners equally spaced in
    # mel are 0, 946.67, 1893.35, 2840.02 mel = 0, 921.46, 3055.88, 8000 Hz; e.g. filter 0 at 1000 Hz is
    # (3055.88 - 1000) / (3055.88 - 921.46) = 0.9632, filter 1 at 4000 Hz is (8000 - 4000) / (8000 - 3055.88) = 0.8090.
    w = mel_filterbank(n_fft=16, sample_rate=16000, n_mels=2)
    torch.testing.assert_close(
        mel_points(2, 0.0, 8000.0), torch.tensor([0.0, 921.456, 3055.884, 8000.0]).double(), atol=1e-3, rtol=0
    )
    expected = torch.tensor(
        [
            [0.0, 0.9632, 0.4947, 0.0262, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0368, 0.5053, 0.9738, 0.8090, 0.6068, 0.4045, 0.2023, 0.0],
        ]
    )
    assert w.shape == (2, 9)
    torch.testing.assert_close(w, expected, atol=1e-4, rtol=0)


def test_filterbank_peaks_at_the_mel_centres_and_sums_to_one_between_them() -> None:
    n_fft, rate, n_mels = 512, 16000, 40
    w = mel_filterbank(n_fft, rate, n_mels)
    centres = mel_points(n_mels, 0.0, rate / 2)[1:-1]
    bin_hz = rate / n_fft
    assert w.shape == (n_mels, n_fft // 2 + 1) and float(w.max()) <= 1.0
    assert (centres.diff() > 0).all()
    for i in range(n_mels):
        assert abs(int(w[i].argmax()) - float(centres[i]) / bin_hz) <= 1.0  # peak at the bin nearest the centre
    freqs = torch.arange(n_fft // 2 + 1) * bin_hz
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    torch.testing.assert_close(w[:, inside].sum(dim=0), torch.ones(int(inside.sum())))  # partition of unity


# ----------------------------------------------------------------------------- audio reader


@pytest.mark.parametrize("hz", [500.0, 3000.0])
def test_pure_tone_lands_in_its_mel_band(tmp_path: Path, hz: float) -> None:
    reader = AudioReader()  # defaults: 16 kHz, 1 s, log_mel, n_fft 400, hop 160, 64 mels
    x = reader(write_wav(tmp_path / "a.wav", hz, rate=8000))  # resampled 8 kHz -> 16 kHz
    assert x.shape == reader.shape == (1, 64, 101)  # 1 + 16000 // 160 frames
    centres = mel_points(64, 0.0, 8000.0)[1:-1]
    nearest = int((hz_to_mel(centres) - hz_to_mel(hz)).abs().argmin())
    band = int(x[0, :, 5:-5].mean(dim=1).argmax())
    assert abs(band - nearest) <= 1
    assert float(x[0, band, 50]) > float(x[0, :, 50].median()) + 5  # far above the other bands (log scale)


def test_default_audio_output_is_log_mel_also_through_the_manifest(tmp_path: Path) -> None:
    assert inspect.signature(AudioReader).parameters["features"].default == "log_mel"
    write_manifest(tmp_path, {"voice": [write_wav(tmp_path / f"{i}.wav", 440.0).name for i in range(2)]})
    ds = DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["voice"]})  # reader guessed: .wav
    assert ds.shapes == {"voice": (1, 64, 101)}
    assert ds[0].inputs["voice"].shape == (1, 64, 101)
    spec = ds.input_spec("voice")
    assert spec == full_config("audio", {}) and spec["features"] == "log_mel" and spec["n_mels"] == 64


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({"features": "waveform"}, (1, 8000)),
        ({"features": "log_stft", "n_fft": 256, "hop": 64}, (1, 129, 126)),
        ({"features": "log_mel", "n_mels": 40, "hop": 0}, (1, 40, 81)),  # hop 0 = n_fft // 4 = 100
    ],
)
def test_audio_features_shapes(tmp_path: Path, options: dict[str, object], shape: tuple[int, ...]) -> None:
    reader = READERS.build("audio", {"seconds": 0.5, **options})
    x = reader(write_wav(tmp_path / "a.wav", 440.0))
    assert reader.shape == tuple(x.shape) == shape and bool(torch.isfinite(x).all())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"features": "mel"}, r"^dataset\.readers\.a: features: expected one of \['waveform', 'log_stft', 'log_mel'\]"),
        ({"n_fft": 0}, r"^dataset\.readers\.a: n_fft: expected an integer >= 2"),
        ({"n_fft": 64, "n_mels": 128}, r"^dataset\.readers\.a: n_mels: 128 bands are too many for n_fft=64"),
        ({"f_max": 9000.0}, r"^dataset\.readers\.a: f_min, f_max: expected 0 <= f_min < f_max <= .* 8000"),
        ({"n_mel": 40}, r"^dataset\.readers\.a\.n_mel: unknown key"),
    ],
)
def test_bad_audio_options_are_one_config_error_line(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        READERS.build("audio", options, where="dataset.readers.a")
    assert "\n" not in str(info.value)


def test_specs_saved_before_features_keep_their_meaning(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", 440.0)
    old_wave = upgrade_config({"type": "audio", "sample_rate": 16000, "seconds": 1.0})
    old_stft = upgrade_config({"type": "audio", "sample_rate": 16000, "seconds": 1.0, "n_fft": 256})
    assert old_wave["features"] == "waveform" and old_stft["features"] == "log_stft"
    for config, shape in ((old_wave, (1, 16000)), (old_stft, (1, 129, 251))):  # old default hop = n_fft // 4
        options = dict(config)
        assert READERS.build(str(options.pop("type")), options)(wav).shape == shape
    new = full_config("audio", {})
    assert upgrade_config(new) == new


# ----------------------------------------------------------------------------- npy and image readers


def test_npy_channel_add_and_move(tmp_path: Path) -> None:
    a = np.arange(20, dtype=np.float32).reshape(4, 5)
    b = np.arange(60, dtype=np.int16).reshape(4, 5, 3)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    add = NpyReader(channels="add")
    assert add.probe(tmp_path / "a.npy") == (1, 4, 5)  # the OUTPUT shape, from the header alone
    torch.testing.assert_close(add(tmp_path / "a.npy"), torch.from_numpy(a)[None])
    last = NpyReader(channels_last=True)
    assert last.probe(tmp_path / "b.npy") == (3, 4, 5)
    torch.testing.assert_close(last(tmp_path / "b.npy"), torch.from_numpy(b.transpose(2, 0, 1).astype(np.float32)))


def test_npy_resize_is_bilinear_like_the_image_reader(tmp_path: Path) -> None:
    pixels = (np.random.default_rng(0).random((9, 12)) * 255).astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "a.png")
    np.save(tmp_path / "a.npy", pixels.astype(np.float32) / 255)
    for size in ([5, 7], [13, 17]):  # down and up
        npy = NpyReader(channels="add", size=size)
        image = READERS.build("image", {"channels": 1, "size": size})
        assert npy.probe(tmp_path / "a.npy") == image.probe(tmp_path / "a.png") == (1, *size)
        torch.testing.assert_close(npy(tmp_path / "a.npy"), image(tmp_path / "a.png"), atol=2 / 255, rtol=0)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("npy", {"channels": "first"}, r"^dataset\.readers\.a: channels: expected 'add'"),
        ("npy", {"channels": "add", "channels_last": True}, r"^dataset\.readers\.a: channels: 'add' and channels_last"),
        ("npy", {"size": [4]}, r"^dataset\.readers\.a: size: expected \[H, W\], two integers > 0, got \[4\]"),
        ("npy", {"channels_last": "yes"}, r"^dataset\.readers\.a\.channels_last: expected bool"),
        ("image", {"channels": 2}, r"^dataset\.readers\.a: channels: expected 1 \(grayscale\) or 3 \(RGB\)"),
        ("image", {"size": [0, 4]}, r"^dataset\.readers\.a: size: expected \[H, W\]"),
    ],
)
def test_bad_npy_and_image_options_are_one_config_error_line(name: str, options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        READERS.build(name, options, where="dataset.readers.a")
    assert "\n" not in str(info.value)


def test_npy_options_that_do_not_fit_a_file_mark_it_unreadable(tmp_path: Path) -> None:
    scans = []
    for i in range(4):
        np.save(tmp_path / f"{i}.npy", np.full((8, 8) if i != 3 else (8,), i, dtype=np.float32))
        scans.append(f"{i}.npy")
    write_manifest(tmp_path, {"scan": scans})
    readers = {"scan": {"type": "npy", "channels": "add", "size": [4, 4]}}
    ds = DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["scan"], "readers": readers})
    assert ds.shapes == {"scan": (1, 4, 4)}
    torch.testing.assert_close(ds[1].inputs["scan"], torch.ones(1, 4, 4))
    assert ds[3].inputs["scan"] is None  # a vector cannot be resized as an image
    assert ds.unreadable["scan"] == 1


# ----------------------------------------------------------------------------- config


def test_manifest_yaml_lists_every_reader_key_with_its_default() -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "dataset" / "manifest.yaml"))
    assert isinstance(yaml, dict) and yaml["readers"] is None
    assert sorted(yaml["reader_defaults"]) == READERS.names()
    for name in READERS.names():
        assert {"type": name, **yaml["reader_defaults"][name]} == full_config(name, {}), name


def test_reader_overrides_compose_without_plus_and_reach_the_dataset(tmp_path: Path) -> None:
    from mmrobust.api import compose_config
    from mmrobust.experiment import to_run_config

    for i in range(4):
        np.save(tmp_path / f"{i}.npy", np.full((6, 6), i, dtype=np.float32))
        write_wav(tmp_path / f"{i}.wav", 440.0, seconds=0.5)
    write_manifest(tmp_path, {"scan": [f"{i}.npy" for i in range(4)], "voice": [f"{i}.wav" for i in range(4)]})
    cfg = compose_config(
        [
            "dataset=manifest",
            f"dataset.root={tmp_path}",
            "dataset.modalities=[scan,voice]",
            "dataset.readers={scan: {type: npy, channels: add, size: [3, 3]}}",
            "dataset.reader_defaults.audio.n_mels=40",
            "dataset.reader_defaults.audio.seconds=0.5",
            "dataset.strict=true",
        ]
    )
    spec = dict(to_run_config(cfg).dataset)
    name = spec.pop("name")
    ds = DATASETS.build(name, {**spec, "split": "train"}, where="dataset")
    assert ds.shapes == {"scan": (1, 3, 3), "voice": (1, 40, 51)}
    assert ds.input_spec("voice")["n_mels"] == 40 and ds.input_spec("scan")["channels"] == "add"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"readers": {"scan": {"type": "npy", "chanels": "add"}}}, r"^dataset\.readers\.scan\.chanels: unknown key"),
        ({"readers": {"scan": "npy"}}, r"^dataset\.readers\.scan: expected a mapping"),
        ({"reader_defaults": {"audio": {"n_mel": 40}}}, r"^dataset\.reader_defaults\.audio\.n_mel: unknown key"),
        ({"reader_defaults": {"video": {}}}, r"^dataset\.reader_defaults\.video: unknown reader type"),
        (  # a bad default names the reader it reached and where the value came from
            {"reader_defaults": {"npy": {"channels": "move"}}},
            r"^dataset\.readers\.scan: channels: .* \(dataset\.readers\.scan takes \['channels'\] from dataset\.reader_defaults\.npy\)$",
        ),
    ],
)
def test_unknown_reader_keys_are_one_config_error_line(tmp_path: Path, config: dict[str, object], match: str) -> None:
    np.save(tmp_path / "0.npy", np.zeros(3, dtype=np.float32))
    write_manifest(tmp_path, {"scan": ["0.npy", "0.npy"]})
    with pytest.raises(ConfigError, match=match) as info:
        DATASETS.build("manifest", {"root": str(tmp_path), "modalities": ["scan"], **config})
    assert "\n" not in str(info.value)
