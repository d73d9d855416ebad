"""``model=auto``: one encoder per modality chosen from the shape (and reader) of its input.

A model config with the key ``auto`` (``configs/model/auto.yaml``) is resolved into an ordinary
``encoders`` + ``fusion`` + ``neck`` + ``head`` config before anything is built; the run saves the resolved
config in ``config.yaml`` (so ``mmrobust eval`` and checkpoints rebuild exactly the trained model) and what was
chosen, with every input and output size, in ``model_resolved.yaml``.

Each modality gets a *kind*, then ``auto.<kind>``'s encoder (output sizes with the default options):

- ``image``, inputs ``[C, H, W]`` or ``[H, W]`` of any size (8×8 to 224 px and more): ``conv``
  (``models/conv_encoders.ConvEncoder``), ``channels[-1]`` = 128 features. ``auto.image: {name: resnet,
  depth: 18}`` puts a ResNet on every image instead (``encoders.ResNetEncoder``: 512 features for depth 18/34,
  2048 for 50).
- ``audio``, spectrograms ``[C, F, T]`` from an ``audio`` reader (log-mel, log-STFT): ``spectrogram_cnn``
  (``SpectrogramEncoder``), ``channels[-1]`` = 128 features.
- ``vector``, inputs ``[D]``: ``mlp`` with hidden [128] and LayerNorm, ``out_features`` = 128 features.

The fusion defaults to ``concat_mlp`` (256 features, LayerNorm) and the head to ``linear``.

The kind comes from the dataset when it knows it (the reader type of a manifest column: ``audio`` -> audio,
``image`` -> image), else from the shape alone: ``[D]`` (or ``[1, D]``, ``[D, 1]``) is a vector, ``[H, W]``
(both > 1) and ``[C, H, W]`` an image (so a ``.npy`` spectrogram is an image unless
``model.encoders.<m>.name=spectrogram_cnn``). A waveform from an audio reader (``features: waveform``) and any
other shape (e.g. a ``[T, C, H, W]`` clip) are one ``ConfigError`` line that says what to set.

Overrides, in order: ``encoders.<m>`` (a spec with a different ``name`` replaces the choice for that modality; a
spec with the same name or none, e.g. ``model.encoders.image.channels=[16,32]``, changes the choice's options),
then ``encoder`` (every modality not in ``encoders``), then the auto choice. The default encoders and fusion get
their default options (``AUTO_DEFAULTS``, ``DEFAULT_FUSION``) only when they keep their name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mmrobust.registry import ConfigError

KINDS = ("image", "audio", "vector")
AUTO_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {"name": "conv", "channels": [16, 32, 64, 128], "blocks": 2},
    "audio": {"name": "spectrogram_cnn", "channels": [16, 32, 64, 128], "blocks": 2, "input_norm": True},
    "vector": {"name": "mlp", "hidden": [128], "out_features": 128, "norm": "layer"},
}
DEFAULT_FUSION: dict[str, Any] = {"name": "concat_mlp", "hidden": [], "out_features": 256, "norm": "layer"}
READER_KINDS = {"image": "image", "audio": "audio"}  # reader type -> kind; npy and others: from the shape
GIVEN = "given"  # the kind recorded for a modality whose encoder the config names


def is_auto(config: Mapping[str, Any]) -> bool:
    return "auto" in config


def input_kind(modality: str, shape: tuple[int, ...], hint: str | None = None) -> str:
    """``image``, ``audio`` or ``vector`` (module docstring); any other shape raises one ``ConfigError`` line."""
    if hint == "audio" and (len(shape) == 1 or (len(shape) == 2 and min(shape) == 1)):
        raise ConfigError(waveform_error(modality, shape))
    if len(shape) == 1 or (len(shape) == 2 and min(shape) == 1):
        return "vector"
    if len(shape) in (2, 3):
        return "audio" if hint == "audio" else "image"
    fix = (
        f"choose a clip encoder, e.g. model.encoders.{modality}.name=frames_resnet"
        if len(shape) == 4
        else f"choose its encoder with model.encoders.{modality}.name=..."
    )
    raise ConfigError(
        f"model=auto: modality {modality!r} has inputs of shape {list(shape)}; auto takes [D] vectors, [H, W] "
        f"and [C, H, W] images or spectrograms: {fix}"
    )


def waveform_error(modality: str, shape: tuple[int, ...]) -> str:
    return (
        f"model=auto: modality {modality!r} is a raw waveform of shape {list(shape)}; read it as a spectrogram "
        f"(dataset.readers.{modality}.features=log_mel) or choose its encoder with model.encoders.{modality}.name=..."
    )


def dataset_kinds(dataset: Any) -> dict[str, str]:
    """Kind hints of a dataset's modalities from its reader types (``input_spec``); none for readerless data."""
    kinds = {}
    for m in dataset.modalities:
        spec = dataset.input_spec(m) if hasattr(dataset, "input_spec") else None
        kind = READER_KINDS.get(str((spec or {}).get("type")))
        if kind is not None:
            kinds[m] = kind
    return kinds


@dataclass
class AutoChoice:
    """The resolved model config of ``model=auto`` and the kind each modality got (``given``: named by the
    config's ``encoders``/``encoder``)."""

    config: dict[str, Any]
    kinds: dict[str, str] = field(default_factory=dict)


