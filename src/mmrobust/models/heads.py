"""Task heads. ``linear`` maps the representation to class logits; ``segmentation`` maps a feature map
to per-pixel logits at the input resolution."""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.models.conv_blocks import conv_bn_relu
from mmrobust.models.upsampling import Upsample, UpsamplingMode
from mmrobust.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


@HEADS.register("linear")
class LinearHead(nn.Module):
    """Global average pooling of a feature map, optional dropout, a linear classifier.

    Shape: [B, D] or [B, D, H, W] -> [B, num_classes].
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))  # [B, D, H, W] -> [B, D]
        return self.fc(self.dropout(x))


@HEADS.register("segmentation")
class SegmentationHead(nn.Module):
    """Per-pixel classifier: an optional 3×3 conv + BN + ReLU block (``hidden`` channels), dropout, a
    ``kernel_size`` conv to class logits, then upsampling by ``scale`` (the output stride of the features).

    ``learned`` upsampling goes by ×2 steps (``scale`` must then be a power of two), as ESANet does.

    Shape: [B, in_features, h, w] -> [B, num_classes, scale·h, scale·w].
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        scale: int = 4,
        hidden: int = 0,
        kernel_size: int = 1,
        upsampling: UpsamplingMode = "bilinear",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if scale < 1 or (upsampling == "learned" and scale & (scale - 1)):
            raise ValueError(f"segmentation head scale must be >= 1 (a power of 2 for learned upsampling), got {scale}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"segmentation head kernel_size must be odd, got {kernel_size}")
        self.scale = scale
        self.block = conv_bn_relu(in_features, hidden, 3) if hidden > 0 else nn.Identity()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(hidden or in_features, num_classes, kernel_size, padding=kernel_size // 2)
        steps = [scale] if upsampling != "learned" else [2] * (scale.bit_length() - 1)
        self.upsample = nn.ModuleList(Upsample(upsampling, num_classes, f) for f in steps if f > 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"segmentation head expects feature maps [B, C, h, w], got {tuple(x.shape)}")
        x = self.classifier(self.dropout(self.block(x)))  # [B, K, h, w]
        for up in self.upsample:
            x = up(x)
        return x  # [B, K, scale·h, scale·w]
