"""Multi-kernel Gaussian MMD² and OS-MD's joint distribution loss (JDN).

**MMD²** (Gretton et al. 2012; OS-MD, Wei et al. 2023, Eq. 1–3) between samples ``x`` (N) and ``y`` (M),
biased estimator (the V-statistic of Eq. 2: all pairs, diagonals included, so it is ≥ 0 and exactly 0
for identical samples)::

    MMD² = (1/N²) Σ_ij k(x_i, x_j) + (1/M²) Σ_ij k(y_i, y_j) − (2/NM) Σ_ij k(x_i, y_j),
    k(u, v) = Σ_{q=0}^{K−1} exp(−‖u − v‖² / σ_q),   σ_q = σ · m^(q − ⌊K/2⌋)

with K = 5 kernels and multiplier m = 2 (the reference values). The base bandwidth σ is the mean squared
distance between distinct samples of the pooled set {x, y} — ``Σ_ij ‖z_i − z_j‖² / (n² − n)``, n = N + M —
computed without gradient, as in the DAN/JAN reference code; pass ``bandwidth`` to fix it instead.
Samples are the rows of ``[N, D]``; feature maps ``[N, C, H, W]`` are flattened per sample (to use
spatial positions as samples, reshape to ``[N·H·W, C]`` first).

**JDN** (OS-MD Eq. 7): ``L_JDN = MMD²(φ_s(x_o), φ_p(x_p)) + KL(softmax f_p(φ_p x_p) ‖ softmax f_s(φ_s x_o))`` —
the marginal distributions of the hallucinated and privileged features, and the conditional
distributions of the classes given them.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.losses.kd import kl_divergence


def gaussian_kernel_sum(
    x: torch.Tensor, y: torch.Tensor, kernel_num: int = 5, kernel_mul: float = 2.0, bandwidth: float | None = None
) -> torch.Tensor:
    """The multi-kernel Gram matrix of the pooled samples ``[x; y]`` (see the module docstring).

    Shape: x ``[N, D]``, y ``[M, D]`` -> ``[N + M, N + M]``.
    """
    z = torch.cat([x, y], dim=0)  # [n, D]
    squared = (z.unsqueeze(0) - z.unsqueeze(1)).pow(2).sum(dim=-1)  # [n, n]
    n = len(z)
    if bandwidth is None:
        base = squared.detach().sum() / (n * n - n)
    else:
        base = torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device)
    base = base.clamp_min(torch.finfo(z.dtype).tiny) / kernel_mul ** (kernel_num // 2)
    return sum(torch.exp(-squared / (base * kernel_mul**q)) for q in range(kernel_num))  # type: ignore[return-value]


def mmd2(
    x: torch.Tensor, y: torch.Tensor, kernel_num: int = 5, kernel_mul: float = 2.0, bandwidth: float | None = None
) -> torch.Tensor:
    """Biased multi-kernel Gaussian MMD² between the samples ``x`` and ``y``.

    Args:
        x: samples of the first distribution, ``[N, ...]`` (flattened per sample).
        y: samples of the second distribution, ``[M, ...]`` with the same per-sample size.
        kernel_num: number of Gaussian kernels K.
        kernel_mul: bandwidth ratio m between neighbouring kernels.
        bandwidth: base bandwidth σ; None = mean squared pairwise distance (no gradient through it).

    Shape: x ``[N, ...]``, y ``[M, ...]`` -> scalar.
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"mmd2 needs samples [N, ...] and [M, ...] of one feature shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if len(x) < 1 or len(y) < 1:
        raise ValueError(f"mmd2 needs at least one sample on each side, got {len(x)} and {len(y)}")
    if kernel_num < 1 or kernel_mul <= 0:
        raise ValueError(f"mmd2 needs kernel_num >= 1 and kernel_mul > 0, got {kernel_num} and {kernel_mul}")
    n = len(x)
    k = gaussian_kernel_sum(x.flatten(1), y.flatten(1), kernel_num, kernel_mul, bandwidth)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def jdn_loss(
    hallucinated: torch.Tensor,
    privileged: torch.Tensor,
    hallucinated_logits: torch.Tensor,
    privileged_logits: torch.Tensor,
    kernel_num: int = 5,
    kernel_mul: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OS-MD's joint distribution terms: ``(MMD²(φ_s, φ_p), KL(p_p ‖ p_s))``; ``L_JDN`` is their sum.

    Shape: hallucinated, privileged ``[B, ...]`` (one feature shape); logits ``[B, C]`` or ``[B, C, *]``
    -> (scalar, scalar).
    """
    if len(hallucinated) != len(privileged):
        raise ValueError(f"jdn_loss needs paired samples, got {len(hallucinated)} and {len(privileged)}")
    marginal = mmd2(hallucinated, privileged, kernel_num, kernel_mul)
    conditional = kl_divergence(hallucinated_logits, privileged_logits)
    return marginal, conditional


class MMDLoss(nn.Module):
    """Module form of :func:`mmd2`."""

    def __init__(self, kernel_num: int = 5, kernel_mul: float = 2.0, bandwidth: float | None = None) -> None:
        super().__init__()
        self.kernel_num, self.kernel_mul, self.bandwidth = kernel_num, kernel_mul, bandwidth

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mmd2(x, y, self.kernel_num, self.kernel_mul, self.bandwidth)
