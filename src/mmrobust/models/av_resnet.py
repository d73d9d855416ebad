"""Audio-visual ResNet encoders: the backbones of OGM-GE's network (Peng et al., CVPR 2022), used by ARL/DGL too.

Read for understanding from ``models/backbone.py`` and ``models/basic_model.py`` of GeWu-Lab/OGM-GE_CVPR2022:

- audio: a ResNet-18 (7×7/2 stem with max-pool, torchvision layout) on a one-channel log spectrogram,
  global average pooling of its last map -> 512-d (their ``F.adaptive_avg_pool2d(a, 1)``);
- visual: one ResNet-18 trunk shared over the T frames of a clip (frames folded into the batch), the maps
  ``[B, T, 512, h, w]`` pooled over time and space at once -> 512-d. Their code uses
  ``F.adaptive_avg_pool3d(v, 1)`` on ``[B, 512, T, h, w]``, i.e. the mean over (T, h, w): ``temporal_pool: avg``
  (the default); ``max`` takes the maximum over (T, h, w) instead.

Differences from their code: BatchNorm weights start at 1 (torchvision) rather than N(1, 0.02), and the
frames come as ``[B, T, C, H, W]`` (their loader's layout; their ``main.py`` permutes to ``[B, C, T, H, W]``
and the backbone permutes back). A modality given as one image ``[C, H, W]`` (AV-MNIST's ``image``) is a
clip of one frame.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.models.encoders import ENCODERS
from mmrobust.models.resnet import ResNet, load_pretrained

TEMPORAL_POOLS = ("avg", "max")


@ENCODERS.register("audio_resnet")
class AudioResNet(nn.Module):
    """A ResNet on a spectrogram, globally average pooled.

    Args:
        in_shape: ``(1, F, T)`` (or ``(F, T)``, given one channel); any channel count works.
        depth: 18, 34 or 50.
        width: channels of the stem and layer1 (64 in the paper).
        pretrained: a torchvision-format state dict; its RGB ``conv1`` kernel is summed to one channel.

    Shape: [B, 1, F, T] or [B, F, T] -> [B, 8·width] (512 for ResNet-18 at width 64).
    """

    def __init__(self, in_shape: tuple[int, ...], depth: int = 18, width: int = 64, pretrained: str | None = None):
        super().__init__()
        if len(in_shape) not in (2, 3):
            raise ValueError(f"audio_resnet encoder needs a spectrogram [1, F, T] or [F, T], got {tuple(in_shape)}")
        self.add_channel = len(in_shape) == 2
        self.backbone = ResNet(depth, 1 if self.add_channel else in_shape[0], "imagenet", width)
        if pretrained:
            load_pretrained(self.backbone, pretrained)
        self.out_features = self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.add_channel:
            x = x.unsqueeze(1)  # [B, F, T] -> [B, 1, F, T]
        return self.backbone.forward_features(x).mean(dim=(2, 3))  # [B, C]


@ENCODERS.register("frames_resnet")
class FramesResNet(nn.Module):
    """One ResNet shared over the frames of a clip, then pooling over time and space:

        v = pool_{t, i, j} ResNet(x_t)[:, i, j],   pool = mean (``avg``, OGM-GE) or max (``max``)

    Args:
        in_shape: ``(T, C, H, W)`` for clips, or ``(C, H, W)`` for single images (T = 1).
        depth: 18, 34 or 50.
        width: channels of the stem and layer1 (64 in the paper).
        temporal_pool: ``avg`` or ``max`` over (T, h, w).
        pretrained: a torchvision-format state dict (``conv1`` adapted to C channels if C ≠ 3).

    Shape: [B, T, C, H, W] or [B, C, H, W] -> [B, 8·width].
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        depth: int = 18,
        width: int = 64,
        temporal_pool: str = "avg",
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if len(in_shape) not in (3, 4):
            raise ValueError(
                f"frames_resnet encoder needs clips [T, C, H, W] or images [C, H, W], got shape {tuple(in_shape)}"
            )
        if temporal_pool not in TEMPORAL_POOLS:
            raise ValueError(f"temporal_pool must be one of {list(TEMPORAL_POOLS)}, got {temporal_pool!r}")
        self.backbone = ResNet(depth, in_shape[-3], "imagenet", width)
        if pretrained:
            load_pretrained(self.backbone, pretrained)
        self.temporal_pool = temporal_pool
        self.out_features = self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(1)  # an image is a clip of one frame: [B, 1, C, H, W]
        b, t = x.shape[:2]
        maps = self.backbone.forward_features(x.flatten(0, 1))  # [B·T, C', h, w]
        maps = maps.view(b, t, *maps.shape[1:])  # [B, T, C', h, w]
        if self.temporal_pool == "max":
            return maps.amax(dim=(1, 3, 4))  # [B, C']
        return maps.mean(dim=(1, 3, 4))  # [B, C']
