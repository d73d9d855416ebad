"""Per-modality encoders. Each maps ``[B, *in_shape]`` to a feature ``[B, D]`` or a map ``[B, C, H, W]``."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from mmrobust.models.conv_blocks import conv_bn_relu
from mmrobust.models.resnet import ResNet, SqueezeExcitation, load_pretrained
from mmrobust.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")


def mlp(sizes: list[int], norm: str = "none", dropout: float = 0.0, last_activation: bool = True) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ReLU (and optional LayerNorm/BatchNorm, dropout)."""
    norms = {"none": None, "layer": nn.LayerNorm, "batch": nn.BatchNorm1d}
    if norm not in norms:
        raise ValueError(f"unknown norm {norm!r}; valid norms: {list(norms)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            if norms[norm] is not None:
                layers.append(norms[norm](b))  # type: ignore[misc]
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """MLP for vector views (input flattened). Shape: [B, *in_shape] -> [B, out_features]."""

    def __init__(
        self,
        in_shape: tuple[int, ...],
        hidden: list[int] | None = None,
        out_features: int = 64,
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = mlp([math.prod(in_shape), *(hidden or []), out_features], norm, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@ENCODERS.register("resnet")
class ResNetEncoder(nn.Module):
    """A ResNet on an image modality, pooled to a vector (``pool: true``) or returning its last map.

    Shape: [B, C_in, H, W] -> [B, C] (pooled) or [B, C, H', W'].
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        depth: int = 18,
        stem: str = "imagenet",
        width: int = 64,
        se: bool = False,
        last_stage: str = "layer4",
        se_out: bool = False,
        pool: bool = True,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"resnet encoder needs image inputs [C, H, W], got shape {tuple(in_shape)}")
        self.backbone = ResNet(depth, in_shape[0], stem, width, se, last_stage)
        if pretrained:
            load_pretrained(self.backbone, pretrained)
        self.se_out = SqueezeExcitation(self.backbone.out_channels) if se_out else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone.forward_features(x)
        if self.se_out is not None:
            x = self.se_out(x)
        return x.mean(dim=(2, 3)) if self.pool else x


@ENCODERS.register("seg_cnn")
class SegCNNEncoder(nn.Module):
    """A small dense encoder for quick segmentation runs: two stages, each a stride-2 3×3 conv + BN + ReLU
    followed by ``blocks - 1`` stride-1 ones, so the output stride is 4.

    Args:
        in_shape: ``(C, H, W)`` of the modality.
        channels: output channels of the two stages.
        blocks: conv + BN + ReLU layers per stage (the first strided).

    Shape: [B, C, H, W] -> [B, channels[-1], ⌈H/4⌉, ⌈W/4⌉].
    """

    def __init__(self, in_shape: tuple[int, ...], channels: list[int] | None = None, blocks: int = 2) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"seg_cnn encoder needs image inputs [C, H, W], got shape {tuple(in_shape)}")
        channels = list(channels or [32, 64])
        if len(channels) != 2 or blocks < 1:
            raise ValueError(f"seg_cnn encoder needs 2 stage channels and blocks >= 1, got {channels}, {blocks}")
        layers: list[nn.Module] = []
        cin = in_shape[0]
        for c in channels:
            layers += [conv_bn_relu(cin, c, 3, stride=2), *(conv_bn_relu(c, c, 3) for _ in range(blocks - 1))]
            cin = c
        self.net = nn.Sequential(*layers)
        self.out_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [B, C_out, H/4, W/4]
