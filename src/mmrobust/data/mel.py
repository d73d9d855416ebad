"""Mel filterbank and log-mel spectrogram in plain torch (no torchaudio / librosa).

The mel scale is the **HTK** formula

    mel(f) = 2595 · log10(1 + f / 700),        f(mel) = 700 · (10^(mel / 2595) − 1),

so ``mel(700 Hz) = 2595 · log10 2 ≈ 781.2`` and ``mel(1000 Hz) ≈ 1000``. The ``n_mels`` filters are triangles
between ``n_mels + 2`` points equally spaced in mel from ``f_min`` to ``f_max``: filter ``i`` rises linearly from
0 at ``f_i`` to 1 at its centre ``f_{i+1}`` and falls back to 0 at ``f_{i+2}`` (peak 1, no area normalization,
as HTK and torchaudio's default), evaluated at the STFT bin frequencies ``k · sample_rate / n_fft``:

    W[i, k] = max(0, min((f_k − f_i) / (f_{i+1} − f_i), (f_{i+2} − f_k) / (f_{i+2} − f_{i+1}))).

Adjacent triangles sum to 1 between the first and the last centre.
"""

from __future__ import annotations

import torch

LOG_OFFSET = 1e-6  # log(mel + 1e-6): the floor of the log-mel features


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel of a frequency in Hz: ``2595 · log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    """Inverse of ``hz_to_mel``: ``700 · (10^(mel / 2595) − 1)``."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_points(n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """The ``n_mels + 2`` triangle corners in Hz, equally spaced in mel; ``[1:-1]`` are the filter centres.

    Shape: ``[n_mels + 2]`` (float64).
    """
    return mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))


def mel_filterbank(
    n_fft: int, sample_rate: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filters (module docstring) over the ``n_fft // 2 + 1`` one-sided STFT bins.

    Raises ValueError (one line) for ``n_mels < 1`` or a band outside ``0 <= f_min < f_max <= sample_rate / 2``.

    Shape: ``[n_mels, n_fft // 2 + 1]`` (float32); ``mel = W @ power`` maps ``[..., F, T]`` to ``[..., n_mels, T]``.
    """
    nyquist = sample_rate / 2
    top = nyquist if f_max is None else float(f_max)
    if n_mels < 1:
        raise ValueError(f"n_mels: expected an integer >= 1, got {n_mels}")
    if not 0.0 <= f_min < top <= nyquist:
        raise ValueError(
            f"f_min, f_max: expected 0 <= f_min < f_max <= sample_rate / 2 = {nyquist}, got {f_min}, {top}"
        )
    points = mel_points(n_mels, f_min, top)  # [n_mels + 2]
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # [F]
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]  # [n_mels, 1] each
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel_spectrogram(
    wave: torch.Tensor, filters: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor | None = None
) -> torch.Tensor:
    """``log(W · |STFT(wave)|² + 1e-6)``: the power spectrum (Hann window of ``n_fft``, centred frames) through
    the mel filters ``W`` of ``mel_filterbank``.

    Shape: wave ``[T]`` -> ``[n_mels, 1 + T // hop]``.
    """
    window = torch.hann_window(n_fft) if window is None else window
    spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True)  # [F, frames]
    power = spec.real.square() + spec.imag.square()
    return torch.log(filters @ power + LOG_OFFSET)


def frames(length: int, hop: int) -> int:
    """Number of centred STFT frames of a ``length``-sample signal: ``1 + length // hop``."""
    return 1 + length // hop


__all__ = ["LOG_OFFSET", "frames", "hz_to_mel", "log_mel_spectrogram", "mel_filterbank", "mel_points", "mel_to_hz"]
