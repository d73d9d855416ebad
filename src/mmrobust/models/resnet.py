"""ResNet-18/34/50 in plain torch with torchvision's parameter names.

``ResNet(...).state_dict()`` has the keys of ``torchvision.models.resnet{18,34,50}`` (``conv1``, ``bn1``,
``layer1.0.conv1``, ..., ``fc``), so ImageNet weights saved from torchvision load with
``load_pretrained(model, path)`` without torchvision being installed. Options beyond torchvision:
any input channels, a width multiplier, squeeze-excitation in every block (extra ``se.*`` keys) and
three stems:

- ``imagenet``: 7×7 stride-2 conv, BN, ReLU, 3×3 stride-2 max-pool (torchvision), output stride 4;
- ``surf``: 3×3 stride-2 conv, BN, ReLU, 3×3 stride-2 max-pool, output stride 4 (the CASIA-SURF baseline's
  per-modality stem: ``resnet18_se.py`` of the MMANet/DMRNet code, ``conv1`` 3×3/2 pad 1, ``bn1``, ``relu``,
  ``maxpool(3, 2, 1)``; a 112-px face gives 56 -> 28 after the stem, 14×14 after ``layer2``);
- ``cifar``: 3×3 stride-1 conv, BN, ReLU, no pooling, output stride 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmrobust.registry import ConfigError

log = logging.getLogger(__name__)

STAGES = ("layer1", "layer2", "layer3", "layer4")
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): ``x · sigmoid(fc2(relu(fc1(avgpool(x)))))``. Shape: [B,C,H,W] -> same."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)  # [B, C, 1, 1]
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes) if se else None
        self.downsample = shortcut(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)  # stride on the 3×3 conv, as torchvision (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcitation(planes * 4) if se else None
        self.downsample = shortcut(inplanes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_layer(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int, se: bool
) -> nn.Sequential:
    layers = [block(inplanes, planes, stride, se)]
    layers += [block(planes * block.expansion, planes, 1, se) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def stage_channels(depth: int, width: int = 64) -> dict[str, int]:
    """Output channels of the stem and of each stage."""
    kind, _ = DEPTHS[depth]
    expansion = BLOCKS[kind].expansion
    out = {"stem": width}
    out.update({name: width * 2**i * expansion for i, name in enumerate(STAGES)})
    return out


def make_stages(depth: int, width: int, se: bool, stages: tuple[str, ...], in_channels: int) -> nn.ModuleDict:
    """Build consecutive stages (e.g. ``('layer3', 'layer4')``) whose first block takes ``in_channels``."""
    if depth not in DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
    kind, counts = DEPTHS[depth]
    block = BLOCKS[kind]
    modules = nn.ModuleDict()
    inplanes = in_channels
    for name in stages:
        i = STAGES.index(name)
        planes = width * 2**i
        modules[name] = make_layer(block, inplanes, planes, counts[i], 1 if i == 0 else 2, se)
        inplanes = planes * block.expansion
    return modules


class ResNet(nn.Module):
    """A ResNet trunk: stem, then ``layer1`` .. ``last_stage``; optional ``fc`` when ``num_classes > 0``.

    Args:
        depth: 18, 34 or 50.
        in_channels: input channels (any).
        stem: ``imagenet``, ``surf`` or ``cifar`` (see module docstring).
        width: channels of the stem and of layer1 (64 in the papers).
        se: squeeze-excitation in every block.
        last_stage: stop after this stage (``layer2`` for the SURF baseline's per-modality branch).
        num_classes: size of the ``fc`` classifier after global pooling; 0 for none.

    Shape:
        ``forward_features``: [B, in_channels, H, W] -> [B, C, H', W'];
        ``forward``: -> [B, C] (or [B, num_classes] with ``fc``).
    """

    def __init__(
        self,
        depth: int = 18,
        in_channels: int = 3,
        stem: str = "imagenet",
        width: int = 64,
        se: bool = False,
        last_stage: str = "layer4",
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "surf", "cifar"):
            raise ValueError(f"unknown ResNet stem {stem!r}; valid stems: imagenet, surf, cifar")
        if last_stage not in STAGES:
            raise ValueError(f"last_stage must be one of {list(STAGES)}, got {last_stage!r}")
        kernel, stride = {"imagenet": (7, 2), "surf": (3, 2), "cifar": (3, 1)}[stem]
        self.conv1 = nn.Conv2d(in_channels, width, kernel, stride, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem in ("imagenet", "surf") else nn.Identity()
        stages = STAGES[: STAGES.index(last_stage) + 1]
        for name, module in make_stages(depth, width, se, stages, width).items():
            self.add_module(name, module)
        self.stages = stages
        self.out_channels = stage_channels(depth, width)[last_stage]
        self.fc = nn.Linear(self.out_channels, num_classes) if num_classes > 0 else None
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))  # [B, C]
        return x if self.fc is None else self.fc(x)


def init_weights(module: nn.Module) -> None:
    """torchvision's initialization: Kaiming-normal convs (fan_out), BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


PREFIXES = ("module.", "model.")  # DataParallel/DDP wrappers; Lightning modules holding the network as ``model``


@dataclass(frozen=True)
class LoadReport:
    """What ``load_pretrained`` did.

    Attributes:
        path: the weights file.
        loaded: model keys filled from the file (adapted ones included).
        missing: model keys left as they were (not in the file, or of another shape).
        unexpected: file keys not used (no such model key, or another shape that cannot be adapted).
        adapted: model keys loaded after adapting the input channels of ``conv1`` (see ``adapt_input_conv``).
    """

    path: Path
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    adapted: tuple[str, ...] = ()

    def summary(self) -> str:
        adapted = f" ({', '.join(self.adapted)} adapted to the input channels)" if self.adapted else ""
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors{adapted}, {len(self.missing)} missing "
            f"{list(self.missing[:5])}, {len(self.unexpected)} unexpected {list(self.unexpected[:5])}"
        )


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-layer kernel ``[O, S, k, k]`` (S = 3 for RGB weights) to ``in_channels`` inputs, as timm's
    ``adapt_input_conv``:

    - ``in_channels = 1``: ``W'[:, 0] = Σ_s W[:, s]`` (a gray image x gets the response of (x, …, x));
    - otherwise: the S input kernels repeated cyclically up to ``in_channels`` and scaled by ``S / in_channels``,
      ``W'[:, c] = W[:, c mod S] · S / in_channels``, so the response to a constant image keeps its size.

    Shape: ``[O, S, k, k]`` -> ``[O, in_channels, k, k]``.
    """
    if weight.dim() != 4 or in_channels < 1:
        raise ValueError(
            f"adapt_input_conv expects a kernel [O, S, k, k] and in_channels >= 1, got {tuple(weight.shape)}"
        )
    source = weight.shape[1]
    if in_channels == source:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_channels / source)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (source / in_channels)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state dict, or one nested under ``state_dict`` (Lightning) or
    ``model`` (checkpoints that also hold an optimizer)."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(source, Mapping) and not any(isinstance(v, torch.Tensor) for v in source.values()):
        inner = next((source[k] for k in ("state_dict", "model") if isinstance(source.get(k), Mapping)), None)
        if inner is None:
            break
        source = inner
    if not isinstance(source, Mapping):
        raise ConfigError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(source).__name__}")
    return {str(k): v for k, v in source.items() if isinstance(v, torch.Tensor)}


def _target_key(key: str, target: Mapping[str, torch.Tensor]) -> str:
    """``key`` itself when the model has it, else ``key`` without leading ``module.``/``model.`` prefixes."""
    stripped = key
    while stripped not in target:
        prefix = next((p for p in PREFIXES if stripped.startswith(p)), None)
        if prefix is None:
            return key
        stripped = stripped[len(prefix) :]
    return stripped


def _under(key: str, prefix: str) -> str:
    """``key`` from ``prefix`` on (leading ``module.``/``model.`` wrappers skipped), or "" when not under it."""
    while not key.startswith(prefix):
        wrapper = next((p for p in PREFIXES if key.startswith(p)), None)
        if wrapper is None:
            return ""
        key = key[len(wrapper) :]
    return key


def load_pretrained(
    model: nn.Module, path: str | Path, *, strict: bool = False, prefix: str = "", adapt_conv1: bool = True
) -> LoadReport:
    """Load a torchvision-format state dict from ``path`` into ``model`` and log what was loaded.

    The file may nest the tensors under ``state_dict`` (Lightning) or ``model``, and its keys may carry
    ``module.`` (DataParallel/DDP) or ``model.`` (Lightning) prefixes; these are stripped where the model
    lacks the prefixed key. ``prefix`` keeps only the file keys under it, without it (e.g. ``audio_net.`` to
    load one branch of a two-stream network, such as OGM-GE's checkpoints, whose keys are
    ``module.audio_net.*`` / ``module.visual_net.*`` under ``model``). A ``conv1.weight`` that differs only in
    input channels is adapted (``adapt_input_conv``: summed for 1 channel, repeated and scaled for others) unless
    ``adapt_conv1`` is false. Other tensors whose name or shape does not match are skipped (e.g. ``fc`` for
    another class count); with ``strict`` any skipped or missing tensor raises.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: no tensor of the file matches the model, or ``strict`` and some do not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist")
    source = read_state_dict(path)
    if prefix:
        source = {k[len(prefix) :]: v for k, v in ((_under(k, prefix), v) for k, v in source.items()) if k}
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unexpected, adapted = [], []
    for key, value in source.items():
        name = _target_key(key, target)
        want = target.get(name)
        if want is not None and want.shape == value.shape:
            loaded[name] = value
        elif (
            adapt_conv1
            and name == "conv1.weight"
            and want is not None
            and value.dim() == 4
            and want.shape[:1] + want.shape[2:] == value.shape[:1] + value.shape[2:]
        ):
            loaded[name] = adapt_input_conv(value, want.shape[1])
            adapted.append(name)
        else:
            unexpected.append(key)
    missing = sorted(set(target) - set(loaded))
    if not loaded:
        raise ConfigError(
            f"{path}: none of its {len(source)} tensors match the model (file keys like {sorted(source)[:3]}, "
            f"model keys like {sorted(target)[:3]}); expected a torchvision-format state dict"
            + (f" under {prefix!r}" if prefix else "")
        )
    if strict and (unexpected or missing):
        raise ConfigError(f"{path}: unmatched keys {unexpected[:5]} / missing {missing[:5]} (strict loading)")
    model.load_state_dict(loaded, strict=False)
    report = LoadReport(path, tuple(sorted(loaded)), tuple(missing), tuple(sorted(unexpected)), tuple(adapted))
    log.info("pretrained weights %s", report.summary())
    return report
