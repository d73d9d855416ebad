"""Knowledge-distillation losses: response (logit), feature (hint) and relation KD.

- **KL** between class distributions, the conditional term of OS-MD's JDN (Wei et al., 2023, Eq. 4–6)::

      KL(p ‖ q) = (1/N) Σ_i Σ_c p_ic log(p_ic / q_ic),   p = softmax(target/T), q = softmax(input/T)

  averaged over samples (and over positions for dense logits ``[B, C, H, W]``).
- **Response KD** (Hinton et al., 2015): ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`` — the ``T²`` keeps the
  gradient scale independent of the temperature.
- **Hint / feature KD** (FitNets, Romero et al., 2015): ``MSE(student, teacher)`` on features of one shape
  (a regressor, when the shapes differ, is the caller's module).
- **Relation KD** (RKD, Park et al., CVPR 2019): distances between samples, each normalized by the mean
  distance of its batch, and angles of sample triplets, matched with the Huber (smooth-L1) loss::

      ψ_D(i, j) = ‖f_i − f_j‖ / μ,   ψ_A(i, j, k) = ⟨(f_i − f_j)/‖f_i − f_j‖, (f_k − f_j)/‖f_k − f_j‖⟩,
      L_RKD = w_D · huber(ψ_D^s, ψ_D^t) + w_A · huber(ψ_A^s, ψ_A^t)     (w_D = 25, w_A = 50 as the paper)

  Feature maps are flattened per sample. Both terms are invariant to a global scale of either feature set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _same_batch(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() < 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"{what} need [B, ...] tensors of one batch size, got {tuple(a.shape)} and {tuple(b.shape)}")


def kl_divergence(logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(softmax(target_logits/T) ‖ softmax(logits/T))``, classes on dim 1, mean over samples and positions.

    Shape: logits ``[B, C]`` or ``[B, C, *]`` (same for target_logits) -> scalar.
    """
    if logits.shape != target_logits.shape or logits.dim() < 2:
        raise ValueError(
            f"kl_divergence needs logits of one shape [B, C, ...], got {tuple(logits.shape)} and "
            f"{tuple(target_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_q = F.log_softmax(logits / temperature, dim=1)
    log_p = F.log_softmax(target_logits / temperature, dim=1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(dim=1)  # [B, *]
    return per_position.mean()


def response_kd(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's response KD: ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``.

    Shape: ``[B, C]`` or ``[B, C, *]`` -> scalar.
    """
    return temperature**2 * kl_divergence(logits, teacher_logits, temperature)


def hint_loss(features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """FitNets hint: mean squared error between student and teacher features of one shape.

    Shape: ``[B, ...]``, ``[B, ...]`` -> scalar.
    """
    if features.shape != teacher_features.shape:
        raise ValueError(
            f"hint_loss needs features of one shape, got {tuple(features.shape)} and {tuple(teacher_features.shape)}"
        )
    return F.mse_loss(features, teacher_features)


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of ``x`` (0 on the diagonal, differentiable everywhere).

    Shape: ``[N, D] -> [N, N]``.
    """
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(dim=-1)  # [N, N]
    off_diagonal = 1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device)
    return squared.clamp_min(eps).sqrt() * off_diagonal


def rkd_distance(features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """RKD distance term: Huber loss between mean-normalized pairwise distances.

    Shape: ``[B, ...]``, ``[B, ...]`` (flattened per sample; feature sizes may differ) -> scalar.
    """
    _same_batch(features, teacher_features, "rkd_distance")
    d_s, d_t = pairwise_distances(features.flatten(1)), pairwise_distances(teacher_features.flatten(1))
    off = ~torch.eye(len(d_s), dtype=torch.bool, device=d_s.device)
    d_s = d_s / d_s[off].mean().clamp_min(1e-12)
    d_t = d_t / d_t[off].mean().clamp_min(1e-12)
    return F.smooth_l1_loss(d_s, d_t)


def _angles(x: torch.Tensor) -> torch.Tensor:
    """``cos ∠(x_i − x_j, x_k − x_j)`` for every triplet. Shape: ``[N, D] -> [N, N, N]``."""
    directions = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # [N(j), N(i), D]
    return torch.bmm(directions, directions.transpose(1, 2))  # [N(j), N(i), N(k)]


def rkd_angle(features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """RKD angle term: Huber loss between the cosines of all sample triplets.

    Shape: ``[B, ...]``, ``[B, ...]`` (flattened per sample; feature sizes may differ) -> scalar.
    """
    _same_batch(features, teacher_features, "rkd_angle")
    return F.smooth_l1_loss(_angles(features.flatten(1)), _angles(teacher_features.flatten(1)))


def rkd_loss(
    features: torch.Tensor,
    teacher_features: torch.Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> torch.Tensor:
    """``w_D · rkd_distance + w_A · rkd_angle`` (Park et al. 2019 weights by default).

    Shape: ``[B, ...]``, ``[B, ...]`` -> scalar.
    """
    return distance_weight * rkd_distance(features, teacher_features) + angle_weight * rkd_angle(
        features, teacher_features
    )


class ResponseKD(nn.Module):
    """Module form of :func:`response_kd`."""

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return response_kd(logits, teacher_logits, self.temperature)


class RKDLoss(nn.Module):
    """Module form of :func:`rkd_loss`."""

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        return rkd_loss(features, teacher_features, self.distance_weight, self.angle_weight)
