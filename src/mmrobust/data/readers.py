"""Per-modality file readers for the manifest dataset: ``.npy`` arrays, images and audio.

Each reader turns one file into a float tensor of a fixed shape and applies its normalization
``(x − mean) / std`` (per channel). Readers are built from config dicts such as
``{type: image, size: [112, 112], channels: 3, mean: [0.5], std: [0.5]}``.

``probe(path)`` is the cheap check run on every file when a dataset is built: it reads only the header
(``.npy`` header, image header, sound-file header) and returns the output shape, refusing files whose
header declares more memory than the caps allow (``max_array_bytes`` for arrays and audio,
``max_image_pixels`` for images, a decompression-bomb guard) before anything is allocated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrobust.registry import Registry

READERS: Registry[Reader] = Registry("reader")
DEFAULT_MAX_ARRAY_BYTES = 256 * 2**20  # 256 MiB per file
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # 50 M pixels per image


class Reader:
    """Reads one modality file. ``shape`` is the per-sample output shape, or None until first read.

    ``max_array_bytes`` / ``max_image_pixels`` are the memory caps (set by the dataset from its config).
    """

    shape: tuple[int, ...] | None = None
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32)

    def read(self, path: Path) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def probe(self, path: Path) -> tuple[int, ...] | None:
        """Check the file from its header only; return the output shape (None: known only after a read).

        Raises OSError (missing, unreadable) or ValueError (not that format, over a memory cap).
        """
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        return self.shape

    def __call__(self, path: Path) -> torch.Tensor:
        x = self.read(path)
        if self.mean is not None or self.std is not None:
            # per-channel statistics broadcast over the trailing dimensions: [C] -> [C, 1, ..., 1]
            view = (-1,) + (1,) * (x.dim() - 1) if x.dim() > 1 else (-1,)
            if self.mean is not None:
                x = x - self.mean.view(view)
            if self.std is not None:
                x = x / self.std.view(view)
        return x


@READERS.register("npy")
class NpyReader(Reader):
    """A NumPy ``.npy`` array; ``shape`` (optional) is checked, otherwise taken from the first file."""

    def __init__(
        self, shape: list[int] | None = None, mean: list[float] | None = None, std: list[float] | None = None
    ) -> None:
        super().__init__(mean, std)
        self.shape = tuple(shape) if shape else None

    def header(self, path: Path) -> tuple[tuple[int, ...], np.dtype]:
        """The shape and dtype declared by the ``.npy`` header, checked against ``max_array_bytes`` and
        against the file size (a truncated file) without reading the data."""
        from numpy.lib import format as npy_format

        with path.open("rb") as f:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"dtype {dtype} is not a numeric array")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.max_array_bytes:
            raise ValueError(
                f"header declares shape {tuple(shape)} {dtype} = {nbytes / 2**20:.1f} MiB, over "
                f"dataset.max_array_bytes={self.max_array_bytes}"
            )
        size = path.stat().st_size
        if size < offset + nbytes:
            raise ValueError(f"truncated: the header declares {nbytes} bytes of data, the file has {size - offset}")
        return tuple(shape), dtype

    def probe(self, path: Path) -> tuple[int, ...] | None:
        return self.header(path)[0]

    def read(self, path: Path) -> torch.Tensor:
        self.header(path)  # refuse an oversized or truncated file before np.load allocates it
        return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))


@READERS.register("image")
class ImageReader(Reader):
    """A PNG/JPEG image resized to ``size`` (H, W) as ``[channels, H, W]`` in [0, 1].

    8-bit images are divided by 255 and 16-bit ones (depth PNGs) by 65535. ``channels`` 1 reads
    grayscale, 3 reads RGB.
    """

    def __init__(
        self,
        size: list[int] | None = None,
        channels: int = 3,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(mean, std)
        if channels not in (1, 3):
            raise ValueError(f"image reader: channels must be 1 or 3, got {channels}")
        self.size = tuple(size) if size else None
        self.channels = channels
        self.shape = (channels, *self.size) if self.size else None

    def _open(self, path: Path) -> Any:
        """Open an image lazily (header only) and refuse one over ``max_image_pixels``."""
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(path)
            except Image.DecompressionBombError as error:
                raise ValueError(
                    f"decompression bomb refused ({error}); dataset.max_image_pixels={self.max_image_pixels}"
                ) from error
        w, h = img.size
        if w * h > self.max_image_pixels:
            img.close()
            raise ValueError(
                f"{w}x{h} = {w * h} pixels, over dataset.max_image_pixels={self.max_image_pixels} "
                "(a decompression-bomb guard)"
            )
        return img

    def probe(self, path: Path) -> tuple[int, ...] | None:
        with self._open(path) as img:
            w, h = img.size
        return self.shape or (self.channels, h, w)

    def read(self, path: Path) -> torch.Tensor:
        from PIL import Image

        with self._open(path) as opened:
            size = None if self.size is None else (self.size[1], self.size[0])  # PIL takes (W, H)
            img = opened if size is None else opened.resize(size, Image.Resampling.BILINEAR)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[None], self.channels, axis=0)
            else:
                arr = np.asarray(img.convert("RGB" if self.channels == 3 else "L"), dtype=np.float32) / 255.0
                arr = arr.transpose(2, 0, 1) if arr.ndim == 3 else arr[None]
        return torch.from_numpy(np.ascontiguousarray(arr))


@READERS.register("audio")
class AudioReader(Reader):
    """A sound file (``.wav``/``.flac``), mixed to mono, resampled to ``sample_rate``, tiled to at least
    ``seconds`` and cut to exactly ``seconds``, clipped to [−1, 1].

    Output ``[1, T]`` (waveform, ``n_fft = 0``) or the log-magnitude STFT ``[1, n_fft//2 + 1, frames]``
    computed as ``log(|STFT| + 1e-7)``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        n_fft: int = 0,
        hop: int = 0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(mean, std)
        self.sample_rate = sample_rate
        self.length = round(sample_rate * seconds)
        self.n_fft = n_fft
        self.hop = hop or max(1, n_fft // 4)
        if n_fft:
            frames = 1 + self.length // self.hop
            self.shape = (1, n_fft // 2 + 1, frames)
        else:
            self.shape = (1, self.length)

    def probe(self, path: Path) -> tuple[int, ...] | None:
        import soundfile

        info = soundfile.info(str(path))
        if info.frames <= 0:
            raise ValueError("empty audio file")
        nbytes = info.frames * info.channels * 4
        if nbytes > self.max_array_bytes:
            raise ValueError(
                f"{info.frames} frames x {info.channels} channels = {nbytes / 2**20:.1f} MiB as float32, over "
                f"dataset.max_array_bytes={self.max_array_bytes}"
            )
        return self.shape

    def read(self, path: Path) -> torch.Tensor:
        import soundfile
        import soxr

        self.probe(path)  # refuse an oversized file before decoding it
        wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if rate != self.sample_rate:
            wave = soxr.resample(wave, rate, self.sample_rate).astype(np.float32)
        if len(wave) == 0:
            raise ValueError("empty audio file")
        wave = np.tile(wave, -(-self.length // len(wave)))[: self.length]
        x = torch.from_numpy(np.clip(wave, -1.0, 1.0))
        if not self.n_fft:
            return x[None]
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(x, self.n_fft, self.hop, window=window, return_complex=True)  # [F, frames]
        return torch.log(spec.abs() + 1e-7)[None]
