"""Input corruptions: one registry of functions ``x -> corrupted copy of x`` with one interface.

``corrupt(x, kind, strength, generator)`` corrupts EVERY sample of one modality's batch ``x`` ``[B, ...]``, given
as the model receives it (normalized). The evaluation protocol of QMF / UDML (``evaluation.corrupted``) and the
training augmentation (``augment_batch``) both call it; ``corrupt_indexed`` seeds one generator per sample from
``(seed, dataset index, stream)`` so that the corrupted test set does not depend on the batch size or on the
number of processes.

Units. The inputs are normalized and mmrobust does not know each modality's normalization, so every strength is
expressed relative to the sample itself. The reference protocol (QMF, ICML 2023; UDML's copy in
``shicaiwei123/UDML`` ``text-image-classification/src/data/helpers.py``) corrupts raw 0–255 images with
``s ∈ {5, 10}``; we read the sample's value range ``r = max − min`` (per sample and channel) as that 0–255 range:

- ``gaussian``: ``x' = clip(x + σ·n, min, max)``, ``n ~ N(0, 1)``, ``σ = (10·s / 255)·r``. QMF adds noise of std
  ``10·s`` on the 0–255 scale (``AddGaussianNoise(variance=10·s)``, std = ``variance``) and clips at 255; we clip to
  the sample's range at both ends (QMF's uint8 cast wraps negative values around, a bug we do not copy). Images
  ``[B, C, H, W]`` share one noise map across channels, as QMF does.
- ``salt``: each element (each pixel, shared across channels, for images) independently becomes ``min`` (pepper) or
  ``max`` (salt) with probability ``p = s / 100``, half each. QMF uses ``s / 100`` as the probability of applying a
  fixed density-0.1 salt-and-pepper noise to a whole image; ``corrupt`` corrupts every sample, so the strength is
  mapped onto the per-element probability instead (``s = 10`` → 10 % of the pixels).
- ``blur`` (images ``[B, C, H, W]``, any channel count): Gaussian kernel of standard deviation ``σ = s`` pixels,
  size ``2·⌈3σ⌉ + 1``, separable, reflect padding (replicate when the kernel exceeds the image). No randomness.
- ``occlusion`` (images): one square of side ``round(sqrt(s/100 · H·W))`` at a uniform random position is set to 0
  (the normalization mean), i.e. ``s`` % of the area.
- ``time_mask`` (spectrograms ``[B, F, T]`` or ``[B, C, F, T]``): ``round(s/100 · T)`` consecutive time frames
  from a random start are set to 0 (UDML's ``AddTimeMask``, with the fraction given in percent).
- ``feature_noise`` (vectors ``[B, D]``): ``x' = x + (s/10)·std(x_i)·n`` with ``std(x_i)`` the sample's std over its
  ``D`` features (``s = 10``: noise as large as the signal).

Strength 0 leaves ``x`` unchanged for every kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from mmrobust.registry import ConfigError

CorruptFn = Callable[[torch.Tensor, float, "torch.Generator | None"], torch.Tensor]
_MASK64 = (1 << 63) - 1


# ------------------------------------------------------------------------------------------- helpers
def _randn(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, returned on ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device).to(like.device, like.dtype)


def _rand(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), generator=generator, device=device).to(like.device)


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    """Dimensions a per-(sample, channel) statistic reduces over: all but batch (and channel for images)."""
    return tuple(range(2 if x.dim() >= 4 else 1, x.dim()))


def _noise_shape(x: torch.Tensor) -> list[int]:
    """Noise / mask shape: one value per element, shared across channels for images ``[B, C, ...]``."""
    return [x.shape[0], 1, *x.shape[2:]] if x.dim() >= 4 else list(x.shape)


def _need(x: torch.Tensor, kind: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"corrupt: kind {kind!r} needs {expected}, got a tensor of shape {tuple(x.shape)}")


# ------------------------------------------------------------------------------------------- kinds
def gaussian(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise, std ``10·s/255`` of the sample's range, clipped to the range (module docstring).

    Shape: ``[B, ...]`` -> ``[B, ...]``.
    """
    _need(x, "gaussian", x.dim() >= 2, "a batch [B, ...] with at least one feature dimension")
    dims = _reduce_dims(x)
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)  # [B, 1|C, 1, ...]
    sigma = (10.0 * strength / 255.0) * (high - low)
    noisy = x + sigma * _randn(_noise_shape(x), generator, x)
    return torch.minimum(torch.maximum(noisy, low), high)


