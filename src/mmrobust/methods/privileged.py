"""Learning with a privileged modality: the deployed network and helpers.

A run declares its **ordinary** modalities (present at deployment) and its **privileged** ones (training
only), see ``mmrobust.roles``. The methods that use them (``osmd``, ``kd_*``, ``ordinary_only``) train a
model that takes the ordinary modalities only:

- the ``ordinary`` runner (``mmrobust.runners``) evaluates exactly the non-empty subsets of the ordinary
  modalities (one row for a single ordinary modality), so neither the report nor ``mmrobust eval`` shows
  inputs the deployed model never takes;
- :func:`export_deployed` returns the deployed network as a module whose inputs are the ordinary
  modalities only;
- :func:`pretrained_model` trains (or loads) a model restricted to a subset, for teachers and pretrained
  encoders, and :func:`~mmrobust.methods.base.frozen` freezes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mmrobust.batch import Batch
from mmrobust.engine.checkpoint import load_checkpoint, load_model_state
from mmrobust.methods.base import METHODS, Method, MethodContext, StepOutput, TrainState
from mmrobust.methods.full import Full
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.roles import resolve_roles
from mmrobust.tasks import Task


class DeployedModel(nn.Module):
    """The deployment network of a model that takes the ordinary modalities only.

    ``forward(*inputs)`` takes one tensor per ordinary modality, in ``modalities`` order, and returns the
    logits; the features of the other modalities are zeros and marked absent, exactly as ``model.fuse`` does.
    It holds (shares) the ordinary encoders, the fusion, the neck and the head — no privileged encoder.
    """

    available: torch.Tensor  # [M] bool: modality j is an input of the deployed model

    def __init__(self, model: MultimodalModel, ordinary: Sequence[str]) -> None:
        super().__init__()
        self.modalities = tuple(ordinary)
        self.encoders = nn.ModuleDict({m: model.encoders[m] for m in self.modalities})
        self.fusion, self.neck, self.head = model.fusion, model.neck_module, model.head_module
        self.order = model.modalities
        self.feature_shapes = dict(model.feature_shapes)
        available = torch.tensor([m in self.modalities for m in self.order])  # [M], the same for every sample
        self.register_buffer("available", available, persistent=False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.modalities):
            raise ValueError(
                f"the deployed model takes {len(self.modalities)} inputs {list(self.modalities)}, got {len(inputs)}"
            )
        given = {m: self.encoders[m](x) for m, x in zip(self.modalities, inputs)}
        batch = len(inputs[0])
        ref = next(iter(given.values()))
        feats = [given[m] if m in given else ref.new_zeros(batch, *self.feature_shapes[m]) for m in self.order]
        present = self.available.to(ref.device).expand(batch, -1)  # [B, M]
        return self.head(self.neck(self.fusion(feats, present)))  # [B, C]


def export_deployed(model: MultimodalModel, ordinary: Sequence[str]) -> DeployedModel:
    """The deployed network of ``model`` taking only the ``ordinary`` modalities (see :class:`DeployedModel`)."""
    unknown = [m for m in ordinary if m not in model.modalities]
    if unknown or not ordinary:
        raise ValueError(f"ordinary modalities {list(ordinary)} are not modalities of the model {model.modalities}")
    return DeployedModel(model, ordinary)


def pretrained_model(
    context: MethodContext,
    name: str,
    subset: int,
    model: MultimodalModel,
    checkpoint: str | None = None,
    max_epochs: int | None = None,
) -> MultimodalModel:
    """Load ``model`` from ``checkpoint`` (its ``model`` entry) or train it with ``full`` restricted to
    ``subset`` (trained and selected on that subset, in the run's sub-folder ``name``) and load the best."""
    path = Path(checkpoint) if checkpoint else context.fit(name, model, Full(context), max_epochs, restrict_to=subset)
    load_model_state(model, load_checkpoint(path)["model"], path)
    return model


def restricted_cross_entropy(model: MultimodalModel, batch: Batch, subset: int, task: Task) -> StepOutput:
    """The task loss of the model on the batch restricted to ``subset``, over the samples that keep a modality."""
    restricted = batch.restrict(subset)
    keep = restricted.present.any(dim=1)  # [B]
    if not bool(keep.any()):
        names = [m for j, m in enumerate(batch.modalities) if subset >> j & 1]
        raise ValueError(f"no sample of this batch has any of the modalities {names}; the model has no input")
    logits = model(restricted)  # [B, C]
    loss = task.loss(logits[keep], restricted.target[keep])
    return StepOutput(loss=loss, terms={"ce": loss.detach()}, output=logits)


class RoleRestricted(Method):
    """``L = CE`` on the batch restricted to the modalities of some roles; subclasses pick the roles.

    Args:
        context: the run.
        ordinary, privileged: the roles (defaults as :func:`resolve_roles`).
    """

    def __init__(
        self, context: MethodContext, ordinary: list[str] | None = None, privileged: list[str] | None = None
    ) -> None:
        super().__init__()
        self.roles = resolve_roles(context.modalities, ordinary, privileged)
        self.task = context.task

    def trained_subset(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def deployed_modalities(self) -> tuple[str, ...]:
        subset = self.trained_subset()
        return tuple(m for j, m in enumerate(self.roles.modalities) if subset >> j & 1)

    def forward(self, model: MultimodalModel, batch: Batch, state: TrainState) -> StepOutput:
        return restricted_cross_entropy(model, batch, self.trained_subset(), self.task)


@METHODS.register("ordinary_only")
class OrdinaryOnly(RoleRestricted):
    """The ordinary-modality baseline: trained and deployed on the ordinary modalities only."""

    def trained_subset(self) -> int:
        return self.roles.ordinary_subset


@METHODS.register("complete")
class Complete(RoleRestricted):
    """The complete-modality model of the declared roles: ordinary and privileged modalities (the KD
    teacher; not deployable without the privileged sensor)."""

    def trained_subset(self) -> int:
        return self.roles.ordinary_subset | self.roles.privileged_subset
