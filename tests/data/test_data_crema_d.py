"""CREMA-D loader on a fake copy of OGM-GE's/DMRNet's layout (``fake_av_layouts.make_crema_d``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.data.fake_av_layouts import EMOTIONS, crema_clip, make_crema_d, nearest_colour, tone, write_wav

from mmrobust.data import DATASETS, DatasetLayoutError
from mmrobust.data.crema_d import audio_pipeline
from mmrobust.data.seg_common import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture
def root(tmp_path):
    return make_crema_d(tmp_path / "cremad")


def build(root, split="train", **config):
    return DATASETS.build(
        "crema_d", {"root": str(root), "image_size": 16, "val_fraction": 0.5, **config, "split": split}
    )


def colour_of(visual: torch.Tensor) -> list[int]:
    """The fake frame colour index of each frame of a ``[T, 3, H, W]`` normalized visual tensor."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return [nearest_colour(((f * std + mean) * 255).mean(dim=(1, 2)).tolist()) for f in visual]


def test_splits_counts_shapes_and_classes(root):
    splits = {s: build(root, s, frames=2) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 6, "val": 6, "test": 6}
    for labels in (splits["train"].targets(), splits["val"].targets()):  # stratified: one clip per class each
        assert sorted(labels) == list(range(6))
    assert not {c.name for c in splits["train"].clips} & {c.name for c in splits["val"].clips}
    ds = splits["test"]
    assert ds.num_classes == 6 and ds.class_names[:2] == ("neutral", "happy") and ds.modalities == ("audio", "visual")
    assert ds.targets() == list(range(6))  # the csv lists NEU HAP SAD FEA DIS ANG: the reference's index order
    sample = ds[0]
    assert sample.inputs["audio"].shape == (1, 257, 188) and sample.inputs["visual"].shape == (2, 3, 16, 16)
    assert ds.shapes == {"audio": (1, 257, 188), "visual": (2, 3, 16, 16)}
    assert sample.target == 0 and sample.inputs["audio"].dtype == torch.float32


def test_audio_pipeline_matches_a_hand_computed_stft_of_the_tiled_wave(tmp_path):
    rate, n_fft, hop = 22050, 512, 353
    wave = tone(40 * rate / n_fft, 0.5, rate)  # exactly frequency bin 40
    write_wav(tmp_path / "t.wav", wave, rate, subtype="FLOAT")
    from mmrobust.data.av_common import read_wave

    spec = audio_pipeline()(read_wave(tmp_path / "t.wav", rate))[0]
    assert spec.shape == (257, 188)
    tiled = np.tile(wave.astype(np.float64), 6)[: 3 * rate]  # 0.5 s tiled to 3 s
    padded = np.pad(tiled, n_fft // 2)  # centred frames, zero padding
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    for t in (0, 50, 187):
        expected = np.abs(np.fft.rfft(padded[t * hop : t * hop + n_fft] * window))
        got = torch.exp(spec[:, t]).double().numpy() - 1e-7
        assert np.allclose(got, expected, atol=1e-4 * expected.max()), t
    assert int(spec.mean(dim=1).argmax()) == 40  # the tone peaks in its bin
    z = audio_pipeline(zscore=True)(read_wave(tmp_path / "t.wav", rate))
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std(unbiased=False)) - 1) < 1e-3


def test_frames_random_in_training_and_the_middle_one_at_test(root):
    test = build(root, "test")
    assert colour_of(test[0].inputs["visual"]) == [1] and colour_of(test[0].inputs["visual"]) == [1]
    assert colour_of(build(root, "test", frames=3)[0].inputs["visual"]) == [0, 1, 2]
    train = build(root, "train", frames=2)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        chosen = colour_of(train[0].inputs["visual"])
        assert chosen == sorted(chosen) and len(set(chosen)) == 2  # distinct frames in time order
        seen.add(tuple(chosen))
    assert len(seen) > 1


