"""Margin-aware distillation (MAD, MMANet, Wei et al., CVPR 2023) and similarity-preserving KD (SP).

Relation matrices of a batch: ``G = F Fᵀ`` with ``F`` the ``[N, D]`` features of N samples, each row
L2-normalized -> ``Ĝ``. MAD matches the student's ``Ĝ_s`` to the teacher's ``Ĝ_t`` and weighs the
sample in column ``j`` by the teacher's normalized predictive entropy, so samples near the decision
boundary (uncertain for the teacher) count most::

    H_j = −Σ_c p_t[j, c] log p_t[j, c],      w_j = H_j / Σ_k H_k,
    L_MAD = Σ_i Σ_j w_j (Ĝ_s[i, j] − Ĝ_t[i, j])²

With uniform weights ``w_j = 1/N`` it is similarity-preserving KD (Tung & Mori, ICCV 2019), the
paper's "SP" ablation: ``L_SP = (1/N) ‖Ĝ_s − Ĝ_t‖²_F``. Tung & Mori (and the MMANet reference code's
SP) average over the N² entries, ``(1/N²) ‖Ĝ_s − Ĝ_t‖²_F``; we keep the MAD scale (a factor N larger)
so that MAD and SP differ only in the weighting and share the weight ``α``.

Two sample layouts:

- one sample per batch element: features ``[B, ...]`` flattened to ``[B, D]`` (for the CASIA-SURF
  model, the last feature map before pooling, as in the paper), teacher logits ``[B, C]``;
- pixels as samples (segmentation): maps ``[B, C, H, W]`` are average-pooled to at most
  ``max_size = (30, 40)`` and every pooled position of every image is a sample (N = B·h·w); the
  teacher's class logits ``[B, K, H', W']`` are turned into probabilities, average-pooled to the same
  ``h × w`` and give one entropy per pixel.

The layout is read from the teacher logits: ``[B, C]`` or ``[B, K, H', W']``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Weighting = Literal["entropy", "uniform"]
WEIGHTINGS = ("entropy", "uniform")


def relation_matrix(features: torch.Tensor) -> torch.Tensor:
    """Row-normalized Gram matrix ``Ĝ = normalize_rows(F Fᵀ)``.

    Shape: ``[N, D] -> [N, N]``.
    """
    if features.dim() != 2:
        raise ValueError(f"relation_matrix expects features [N, D], got shape {tuple(features.shape)}")
    return F.normalize(features @ features.t(), p=2, dim=1)  # [N, N]


def entropy_weights(probabilities: torch.Tensor) -> torch.Tensor:
    """``w_j = H_j / Σ_k H_k`` with ``H_j`` the entropy of row ``j``. If every entropy is 0 (a teacher
    certain of everything), every weight is 0.

    Shape: ``[N, C] -> [N]``.
    """
    p = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny)
    h = -(probabilities * p.log()).sum(dim=1)  # [N]
    return h / h.sum().clamp_min(torch.finfo(h.dtype).tiny)


def as_samples(
    student: torch.Tensor,
    teacher: torch.Tensor,
    teacher_logits: torch.Tensor,
    max_size: tuple[int, int] = (30, 40),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student features ``[N, D_s]``, teacher features ``[N, D_t]`` and teacher probabilities ``[N, C]``
    in the layout given by the teacher logits (see the module docstring).

    Shape: student ``[B, ...]``, teacher ``[B, ...]``, teacher_logits ``[B, C]`` -> N = B; or
    student ``[B, C_s, H, W]``, teacher ``[B, C_t, H, W]``, teacher_logits ``[B, K, H', W']`` -> N = B·h·w
    with ``h = min(H, max_size[0])``, ``w = min(W, max_size[1])``.
    """
    if student.shape[0] != teacher.shape[0] or teacher.shape[0] != teacher_logits.shape[0]:
        raise ValueError(
            "student features, teacher features and teacher logits need the same batch size, got "
            f"{tuple(student.shape)}, {tuple(teacher.shape)} and {tuple(teacher_logits.shape)}"
        )
    if teacher_logits.dim() == 2:
        return student.flatten(1), teacher.flatten(1), teacher_logits.softmax(dim=1)
    if teacher_logits.dim() != 4:
        raise ValueError(
            f"teacher logits must be [B, C] (one sample per image) or [B, K, H, W] (pixels as samples), "
            f"got shape {tuple(teacher_logits.shape)}"
        )
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            "pixels as samples need student and teacher maps [B, C, H, W] of the same H, W, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    size = (min(student.shape[2], max_size[0]), min(student.shape[3], max_size[1]))
    s = F.adaptive_avg_pool2d(student, size)  # [B, C_s, h, w]
    t = F.adaptive_avg_pool2d(teacher, size)  # [B, C_t, h, w]
    p = F.adaptive_avg_pool2d(teacher_logits.softmax(dim=1), size)  # [B, K, h, w]

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # [B·h·w, C]

    return pixels(s), pixels(t), pixels(p)


def margin_aware_distillation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    teacher_logits: torch.Tensor,
    weighting: Weighting = "entropy",
    max_size: tuple[int, int] = (30, 40),
) -> torch.Tensor:
    """``L_MAD = Σ_i Σ_j w_j (Ĝ_s[i, j] − Ĝ_t[i, j])²`` (MMANet Eq. for MAD; see the module docstring).

    Args:
        student: student features (the deployment network's fused representation).
        teacher: teacher features at the same layer (their feature size may differ from the student's).
        teacher_logits: the teacher's class logits; they set the layout and, with ``weighting="entropy"``,
            the weights ``w_j`` (no gradient flows into them).
        weighting: ``"entropy"`` (MAD) or ``"uniform"`` (``w_j = 1/N``: SP).
        max_size: largest pooled map ``(h, w)`` when pixels are samples.

    Shape: student ``[B, ...]``, teacher ``[B, ...]``, teacher_logits ``[B, C]``, or maps
    ``[B, C, H, W]`` with logits ``[B, K, H', W']`` (see ``as_samples``) -> scalar.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid weightings: {', '.join(WEIGHTINGS)}")
    s, t, p = as_samples(student, teacher, teacher_logits, max_size)
    n = s.shape[0]
    w = entropy_weights(p.detach()) if weighting == "entropy" else s.new_full((n,), 1.0 / n)  # [N]
    diff = relation_matrix(s) - relation_matrix(t)  # [N, N]
    return (diff.square() * w.to(diff.dtype)).sum()  # weight of column j is w_j


def similarity_preserving(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SP on one sample per batch element: ``(1/B) ‖Ĝ_s − Ĝ_t‖²_F`` = MAD with uniform weights.

    Shape: student ``[B, ...]``, teacher ``[B, ...]`` -> scalar.
    """
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"student and teacher features need the same batch size, got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    diff = relation_matrix(student.flatten(1)) - relation_matrix(teacher.flatten(1))  # [B, B]
    return diff.square().sum() / student.shape[0]


class MarginAwareDistillation(nn.Module):
    """Module form of ``margin_aware_distillation``.

    Args:
        weighting: ``"entropy"`` (MAD) or ``"uniform"`` (SP).
        max_size: largest pooled map ``(h, w)`` when pixels are samples.
    """

    def __init__(self, weighting: Weighting = "entropy", max_size: tuple[int, int] = (30, 40)) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; valid weightings: {', '.join(WEIGHTINGS)}")
        self.weighting: Weighting = weighting
        self.max_size = max_size

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return margin_aware_distillation(student, teacher, teacher_logits, self.weighting, self.max_size)

    def extra_repr(self) -> str:
        return f"weighting={self.weighting}, max_size={self.max_size}"
