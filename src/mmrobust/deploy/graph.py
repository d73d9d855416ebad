"""DeployedGraph: the deployed model as one tensor-in, tensor-out module for export (ONNX, TorchScript).

Inputs: one tensor per deployed modality, in ``spec.deployed`` order, then ``present``, a bool ``[B, D]`` mask
(column j: ``deployed[j]`` is present). The caller passes zeros for an absent modality; the graph never
reads them: it runs every encoder and lets the mask select, exactly as ``MultimodalModel.fuse`` zeroes
the features of absent modalities per sample (``torch.where``, so garbage in an absent input cannot leak):

    logits = head(neck(fuse({m: encoder_m(x_m)}, present)))          (fusion after the encoders)
    logits = head(neck(fuse({m: x_m}, present)))                      (``fusion_inside_encoders``)

This equals ``model(batch)`` for every subset: ``encode`` only skips encoders whose output the mask then
discards. Modalities the deployed model does not take (e.g. OS-MD's privileged one) get zero features and
a False column, as if absent for every sample. One graph thus serves all ``2^D − 1`` subsets.

Shape: x_m ``[B, *spec.inputs[m].shape]``, present ``[B, D]`` -> logits ``[B, K]`` (classification) or
``[B, K, H, W]`` (segmentation).
"""

from __future__ import annotations

import torch
from torch import nn

from mmrobust.deploy.spec import ModelSpec
from mmrobust.models.multimodal import MultimodalModel


class DeployedGraph(nn.Module):
    """See the module docstring."""

    def __init__(self, model: MultimodalModel, spec: ModelSpec) -> None:
        super().__init__()
        self.model = model
        self.deployed = tuple(spec.deployed)
        self.modalities = tuple(model.modalities)
        self.inside = bool(getattr(model, "fusion_inside_encoders", False))
        # the shape of a never-present modality's zeros: its input (fusion inside) or its feature
        self.zero_shapes = {
            m: tuple(spec.inputs[m].shape if self.inside else model.feature_shapes[m])
            for m in self.modalities
            if m not in self.deployed
        }

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        *xs, present = args
        if len(xs) != len(self.deployed):
            raise ValueError(f"expected {len(self.deployed)} modality tensors {list(self.deployed)} and present")
        present = present.to(torch.bool)  # [B, D]
        never = torch.zeros_like(present[:, :1])  # [B, 1], False
        columns = []
        features: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            if m in self.deployed:
                j = self.deployed.index(m)
                x = xs[j]
                features[m] = x if self.inside else self.model.encoders[m](x)
                columns.append(present[:, j : j + 1])
            else:
                shape = self.zero_shapes[m]
                zeros = never.to(torch.float32).view(-1, *([1] * len(shape)))  # [B, 1, ..., 1]
                features[m] = zeros.expand(-1, *shape)  # batch size stays symbolic
                columns.append(never)
        mask = torch.cat(columns, dim=1)  # [B, M] over the model's modalities
        return self.model.head(self.model.neck(self.model.fuse(features, mask)))
