"""``arl``: Asymmetric Representation Learning (Shi et al., ICCV 2025, arXiv:2507.10203).

Claim: the optimal dependence on each modality is inversely proportional to its prediction variance.
With ``p_m`` the logits of modality ``m`` alone through the shared fusion/neck/head (no new parameters):

- variance proxy ``σ²_m`` = batch mean of the predictive entropy of ``softmax(p_m)``;
- ``σ̂²`` = ``σ²`` normalized over the modalities, clamped at ``≥ variance_floor`` (0.3 for two
  modalities in the reference code; ``0.6 / V`` by default here, see docs/imbalance.md);
  ``q_m = (1/σ̂²_m) / Σ_k 1/σ̂²_k``;
- dependence ``d_m`` = batch mean of ``Σ_c |p_m,c|``, normalized over the modalities;
- ``w = softmax_m(T · q_m · (1 − d_m))``;
- from ``start_epoch`` on, a gradient residual on each encoder output: ``∂L/∂z_m ← (1 + w_m) ∂L/∂z_m``;
- ``L = CE(p_fused) + γ Σ_m CE(p_m)`` (the prediction-bias term).

The statistics are sums all-reduced over processes, so ``w`` is identical on every process.
"""

from __future__ import annotations

import torch

from mmrobust.batch import Batch
from mmrobust.distributed import all_reduce_sum
from mmrobust.losses.gradient_residual import gradient_residual
from mmrobust.losses.imbalance import FusedUnimodalLoss
from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.diagnostics import ImbalanceDiagnostics
from mmrobust.methods.unimodal import present_columns, unimodal_logits
from mmrobust.models.multimodal import MultimodalModel


def arl_coefficients(
    variance: torch.Tensor,
    dependence: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    variance_floor: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ARL's ``q``, normalized ``d`` and ``w`` from per-modality statistics.

    Args:
        variance: ``σ²_m``, the mean predictive entropy of each modality alone.
        dependence: the mean ``Σ_c |p_m,c|`` of each modality alone.
        valid: which modalities have statistics (present for at least one sample); the others get 0.
        temperature: ``T``.
        variance_floor: clamp of the normalized variance; ``None`` = ``0.6 / V`` (V valid modalities).

    Shape: ``[M]`` each -> three ``[M]``.
    """
    if not (variance.shape == dependence.shape == valid.shape) or variance.dim() != 1:
        raise ValueError(
            f"arl_coefficients expects three [M] tensors, got {tuple(variance.shape)}, "
            f"{tuple(dependence.shape)} and {tuple(valid.shape)}"
        )
    n = int(valid.sum())
    if n == 0:
        raise ValueError("arl_coefficients: no modality has statistics")
    floor = 0.6 / n if variance_floor is None else variance_floor
    zero = torch.zeros_like(variance)
    var = torch.where(valid, variance, zero)
    var_hat = (var / var.sum().clamp_min(1e-12)).clamp_min(floor)
    inverse = torch.where(valid, 1.0 / var_hat, zero)
    q = inverse / inverse.sum()
    dep = torch.where(valid, dependence, zero)
    d = dep / dep.sum().clamp_min(1e-12)
    w = torch.softmax(torch.where(valid, temperature * q * (1 - d), torch.full_like(q, -torch.inf)), dim=0)
    return q, d, w


def modality_statistics(
    logits: dict[str, torch.Tensor], mask: torch.Tensor, modalities: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean predictive entropy, mean ``Σ_c |p_c|`` and validity per modality over every process's batch.

    Shape: logits[m] ``[B, C, *]``, mask ``[B, len(logits)]`` -> three ``[M]``.
    """
    sums = torch.zeros(3, len(modalities), device=mask.device)  # entropy, dependence, count
    for v, (m, p) in enumerate(logits.items()):
        p = p.detach().float()
        keep = mask[:, v].float()  # [B]
        entropy = per_sample(-(p.softmax(1) * p.log_softmax(1)).sum(1))  # [B]
        magnitude = per_sample(p.abs().sum(1))  # [B]
        j = modalities.index(m)
        sums[:, j] = torch.stack([(entropy * keep).sum(), (magnitude * keep).sum(), keep.sum()])
    sums = all_reduce_sum(sums)  # identical on every process
    count = sums[2].clamp_min(1)
    return sums[0] / count, sums[1] / count, sums[2] > 0


def per_sample(x: torch.Tensor) -> torch.Tensor:
    """Mean over the positions of dense outputs. Shape: ``[B, *]`` -> ``[B]``."""
    return x.flatten(1).mean(1) if x.dim() > 1 else x


@METHODS.register("arl")
class ARL(Method):
    """ARL; see the module docstring.

    Args:
        context: the run (modality order).
        gamma: γ, weight of the unimodal (bias) cross-entropies.
        temperature: T of the coefficient softmax (8 on CREMA-D in the paper, 4 elsewhere).
        start_epoch: first epoch (0-based) with the gradient residual.
        variance_floor: clamp of the normalized variance (``None``: 0.6 / number of modalities).
    """

    supported_tasks = ("classification",)
    task_reason = "its unimodal coefficients are defined on per-sample class predictions (classification only)"

    def __init__(
        self,
        context: MethodContext,
        gamma: float = 4.0,
        temperature: float = 4.0,
        start_epoch: int = 5,
        variance_floor: float | None = None,
    ) -> None:
        super().__init__()
        self.loss = FusedUnimodalLoss(gamma)
        self.temperature = temperature
        self.start_epoch = start_epoch
        self.variance_floor = variance_floor
        self.diagnostics = ImbalanceDiagnostics(context.modalities)

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        features = model.encode(batch)
        scales = {m: torch.ones((), device=z.device) for m, z in features.items()}  # set once w is known
        if state.epoch >= self.start_epoch:
            features = {m: gradient_residual(z, scales[m]) for m, z in features.items()}
        fused = model.head(model.neck(model.fuse(features, batch.present)))  # [B, C]
        unimodal = unimodal_logits(model, features, batch.present)
        mask = present_columns(model, unimodal, batch.present)  # [B, V]
        loss, ce_fused, ce = self.loss(fused, torch.stack(list(unimodal.values())), batch.target, mask)
        variance, dependence, valid = modality_statistics(unimodal, mask, model.modalities)
        q, d, w = arl_coefficients(variance, dependence, valid, self.temperature, self.variance_floor)
        terms = {"ce_fused": ce_fused.detach()}
        values: dict[str, torch.Tensor] = {}
        for v, m in enumerate(unimodal):
            j = model.modalities.index(m)
            scales[m].fill_(1.0 + w[j])
            terms |= {f"ce_{m}": ce[v].detach(), f"w_{m}": w[j]}
            values |= {f"arl/q/{m}": q[j], f"arl/d/{m}": d[j], f"arl/w/{m}": w[j]}
        self.diagnostics.add(values)
        return StepOutput(loss=loss, terms=terms, output=fused)

    def after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        self.diagnostics.add_gradient_norms(model)

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        self.diagnostics.epoch_end(model, state, ctx)
