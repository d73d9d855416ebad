"""Per-modality file readers for the manifest dataset: ``.npy`` arrays, images and audio.

Each reader turns one file into a float tensor of a fixed shape and applies its normalization
``(x − mean) / std`` (per channel). Readers are built from config dicts such as
``{type: image, size: [112, 112], channels: 3, mean: [0.5], std: [0.5]}``; the manifest dataset merges each
modality's dict over ``dataset.reader_defaults.<type>`` (every key of every reader, with its default).

- ``npy``: a ``.npy`` array, optionally given a channel axis (``channels: add``: ``[H, W] -> [1, H, W]``;
  ``channels_last: true``: ``[H, W, C] -> [C, H, W]``) and resized bilinearly (``size: [H, W]``).
- ``image``: a PNG/JPEG as ``[channels, H, W]`` in [0, 1], resized to ``size``.
- ``audio``: a ``.wav``/``.flac`` as a log-mel spectrogram ``[1, n_mels, frames]`` (default), a log-|STFT|
  ``[1, n_fft // 2 + 1, frames]`` or the waveform ``[1, T]`` (``features``).

``probe(path)`` is the cheap check run on every file when a dataset is built: it reads only the header
(``.npy`` header, image header, sound-file header) and returns the output shape, refusing files whose
header declares more memory than the caps allow (``max_array_bytes`` for arrays and audio,
``max_image_pixels`` for images, a decompression-bomb guard) before anything is allocated.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrobust.data.mel import frames, log_mel_spectrogram, mel_filterbank
from mmrobust.registry import ConfigError, Registry, validate_kwargs

READERS: Registry[Reader] = Registry("reader")
DEFAULT_MAX_ARRAY_BYTES = 256 * 2**20  # 256 MiB per file
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # 50 M pixels per image
FEATURES = ("waveform", "log_stft", "log_mel")  # the audio reader's outputs


def check_size(size: Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` as ``(H, W)``; anything but two integers > 0 (or None) is one ValueError line."""
    if size is None:
        return None
    values = list(size)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"size: expected [H, W], two integers > 0, got {values}")
    return values[0], values[1]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two dimensions (antialiased when shrinking, like PIL's BILINEAR).

    Shape: ``[H, W]`` or ``[C, H, W]`` -> the same rank with ``(H, W) = size``.
    """
    if tuple(x.shape[-2:]) == size:
        return x
    batch = x.reshape(1, -1, *x.shape[-2:])
    out = torch.nn.functional.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*x.shape[:-2], *size)


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
    """A NumPy ``.npy`` array as float32, optionally given a channel axis and resized.

    Args:
        shape: the expected OUTPUT shape (after ``channels``/``channels_last``/``size``); None: the most common one.
        channels: ``"add"`` puts a channel axis in front (``[H, W] -> [1, H, W]``); None keeps the array as is.
        channels_last: the file is channels-last; its last axis moves to the front (``[H, W, C] -> [C, H, W]``).
        size: ``[H, W]``: bilinear resize of the last two axes (``[H, W]`` or ``[C, H, W]`` after the above).
        mean, std: per-channel normalization ``(x − mean) / std`` (over the first axis).

    Shape: file ``[H, W]`` -> ``[1, H, W]`` (``channels: add``), ``[H, W, C]`` -> ``[C, H, W]`` (``channels_last``),
    then ``[..., size[0], size[1]]``; other arrays (vectors) pass through unchanged.
    """

    def __init__(
        self,
        shape: list[int] | None = None,
        channels: str | None = None,
        channels_last: bool = False,
        size: list[int] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(mean, std)
        if channels not in (None, "add"):
            raise ValueError(f"channels: expected 'add' (a channel axis in front) or null, got {channels!r}")
        if channels is not None and channels_last:
            raise ValueError("channels: 'add' and channels_last: true both set; use one ([H, W] or [H, W, C] files)")
        self.add_channel = channels == "add"
        self.channels_last = channels_last
        self.size = check_size(size)
        self.shape = tuple(shape) if shape else None

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape ``read`` returns for a file of ``shape``; ValueError when the options do not fit it."""
        out = tuple(shape)
        if self.channels_last:
            if len(out) < 2:
                raise ValueError(f"channels_last needs an array of >= 2 dimensions, the file has shape {out}")
            out = (out[-1], *out[:-1])
        if self.add_channel:
            out = (1, *out)
        if self.size is not None:
            if len(out) not in (2, 3):
                raise ValueError(f"size needs a [H, W] or [C, H, W] array, the file gives shape {out}")
            out = (*out[:-2], *self.size)
        return out

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
        return self.output_shape(self.header(path)[0])

    def read(self, path: Path) -> torch.Tensor:
        self.output_shape(self.header(path)[0])  # refuse a bad file before np.load allocates it
        x = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        if self.channels_last:
            x = x.movedim(-1, 0).contiguous()
        if self.add_channel:
            x = x[None]
        if self.size is not None:
            x = resize(x, self.size)
        return x


@READERS.register("image")
class ImageReader(Reader):
    """A PNG/JPEG image resized to ``size`` (H, W) as ``[channels, H, W]`` in [0, 1].

    8-bit images are divided by 255 and 16-bit ones (depth PNGs) by 65535. ``channels`` 1 reads
    grayscale, 3 reads RGB (a grayscale or 16-bit file is repeated). ``size`` None keeps the file's size.

    Shape: file ``H0 x W0`` -> ``[channels, size[0], size[1]]`` (or ``[channels, H0, W0]``).
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
            raise ValueError(f"channels: expected 1 (grayscale) or 3 (RGB), got {channels!r}")
        self.size = check_size(size)
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
    """A sound file (``.wav``/``.flac``), mixed to mono, resampled to ``sample_rate`` (soxr), tiled to at least
    ``seconds`` and cut to exactly ``seconds`` (``T = round(sample_rate · seconds)`` samples), clipped to [−1, 1],
    then turned into ``features``:

    - ``log_mel`` (default, for classification models): ``log(W · |STFT|² + 1e-6)`` with the HTK mel filters
      ``W`` of ``mmrobust.data.mel`` (``n_mels`` triangles from ``f_min`` to ``f_max``, default Nyquist);
    - ``log_stft``: ``log(|STFT| + 1e-7)``, every one-sided bin;
    - ``waveform``: the samples themselves.

    The STFT uses a Hann window of ``n_fft`` samples, hop ``hop`` (0: ``n_fft // 4``) and centred frames. The
    defaults suit 16 kHz speech: 25 ms windows (``n_fft`` 400), 10 ms hop (160), 64 mel bands.

    Shape: ``[1, n_mels, 1 + T // hop]`` (log_mel), ``[1, n_fft // 2 + 1, 1 + T // hop]`` (log_stft) or ``[1, T]``
    (waveform).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        features: str = "log_mel",
        n_fft: int = 400,
        hop: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(mean, std)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate: expected an integer > 0 (Hz), got {sample_rate}")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds: expected a number > 0, got {seconds}")
        if features not in FEATURES:
            raise ValueError(f"features: expected one of {list(FEATURES)}, got {features!r}")
        self.sample_rate = sample_rate
        self.length = max(1, round(sample_rate * seconds))
        self.features = features
        self.n_fft = n_fft
        self.hop = hop or max(1, n_fft // 4)
        self.filters: torch.Tensor | None = None
        if features == "waveform":
            self.shape = (1, self.length)
            return
        if n_fft < 2:
            raise ValueError(f"n_fft: expected an integer >= 2 for features={features}, got {n_fft}")
        if hop < 0:
            raise ValueError(f"hop: expected an integer >= 0 (0: n_fft // 4), got {hop}")
        if n_fft // 2 >= self.length:
            raise ValueError(
                f"n_fft: {n_fft} is too long for {seconds} s at {sample_rate} Hz ({self.length} samples); "
                f"expected n_fft < {2 * self.length}"
            )
        self.window = torch.hann_window(n_fft)
        if features == "log_stft":
            self.shape = (1, n_fft // 2 + 1, frames(self.length, self.hop))
            return
        self.filters = mel_filterbank(n_fft, sample_rate, n_mels, f_min, f_max)
        empty = int((self.filters.sum(dim=1) == 0).sum())
        if empty:
            raise ValueError(
                f"n_mels: {n_mels} bands are too many for n_fft={n_fft} ({n_fft // 2 + 1} bins): {empty} bands hold "
                "no STFT bin; lower n_mels or raise n_fft"
            )
        self.shape = (1, n_mels, frames(self.length, self.hop))

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
        if self.features == "waveform":
            return x[None]
        if self.filters is not None:
            return log_mel_spectrogram(x, self.filters, self.n_fft, self.hop, self.window)[None]
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, return_complex=True)  # [F, frames]
        return torch.log(spec.abs() + 1e-7)[None]


def full_config(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"type": name, **every constructor default, **options}``: the complete settings of a reader, as the
    deploy spec records them (so a later change of a default does not change a trained model's inputs)."""
    params = inspect.signature(READERS.get(name)).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return {"type": name, **defaults, **dict(options)}


def check_reader_defaults(
    defaults: Mapping[str, Any] | None, where: str = "dataset.reader_defaults"
) -> dict[str, dict[str, Any]]:
    """Validate ``{reader type: {option: value}}`` (``dataset.reader_defaults``): a known type, known keys of the
    right types; one ``ConfigError`` line naming the key otherwise."""
    if defaults is None:
        return {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{reader type: {{option: value}}}}, got {defaults!r}")
    checked: dict[str, dict[str, Any]] = {}
    for name, options in defaults.items():
        if name not in READERS:
            raise ConfigError(f"{where}.{name}: unknown reader type; valid reader types: {', '.join(READERS.names())}")
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.{name}: expected a mapping of {name} reader options, got {options!r}")
        validate_kwargs(READERS.get(name), options, prefix=f"{where}.{name}", provided=set())
        checked[str(name)] = dict(options)
    return checked


def upgrade_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A reader config recorded before the audio reader had ``features`` (its old defaults: ``n_fft`` 0 gave the
    waveform, ``n_fft > 0`` the log-|STFT| with hop ``n_fft // 4``), rewritten to mean the same today."""
    out = dict(config)
    if out.get("type") == "audio" and "features" not in out:
        out["features"] = "log_stft" if out.get("n_fft") else "waveform"
        out.setdefault("hop", 0)
    return out