def test_csv_with_bom_and_header_and_a_bad_label(tmp_path):
    root = make_crema_d(tmp_path / "c", header=True)
    assert len(build(root, "test")) == 6
    (root / "test.csv").write_text(f"{crema_clip(0, 'NEU')},NEU\n{crema_clip(1, 'HAP')},JOY\n")
    with pytest.raises(DatasetLayoutError, match=r"test\.csv:2: expected clip,EMO .*JOY"):
        build(root, "test")
    (root / "test.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"list file .*test\.csv is missing; expected layout"):
        build(root, "test")


def test_missing_files_mark_the_modality_absent_and_strict_stops(root):
    clips = [crema_clip(i, e) for i, e in zip(range(12, 18), EMOTIONS, strict=True)]  # the test clips
    (root / "AudioWAV" / f"{clips[0]}.wav").unlink()
    for f in (root / "Image-01-FPS" / clips[1]).iterdir():
        f.unlink()
    (root / "Image-01-FPS" / clips[2] / "00002.jpg").write_bytes(b"not a jpeg")
    ds = build(root, "test")
    assert ds[0].inputs["audio"] is None and ds[0].inputs["visual"] is not None
    assert ds[0].unreadable == (("audio", str(root / "AudioWAV" / f"{clips[0]}.wav"), "missing"),)
    assert ds[1].inputs["visual"] is None and ds[2].inputs["visual"] is None and ds[2].inputs["audio"] is not None
    assert ds.unreadable == {"audio": 1, "visual": 2}
    assert ds.check()["audio"] == {"present": 5, "empty": 0, "unreadable": 1}
    assert ds.check()["visual"]["unreadable"] == 1  # check opens only the first frame's header
    assert len(build(root, "test", drop_incomplete=True)) == 4
    with pytest.raises(DatasetLayoutError, match=r"cannot read audio file .*\.wav \(missing\)"):
        build(root, "test", strict=True)[0]


def test_data_check_shows_counts_per_split_and_modality(root, capsys, monkeypatch):
    from mmrobust.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    (root / "AudioWAV" / f"{crema_clip(0, 'NEU')}.wav").unlink()
    with pytest.raises(SystemExit) as bad:  # one .wav missing: exit status 1
        main(["data", "check", "dataset=crema_d", f"dataset.root={root}", "dataset.val_fraction=0.5"])
    assert bad.value.code == 1
    out = capsys.readouterr().out
    assert "12 clips" in out and "11/12 present" in out and "6/6 present" in out
    rows = {(r[0], r[2]): r[1:] for r in table_rows(out) if r[0] in ("train", "val", "test")}
    assert rows[("test", "audio")] == ["6", "audio", "6", "0", "0", "0"] and rows[("val", "visual")][2] == "6"
    assert int(rows[("train", "audio")][4]) + int(rows[("val", "audio")][4]) == 1  # one missing train .wav


def table_rows(out: str) -> list[list[str]]:
    """The cells of each row of the rich tables printed by ``mmrobust data check``."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.strip().startswith("│")
    ]


def test_training_crop_and_flip_are_the_same_for_every_frame_of_a_sample():
    from mmrobust.data.av_common import FrameTransform, random_resized_box

    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = random_resized_box(30, 40, generator)
        assert 0 <= top <= 1 - h + 1e-9 and 0 <= left <= 1 - w + 1e-9
        assert 0.08 - 0.01 <= h * w <= 1 and 3 / 4 - 0.05 <= (w * 40) / (h * 30) <= 4 / 3 + 0.05
    ramp = torch.linspace(0, 1, 40).expand(3, 30, 40).contiguous()
    out = FrameTransform(16, train=True)([ramp, ramp + 0.1], generator)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert out.shape == (2, 3, 16, 16) and torch.allclose(out[1] - out[0], 0.1 / std.expand(3, 16, 16), atol=1e-5)


@pytest.mark.slow
def test_crema_d_layout_trains_one_epoch_with_a_missing_file(root, tmp_path):
    from mmrobust import api

    (root / "AudioWAV" / f"{crema_clip(12, 'NEU')}.wav").unlink()  # a test clip without sound: audio zero-filled
    overrides = [f"dataset.root={root}", "dataset.val_fraction=0.5", "dataset.image_size=16", "model=mlp"]
    trainer = ["trainer.max_epochs=1", "trainer.batch_size=6", "trainer.progress=false", "trainer.tensorboard=false"]
    results = api.train(["dataset=crema_d", *overrides, *trainer], run_dir=tmp_path / "run")
    assert set(results["metrics"]["test"]) == {"audio", "visual", "audio+visual"}
    assert results["task"]["num_classes"] == 6
