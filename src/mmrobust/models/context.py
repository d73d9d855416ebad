"""Context modules for dense prediction: pyramid pooling (PSPNet, Zhao et al. 2017; ESANet's "ppm").

``PyramidPooling``: for each bin count b, average-pool the map to a b×b grid, project each cell to
``C_in / len(bins)`` channels (1×1 conv + BN + ReLU), upsample back to h×w; concatenate with the input
and project to ``out_channels`` (1×1 conv + BN + ReLU):

    y = φ([x, up(ψ_1(pool_{b_1}(x))), ..., up(ψ_n(pool_{b_n}(x)))])

ESANet uses bins (1, 5) on the 1/32 map (15×20 for 480×640). On small inputs the map can be smaller
than a bin (2×2 for 64×64): the grid is then clipped to the map, ``min(b, h) × min(b, w)`` cells, so
pooling never has to invent cells that the map does not have (adapted to the input size, like ESANet's
"appm" adapts its bins to the training size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.models.conv_blocks import conv_bn_relu


class PyramidPooling(nn.Module):
    """Pyramid pooling module. Shape: [B, C_in, h, w] -> [B, out_channels, h, w].

    Args:
        in_channels, out_channels: C_in and the output channels.
        bins: grid sizes of the pooled branches.
        upsampling: ``bilinear`` or ``nearest`` (how the pooled branches return to h×w).
    """

    def __init__(
        self, in_channels: int, out_channels: int, bins: Sequence[int] = (1, 5), upsampling: str = "bilinear"
    ) -> None:
        super().__init__()
        if not bins or any(b < 1 for b in bins):
            raise ValueError(f"pyramid pooling bins must be positive integers, got {list(bins)}")
        if upsampling not in ("bilinear", "nearest"):
            raise ValueError(f"pyramid pooling upsampling must be bilinear or nearest, got {upsampling!r}")
        reduced = max(in_channels // len(bins), 1)
        self.bins = tuple(int(b) for b in bins)
        self.upsampling = upsampling
        self.branches = nn.ModuleList(conv_bn_relu(in_channels, reduced, 1) for _ in self.bins)
        self.project = conv_bn_relu(in_channels + reduced * len(self.bins), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = [x]
        for b, branch in zip(self.bins, self.branches):
            y = branch(F.adaptive_avg_pool2d(x, (min(b, h), min(b, w))))  # [B, C_in/n, b, b]
            if self.upsampling == "bilinear":
                out.append(F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False))
            else:
                out.append(F.interpolate(y, size=(h, w), mode="nearest"))
        return self.project(torch.cat(out, dim=1))  # [B, out_channels, h, w]
