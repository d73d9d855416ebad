"""Upsampling of dense feature maps and logits: ``bilinear``, ``nearest`` or ``learned``.

``learned`` is ESANet's "learned-3×3": nearest-neighbour upsampling followed by a depthwise 3×3
convolution (replicate padding) whose kernel starts as ``k kᵀ`` with ``k = [1, 2, 1] / 4``, which turns
nearest ×2 into an approximately bilinear ×2 that training may then sharpen. It is meant for factor 2.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

UpsamplingMode = Literal["bilinear", "nearest", "learned"]
UPSAMPLING_MODES = ("bilinear", "nearest", "learned")


class Upsample(nn.Module):
    """Upsample ``[B, C, h, w]`` by ``factor`` (or to an explicit ``size``).

    Args:
        mode: ``bilinear`` (``align_corners=False``), ``nearest`` or ``learned``.
        channels: C (needed by ``learned``, whose depthwise kernel has one filter per channel).
        factor: the default scale factor when ``forward`` gets no ``size``.

    Shape: [B, C, h, w] -> [B, C, factor·h, factor·w] (or [B, C, *size]).
    """

    def __init__(self, mode: str, channels: int, factor: int = 2) -> None:
        super().__init__()
        if mode not in UPSAMPLING_MODES:
            raise ValueError(f"unknown upsampling {mode!r}; valid: {', '.join(UPSAMPLING_MODES)}")
        self.mode = mode
        self.factor = factor
        self.conv: nn.Conv2d | None = None
        if mode == "learned":
            self.conv = nn.Conv2d(channels, channels, 3, groups=channels, padding=0)
            k = torch.tensor([1.0, 2.0, 1.0]) / 4
            with torch.no_grad():
                self.conv.weight.copy_((k[:, None] * k[None, :]).expand(channels, 1, 3, 3))
                assert self.conv.bias is not None
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        target = size if size is not None else (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        if self.mode == "bilinear":
            return F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=target, mode="nearest")  # [B, C, *target]
        if self.conv is not None:
            x = self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))
        return x
