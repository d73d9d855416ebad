"""ESANet-style RGB-D segmentation network (Seichter et al., ICRA 2021) with per-sample availability.

Two ResNet streams: the *main* stream (first modality, e.g. ``rgb``) and the *fused-in* stream (second,
e.g. ``depth``). After the stem and after every stage l ∈ {stem, layer1..4} the two are fused by
squeeze-excitation weighting and a sum (ESANet's "SE-add"), with the papers' Bernoulli indicator
``δ_m ∈ {0, 1}`` (modality m present for the sample) at every fusion point:

    f_l = δ_main · SE_main,l(r_l) + δ_aux · SE_aux,l(d_l)
    r_{l+1} = stage_{l+1}^main(f_l),      d_{l+1} = stage_{l+1}^aux(d_l)

so the main stream continues from the fused map and the fused-in stream stays unimodal. With the main
modality absent, f_l = SE_aux,l(d_l) at every point (the depth branch alone), and vice versa. ``δ·x`` is a
``torch.where``, never a product, and the input of an absent modality is replaced by zeros before its
stream (so NaN or garbage in it reaches neither the output nor the gradients, and in training mode the
BatchNorm statistics of the stream see the same zeros whatever the absent input held). A stream whose
modality is absent for the whole batch is not computed at all.

The fused maps at strides 4, 8, 16 are skip connections (1×1 conv + BN + ReLU when their channels differ
from the decoder's); the stride-32 map goes through pyramid pooling (``context``), then three decoder
modules (3×3 conv + BN + ReLU, ``decoder_blocks`` non-bottleneck-1D blocks, upsampling to the skip's size,
+ skip) give the stride-4 map ``[B, channels_decoder[-1], H/4, W/4]``: the output of ``fuse`` (what necks and dense
feature losses act on). The head is a 3×3 conv to the class logits and ×4 upsampling (ESANet's
``conv_out`` + two ×2 upsamplings). ESANet's side outputs for pyramid supervision are left out.
H and W must be multiples of 4 (not of 32, as ESANet's fixed ×2 decoder needs): the deeper maps round up
(240 -> 60, 30, 15, 8) and each decoder module upsamples to the size of its skip, so 240×320 works.

Since fusion happens inside the encoders, ``encode`` only selects the inputs and ``fuse`` does all the
work; ``fusion_inside_encoders = True`` tells the evaluator to run one forward per modality subset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from mmrobust.batch import Batch
from mmrobust.models.context import PyramidPooling
from mmrobust.models.conv_blocks import NonBottleneck1D, conv_bn_relu
from mmrobust.models.heads import SegmentationHead
from mmrobust.models.multimodal import MultimodalModel
from mmrobust.models.necks import NECKS
from mmrobust.models.resnet import STAGES, ResNet, SqueezeExcitation, load_pretrained, stage_channels
from mmrobust.models.upsampling import Upsample, UpsamplingMode
from mmrobust.registry import ConfigError

FUSION_POINTS = ("stem", *STAGES)
SIZE_MULTIPLE = 4  # H/4 and W/4 are then exact, so the head's ×4 gives back H×W


class SEFusion(nn.Module):
    """Masked SE-add at one fusion point: ``Σ_m δ_m · SE_m(x_m)`` over the streams that were computed.

    Shape: feats[m] [B, C, h, w] (or None: stream not computed), keep[m] bool [B] -> [B, C, h, w].
    """

    def __init__(self, channels: int, modalities: Sequence[str], reduction: int = 16) -> None:
        super().__init__()
        self.se = nn.ModuleDict({m: SqueezeExcitation(channels, reduction) for m in modalities})

    def forward(self, feats: Mapping[str, torch.Tensor | None], keep: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor | None = None
        for m, f in feats.items():
            if f is None:
                continue
            term = torch.where(keep[m].view(-1, 1, 1, 1), self.se[m](f), 0.0)  # [B, C, h, w]
            out = term if out is None else out + term
        if out is None:
            raise ValueError("SEFusion needs at least one computed stream")
        return out


class DecoderModule(nn.Module):
    """3×3 conv + BN + ReLU, ``blocks`` non-bottleneck-1D blocks, upsampling to the skip's size, + skip.

    Shape: x [B, C_in, h, w], skip [B, C_out, h', w'] -> [B, C_out, h', w'].
    """

    def __init__(self, in_channels: int, out_channels: int, blocks: int, upsampling: str) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, 3)
        self.blocks = nn.Sequential(*(NonBottleneck1D(out_channels) for _ in range(blocks)))
        self.upsample = Upsample(upsampling, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(x))
        return self.upsample(x, size=(skip.shape[-2], skip.shape[-1])) + skip


class ESANetFusion(nn.Module):
    """The fusion-side modules of ESANet: SE fusion points, skip projections, context module, decoder.

    ``ESANet.fuse`` drives them together with the encoder streams; this module is not called on its own.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        stage_ch: Mapping[str, int],
        channels_decoder: Sequence[int],
        decoder_blocks: Sequence[int],
        context: str,
        context_bins: Sequence[int],
        upsampling: str,
        se_reduction: int,
    ) -> None:
        super().__init__()
        self.points = nn.ModuleDict({p: SEFusion(stage_ch[p], modalities, se_reduction) for p in FUSION_POINTS})
        skip_stages = ("layer3", "layer2", "layer1")  # strides 16, 8, 4: the inputs of decoder modules 1, 2, 3
        self.skips = nn.ModuleDict(
            {
                s: conv_bn_relu(stage_ch[s], c, 1) if stage_ch[s] != c else nn.Identity()
                for s, c in zip(skip_stages, channels_decoder)
            }
        )
        deepest = stage_ch["layer4"]
        if context == "ppm":
            context_up = "bilinear" if upsampling == "bilinear" else "nearest"
            self.context: nn.Module = PyramidPooling(deepest, channels_decoder[0], context_bins, context_up)
            decoder_in = channels_decoder[0]
        else:
            self.context = nn.Identity()
            decoder_in = deepest
        ins = [decoder_in, *channels_decoder[:-1]]
        self.decoder = nn.ModuleList(
            DecoderModule(i, o, b, upsampling) for i, o, b in zip(ins, channels_decoder, decoder_blocks)
        )
        self.out_channels = channels_decoder[-1]

    def decode(self, fused: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Context module on the stride-32 map, then the decoder with the fused skips.

        Shape: fused[layer_i] [B, C_i, H/2^(i+1), W/2^(i+1)] -> [B, channels_decoder[-1], H/4, W/4].
        """
        x = self.context(fused["layer4"])  # [B, C_dec0, H/32, W/32]
        for module, stage in zip(self.decoder, ("layer3", "layer2", "layer1")):
            x = module(x, self.skips[stage](fused[stage]))
        return x

    def forward(self, *args: object) -> torch.Tensor:
        raise TypeError("esanet fuses inside its encoders: call model.fuse(features, present), not model.fusion")


class ESANet(MultimodalModel):
    """ESANet-style two-stream RGB-D segmentation network with masked SE-add fusion at every stage.

    Args:
        modalities: exactly two image modalities; the first is the main stream, the second is fused in.
        input_shapes: per modality ``(C, H, W)``; H and W equal across modalities, multiples of 4.
        num_classes: K.
        encoder: ``resnet18``, ``resnet34`` or ``resnet50`` (both streams; ImageNet stem).
        channels_decoder: channels of the three decoder modules (strides 16, 8, 4); ESANet: 128 each.
        decoder_blocks: non-bottleneck-1D blocks per decoder module; ESANet: 1 each.
        context: ``ppm`` (pyramid pooling) or ``none``.
        context_bins: pyramid pooling grid sizes; ESANet: (1, 5).
        upsampling: ``bilinear``, ``nearest`` or ``learned`` (decoder and head).
        pretrained: modality -> path of a torchvision-format ResNet state dict (e.g. ImageNet weights)
            for that stream. A 3-channel ``conv1`` is summed over its input channels for a 1-channel stream.
        se_reduction: channel reduction of the squeeze-excitation at the fusion points.
        width: channels of the ResNet stem and layer1 (64: the ImageNet ResNets, needed for ``pretrained``;
            16 makes a model about 16× cheaper for quick CPU runs).
        neck: the neck between the decoder output and the head, ``{name: ..., <options>}`` from the neck
            registry (default ``identity``; DMRNet declares ``probabilistic``: its decoupling at the
            penultimate layer, as DMRNet did for NYUv2).

    Shape: ``forward``: inputs [B, C_m, H, W] -> logits [B, K, H, W]; ``fuse`` -> [B, channels_decoder[-1], H/4, W/4].
    """

    fusion_inside_encoders = True

    def __init__(
        self,
        modalities: tuple[str, ...],
        input_shapes: Mapping[str, tuple[int, ...]],
        num_classes: int,
        *,
        encoder: Literal["resnet18", "resnet34", "resnet50"] = "resnet18",
        channels_decoder: list[int] | None = None,
        decoder_blocks: list[int] | None = None,
        context: Literal["ppm", "none"] = "ppm",
        context_bins: list[int] | None = None,
        upsampling: UpsamplingMode = "bilinear",
        pretrained: dict[str, str] | None = None,
        se_reduction: int = 16,
        width: int = 64,
        neck: dict[str, Any] | None = None,
    ) -> None:
        modalities = tuple(modalities)
        shapes = _check_inputs(modalities, input_shapes)
        depth = _depth(encoder)
        channels_decoder = list(channels_decoder or [128, 128, 128])
        decoder_blocks = list(decoder_blocks if decoder_blocks is not None else [1, 1, 1])
        if len(channels_decoder) != 3 or min(channels_decoder) < 1:
            raise ConfigError(f"model.channels_decoder: expected 3 positive integers, got {channels_decoder}")
        if len(decoder_blocks) != 3 or min(decoder_blocks) < 0:
            raise ConfigError(f"model.decoder_blocks: expected 3 non-negative integers, got {decoder_blocks}")
        if context not in ("ppm", "none"):
            raise ConfigError(f"model.context: expected ppm or none, got {context!r}")
        if upsampling not in ("bilinear", "nearest", "learned"):
            raise ConfigError(f"model.upsampling: expected bilinear, nearest or learned, got {upsampling!r}")
        bins = list(context_bins or [1, 5])
        if min(bins) < 1:
            raise ConfigError(f"model.context_bins: expected positive integers, got {bins}")
        if width < 1:
            raise ConfigError(f"model.width: expected a positive integer, got {width}")

        encoders = nn.ModuleDict({m: ResNet(depth, in_channels=shapes[m][0], width=width) for m in modalities})
        stage_ch = stage_channels(depth, width)
        fusion = ESANetFusion(
            modalities, stage_ch, channels_decoder, decoder_blocks, context, bins, upsampling, se_reduction
        )
        neck_spec = dict(neck or {"name": "identity"})
        if "name" not in neck_spec:
            raise ConfigError("model.neck.name: required key is missing")
        neck_name = str(neck_spec.pop("name"))
        neck_module = NECKS.build(neck_name, neck_spec, where="model.neck", in_features=fusion.out_channels)
        head = SegmentationHead(
            cast(int, neck_module.out_features), num_classes, scale=4, kernel_size=3, upsampling=upsampling
        )
        super().__init__(encoders, fusion, neck_module, head, modalities, shapes)
        self.fusion: ESANetFusion
        self.num_classes = num_classes
        self.output_stride = 4  # of fuse's map; the head upsamples by it
        for m, path in (pretrained or {}).items():
            if m not in modalities:
                raise ConfigError(f"model.pretrained.{m}: not a modality of this dataset {list(modalities)}")
            load_stream_weights(self.encoders[m], path, where=f"model.pretrained.{m}")

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The inputs of the modalities present for at least one sample (no compute: fusion is inside
        the encoders, so ``fuse`` runs the streams). Shape: {m: [B, C_m, H, W]}."""
        any_present = batch.present.any(dim=0).tolist()
        return {m: batch.inputs[m] for m, p in zip(self.modalities, any_present) if p}

    def fuse(self, features: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Run both streams with masked SE-add fusion after the stem and every stage, the context module
        and the decoder. A modality missing from ``features`` is absent for every sample.

        Shape: features[m] [B, C_m, H, W], present bool [B, M] -> [B, channels_decoder[-1], H/4, W/4].
        """
        main, aux = self.modalities
        keep = {
            m: present[:, j] if m in features else torch.zeros_like(present[:, j])
            for j, m in enumerate(self.modalities)
        }
        run = {m: bool(keep[m].any()) for m in self.modalities}
        if not any(run.values()):
            run[main] = True  # nothing to fuse: the main stream runs on zeros and is masked out everywhere
        x = {m: self._stream_input(m, features, keep[m]) for m in self.modalities if run[m]}
        enc = {m: cast(ResNet, self.encoders[m]) for m in self.modalities}

        stem = {m: enc[m].relu(enc[m].bn1(enc[m].conv1(x[m]))) for m in x}  # [B, width, H/2, W/2]
        fused = {"stem": self.fusion.points["stem"](stem, keep)}
        main_x = enc[main].maxpool(fused["stem"])  # [B, width, H/4, W/4]
        aux_x = enc[aux].maxpool(stem[aux]) if run[aux] else None
        for stage in STAGES:
            feats: dict[str, torch.Tensor | None] = {
                main: getattr(enc[main], stage)(main_x) if run[main] else None,
                aux: getattr(enc[aux], stage)(aux_x) if aux_x is not None else None,
            }
            aux_x = feats[aux]
            fused[stage] = self.fusion.points[stage](feats, keep)  # [B, C_stage, H/s, W/s]
            main_x = fused[stage]
        return self.fusion.decode(fused)

    def _stream_input(self, m: str, features: Mapping[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """The input of stream m with absent samples replaced by zeros (NaN-safe). Shape: [B, C_m, H, W]."""
        if m not in features:
            ref = next(iter(features.values()), None)
            like = ref if ref is not None else next(self.parameters())
            return like.new_zeros(len(keep), *self.feature_shapes[m])
        x = features[m]
        if x.dim() != 4 or x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(
                f"esanet input {m!r} must be [B, C, H, W] with H and W divisible by {SIZE_MULTIPLE}, "
                f"got {tuple(x.shape)}"
            )
        return torch.where(keep.view(-1, 1, 1, 1), x, 0.0)


def _check_inputs(
    modalities: tuple[str, ...], input_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    if len(modalities) != 2:
        raise ConfigError(f"model: esanet needs exactly 2 image modalities (main, fused-in), got {list(modalities)}")
    shapes = {m: tuple(int(v) for v in input_shapes[m]) for m in modalities}
    if any(len(s) != 3 for s in shapes.values()):
        raise ConfigError(f"model: esanet needs image inputs (C, H, W) per modality, got {shapes}")
    sizes = {s[1:] for s in shapes.values()}
    h, w = next(iter(sizes))
    if len(sizes) != 1 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ConfigError(
            f"model: esanet needs inputs of one size with H and W divisible by {SIZE_MULTIPLE}, got {shapes}"
        )
    return shapes


def _depth(encoder: str) -> int:
    names = {"resnet18": 18, "resnet34": 34, "resnet50": 50}
    if encoder not in names:
        raise ConfigError(f"model.encoder: expected one of {', '.join(names)}, got {encoder!r}")
    return names[encoder]


def load_stream_weights(stream: nn.Module, path: str | Path, *, where: str) -> list[str]:
    """Load a torchvision-format ResNet state dict into one stream with ``load_pretrained``; when the
    stream's ``conv1`` has one input channel and the file's has three, the file's kernel is summed over
    its input channels (``adapt_input_conv``: a 1-channel image x then gets the response of (x, x, x)).
    Every tensor of the stream must be in the file (a ResNet-34 file for a ResNet-18 stream, or any file
    for ``width`` other than 64, is a ConfigError rather than a partial load). Returns the loaded key names.
    """
    if not Path(path).is_file():
        raise ConfigError(f"{where}: pretrained weights file {path} does not exist")
    loaded = list(load_pretrained(stream, path).loaded)  # adapts a 1-channel conv1 (sums the RGB kernel)
    missing = sorted(set(stream.state_dict()) - set(loaded))
    if missing:
        raise ConfigError(
            f"{where}: {path} lacks {len(missing)} tensors of this stream or has other shapes "
            f"(e.g. {', '.join(missing[:3])}); expected a torchvision-format ResNet of the configured depth"
        )
    return loaded
