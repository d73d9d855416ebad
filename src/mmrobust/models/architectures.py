"""Whole-model architectures: models that are not an encoder/fusion/neck/head composition.

A model config with the key ``architecture`` is built from this registry (``build_model`` dispatches on
it); every other key of the config is an option of the architecture, validated against its signature.
Each architecture is a ``MultimodalModel`` (same public stages) built as
``cls(modalities, input_shapes, num_classes, **options)``.

- ``esanet``: ESANet-style RGB-D segmentation, fusion at every encoder stage (``models/esanet.py``).
"""

from __future__ import annotations

from mmrobust.models.esanet import ESANet
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import Registry

ARCHITECTURES: Registry[MultimodalModel] = Registry("architecture")
ARCHITECTURES.register("esanet")(ESANet)
