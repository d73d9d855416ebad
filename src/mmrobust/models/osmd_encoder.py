"""The OS-MD deployment network of an ordinary modality (Wei et al. 2023, Fig. 1 and 3), as an encoder.

``OSMDEncoder`` holds, for one ordinary modality ``x_o``:

- φ_o, the ordinary encoder (pretrained on ``x_o`` alone, fine-tuned here),
- φ_s, the task-shared hallucination encoder (also on ``x_o``, initialized from the pretrained φ_o),
- a *translator* on ``(φ_s(x_o), φ_o(x_o))`` — CTN by default — whose features are concatenated and
  fused by a 1×1 convolution (a linear layer for vectors) into φ_t(x_o), the encoder's output, of φ_o's
  feature shape. The model's fusion, neck and head follow as usual, so the deployed model is an ordinary
  ``MultimodalModel`` (the red inference path of Fig. 1) and ``mmrobust eval`` rebuilds it from its config::

      model.encoders.rgb: {name: osmd, encoder: {name: resnet, ...}, translator: ctn}

Translators (``TRANSLATORS``), each returning the features to fuse and the pairs its loss matches (MSE):

- ``ctn`` — CTN: shared blocks T1, T2 applied to both φ_s and φ_o; features [T1φ_s, T1φ_o, T2φ_s, T2φ_o],
  pairs (T1φ_s, T1φ_o), (T2φ_s, T2φ_o) (Eq. 8). Each block is applied to φ_s and φ_o stacked along the
  batch, so its BatchNorm normalizes both with one statistic in training as at inference.
- ``concat`` — the "−CTN" ablation: features [φ_s, φ_o], no translation loss.
- ``autoencoder`` — the "−CTN+AE" ablation: an unshared encoder E and decoder D translate φ_s into φ_o;
  features [φ_s, φ_o, E φ_s, D E φ_s], pair (D E φ_s, φ_o).

Blocks are Linear + BatchNorm1d + ReLU on vectors ``[B, D]`` and 3×3 conv + BatchNorm2d + ReLU on maps
``[B, C, H, W]`` (the paper's "convolution, batch norm and activation").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmrobust.models.encoders import ENCODERS
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.registry import ConfigError, Registry

TRANSLATORS: Registry[nn.Module] = Registry("osmd translator")


def transform_block(shape: tuple[int, ...]) -> nn.Sequential:
    """Shape-preserving block: Linear+BN1d+ReLU for ``[D]`` features, 3×3 conv+BN2d+ReLU for ``[C, H, W]``."""
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], shape[0]), nn.BatchNorm1d(shape[0]), nn.ReLU())
    if len(shape) == 3:
        c = shape[0]
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
    raise ValueError(f"OS-MD blocks need vector [D] or map [C, H, W] features, got feature shape {shape}")


def pointwise(num_inputs: int, shape: tuple[int, ...]) -> nn.Module:
    """The 1×1 fusion of ``num_inputs`` concatenated features back to ``shape``."""
    if len(shape) == 1:
        return nn.Linear(num_inputs * shape[0], shape[0])
    return nn.Conv2d(num_inputs * shape[0], shape[0], 1)


@dataclass
class Translation:
    """``features`` to concatenate and fuse; ``pairs`` ``(translated, target)`` matched by the translation loss."""

    features: list[torch.Tensor]
    pairs: list[tuple[torch.Tensor, torch.Tensor]]


@TRANSLATORS.register("ctn")
class CrossTranslation(nn.Module):
    """CTN: shared T1, T2 on both representations. Shape: 2 × [B, *F] -> 4 features [B, *F]."""

    num_features, has_loss = 4, True

    def __init__(self, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.t1, self.t2 = transform_block(feature_shape), transform_block(feature_shape)

    def forward(self, hallucinated: torch.Tensor, ordinary: torch.Tensor) -> Translation:
        both = torch.cat([hallucinated, ordinary])  # [2B, *F]: one BatchNorm statistic for both inputs
        s1, o1 = self.t1(both).chunk(2)
        s2, o2 = self.t2(both).chunk(2)
        return Translation([s1, o1, s2, o2], [(s1, o1), (s2, o2)])


@TRANSLATORS.register("concat")
class NoTranslation(nn.Module):
    """The "−CTN" ablation: the two representations, no translation. Shape: 2 × [B, *F] -> 2 features."""

    num_features, has_loss = 2, False

    def __init__(self, feature_shape: tuple[int, ...]) -> None:
        super().__init__()

    def forward(self, hallucinated: torch.Tensor, ordinary: torch.Tensor) -> Translation:
        return Translation([hallucinated, ordinary], [])


@TRANSLATORS.register("autoencoder")
class AutoEncoderTranslation(nn.Module):
    """The "−CTN+AE" ablation: an unshared encoder/decoder from φ_s to φ_o. Shape: 2 × [B, *F] -> 4 features."""

    num_features, has_loss = 4, True

    def __init__(self, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder, self.decoder = transform_block(feature_shape), transform_block(feature_shape)

    def forward(self, hallucinated: torch.Tensor, ordinary: torch.Tensor) -> Translation:
        code = self.encoder(hallucinated)
        reconstruction = self.decoder(code)
        return Translation([hallucinated, ordinary, code, reconstruction], [(reconstruction, ordinary)])


@dataclass
class OSMDParts:
    """Intermediate results of one forward: φ_s(x_o), φ_o(x_o), the translation and the output φ_t(x_o)."""

    hallucinated: torch.Tensor
    ordinary: torch.Tensor
    translation: Translation
    output: torch.Tensor


class OSMDEncoder(nn.Module):
    """φ_o, φ_s, a translator and the 1×1 fusion (see the module docstring).

    Shape: [B, *in_shape] -> [B, *feature_shape] (φ_o's feature shape).
    """

    def __init__(
        self, ordinary: nn.Module, hallucination: nn.Module, feature_shape: tuple[int, ...], translator: str = "ctn"
    ) -> None:
        super().__init__()
        self.ordinary_encoder, self.hallucination_encoder = ordinary, hallucination
        self.feature_shape = tuple(feature_shape)
        self.translator_name = translator
        self.translator = TRANSLATORS.build(translator, {}, where="translator", feature_shape=self.feature_shape)
        self.fuse = pointwise(self.translator.num_features, self.feature_shape)  # type: ignore[arg-type]

    def load_pretrained(self, encoder: nn.Module) -> None:
        """Initialize φ_o and φ_s from a pretrained ordinary encoder."""
        state = encoder.state_dict()
        self.ordinary_encoder.load_state_dict(state)
        self.hallucination_encoder.load_state_dict(state)

    def parts(self, x: torch.Tensor) -> OSMDParts:
        hallucinated = self.hallucination_encoder(x)  # [B, *F]
        ordinary = self.ordinary_encoder(x)  # [B, *F]
        translation = self.translator(hallucinated, ordinary)
        output = self.fuse(torch.cat(translation.features, dim=1))  # [B, *F]
        return OSMDParts(hallucinated, ordinary, translation, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x).output


@ENCODERS.register("osmd")
def osmd_encoder(in_shape: tuple[int, ...], encoder: dict[str, Any], translator: str = "ctn") -> OSMDEncoder:
    """``{name: osmd, encoder: {...}, translator: ctn|concat|autoencoder}``: φ_o and φ_s are two independently
    initialized instances of ``encoder``."""
    spec = dict(encoder)
    if "name" not in spec:
        raise ConfigError("model.encoder(s).encoder.name: required key is missing (the spec of φ_o and φ_s)")
    name = str(spec.pop("name"))
    ordinary = ENCODERS.build(name, spec, where="osmd.encoder", in_shape=tuple(in_shape))
    hallucination = ENCODERS.build(name, spec, where="osmd.encoder", in_shape=tuple(in_shape))
    return OSMDEncoder(ordinary, hallucination, feature_shape(ordinary, in_shape), translator)


@torch.no_grad()
def feature_shape(encoder: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The feature shape of an encoder, from one eval-mode forward of a 2-sample zero batch."""
    was_training = encoder.training
    encoder.eval()
    shape = tuple(encoder(torch.zeros(2, *in_shape)).shape[1:])
    encoder.train(was_training)
    return shape


def plain_model(model: MultimodalModel) -> MultimodalModel:
    """Replace every OS-MD encoder of ``model`` by its φ_o: the architecture of the pretrained networks."""
    for m in model.modalities:
        encoder = model.encoders[m]
        if isinstance(encoder, OSMDEncoder):
            model.encoders[m] = encoder.ordinary_encoder
    return model
