"""`mmrobust prepare`: tiny videos generated with PyAV, run in process, outputs checked on disk."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from mmrobust.cli import main  # noqa: E402
from mmrobust.prepare.runner import TMP_DIR, UNREADABLE_FILE  # noqa: E402


def make_video(path: Path, seconds: int = 3, fps: int = 4, audio_rate: int | None = None) -> None:
    """A 32×32 video (mpeg4 in .mp4, flv1 in .flv) whose frames change every frame, optionally with a
    mono sine audio track at ``audio_rate`` Hz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("flv" if path.suffix == ".flv" else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = None
        if audio_rate is not None:
            audio = container.add_stream("aac", rate=audio_rate)
            audio.layout = "mono"
        for i in range(seconds * fps):
            image = np.full((32, 32, 3), (i * 20) % 256, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        if audio is not None:
            n = seconds * audio_rate
            signal = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / audio_rate)).astype(np.float32)
            size = audio.codec_context.frame_size or 1024
            for start in range(0, n, size):
                frame = av.AudioFrame.from_ndarray(signal[None, start : start + size], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = audio_rate, start
                container.mux(audio.encode(frame))
            container.mux(audio.encode())


def make_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), dtype="<i2").tobytes())


@pytest.fixture(scope="module")
def tiny_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.flv"
    make_video(path)
    return path


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(path, audio_rate=22050)
    return path


def crema_raw(root: Path, video: Path, clips: list[str]) -> Path:
    for clip in clips:
        (root / "VideoFlash").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, root / "VideoFlash" / f"{clip}.flv")
        make_wav(root / "AudioWAV" / f"{clip}.wav")
    return root


def rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_crema_d_prepare_resume_and_unreadable(tmp_path: Path, tiny_flv: Path, capsys) -> None:
    clips = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_DFA_SAD_XX", "1003_TIE_NEU_XX"]
    raw = crema_raw(tmp_path / "raw", tiny_flv, clips)
    (raw / "VideoFlash" / "1003_TIE_NEU_XX.flv").write_bytes(b"\x00not a video" * 50)  # corrupt
    out = tmp_path / "out"

    main(["prepare", "crema_d", str(raw), str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert "prepared 3, skipped 0 (already done), unreadable 1" in text
    assert "speaker-independent" in text
    frames = sorted(p.name for p in (out / "Image-01-FPS" / "1001_DFA_ANG_XX").iterdir())
    assert frames == ["00000.jpg", "00004.jpg", "00008.jpg"]  # 3 s at 4 fps → one frame per second
    assert (out / "AudioWAV" / "1001_DFA_ANG_XX.wav").read_bytes() == (
        raw / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    ).read_bytes()
    listed = rows(out / "train.csv") + rows(out / "test.csv")
    assert sorted(listed) == [["1001_DFA_ANG_XX", "ANG"], ["1001_IEO_HAP_HI", "HAP"], ["1002_DFA_SAD_XX", "SAD"]]
    train_actors = {c.split("_")[0] for c, _ in rows(out / "train.csv")}
    test_actors = {c.split("_")[0] for c, _ in rows(out / "test.csv")}
    assert train_actors and test_actors and not train_actors & test_actors
    assert "1003_TIE_NEU_XX\t" in (out / UNREADABLE_FILE).read_text()
    assert not (out / "Image-01-FPS" / "1003_TIE_NEU_XX").exists()

    # an interrupted clip: its frame folder never appeared, a partial temp folder is left behind
    shutil.rmtree(out / "Image-01-FPS" / "1002_DFA_SAD_XX")
    (out / TMP_DIR / "clip-x" / "frames").mkdir(parents=True)
    (out / TMP_DIR / "clip-x" / "frames" / "00000.jpg").write_bytes(b"partial")
    main(["prepare", "crema_d", str(raw), str(out), "--no-progress"])
    assert "prepared 1, skipped 2 (already done), unreadable 1" in capsys.readouterr().out
    assert len(list((out / "Image-01-FPS" / "1002_DFA_SAD_XX").glob("*.jpg"))) == 3
    assert not (out / TMP_DIR).exists()

    # the corrupt video fixed: it is picked up, and the unreadable list disappears
    shutil.copyfile(tiny_flv, raw / "VideoFlash" / "1003_TIE_NEU_XX.flv")
    main(["prepare", "crema_d", str(raw), str(out), "--no-progress"])
    assert "prepared 1, skipped 3 (already done), unreadable 0" in capsys.readouterr().out
    assert not (out / UNREADABLE_FILE).exists()


def test_crema_d_published_lists(tmp_path: Path, tiny_flv: Path, capsys) -> None:
    raw = crema_raw(tmp_path / "raw", tiny_flv, ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI"])
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.csv").write_text("1001_DFA_ANG_XX,ANG\n", encoding="utf-8-sig")
    (lists / "test.csv").write_text("1001_IEO_HAP_HI,HAP\n1009_DFA_SAD_XX,SAD\n")
    out = tmp_path / "out"
    main(["prepare", "crema_d", str(raw), str(out), "--lists", str(lists), "--no-progress"])
    assert "prepared 2, skipped 0 (already done), unreadable 1" in capsys.readouterr().out
    assert rows(out / "train.csv") == [["1001_DFA_ANG_XX", "ANG"]]
    assert rows(out / "test.csv") == [["1001_IEO_HAP_HI", "HAP"]]  # the clip missing on disk is left out
    assert "1009_DFA_SAD_XX\tmissing" in (out / UNREADABLE_FILE).read_text()


def test_kinetics_sounds_prepare(tmp_path: Path, tiny_mp4: Path, capsys) -> None:
    raw = tmp_path / "raw"
    videos = {
        "playing drums": ["aaa_000001_000011", "aab_000002_000012"],
        "tapping_pen": ["bbb_000003_000013", "bbb_000020_000030", "bbc_000001_000011"],
    }
    for cls, names in videos.items():
        for name in names:
            (raw / cls).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tiny_mp4, raw / cls / f"{name}.mp4")
    (raw / "tapping_pen" / "broken_000000_000010.mp4").write_bytes(b"\x00" * 100)
    out = tmp_path / "out"

    main(["prepare", "kinetics_sounds", str(raw), str(out), "--no-progress", "--test-fraction", "0.4"])
    text = capsys.readouterr().out
    assert "prepared 5, skipped 0 (already done), unreadable 1" in text
    assert (out / "class.txt").read_text() == "tapping_pen, playing_drums"  # DMRNet's class order
    train = rows(out / "my_train.txt")
    test = rows(out / "my_test.txt")
    assert len(train) + len(test) == 5 and test
    assert all(seconds == "3" for _, seconds, _ in train + test)
    side = {vid: ("train_img", "train") for vid, _, _ in train} | {vid: ("val_img", "test") for vid, _, _ in test}
    assert side["bbb_000003_000013"] == side["bbb_000020_000030"]  # one source video stays on one side
    for vid, _, label in train + test:
        cls = ["tapping_pen", "playing_drums"][int(label)]
        img, aud = side[vid]
        assert len(list((out / "visual" / img / "Image-01-FPS" / cls / vid).glob("*.jpg"))) == 3
        with wave.open(str(out / "audio" / aud / cls / f"{vid}.wav")) as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 16000, 2)
            assert abs(w.getnframes() - 3 * 16000) < 0.1 * 16000
    assert "tapping_pen/broken_000000_000010\t" in (out / UNREADABLE_FILE).read_text()

    main(["prepare", "kinetics_sounds", str(raw), str(out), "--no-progress", "--test-fraction", "0.4"])
    assert "prepared 0, skipped 5 (already done), unreadable 1" in capsys.readouterr().out


def test_kinetics_sounds_video_without_audio_is_unreadable(tmp_path: Path, tiny_flv: Path, capsys) -> None:
    (tmp_path / "raw" / "singing").mkdir(parents=True)
    shutil.copyfile(tiny_flv, tmp_path / "raw" / "singing" / "x.flv")
    main(["prepare", "kinetics_sounds", str(tmp_path / "raw"), str(tmp_path / "out"), "--no-progress"])
    assert "singing/x: " in capsys.readouterr().out
    assert "no audio stream" in (tmp_path / "out" / UNREADABLE_FILE).read_text()


def test_layout_and_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as error:
        main(["prepare", "crema_d", str(tmp_path), str(tmp_path / "out")])
    assert error.value.code == 2
    assert "VideoFlash" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main(["prepare", "avmnist", str(tmp_path), str(tmp_path / "out")])
    assert error.value.code == 2
    with pytest.raises(SystemExit) as error:
        main(["prepare", "crema_d", str(tmp_path), str(tmp_path / "out"), "--test-fraction", "1.5"])
    assert error.value.code == 2


def test_missing_extra_says_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(SystemExit) as error:
        main(["prepare", "crema_d", str(tmp_path), str(tmp_path / "out")])
    assert error.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mmrobust[video]'" in err[0]
