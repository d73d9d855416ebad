"""KL divergence of a diagonal Gaussian from the standard normal (DMRNet's distributional regularization).

DMRNet (Wei et al., ECCV 2024), Eq. 9::

    L_DR = (1/B) Σ_b Σ_j ½ (σ²_bj + μ²_bj − log σ²_bj − 1) = (1/B) Σ_b KL(N(μ_b, σ²_b) ‖ N(0, I))

where j runs over every element of a sample's representation (channels × positions of a feature map).
The paper writes its network output as ``log σ``; like its reference code we take ``log σ²`` (``logvar``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def gaussian_kl(
    mu: torch.Tensor, logvar: torch.Tensor, reduction: Literal["batchmean", "none"] = "batchmean"
) -> torch.Tensor:
    """``KL(N(μ, exp(logvar)) ‖ N(0, I))`` summed over each sample's elements.

    Args:
        mu: means μ.
        logvar: log-variances log σ².
        reduction: ``batchmean`` (mean over the batch, DMRNet's L_DR) or ``none`` (one value per sample).

    Shape: mu, logvar ``[B, *]`` (same shape) -> scalar (``batchmean``) or ``[B]`` (``none``).
    """
    if mu.shape != logvar.shape or mu.dim() < 1:
        raise ValueError(
            f"gaussian_kl expects mu and logvar of one shape [B, *], got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    if reduction not in ("batchmean", "none"):
        raise ValueError(f"gaussian_kl reduction must be 'batchmean' or 'none', got {reduction!r}")
    per_element = 0.5 * (logvar.exp() + mu.square() - logvar - 1.0)  # [B, *]
    per_sample = per_element.reshape(len(mu), -1).sum(dim=1)  # [B]
    return per_sample.mean() if reduction == "batchmean" else per_sample


class GaussianKLLoss(nn.Module):
    """Module form of :func:`gaussian_kl`."""

    def __init__(self, reduction: Literal["batchmean", "none"] = "batchmean") -> None:
        super().__init__()
        self.reduction: Literal["batchmean", "none"] = reduction

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return gaussian_kl(mu, logvar, self.reduction)
