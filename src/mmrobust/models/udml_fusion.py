"""UDML's noise-aware dynamic fusion (Wei et al., "Unbiased Dynamic Multimodal Fusion", CVPR 2026), fusion ``udml``.

It wraps any post-encoder fusion (``fusion: {name: concat_mlp, ...}``) and, per modality ``m`` present for a
sample, in this order:

1. a probabilistic embedding (DMRNet-style, one per modality): ``μ_m = f_μ(z_m)``, ``log σ²_m = f_σ(z_m)`` (1×1
   conv + BatchNorm per position of a map, Linear + BatchNorm1d on a vector); training uses the sample
   ``s_m = μ_m + ε·σ_m``, eval uses ``μ_m``;
2. a noise-level estimator: ``l̂_m = sigmoid(MLP_m(σ̄_m.detach()))`` ∈ (0, 1), with ``σ̄_m`` the per-sample
   ``σ_m`` vector (maps: averaged over positions, as the reference pools it); it is trained (by the method) to
   predict the injected noise level ``l_m`` ∈ [0, 1];
3. the fusion weights over the sample's present set ``S`` (absent modalities weigh 0)::

       v_m  = (1 + κ·l̂_m)²                                      predicted noise variance (κ = level_scale)
       w'_m = |S| · (1/v_m) / Σ_{k∈S} 1/v_k                      inverse-variance weights
       w_m  = |S| · (w'_m / d_m) / Σ_{k∈S} w'_k / d_k            divided by the dependence d_m, renormalized

   (for two modalities ``w'_a = 2 v_v / (v_a + v_v)``, the reference's formula); ``d_m`` is the ``dependence``
   buffer (mean ``Σ_c |p_m,c|`` of the prediction with only ``m`` kept), written by the method during training
   and stored with the model for deployment. While the weights are held (``hold_weights``, the warm-up)
   ``w_m = 1`` for every present modality;
4. the inner fusion of ``(1 + w_m) · s_m`` (absent modalities: 0).

Everything the method needs besides the fused output (μ, log σ², l̂, w) is returned by ``parts``; ``forward``
returns the fused representation only, so the model's ``fuse`` (and the evaluator) use the fusion like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmrobust.models.fusion import FUSIONS
from mmrobust.models.necks import ProbabilisticNeck
from mmrobust.registry import ConfigError


def inverse_variance_weights(variance: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``w'_m = |S| · (1/v_m) / Σ_{k∈S} 1/v_k`` per sample over its present set S; absent modalities get 0.

    With two present modalities ``w'_a = 2 v_b / (v_a + v_b)`` (UDML reference code). A sample without any
    modality gets all zeros.

    Shape: variance ``[B, M]`` (> 0), present ``[B, M]`` bool -> ``[B, M]``.
    """
    return renormalize(1.0 / variance, present)


def dependence_weights(weights: torch.Tensor, dependence: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``w_m = |S| · (w'_m / d_m) / Σ_{k∈S} w'_k / d_k``: divide by the dependence, renormalize to sum |S|.

    Shape: weights ``[B, M]``, dependence ``[M]`` (> 0), present ``[B, M]`` bool -> ``[B, M]``.
    """
    return renormalize(weights / dependence, present)


def renormalize(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``|S| · u_m / Σ_{k∈S} u_k`` on the present entries of each row, 0 elsewhere. Shape: ``[B, M]`` -> ``[B, M]``."""
    if values.shape != present.shape or values.dim() != 2:
        raise ValueError(
            f"UDML weights expect [B, M] values and mask, got {tuple(values.shape)}, {tuple(present.shape)}"
        )
    keep = present.to(dtype=torch.bool, device=values.device)
    u = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))
    count = keep.sum(dim=1, keepdim=True).to(values.dtype)  # [B, 1]
    return count * u / u.sum(dim=1, keepdim=True).clamp_min(1e-12)


