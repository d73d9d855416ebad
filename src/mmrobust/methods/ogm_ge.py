"""``ogm_ge``: On-the-fly Gradient Modulation with Generalization Enhancement (Peng et al., CVPR 2022).

Plain ``L = CE`` on the fused logits; the gradients of the dominant modalities' encoders are damped:

- score ``s^u_i = softmax(W^u z^u_i + b/V)_{y_i}`` with ``W^u`` the slice of the concatenation head that
  multiplies modality ``u``'s features (exact when the model is ``concat`` fusion + ``identity`` neck +
  ``linear`` head). For any other fusion the score of ``u`` is taken from ``u``'s unimodal logits through
  the shared stages, ``softmax(head(neck(fuse(z, {u}))))_{y}`` — for the concat model that is
  ``W^u z^u + b``: the same up to the split of the bias (see docs/imbalance.md);
- ``ρ^u = s̄^u / mean_{k≠u} s̄^k`` (``s̄`` the batch mean over the samples where the modality is present,
  which is the paper's ratio of sums with complete data); ``k^u = 1 − tanh(α·ρ^u)`` if ``ρ^u > 1`` else 1;
- in ``after_backward``, during epochs ``[start_epoch, end_epoch)``, every gradient tensor ``g`` of
  encoder ``u`` becomes ``k^u·g + N(0, std(g)²)`` (generalization enhancement).

The score sums are all-reduced (``k`` is identical on every process) and the noise comes from a generator
seeded by (seed, step, parameter), so it is identical on every process and after a resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.batch import Batch
from mmrobust.distributed import all_reduce_sum
from mmrobust.methods.base import METHODS, EpochContext, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.diagnostics import ImbalanceDiagnostics
from mmrobust.methods.unimodal import unimodal_logits
from mmrobust.models.fusion import Concat
from mmrobust.models.heads import LinearHead
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.necks import IdentityNeck


def ogm_coefficients(scores: torch.Tensor, valid: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``ρ`` and ``k`` from the mean score of each modality.

    A modality without statistics (``valid`` false), or the only one with statistics, gets ``ρ = k = 1``.

    Shape: scores ``[M]``, valid ``[M]`` -> two ``[M]``.
    """
    if scores.shape != valid.shape or scores.dim() != 1:
        raise ValueError(f"ogm_coefficients expects two [M] tensors, got {tuple(scores.shape)}, {tuple(valid.shape)}")
    kept = torch.where(valid, scores, torch.zeros_like(scores))
    others = valid.sum() - valid.long()  # [M] number of other valid modalities
    mean_others = (kept.sum() - kept) / others.clamp_min(1)
    defined = valid & (others > 0)
    rho = torch.where(defined, kept / mean_others.clamp_min(1e-12), torch.ones_like(scores))
    k = torch.where(rho > 1, 1 - torch.tanh(alpha * rho), torch.ones_like(rho))
    return rho, k


def concat_head(model: MultimodalModel) -> nn.Linear | None:
    """The linear layer applied directly to the concatenated features, when the model has one."""
    if (
        isinstance(model.fusion, Concat)
        and isinstance(model.neck_module, IdentityNeck)
        and isinstance(model.head_module, LinearHead)
    ):
        return model.head_module.fc
    return None


def concat_logits(
    model: MultimodalModel, fc: nn.Linear, features: dict[str, torch.Tensor], bias_share: float
) -> dict[str, torch.Tensor]:
    """``W^u z^u + bias_share · b`` per encoded modality, ``W^u`` the columns of ``fc`` for ``u``'s features.

    Shape: features[u] ``[B, *feature_shapes[u]]`` -> {u: ``[B, C]``}.
    """
    out, offset = {}, 0
    for m in model.modalities:
        width = math.prod(model.feature_shapes[m])
        if m in features:
            out[m] = F.linear(features[m].flatten(1), fc.weight[:, offset : offset + width], bias_share * fc.bias)
        offset += width
    return out


