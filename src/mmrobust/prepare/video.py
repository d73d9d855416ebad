"""Frames at a fixed rate and 16-bit PCM audio from one video file, decoded with PyAV.

PyAV (the ``av`` package, optional extra ``mmrobust[video]``) ships its own FFmpeg inside the wheel, so no
system ffmpeg is needed. Every decoding problem becomes ``UnreadableVideo`` with a one-line reason; problems
writing the outputs (full disk, permissions) are ``OSError`` and are not caught here.

Frame selection at ``fps`` frames per second: with ``t_i`` the presentation time of decoded frame ``i``
(exact, ``pts · time_base``) and ``t_0`` the first one, frame ``i`` is kept when it is the first frame with

    t_i − t_0 ≥ k / fps        for k = 0, 1, 2, ...

so a 3 s clip gives 3 frames at 1 fps whatever its frame rate. On a constant-rate video this keeps the frames
the reference scripts keep (every ``rate``-th frame from the first) and, like them, names each kept frame by
its position in decoding order: ``{i:05d}.jpg`` (``00000.jpg``, ``00030.jpg``, ... for 30 fps).
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'mmrobust[video]'"
LFS_POINTER = b"version https://git-lfs"


class UnreadableVideo(Exception):
    """A media file that cannot be decoded; the message is the one-line reason."""


class MissingVideoExtra(ImportError):
    """PyAV is not installed."""


def require_av() -> ModuleType:
    """The ``av`` module, or ``MissingVideoExtra`` saying how to install it."""
    try:
        import av
    except ImportError as error:
        raise MissingVideoExtra(f"decoding videos needs PyAV, which is not installed: {INSTALL_HINT}") from error
    return av


def _why(error: BaseException) -> str:
    text = " ".join(str(getattr(error, "strerror", None) or error).split())
    return text or type(error).__name__


def check_not_lfs_pointer(path: Path) -> None:
    """A Git LFS pointer (a small text file left by a clone without ``git lfs pull``) is not media."""
    try:
        with path.open("rb") as f:
            head = f.read(len(LFS_POINTER))
    except OSError as error:
        raise UnreadableVideo(f"cannot read ({_why(error)})") from error
    if head == LFS_POINTER:
        raise UnreadableVideo("a Git LFS pointer, not the media file (fetch it with `git lfs pull`)")


def _open(path: Path) -> Any:
    av = require_av()
    check_not_lfs_pointer(path)
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise UnreadableVideo(f"cannot open ({_why(error)})") from error


def extract_frames(video: Path, out_dir: Path, fps: int = 1, quality: int = 95) -> int:
    """Write the frames of ``video`` selected at ``fps`` per second (module docstring) as JPEG files
    ``out_dir/{i:05d}.jpg`` and return how many were written. ``out_dir`` must exist.

    Shape: each JPEG is the video's H×W×3 RGB frame, unscaled.
    """
    av = require_av()
    step = Fraction(1, fps)
    written = 0
    with _open(video) as container:
        if not container.streams.video:
            raise UnreadableVideo("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        start: Fraction | None = None
        next_time = Fraction(0)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and frame.time_base is not None:
                    now = Fraction(frame.pts) * Fraction(frame.time_base)
                else:
                    now = Fraction(index) / Fraction(rate)
                if start is None:
                    start = now
                elapsed = now - start
                if elapsed < next_time:
                    continue
                frame.to_image().save(out_dir / f"{index:05d}.jpg", quality=quality)
                written += 1
                next_time = (elapsed // step + 1) * step
        except (av.FFmpegError, UnicodeDecodeError) as error:
            raise UnreadableVideo(f"video decoding failed after {written} frame(s) ({_why(error)})") from error
    if written == 0:
        raise UnreadableVideo("the video stream decodes to no frames")
    return written


def extract_audio(video: Path, out_wav: Path, rate: int = 16000) -> int:
    """Decode the first audio stream of ``video``, mix it down to mono, resample it to ``rate`` Hz and write
    it as 16-bit PCM WAV (what ``ffmpeg -acodec pcm_s16le -ar RATE -ac 1`` writes); return the sample count.

    Shape: the WAV holds N = duration · rate samples, 1 channel.
    """
    av = require_av()
    with _open(video) as container:
        if not container.streams.audio:
            raise UnreadableVideo("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples; container timestamps may jump
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except (av.FFmpegError, UnicodeDecodeError) as error:
            raise UnreadableVideo(f"audio decoding failed ({_why(error)})") from error
    samples = np.concatenate(chunks).astype("<i2") if chunks else np.zeros(0, dtype="<i2")
    if samples.size == 0:
        raise UnreadableVideo("the audio stream decodes to no samples")
    with wave.open(str(out_wav), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return int(samples.size)


def check_wav(path: Path) -> None:
    """A readable audio file with at least one sample (the header is read, not the samples)."""
    import soundfile

    check_not_lfs_pointer(path)
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise UnreadableVideo(f"not a readable audio file ({_why(error)})") from error
    if info.frames <= 0:
        raise UnreadableVideo("an audio file with no samples")
