"""Small convolutional encoders that adapt to the input size, the ones ``model=auto`` picks (``models/auto.py``).

- ``conv`` (``ConvEncoder``): images ``[C, H, W]`` of any size and channel count, 8×8 to 224 px and more.
- ``spectrogram_cnn`` (``SpectrogramEncoder``): spectrograms ``[C, F, T]`` (frequency × time), e.g. the log-mel
  output of the audio reader.

Both are stages of ``blocks`` conv3×3-BN-ReLU layers (``conv_blocks.conv_bn_relu``) whose first layer may
halve the map; how many halvings they do is fixed from the input size at construction, so a tiny 8×8 input is
not pooled away and a 224 px one does not keep a 224 px map through every stage. Channels double from stage to
stage (16, 32, 64, 128 by default: the wide stages run on small maps, which keeps them cheap on a CPU). Both end
in a global pooling, so their output is a vector of ``channels[-1]`` features (128 by default) whatever the
input size.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.models.conv_blocks import conv_bn_relu
from mmrobust.models.encoders import ENCODERS

MIN_MAP = 4  # no halving takes an axis below this many pixels


def halvings(size: int, limit: int = MIN_MAP) -> int:
    """How many times ``size`` can be halved (rounding up) and stay >= ``limit``: ``⌊log2(size / limit)⌋``, >= 0.

    8 -> 1, 32 -> 3, 101 -> 4, 224 -> 5.
    """
    return (size // limit).bit_length() - 1 if size >= limit else 0


def image_shape(kind: str, in_shape: tuple[int, ...], channels: list[int], blocks: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of an input ``[C, H, W]`` or ``[H, W]`` (one channel, added in ``forward``); checks options."""
    if len(in_shape) not in (2, 3) or min(in_shape) < 1:
        raise ValueError(f"{kind} encoder needs inputs [C, H, W] or [H, W], got shape {list(in_shape)}")
    if not channels or min(channels) < 1 or blocks < 1:
        raise ValueError(f"{kind} encoder needs channels > 0 (one per stage) and blocks >= 1, got {channels}, {blocks}")
    c, h, w = (1, *in_shape) if len(in_shape) == 2 else in_shape
    return c, h, w


def stage(cin: int, cout: int, blocks: int, stride: tuple[int, int]) -> nn.Sequential:
    """``blocks`` conv3×3-BN-ReLU layers, the first with ``stride`` (1 or 2 per axis)."""
    first = conv_bn_relu(cin, cout, 3)
    if stride != (1, 1):
        first[0] = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    return nn.Sequential(first, *(conv_bn_relu(cout, cout, 3) for _ in range(blocks - 1)))


@ENCODERS.register("conv")
class ConvEncoder(nn.Module):
    """A small CNN for images of any size and channel count, global-average pooled to a vector.

    With ``S = len(channels)`` stages and ``h = ⌊log2(min(H, W) / 4)⌋`` halvings that keep the map >= 4 px:
    the stem (a conv3×3-BN-ReLU to ``channels[0]``) does ``max(0, h - S)`` of them with stride 2 (large inputs),
    and the last ``min(h, S)`` stages do one each (stride 2 in their first conv). The result is pooled,
    ``z = mean_{y,x} map[:, :, y, x]``.

    Examples (default ``channels=[16, 32, 64, 128]``): 8×8 -> last map 4×4 (only the last stage halves);
    32×48 -> 4×6; 224×224 -> 7×7 (stem 224 -> 112, stages 112 -> 56 -> 28 -> 14 -> 7).

    Args:
        in_shape: ``(C, H, W)``, any C, H, W >= 1, or ``(H, W)`` (one channel).
        channels: output channels of each stage; the encoder's output size is ``channels[-1]``.
        blocks: conv3×3-BN-ReLU layers per stage.

    Shape: [B, C, H, W] (or [B, H, W]) -> [B, channels[-1]] (128 by default).
    """

    def __init__(self, in_shape: tuple[int, ...], channels: list[int] | None = None, blocks: int = 2) -> None:
        super().__init__()
        channels = list(channels or [16, 32, 64, 128])
        c, h, w = image_shape("conv", in_shape, channels, blocks)
        self.add_channel = len(in_shape) == 2
        steps = halvings(min(h, w))
        stem_steps, stage_steps = max(0, steps - len(channels)), min(steps, len(channels))
        stem: list[nn.Module] = [conv_bn_relu(c, channels[0], 3, stride=2 if stem_steps else 1)]
        stem += [conv_bn_relu(channels[0], channels[0], 3, stride=2) for _ in range(stem_steps - 1)]
        self.stem = nn.Sequential(*stem)
        first_halving = len(channels) - stage_steps
        self.stages = nn.Sequential(
            *(
                stage(cin, cout, blocks, (2, 2) if i >= first_halving else (1, 1))
                for i, (cin, cout) in enumerate(zip([channels[0], *channels[:-1]], channels))
            )
        )
        self.out_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_channel:
            x = x.unsqueeze(1)  # [B, H, W] -> [B, 1, H, W]
        x = self.stages(self.stem(x))  # [B, channels[-1], h', w']
        return x.mean(dim=(2, 3))  # [B, channels[-1]]


