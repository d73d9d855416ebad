"""Fused plus unimodal cross-entropy: the training loss of ARL (its bias term) and of DGL.

With ``p_f`` the fused logits and ``p_m`` the logits of modality ``m`` alone through the shared head::

    L = CE(p_f, y) + λ · Σ_m (1/B) Σ_b [m ∈ S_b] · CE(p_m,b, y_b)

ARL (Shi et al., ICCV 2025, "Improving Multimodal Learning via Imbalanced Learning") uses ``λ = γ`` for
its prediction-bias regularizer; DGL (Shi et al., ICCV 2025, "Disentangled Gradient Learning") uses
``λ = α`` for the unimodal losses that replace the fused loss's gradient in the encoders (which graph each
term reaches is the method's business, not this function's). A sample counts in the unimodal term of
``m`` only when ``m`` is present for it; the denominator is the batch size, so with complete data each
unimodal term is the plain mean cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.losses.masked import masked_cross_entropy


def fused_unimodal_loss(
    fused: torch.Tensor, unimodal: torch.Tensor, target: torch.Tensor, present: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``CE(p_f) + weight · Σ_m masked CE(p_m)``; returns the loss, ``CE(p_f)`` and the unimodal terms.

    Args:
        fused: fused logits.
        unimodal: logits of each modality alone, stacked in modality order.
        target: class indices.
        present: whether modality ``m`` is present for sample ``b`` (column ``m`` of ``unimodal``'s order).
        weight: λ.

    Shape: fused ``[B, C, *]``, unimodal ``[V, B, C, *]``, target ``[B, *]``, present ``[B, V]`` ->
    (scalar, scalar, ``[V]``).
    """
    if unimodal.dim() != fused.dim() + 1 or unimodal.shape[1:] != fused.shape:
        raise ValueError(
            f"fused_unimodal_loss expects unimodal logits [V, *fused.shape] = [V, {', '.join(map(str, fused.shape))}]"
            f", got {tuple(unimodal.shape)}"
        )
    if present.shape != (fused.shape[0], unimodal.shape[0]):
        raise ValueError(
            f"present must be [B, V] = [{fused.shape[0]}, {unimodal.shape[0]}], got {tuple(present.shape)}"
        )
    ce_fused = F.cross_entropy(fused, target)
    terms = torch.stack([masked_cross_entropy(p, target, present[:, v]) for v, p in enumerate(unimodal)])  # [V]
    return ce_fused + weight * terms.sum(), ce_fused, terms


class FusedUnimodalLoss(nn.Module):
    """Module form of :func:`fused_unimodal_loss` with a fixed ``weight`` (λ)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(
        self, fused: torch.Tensor, unimodal: torch.Tensor, target: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return fused_unimodal_loss(fused, unimodal, target, present, self.weight)
