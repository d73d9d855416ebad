"""Knowledge-distillation baselines of OS-MD (its Table 1 rows ADDA/MERS/CMKD, by kind of knowledge).

A frozen teacher — a model of the run's architecture trained with ``full`` on the ordinary *and*
privileged modalities (the complete-modality model; trained by ``prepare`` in the sub-folder ``teacher``
or loaded from ``teacher_checkpoint``) — teaches the student, the trained model, which sees the ordinary
modalities only (the batch restricted to them, as at deployment)::

    L = CE(student) + weight · L_KD

- ``kd_logit`` — response KD (Hinton et al. 2015): ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, T = 4;
- ``kd_feature`` — hint KD (FitNets, Romero et al. 2015): ``MSE(r(h_s), h_t)`` on the fused representations
  (the neck outputs) with a learnable regressor ``r`` (linear, 1×1 conv for maps; training only);
- ``kd_relation`` — relation KD (RKD, Park et al. 2019): distance (×25) and angle (×50) terms on the fused
  representations.

All three use the ``ordinary`` runner: the deployed student is evaluated on ordinary inputs only.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from mmrobust.batch import Batch
from mmrobust.distributed import all_gather_with_grad, gather_concat
from mmrobust.losses.kd import hint_loss, response_kd, rkd_loss
from mmrobust.methods.base import METHODS, Method, MethodContext, StepOutput, TrainState, frozen
from mmrobust.methods.privileged import pretrained_model
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.roles import resolve_roles


class Distillation(Method):
    supported_tasks = ("classification",)
    task_reason = "the KD baselines are defined on class logits and pooled features; use osmd for segmentation"

    """Shared part of the KD baselines: roles, the frozen teacher, the student step.

    Args:
        context: the run.
        ordinary: the student's (deployed) modalities (default: the first modality).
        privileged: the teacher's extra modalities (default: the first modality that is not ordinary).
        weight: the weight of the KD loss.
        teacher_checkpoint: load the teacher (a model of this run's architecture) instead of training it.
        teacher_epochs: epochs of the teacher's training (default: trainer.max_epochs).
    """

    def __init__(
        self,
        context: MethodContext,
        ordinary: list[str] | None = None,
        privileged: list[str] | None = None,
        weight: float = 1.0,
        teacher_checkpoint: str | None = None,
        teacher_epochs: int | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.roles = resolve_roles(context.modalities, ordinary, privileged)
        self.weight = weight
        self.teacher_checkpoint, self.teacher_epochs = teacher_checkpoint, teacher_epochs
        self.teacher: MultimodalModel | None = None

    def deployed_modalities(self) -> tuple[str, ...]:
        return self.roles.ordinary

    def prepare(self, model: MultimodalModel) -> None:
        complete = self.roles.ordinary_subset | self.roles.privileged_subset
        teacher = pretrained_model(
            self.context, "teacher", complete, self.context.build_model(), self.teacher_checkpoint, self.teacher_epochs
        )
        self.teacher = frozen(teacher)  # type: ignore[assignment]

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        if self.teacher is None:
            raise RuntimeError(f"{type(self).__name__}: call prepare(model) before training")
        student = batch.restrict(self.roles.ordinary_subset)
        keep = student.present.any(dim=1)  # [B] samples the deployed model can see
        if not bool(keep.any()):
            raise ValueError("no sample of this batch has an ordinary modality; the deployed model has no input")
        fused = model.neck(model.fuse(model.encode(student), student.present))  # h_s
        logits = model.head(fused)  # [B, C]
        with torch.no_grad():
            full = batch.restrict(self.roles.ordinary_subset | self.roles.privileged_subset)
            t_fused = self.teacher.neck(self.teacher.fuse(self.teacher.encode(full), full.present))  # h_t
            t_logits = self.teacher.head(t_fused)
        ce = self.context.task.loss(logits[keep], batch.target[keep])
        kd = self.distill(fused[keep], logits[keep], t_fused[keep], t_logits[keep])
        return StepOutput(loss=ce + self.weight * kd, terms={"ce": ce.detach(), "kd": kd.detach()}, output=logits)

    def distill(
        self, fused: torch.Tensor, logits: torch.Tensor, teacher_fused: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Regressor(nn.Module):
    """FitNets' regressor: a 1×1 convolution, a linear map on vectors. Shape: [B, D] or [B, D, H, W] -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.dim() == 4 else self.conv(x[:, :, None, None]).flatten(1)


@METHODS.register("kd_logit")
class LogitKD(Distillation):
    """Response KD with temperature T (default 4); the other arguments as :class:`Distillation`."""

    def __init__(
        self,
        context: MethodContext,
        ordinary: list[str] | None = None,
        privileged: list[str] | None = None,
        weight: float = 1.0,
        temperature: float = 4.0,
        teacher_checkpoint: str | None = None,
        teacher_epochs: int | None = None,
    ) -> None:
        super().__init__(context, ordinary, privileged, weight, teacher_checkpoint, teacher_epochs)
        self.temperature = temperature

    def distill(
        self, fused: torch.Tensor, logits: torch.Tensor, teacher_fused: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        return response_kd(logits, teacher_logits, self.temperature)


@METHODS.register("kd_feature")
class FeatureKD(Distillation):
    """Hint KD on the fused representation through a learnable :class:`Regressor` (training only)."""

    regressor: Regressor

    def prepare(self, model: MultimodalModel) -> None:
        super().prepare(model)
        self.regressor = Regressor(cast(int, model.neck_module.out_features))

    def distill(
        self, fused: torch.Tensor, logits: torch.Tensor, teacher_fused: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        return hint_loss(self.regressor(fused), teacher_fused)


@METHODS.register("kd_relation")
class RelationKD(Distillation):
    """RKD on the fused representation; ``distance_weight`` 25 and ``angle_weight`` 50 (Park et al.).

    RKD compares samples with each other (distances, angles), so a distributed run computes it on the global
    batch: every process's student features are gathered with gradients, the teacher's without.
    """

    def __init__(
        self,
        context: MethodContext,
        ordinary: list[str] | None = None,
        privileged: list[str] | None = None,
        weight: float = 1.0,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        teacher_checkpoint: str | None = None,
        teacher_epochs: int | None = None,
    ) -> None:
        super().__init__(context, ordinary, privileged, weight, teacher_checkpoint, teacher_epochs)
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def distill(
        self, fused: torch.Tensor, logits: torch.Tensor, teacher_fused: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        student, teacher = all_gather_with_grad(fused), gather_concat(teacher_fused)  # [Σ_r b_r, D] global batch
        return rkd_loss(student, teacher, self.distance_weight, self.angle_weight)
