"""UDML's auxiliary losses (Wei et al., CVPR 2026): the per-modality KL of the probabilistic embeddings and the
noise-level regression. Both are masked means over the batch (a sample counts for modality ``m`` only when ``m``
is present for it; the denominator is the batch size B, as ``masked_cross_entropy``), summed over modalities::

    L_KL  = Σ_m (1/B) Σ_b [m ∈ S_b] · KL(N(μ_bm, σ²_bm) ‖ N(0, v_bm·I))
          = Σ_m (1/B) Σ_b [m ∈ S_b] · Σ_j ½ (σ²_bmj / v_bm + μ²_bmj / v_bm − log(σ²_bmj / v_bm) − 1)
    L_lvl = Σ_m (1/B) Σ_b [m ∈ S_b] · (l̂_bm − l_bm)²

``v = 1`` is the standard normal prior (DMRNet's L_DR, the default); the released UDML code uses the injected
noise "variance" label as ``v`` (``kl_prior: level`` in the method).
"""

from __future__ import annotations

import torch


def prior_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_var: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ``KL(N(μ, exp(logvar)) ‖ N(0, v·I))`` summed over each sample's elements.

    Args:
        mu: means μ.
        logvar: log-variances log σ².
        prior_var: ``v`` per sample (> 0); ``None`` = 1 (the standard normal).

    Shape: mu, logvar ``[B, *]``, prior_var ``[B]`` -> ``[B]``.
    """
    if mu.shape != logvar.shape or mu.dim() < 1:
        raise ValueError(
            f"prior_kl expects mu and logvar of one shape [B, *], got {tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    if prior_var is None:
        log_v = torch.zeros(len(mu), dtype=mu.dtype, device=mu.device)
    else:
        if prior_var.shape != (len(mu),):
            raise ValueError(f"prior_kl: prior_var must be [B] = [{len(mu)}], got {tuple(prior_var.shape)}")
        log_v = prior_var.to(mu.dtype).log()
    log_v = log_v.view(-1, *([1] * (mu.dim() - 1)))
    per_element = 0.5 * ((logvar - log_v).exp() + mu.square() * (-log_v).exp() - (logvar - log_v) - 1.0)
    return per_element.reshape(len(mu), -1).sum(dim=1)


def masked_batch_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``Σ_m (1/B) Σ_b present_bm · values_bm``. Shape: ``[B, M]``, ``[B, M]`` -> scalar."""
    if values.shape != present.shape or values.dim() != 2:
        raise ValueError(f"expected [B, M] values and mask, got {tuple(values.shape)} and {tuple(present.shape)}")
    return (values * present.to(values.dtype)).sum() / values.shape[0]


def level_loss(predicted: torch.Tensor, level: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``L_lvl = Σ_m (1/B) Σ_b [m ∈ S_b] (l̂_bm − l_bm)²``. Shape: three ``[B, M]`` -> scalar."""
    if predicted.shape != level.shape:
        raise ValueError(f"level_loss: predicted {tuple(predicted.shape)} and level {tuple(level.shape)} differ")
    return masked_batch_mean((predicted - level.to(predicted.dtype)).square(), present)


def embedding_kl(
    mus: list[torch.Tensor],
    logvars: list[torch.Tensor],
    present: torch.Tensor,
    prior_var: torch.Tensor | None = None,
) -> torch.Tensor:
    """``L_KL = Σ_m (1/B) Σ_b [m ∈ S_b] KL(N(μ_bm, σ²_bm) ‖ N(0, v_bm I))``.

    Shape: mus[m], logvars[m] ``[B, *F_m]``, present ``[B, M]``, prior_var ``[B, M]`` or None -> scalar.
    """
    if len(mus) != present.shape[1] or len(logvars) != len(mus):
        raise ValueError(
            f"embedding_kl: {len(mus)} modalities of μ, {len(logvars)} of log σ², mask {tuple(present.shape)}"
        )
    per = [
        prior_kl(mu, lv, None if prior_var is None else prior_var[:, j]) for j, (mu, lv) in enumerate(zip(mus, logvars))
    ]
    return masked_batch_mean(torch.stack(per, dim=1), present)