def scale_features(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(1 + w) · z`` per sample. Shape: features ``[B, *]``, weight ``[B]`` -> ``[B, *]``."""
    return (1.0 + weight).view(-1, *([1] * (features.dim() - 1))) * features


@dataclass
class UDMLParts:
    """One ``parts`` call: the fused representation and, per modality (model order), μ and log σ² (zeros on the
    rows of absent samples), the predicted level ``[B, M]`` and the weights ``[B, M]``."""

    fused: torch.Tensor
    mu: list[torch.Tensor]
    logvar: list[torch.Tensor]
    level: torch.Tensor
    weights: torch.Tensor


@FUSIONS.register("udml")
class UDMLFusion(nn.Module):
    """UDML's dynamic fusion around an inner fusion; see the module docstring.

    Args:
        feature_shapes: per-modality feature shapes (vectors ``[D]`` or maps ``[C, H, W]``).
        fusion: the inner fusion's config (``{name: ..., ...}``), built with the same feature shapes.
        level_scale: κ in ``v = (1 + κ·l̂)²``; 10 maps the level range [0, 1] onto the reference's noise
            "variance" labels 1 … 11.
        hidden: hidden width of each level estimator (reference: 256).
        dropout: dropout inside the estimator (reference: 0.1).

    Shape: M × ``[B, *F_m]``, present ``[B, M]`` -> the inner fusion's output.
    """

    dependence: torch.Tensor  # [M] d_m, written by the method during training

    def __init__(
        self,
        feature_shapes: list[tuple[int, ...]],
        fusion: dict[str, Any] | None = None,
        level_scale: float = 10.0,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        spec = dict(fusion or {"name": "concat"})
        name = str(spec.pop("name", "concat"))
        if name == "udml":
            raise ConfigError("model.fusion.fusion: the fusion inside udml cannot be udml again")
        if any(len(s) not in (1, 3) for s in feature_shapes):
            raise ConfigError(f"model.fusion (udml): needs vector [D] or map [C, H, W] features, got {feature_shapes}")
        if level_scale < 0 or hidden < 1 or not 0 <= dropout < 1:
            raise ConfigError(
                f"model.fusion (udml): level_scale >= 0, hidden >= 1 and dropout in [0, 1) expected, "
                f"got {level_scale}, {hidden}, {dropout}"
            )
        self.inner = FUSIONS.build(name, spec, where="model.fusion.fusion", feature_shapes=feature_shapes)
        self.out_features = self.inner.out_features
        self.level_scale = float(level_scale)
        self.embeddings = nn.ModuleList(ProbabilisticNeck(s[0]) for s in feature_shapes)
        self.estimators = nn.ModuleList(
            nn.Sequential(nn.Linear(s[0], hidden), nn.Dropout(dropout), nn.Linear(hidden, 1)) for s in feature_shapes
        )
        self.register_buffer("dependence", torch.ones(len(feature_shapes)))
        self.hold_weights = False
        self._captured: list[UDMLParts] | None = None

    def embed(self, j: int, z: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """μ, log σ² and the representation (a sample in training, μ in eval) of modality ``j`` on the rows where it
        is present (BatchNorm statistics over those rows only; the other rows are 0).

        Shape: z ``[B, *F]``, rows ``[B]`` bool -> three ``[B, *F]``.
        """
        zeros = torch.zeros_like(z)
        index = torch.nonzero(rows).flatten()
        if len(index) == 0:
            return zeros, zeros, zeros
        if self.training and len(index) == 1 and z.shape[2:].numel() == 1:  # BatchNorm needs 2 values: every row
            index = torch.arange(len(z), device=z.device)
        neck = self.embeddings[j]
        assert isinstance(neck, ProbabilisticNeck)
        mu, logvar = neck.distribution(z[index])
        rep = neck.sample(mu, logvar) if self.training else mu
        keep = rows[index].view(-1, *([1] * (z.dim() - 1)))
        out = [zeros.index_copy(0, index, torch.where(keep, t, 0.0)) for t in (mu, logvar, rep)]
        return out[0], out[1], out[2]

    def parts(self, feats: list[torch.Tensor], present: torch.Tensor, hold_weights: bool = False) -> UDMLParts:
        """Embed, estimate the levels, weigh, scale and fuse (module docstring); ``hold_weights``: ``w_m = 1``."""
        keep = present.to(dtype=torch.bool, device=feats[0].device)  # [B, M]
        mus, logvars, reps, levels = [], [], [], []
        for j, z in enumerate(feats):
            mu, logvar, rep = self.embed(j, z, keep[:, j])
            sigma = torch.exp(0.5 * logvar.detach())  # [B, *F]
            pooled = sigma.flatten(2).mean(2) if sigma.dim() > 2 else sigma  # [B, C]
            levels.append(torch.sigmoid(self.estimators[j](pooled)).squeeze(1))  # [B]
            mus.append(mu)
            logvars.append(logvar)
            reps.append(rep)
        level = torch.stack(levels, dim=1)  # [B, M]
        if hold_weights:
            weights = keep.to(level.dtype)
        else:
            variance = (1.0 + self.level_scale * level).square()  # [B, M]
            weights = dependence_weights(inverse_variance_weights(variance, keep), self.dependence, keep)
        scaled = [scale_features(r, weights[:, j]) for j, r in enumerate(reps)]
        return UDMLParts(self.inner(scaled, keep), mus, logvars, level, weights)

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        parts = self.parts(feats, present, self.hold_weights)
        if self._captured is not None:
            self._captured.append(parts)
        return parts.fused

    @contextmanager
    def capture(self, hold_weights: bool = False) -> Iterator[list[UDMLParts]]:
        """Within the block, every forward appends its :class:`UDMLParts` to the yielded list and uses
        ``hold_weights``; the method reads μ, log σ², l̂ and w of the fused pass this way."""
        previous = (self.hold_weights, self._captured)
        self.hold_weights, self._captured = hold_weights, []
        try:
            yield self._captured
        finally:
            self.hold_weights, self._captured = previous

    @torch.no_grad()
    def update_dependence(self, dependence: torch.Tensor, valid: torch.Tensor, momentum: float = 0.0) -> None:
        """``d ← momentum·d + (1 − momentum)·d_batch`` for the modalities with statistics (``valid``).

        Shape: dependence, valid ``[M]``.
        """
        new = momentum * self.dependence + (1.0 - momentum) * dependence.to(self.dependence).clamp_min(1e-6)
        self.dependence.copy_(torch.where(valid.to(self.dependence.device), new, self.dependence))