def salt(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper: each element is the sample's max or min with probability ``s/100`` (half each).

    Shape: ``[B, ...]`` -> ``[B, ...]``.
    """
    _need(x, "salt", x.dim() >= 2, "a batch [B, ...] with at least one feature dimension")
    if not 0 <= strength <= 100:
        raise ConfigError(f"corrupt: salt strength is a probability in percent, expected [0, 100], got {strength}")
    dims = _reduce_dims(x)
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    u = _rand(_noise_shape(x), generator, x)  # [B, 1|..., ...]
    p = strength / 100.0
    out = torch.where(u < p / 2, low, x)
    return torch.where((u >= p / 2) & (u < p), high.expand_as(x), out)


def _gaussian_kernel(sigma: float, size: int, like: torch.Tensor) -> torch.Tensor:
    radius = size // 2
    t = torch.arange(-radius, radius + 1, device=like.device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(like.dtype)


def blur(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur of each channel, kernel std ``σ = s`` pixels (separable ``conv2d``).

    Shape: ``[B, C, H, W]`` (or more leading dims before ``H, W``) -> same.
    """
    _need(x, "blur", x.dim() >= 4, "images [B, C, H, W]")
    if strength <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    size = 2 * math.ceil(3 * strength) + 1
    k = _gaussian_kernel(strength, size, x)
    y = x.reshape(-1, 1, h, w)  # [N, 1, H, W]: every channel alone
    pad = size // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode=mode), k.view(1, 1, -1, 1))
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    return y.reshape(x.shape)


def occlusion(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One square covering ``s`` % of the image area, at a random position, set to 0.

    Shape: ``[B, C, H, W]`` -> same.
    """
    _need(x, "occlusion", x.dim() >= 4, "images [B, C, H, W]")
    if not 0 <= strength <= 100:
        raise ConfigError(f"corrupt: occlusion strength is a percentage of the area, expected [0, 100], got {strength}")
    h, w = x.shape[-2:]
    side = min(round(math.sqrt(strength / 100.0 * h * w)), h, w)
    out = x.clone()
    if side == 0:
        return out
    corner = _rand([x.shape[0], 2], generator, x)  # [B, 2] in [0, 1)
    tops = (corner[:, 0] * (h - side + 1)).long().tolist()
    lefts = (corner[:, 1] * (w - side + 1)).long().tolist()
    for i, (top, left) in enumerate(zip(tops, lefts)):
        out[i, ..., top : top + side, left : left + side] = 0
    return out


def time_mask(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``round(s/100·T)`` consecutive time frames (last dimension) from a random start set to 0.

    Shape: ``[B, F, T]`` or ``[B, C, F, T]`` -> same.
    """
    _need(x, "time_mask", x.dim() >= 3, "spectrograms [B, F, T] or [B, C, F, T]")
    if not 0 <= strength <= 100:
        raise ConfigError(f"corrupt: time_mask strength is a percentage of frames, expected [0, 100], got {strength}")
    t = x.shape[-1]
    length = min(round(strength / 100.0 * t), t)
    out = x.clone()
    if length == 0:
        return out
    starts = (_rand([x.shape[0]], generator, x) * (t - length + 1)).long().tolist()
    for i, start in enumerate(starts):
        out[i, ..., start : start + length] = 0
    return out


def feature_noise(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise of std ``(s/10)·std(x_i)``, the sample's std over its features.

    Shape: ``[B, D]`` -> ``[B, D]``.
    """
    _need(x, "feature_noise", x.dim() == 2, "feature vectors [B, D]")
    scale = (strength / 10.0) * x.std(dim=1, keepdim=True, unbiased=False)  # [B, 1]
    return x + scale * _randn(x.shape, generator, x)


CORRUPTIONS: dict[str, CorruptFn] = {
    "gaussian": gaussian,
    "salt": salt,
    "blur": blur,
    "occlusion": occlusion,
    "time_mask": time_mask,
    "feature_noise": feature_noise,
}


# ------------------------------------------------------------------------------------------- interface
def _check(x: torch.Tensor, kind: str, strength: float) -> CorruptFn:
    if kind not in CORRUPTIONS:
        raise ConfigError(f"corrupt: unknown kind {kind!r}; valid kinds: {sorted(CORRUPTIONS)}")
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and strength >= 0):
        raise ConfigError(f"corrupt: strength of {kind!r} must be a finite number >= 0, got {strength!r}")
    if not torch.is_floating_point(x):
        raise ConfigError(f"corrupt: kind {kind!r} needs floating-point inputs, got {x.dtype}")
    return CORRUPTIONS[kind]


def corrupt(x: torch.Tensor, kind: str, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of every sample of ``x`` (see the module docstring for each kind and its unit).

    Args:
        x: one modality's batch, normalized as the model receives it.
        kind: a name of ``CORRUPTIONS``.
        strength: the protocol's strength ``s`` (>= 0; 0 = unchanged).
        generator: the source of randomness (torch's default generator when None).

    Shape: ``[B, ...]`` -> ``[B, ...]``, same dtype and device. A kind that does not fit the shape raises one
    ``ConfigError`` line.
    """
    fn = _check(x, kind, float(strength))
    if x.shape[0] == 0:
        return x.clone()
    return fn(x, float(strength), generator)


def corrupt_fraction(
    x: torch.Tensor, kind: str, strength: float, fraction: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt exactly ``round(fraction·B)`` samples (half up) chosen with ``generator``; the others are kept bit
    for bit. Returns ``(x', mask)`` with ``mask`` the bool ``[B]`` of corrupted samples.

    Shape: ``[B, ...]`` -> ``([B, ...], [B])``.
    """
    if not 0 <= fraction <= 1:
        raise ConfigError(f"corrupt.fraction: expected a number in [0, 1], got {fraction!r}")
    b = x.shape[0]
    count = math.floor(fraction * b + 0.5)
    device = generator.device if generator is not None else torch.device("cpu")
    chosen = torch.randperm(b, generator=generator, device=device)[:count].to(x.device)
    mask = torch.zeros(b, dtype=torch.bool, device=x.device)
    mask[chosen] = True
    out = x.clone()
    if count:
        out[mask] = corrupt(x[mask], kind, strength, generator)
    return out, mask


def sample_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed of one sample from ``(seed, dataset index, stream)`` (stream: e.g. the modality index).

    SplitMix64-style mixing, so nearby indices give unrelated streams."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK64


def corrupt_indexed(
    x: torch.Tensor,
    kind: str,
    strength: float,
    index: torch.Tensor,
    seed: int,
    stream: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Corrupt the samples of ``x`` selected by ``mask`` (all when None), each with its own CPU generator seeded
    by ``sample_seed(seed, index[i], stream)``: the result of a sample does not depend on its batch.

    Shape: x ``[B, ...]``, index ``[B]``, mask ``[B]`` bool -> ``[B, ...]``.
    """
    _check(x, kind, float(strength))
    out = x.clone()
    rows = range(x.shape[0]) if mask is None else torch.nonzero(mask.cpu()).flatten().tolist()
    ids = index.cpu().tolist()
    for i in rows:
        g = torch.Generator().manual_seed(sample_seed(seed, int(ids[i]), stream))
        out[i : i + 1] = corrupt(x[i : i + 1], kind, strength, g)
    return out


def chosen_samples(n: int, fraction: float, seed: int, stream: int) -> torch.Tensor:
    """Bool ``[n]``: exactly ``round(fraction·n)`` (half up) dataset indices, chosen by ``(seed, stream)``."""
    if not 0 <= fraction <= 1:
        raise ConfigError(f"corrupt.fraction: expected a number in [0, 1], got {fraction!r}")
    g = torch.Generator().manual_seed(sample_seed(seed, -1, stream))
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[torch.randperm(n, generator=g)[: math.floor(fraction * n + 0.5)]] = True
    return chosen


def parse_corruptions(spec: str | Sequence[str]) -> list[tuple[str, float]]:
    """``"gaussian:5,salt:10"`` (or ``["gaussian:5", "salt:10"]``) -> ``[("gaussian", 5.0), ("salt", 10.0)]``.

    Bad strings raise one ``ConfigError`` line naming the item and the expected form."""
    items = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    out: list[tuple[str, float]] = []
    for item in (i.strip() for i in items):
        kind, sep, value = item.partition(":")
        try:
            strength = float(value)
        except ValueError:
            strength = math.nan
        if not sep or kind not in CORRUPTIONS or not math.isfinite(strength) or strength < 0:
            raise ConfigError(
                f"corrupt: {item!r}: expected KIND:STRENGTH items joined by ',' (e.g. gaussian:5,salt:10) with "
                f"KIND in {sorted(CORRUPTIONS)} and STRENGTH a number >= 0"
            )
        if (kind, strength) not in out:
            out.append((kind, strength))
    if not out:
        raise ConfigError("corrupt: no corruption given; expected e.g. gaussian:5,salt:10")
    return out


def check_fits(kind: str, strength: float, shape: Sequence[int], modality: str, key: str = "corrupt") -> None:
    """Raise one ``ConfigError`` line (naming ``key``) when ``kind`` cannot corrupt a modality of per-sample
    ``shape``."""
    try:
        corrupt(torch.zeros(1, *shape), kind, strength)
    except ConfigError as error:
        why = str(error).removeprefix("corrupt: ")
        raise ConfigError(f"{key}: modality {modality!r} (per-sample shape {tuple(shape)}): {why}") from None


# ------------------------------------------------------------------------------------------- training
def augment_batch(batch: Any, options: Any, seed: int, epoch: int) -> Any:
    """Training augmentation (``trainer.corrupt``, a ``TrainCorruptConfig``): each modality ``m`` of each sample is
    corrupted with probability ``rates[m]`` (default ``fraction``), by a kind drawn uniformly from ``kinds`` at a
    strength ``s = l·max_strength``, ``l ~ U[0, 1]`` (UDML's random level, 0 included). Every draw comes from a
    generator seeded by ``(seed, epoch, dataset index, modality)``: the same on one process or many, and a resumed
    run draws what an uninterrupted one would. Returns the batch unchanged when ``kinds`` is empty.

    Shape: batch.inputs[m] ``[B, ...]`` -> same.
    """
    kinds = list(options.kinds)
    if not kinds:
        return batch
    rates, fraction, top = dict(options.rates), float(options.fraction), float(options.max_strength)
    inputs = dict(batch.inputs)
    ids = batch.index.cpu().tolist()
    present = batch.present.cpu()
    for j, name in enumerate(batch.modalities):
        rate = float(rates.get(name, fraction))
        x, out = inputs[name], None
        for i, idx in enumerate(ids):
            g = torch.Generator().manual_seed(sample_seed(seed * 100_003 + epoch, int(idx), j))
            draw = torch.rand(3, generator=g).tolist()  # [corrupt?, kind, level]
            if draw[0] >= rate or not bool(present[i, j]):
                continue
            kind = kinds[min(int(draw[1] * len(kinds)), len(kinds) - 1)]
            out = x.clone() if out is None else out
            out[i : i + 1] = corrupt(x[i : i + 1], kind, draw[2] * top, g)
        if out is not None:
            inputs[name] = out
    return replace(batch, inputs=inputs)


# ------------------------------------------------------------------------------------------- config checks
def validate_corrupt_config(cfg: Any) -> None:
    """Value checks of ``trainer.corrupt`` and ``eval.corrupt`` of a ``RunConfig`` (one ``ConfigError`` line)."""
    t, e = cfg.trainer.corrupt, cfg.eval.corrupt
    for kind in t.kinds:
        if kind not in CORRUPTIONS:
            raise ConfigError(f"trainer.corrupt.kinds: unknown kind {kind!r}; valid kinds: {sorted(CORRUPTIONS)}")
    if not (math.isfinite(t.max_strength) and t.max_strength >= 0):
        raise ConfigError(f"trainer.corrupt.max_strength: expected a number >= 0, got {t.max_strength!r}")
    for key, value in [("fraction", t.fraction), *((f"rates.{m}", r) for m, r in t.rates.items())]:
        if not 0 <= value <= 1:
            raise ConfigError(f"trainer.corrupt.{key}: expected a probability in [0, 1], got {value!r}")
    if e.conditions:
        try:
            parse_corruptions(list(e.conditions))
        except ConfigError as error:
            raise ConfigError(f"eval.corrupt.conditions: {str(error).removeprefix('corrupt: ')}") from None
    if not 0 <= e.fraction <= 1:
        raise ConfigError(f"eval.corrupt.fraction: expected a number in [0, 1], got {e.fraction!r}")
    if not 0 <= e.seed <= 2**32 - 1:
        raise ConfigError(f"eval.corrupt.seed: expected an integer in [0, {2**32 - 1}], got {e.seed!r}")


def validate_corrupt_data(cfg: Any, modalities: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> None:
    """The checks that need the dataset: modality names of ``trainer.corrupt.rates`` / ``eval.corrupt.modalities``
    and whether every configured kind fits the shape of every modality it may corrupt."""
    t, e = cfg.trainer.corrupt, cfg.eval.corrupt
    for key, names in (("trainer.corrupt.rates", list(t.rates)), ("eval.corrupt.modalities", list(e.modalities))):
        for name in names:
            if name not in modalities:
                raise ConfigError(f"{key}: unknown modality {name!r}; valid modalities: {list(modalities)}")
    if t.kinds:
        for m in modalities:
            if t.rates.get(m, t.fraction) > 0:
                for kind in t.kinds:
                    check_fits(kind, 0.0, shapes[m], m, key="trainer.corrupt.kinds")
    if e.conditions:
        for m in e.modalities or modalities:
            for kind, strength in parse_corruptions(list(e.conditions)):
                check_fits(kind, strength, shapes[m], m, key="eval.corrupt.conditions")
