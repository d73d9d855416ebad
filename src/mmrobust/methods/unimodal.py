"""Unimodal predictions through the shared fusion, neck and head — no new parameters.

For every encoded modality ``m``: ``p_m = head(neck(fuse(z, present ∧ {m})))``, i.e. the model's own
prediction when only ``m`` is present (the other features are zeroed by ``fuse``). ARL, DGL and OGM-GE
all use it; it equals ``model(batch.restrict({m}))`` without encoding the batch again.

Two rules hold for these auxiliary passes:

- ``shared="detached"`` runs the fusion, neck and head with detached parameters
  (``torch.func.functional_call``): the loss of ``p_m`` reaches the encoders only, in the same backward
  pass as everything else (DGL).
- They never change the BatchNorm running statistics of the shared stages: those stay the statistics of
  the fused training forward, the only one the deployed model replays. (Buffers are passed as copies.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from mmrobust.models.multimodal import MultimodalModel

SHARED_STAGES = ("fusion", "neck_module", "head_module")


class _SharedStages(nn.Module):
    """``head(neck(fuse(features, present)))`` as a module, so ``functional_call`` can swap its tensors."""

    def __init__(self, model: MultimodalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.neck(self.model.fuse(features, present)))


def unimodal_logits(
    model: MultimodalModel,
    features: Mapping[str, torch.Tensor],
    present: torch.Tensor,
    shared: Literal["trained", "detached"] = "trained",
) -> dict[str, torch.Tensor]:
    """Logits of each encoded modality alone through the shared stages.

    Args:
        model: the multimodal model.
        features: ``model.encode(batch)`` (possibly transformed, e.g. by a gradient residual).
        present: the batch's availability mask.
        shared: ``trained`` — gradients reach the fusion, neck and head as usual; ``detached`` — they do
            not (only the features get gradients).

    Shape: features[m] ``[B, *]``, present ``[B, M]`` -> {m: ``[B, C]``} in modality order.
    """
    if shared not in ("trained", "detached"):
        raise ValueError(f"unimodal_logits: shared must be 'trained' or 'detached', got {shared!r}")
    if model.fusion_inside_encoders:
        raise ValueError(
            "unimodal predictions need a model that fuses after its encoders; this model fuses inside them "
            "(fusion_inside_encoders = True), so zeroing the other features would not remove them"
        )
    tensors: dict[str, torch.Tensor] = {}
    for stage in SHARED_STAGES:
        module = getattr(model, stage)
        for name, p in module.named_parameters():
            tensors[f"model.{stage}.{name}"] = p.detach() if shared == "detached" else p
        for name, b in module.named_buffers():
            tensors[f"model.{stage}.{name}"] = b.clone()
    wrapper = _SharedStages(model)
    out = {}
    for j, m in enumerate(model.modalities):
        if m in features:
            only = torch.zeros_like(present)
            only[:, j] = present[:, j]
            out[m] = functional_call(wrapper, tensors, (features, only))  # [B, C]
    return out


def present_columns(model: MultimodalModel, logits: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
    """The columns of ``present`` for the modalities of ``logits``, in its order. Shape: -> ``[B, len(logits)]``."""
    return present[:, [model.modalities.index(m) for m in logits]]
