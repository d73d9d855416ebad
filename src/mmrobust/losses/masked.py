"""Cross-entropy restricted to some samples of a batch, averaged over the whole batch.

Used by auxiliary losses that apply only to the samples whose drawn modality subset is in a mined set
(MMANet's modality-aware regularization, DMRNet's hard combination regularizer)::

    L = (1/B) Σ_b mask_b · CE(logits_b, y_b)

The denominator is the batch size B, not the number of selected samples, as in both papers: the term
grows with the share of selected samples in the batch. The reference code of both papers multiplies
a ``[B]`` loss by a ``[B, 1, 1, 1]`` mask, which broadcasts to ``[B, 1, 1, B]`` and sums every sample's
loss once per selected sample; this function is the intended masked mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1/B) Σ_b mask_b · CE_b``; for dense targets ``CE_b`` is the mean over the positions of sample b.

    Args:
        logits: class logits.
        target: class indices.
        mask: which samples count (bool, or float weights).

    Shape: logits ``[B, C, *]``, target ``[B, *]``, mask ``[B]`` -> scalar.
    """
    if logits.dim() < 2 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"masked_cross_entropy expects logits [B, C, *] and target [B, *], got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    if mask.shape != (logits.shape[0],):
        raise ValueError(f"mask must be [B] = [{logits.shape[0]}], got shape {tuple(mask.shape)}")
    ce = F.cross_entropy(logits, target, reduction="none")  # [B, *]
    per_sample = ce.flatten(1).mean(dim=1) if ce.dim() > 1 else ce  # [B]
    return (per_sample * mask.to(per_sample.dtype)).sum() / logits.shape[0]