@torch.no_grad()
def modality_scores(model: MultimodalModel, features: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """Mean score ``s̄^u`` of each modality over every process's batch, and which modalities have one.

    Shape: -> ``[2, M]`` (mean score, number of samples).
    """
    fc = concat_head(model)
    if fc is not None:
        logits = concat_logits(model, fc, features, 1.0 / len(model.modalities))
    else:
        logits = unimodal_logits(model, features, batch.present)
    sums = torch.zeros(2, len(model.modalities), device=batch.present.device)
    for m, p in logits.items():
        j = model.modalities.index(m)
        keep = batch.present[:, j].float()  # [B]
        score = p.float().softmax(1).gather(1, batch.target.unsqueeze(1)).flatten(1).mean(1)  # [B]
        sums[:, j] = torch.stack([(score * keep).sum(), keep.sum()])
    sums = all_reduce_sum(sums)  # identical on every process
    return torch.stack([sums[0] / sums[1].clamp_min(1), sums[1]])


def noise_seed(seed: int, step: int, index: int) -> int:
    """Seed of the generalization-enhancement noise of one parameter tensor at one step."""
    return ((seed * 1_000_003 + step) * 10_007 + index) % (2**63 - 1)


@METHODS.register("ogm_ge")
class OGMGE(Method):
    """OGM-GE; see the module docstring.

    Args:
        context: the run (modality order).
        alpha: α of ``k = 1 − tanh(α·ρ)`` (0.8 on CREMA-D, 0.1 on VGGSound in the paper).
        start_epoch: first epoch (0-based) of the modulation.
        end_epoch: first epoch without it.
    """

    supported_tasks = ("classification",)
    task_reason = "its unimodal coefficients are defined on per-sample class predictions (classification only)"

    def __init__(self, context: MethodContext, alpha: float = 0.8, start_epoch: int = 0, end_epoch: int = 50) -> None:
        super().__init__()
        self.task = context.task
        self.alpha = alpha
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.diagnostics = ImbalanceDiagnostics(context.modalities)
        self.coefficients: torch.Tensor | None = None  # k of the last forward, used by after_backward

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        features = model.encode(batch)
        logits = model.head(model.neck(model.fuse(features, batch.present)))  # [B, C]
        loss = self.task.loss(logits, batch.target)
        scores = modality_scores(model, features, batch)  # [2, M]
        valid = scores[1] > 0
        rho, k = ogm_coefficients(scores[0], valid, self.alpha)
        self.coefficients = k
        terms = {"ce": loss.detach()}
        values: dict[str, torch.Tensor] = {}
        for j, m in enumerate(model.modalities):
            if valid[j]:
                terms |= {f"rho_{m}": rho[j], f"k_{m}": k[j]}
                values |= {f"ogm/rho/{m}": rho[j], f"ogm/k/{m}": k[j]}
        self.diagnostics.add(values)
        return StepOutput(loss=loss, terms=terms, output=logits)

    def after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        k, self.coefficients = self.coefficients, None
        if k is None or not self.start_epoch <= state.epoch < self.end_epoch:
            self.diagnostics.add_gradient_norms(model)
            return
        params = [(j, p) for j, m in enumerate(model.modalities) for p in model.encoders[m].parameters()]
        stds = {}
        for index, (j, p) in enumerate(params):
            if p.grad is not None:
                stds[index] = p.grad.std(correction=0)
                p.grad.mul_(k[j].to(p.grad.dtype))
        self.diagnostics.add_gradient_norms(model)  # after the modulation, before the noise
        for index, std in stds.items():
            grad = params[index][1].grad
            assert grad is not None
            generator = torch.Generator(device=grad.device).manual_seed(noise_seed(state.seed, state.step, index))
            grad.add_(torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype) * std)

    def on_epoch_end(self, model: MultimodalModel, state: TrainState, ctx: EpochContext) -> None:
        self.diagnostics.epoch_end(model, state, ctx)
