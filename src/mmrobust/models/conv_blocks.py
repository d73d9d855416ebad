"""Small convolution blocks shared by the dense (segmentation) models.

- ``conv_bn_relu``: ``relu(BN(conv_k×k(x)))`` with "same" padding.
- ``NonBottleneck1D``: the factorized residual block of ERFNet (Romera et al. 2018), which ESANet uses in
  its decoder: ``relu(x + BN(conv_1×3(relu(conv_3×1(relu(BN(conv_1×3(relu(conv_3×1(x))))))))))``; a 3×3
  receptive field twice, with 3×1 / 1×3 kernels (fewer weights than a basic block).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU. Shape: [B, C_in, H, W] -> [B, C_out, ⌈H/stride⌉, ⌈W/stride⌉]."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class NonBottleneck1D(nn.Module):
    """ERFNet's non-bottleneck-1D residual block (dilation 1, no dropout). Shape: [B, C, H, W] -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1a = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1b = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2a = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv2b = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1b(torch.relu(self.conv1a(x)))))
        out = self.bn2(self.conv2b(torch.relu(self.conv2a(out))))
        return torch.relu(out + x)
