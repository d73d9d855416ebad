"""Necks sit between the fusion and the head.

- ``identity`` passes the fused representation through.
- ``probabilistic`` (DMRNet's decoupled representation, paper Eq. 4–7): the fused representation ``z``
  becomes a Gaussian ``N(μ, σ²)`` with ``μ = f_μ(z)`` and ``log σ² = f_σ(z)``, each a 1×1 convolution +
  BatchNorm per position of a feature map ``[B, C, H, W]`` (or Linear + BatchNorm1d on a vector
  ``[B, D]``). In training the head sees a sample ``s = μ + ε·σ``, ε ~ N(0, I); in eval mode it sees μ,
  so the deployed model is deterministic. The paper writes ``log σ``; like its reference code we predict
  ``log σ²`` (the same family of distributions, and the KL term is written in ``log σ²``).
- ``probabilistic_pooled`` (the "PE" row of DMRNet Table 4, probabilistic face embeddings): a feature
  map is global-average pooled first and the distribution is estimated for the vector ``[B, C]``.

Methods that need μ and ``log σ²`` (the KL term of DMRNet) call ``distribution`` and ``sample``
themselves; ``forward`` composes them.
"""

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


def _projection(channels: int) -> nn.Sequential:
    """1×1 convolution + BatchNorm2d. On a vector viewed as a ``[B, D, 1, 1]`` map this is exactly
    Linear + BatchNorm1d: the convolution is a matrix product and the batch statistics are over B."""
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1), nn.BatchNorm2d(channels))


@NECKS.register("probabilistic")
class ProbabilisticNeck(nn.Module):
    """Gaussian embedding per position: μ and log σ² by 1×1 conv + BN each (DMRNet's "DMR").

    Args:
        in_features: channels C of the fused map (or size D of the fused vector).

    Shape: [B, C, H, W] -> [B, C, H, W]; [B, D] -> [B, D].
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.out_features = in_features
        self.mu = _projection(in_features)
        self.logvar = _projection(in_features)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the distribution is estimated for (here: the input itself)."""
        return x

    def as_map(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The reduced input as a map ``[B, C, H, W]`` (a vector becomes ``[B, D, 1, 1]``) and whether
        the output is a vector."""
        z = self.reduce(x)
        if z.dim() == 2:
            return z[:, :, None, None], True
        if z.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects [B, D] or [B, C, H, W], got {tuple(x.shape)}")
        return z, False

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """μ alone (the deployed representation)."""
        z, vector = self.as_map(x)
        mu = self.mu(z)
        return mu.flatten(1) if vector else mu

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)``, each of the output shape."""
        z, vector = self.as_map(x)
        mu, logvar = self.mu(z), self.logvar(z)  # [B, C, H, W] each
        return (mu.flatten(1), logvar.flatten(1)) if vector else (mu, logvar)

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterized sample ``s = μ + ε·exp(½ log σ²)``, ε ~ N(0, I) (paper Eq. 7)."""
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.mean(x)
        return self.sample(*self.distribution(x))


@NECKS.register("probabilistic_pooled")
class PooledProbabilisticNeck(ProbabilisticNeck):
    """Gaussian embedding of the pooled vector (DMRNet Table 4 "PE"): a feature map is global-average
    pooled, then μ and log σ² are Linear + BatchNorm1d each. On a vector it equals ``probabilistic``.

    Shape: [B, C, H, W] -> [B, C]; [B, D] -> [B, D].
    """

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x  # [B, C, H, W] -> [B, C]
