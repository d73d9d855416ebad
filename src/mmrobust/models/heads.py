"""Task heads. ``linear`` maps the representation to class logits."""

from __future__ import annotations

import torch
from torch import nn

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