def resolve_auto(
    config: Mapping[str, Any],
    modalities: tuple[str, ...],
    input_shapes: Mapping[str, tuple[int, ...]],
    input_kinds: Mapping[str, str] | None = None,
) -> AutoChoice:
    """Turn a config with ``auto`` into an ordinary ``encoders`` + ``fusion`` + ``neck`` + ``head`` config.

    Args:
        config: the model config (``auto``: ``{image|audio|vector: encoder spec}``; ``encoders``, ``encoder``,
            ``fusion``, ``neck``, ``head`` as for ``build_model``).
        modalities: the modality order.
        input_shapes: per-modality input shape without the batch dimension.
        input_kinds: optional per-modality kind hints (``dataset_kinds``: the reader types).
    """
    resolved: dict[str, Any] = copy.deepcopy(dict(config))
    auto = dict(resolved.pop("auto") or {})
    unknown = set(auto) - set(KINDS)
    if unknown:
        raise ConfigError(f"model.auto: unknown keys {sorted(unknown)}; accepted keys: {', '.join(KINDS)}")
    per_kind = {kind: with_defaults(auto.get(kind), AUTO_DEFAULTS[kind]) for kind in KINDS}
    overrides = dict(resolved.pop("encoders", None) or {})
    stray = set(overrides) - set(modalities)
    if stray:
        raise ConfigError(f"model.encoders: {sorted(stray)} are not modalities of this dataset {list(modalities)}")
    every = resolved.pop("encoder", None)
    hints = dict(input_kinds or {})
    encoders: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for m in modalities:
        given = dict(overrides.get(m) or every or {})
        shape, hint = tuple(input_shapes[m]), hints.get(m)
        if "name" in given and given["name"] != _auto_name(m, shape, hint, per_kind):
            encoders[m], kinds[m] = given, GIVEN  # another encoder than auto's: taken as it is
            continue
        kinds[m] = input_kind(m, shape, hint)
        encoders[m] = {**per_kind[kinds[m]], **given}  # auto's encoder, with the given options
    resolved["encoders"] = encoders
    resolved["fusion"] = with_defaults(resolved.get("fusion"), DEFAULT_FUSION)
    return AutoChoice(resolved, kinds)


def with_defaults(spec: Mapping[str, Any] | None, default: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` completed with the options of ``default`` when it names the same component (or none);
    a spec naming another component is taken as it is."""
    spec = copy.deepcopy(dict(spec or {}))
    return {**copy.deepcopy(dict(default)), **spec} if spec.get("name", default["name"]) == default["name"] else spec


def _auto_name(m: str, shape: tuple[int, ...], hint: str | None, per_kind: Mapping[str, dict[str, Any]]) -> str | None:
    """The encoder name auto would choose for ``m``, or None where auto has no choice for its shape."""
    try:
        return str(per_kind[input_kind(m, shape, hint)]["name"])
    except ConfigError:
        return None


def describe(
    choice: AutoChoice, modalities: tuple[str, ...], input_shapes: Mapping[str, tuple[int, ...]], num_classes: int
) -> dict[str, Any]:
    """What ``model=auto`` chose, for ``model_resolved.yaml``: per modality its kind, input shape, encoder spec,
    output (feature) shape and parameter count; the fusion, neck and head specs and the fused size. Builds the
    model once (under a forked RNG: the run's own model gets the same initialization as without this call)."""
    from mmrobust.models.multimodal import build_model  # here: multimodal imports this module lazily too

    with torch.random.fork_rng(devices=[]):
        model = build_model(choice.config, modalities, input_shapes, num_classes)
    per_modality = {
        m: {
            "kind": choice.kinds.get(m, GIVEN),
            "input_shape": [int(v) for v in input_shapes[m]],
            "encoder": copy.deepcopy(choice.config["encoders"][m]),
            "output_shape": [int(v) for v in model.feature_shapes[m]],
            "parameters": sum(p.numel() for p in model.encoders[m].parameters()),
        }
        for m in modalities
    }
    stages: dict[str, Any] = {
        k: copy.deepcopy(choice.config[k]) for k in ("fusion", "neck", "head") if k in choice.config
    }
    return {
        "modalities": per_modality,
        **stages,
        "fused_features": int(getattr(model.fusion, "out_features", 0)),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def summary_line(description: Mapping[str, Any]) -> str:
    """One log line: ``model=auto: image [1, 8, 8] -> conv (128); ...; fusion concat_mlp (256)``."""
    parts = [
        f"{m} {d['input_shape']} -> {d['encoder'].get('name')} ({'x'.join(map(str, d['output_shape']))})"
        for m, d in description["modalities"].items()
    ]
    fusion = (description.get("fusion") or {}).get("name", "?")
    return f"model=auto: {'; '.join(parts)}; fusion {fusion} ({description['fused_features']})"


def resolve_run_model(config: dict[str, Any], dataset: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run's model config and, for ``model=auto``, what was chosen (``describe``); other configs pass through.

    ``dataset``: the train split (``modalities``, ``shapes``, ``num_classes``, and ``input_spec`` for the
    reader-type hints of ``dataset_kinds``).
    """
    if not is_auto(config):
        return config, None
    modalities = tuple(dataset.modalities)
    shapes = {m: tuple(dataset.shapes[m]) for m in modalities}
    choice = resolve_auto(config, modalities, shapes, dataset_kinds(dataset))
    return choice.config, describe(choice, modalities, shapes, int(dataset.num_classes))
