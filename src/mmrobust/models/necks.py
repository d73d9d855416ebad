"""Necks sit between the fusion and the head. ``identity`` passes the fused representation through."""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.registry import Registry

NECKS: Registry[nn.Module] = Registry("neck")


@NECKS.register("identity")
class IdentityNeck(nn.Module):
    """Shape: [B, D] -> [B, D]."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
