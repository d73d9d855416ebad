"""Models: encoders, fusions, necks, heads and the MultimodalModel that composes them."""

from mmrobust.models.av_resnet import AudioResNet, FramesResNet  # registers audio_resnet, frames_resnet
from mmrobust.models.conv_encoders import ConvEncoder, SpectrogramEncoder  # registers conv, spectrogram_cnn
from mmrobust.models.encoders import ENCODERS
from mmrobust.models.fusion import FUSIONS
from mmrobust.models.heads import HEADS
from mmrobust.models.multimodal import MultimodalModel, build_model
from mmrobust.models.necks import NECKS
from mmrobust.models.osmd_encoder import OSMDEncoder
from mmrobust.models.resnet import ResNet, load_pretrained
from mmrobust.models.udml_fusion import UDMLFusion

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "HEADS",
    "NECKS",
    "AudioResNet",
    "ConvEncoder",
    "FramesResNet",
    "MultimodalModel",
    "OSMDEncoder",
    "ResNet",
    "SpectrogramEncoder",
    "UDMLFusion",
    "build_model",
    "load_pretrained",
]