@ENCODERS.register("spectrogram_cnn")
class SpectrogramEncoder(nn.Module):
    """A CNN for spectrograms ``[C, F, T]`` (frequency × time): per-bin input normalization, conv stages that
    halve each axis only while it stays >= 4, then mean over frequency and mean + max over time.

    1. ``x ← BN(x)`` with one BatchNorm statistic per (channel, frequency bin), as PANNs' ``bn0`` (log-mel
       bins have very different scales; ``input_norm: false`` turns it off).
    2. ``S = len(channels)`` stages; the last ``min(⌊log2(F/4)⌋, S)`` halve the frequency axis and the last
       ``min(⌊log2(T/4)⌋, S)`` the time axis (stride 2 per axis in the stage's first conv).
    3. ``z = mean_t(g) + max_t(g)`` with ``g = mean_f(map)``: the mean keeps stationary sounds, the max short
       events anywhere in the clip.

    Example (default ``channels=[16, 32, 64, 128]``): a 64 × 101 log-mel -> last map 4 × 7.

    Args:
        in_shape: ``(C, F, T)``, usually C = 1, or ``(F, T)`` (one channel).
        channels: output channels of each stage; the encoder's output size is ``channels[-1]``.
        blocks: conv3×3-BN-ReLU layers per stage.
        input_norm: the per-bin input BatchNorm of step 1.

    Shape: [B, C, F, T] (or [B, F, T]) -> [B, channels[-1]] (128 by default).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        channels: list[int] | None = None,
        blocks: int = 2,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        channels = list(channels or [16, 32, 64, 128])
        c, f, t = image_shape("spectrogram_cnn", in_shape, channels, blocks)
        self.add_channel = len(in_shape) == 2
        n = len(channels)
        f_from, t_from = n - min(halvings(f), n), n - min(halvings(t), n)  # first stage that halves each axis
        self.input_norm = nn.BatchNorm1d(c * f) if input_norm else None
        self.stages = nn.Sequential(
            *(
                stage(cin, cout, blocks, (2 if i >= f_from else 1, 2 if i >= t_from else 1))
                for i, (cin, cout) in enumerate(zip([c, *channels[:-1]], channels))
            )
        )
        self.out_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_channel:
            x = x.unsqueeze(1)  # [B, F, T] -> [B, 1, F, T]
        if self.input_norm is not None:
            b, c, f, t = x.shape
            x = self.input_norm(x.reshape(b, c * f, t)).reshape(b, c, f, t)  # per (channel, bin) statistics
        g = self.stages(x).mean(dim=2)  # [B, channels[-1], T']
        return g.mean(dim=2) + g.amax(dim=2)  # [B, channels[-1]]
