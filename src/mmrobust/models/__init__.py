"""Models: encoders, fusions, necks, heads and the MultimodalModel that composes them."""

from mmrobust.models.encoders import ENCODERS
from mmrobust.models.fusion import FUSIONS
from mmrobust.models.heads import HEADS
from mmrobust.models.multimodal import MultimodalModel, build_model
from mmrobust.models.necks import NECKS
from mmrobust.models.osmd_encoder import OSMDEncoder
from mmrobust.models.resnet import ResNet, load_pretrained

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "HEADS",
    "NECKS",
    "MultimodalModel",
    "OSMDEncoder",
    "ResNet",
    "build_model",
    "load_pretrained",
]
