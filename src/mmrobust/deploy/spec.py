"""ModelSpec: everything a trained model needs at deployment, stored in ``provenance["spec"]`` of every
checkpoint, so a checkpoint alone rebuilds the model and turns files into its inputs (no dataset, no config).

It holds the task, the modality order (the columns of ``Batch.present``), the class names, per modality the
input spec — shape, dtype and the reader config that turns a file into the model input (``None``: the
dataset had no file reader; predict then takes ``.npy`` arrays already in model-input space) — the
modalities the deployed model uses (all, or e.g. OS-MD's ordinary ones), the model config the method
trained (``method.model_config``, the one ``build_model`` takes) and the mmrobust version.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mmrobust
from mmrobust.subsets import members

SPEC_FORMAT = 1  # bumped when the stored layout changes; from_dict refuses other values


@dataclass(frozen=True)
class InputSpec:
    """One modality's model input: ``shape`` (without the batch dimension), ``dtype`` and ``reader``, the
    ``mmrobust.data.readers`` config (``{"type": "image", "size": [64, 64], ...}``) or None (``.npy`` arrays in
    model-input space)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    reader: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "reader": copy.deepcopy(self.reader)}


@dataclass(frozen=True)
class ModelSpec:
    """The deployment description of a trained model (see the module docstring).

    Attributes:
        task: ``classification`` or ``segmentation`` (a name of ``mmrobust.tasks``).
        modalities: the model's modality order (columns of the availability mask).
        class_names: one name per class; ``num_classes == len(class_names)``.
        inputs: modality -> ``InputSpec``, for every modality of ``modalities``.
        deployed: the modalities the deployed model takes (a subsequence of ``modalities``).
        model: the model config to rebuild it with ``build_model`` (already transformed by the method).
        version: the mmrobust version that trained it.
        dataset: the dataset name it was trained on (for messages).
    """

    task: str
    modalities: tuple[str, ...]
    class_names: tuple[str, ...]
    inputs: dict[str, InputSpec]
    deployed: tuple[str, ...]
    model: dict[str, Any] = field(default_factory=dict)
    version: str = mmrobust.__version__
    dataset: str | None = None

    def __post_init__(self) -> None:
        if set(self.inputs) != set(self.modalities):
            raise ValueError(
                f"model spec: inputs {sorted(self.inputs)} do not match modalities {list(self.modalities)}"
            )
        stray = [m for m in self.deployed if m not in self.modalities]
        if stray or not self.deployed:
            raise ValueError(
                f"model spec: deployed modalities {list(self.deployed)} must be a non-empty part of "
                f"{list(self.modalities)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Modality -> input shape without the batch dimension (what ``build_model`` takes)."""
        return {m: self.inputs[m].shape for m in self.modalities}

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (checkpoints are loaded with ``weights_only=True``; JSON-safe)."""
        return {
            "format": SPEC_FORMAT,
            "task": self.task,
            "modalities": list(self.modalities),
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "inputs": {m: self.inputs[m].to_dict() for m in self.modalities},
            "deployed": list(self.deployed),
            "model": copy.deepcopy(self.model),
            "version": self.version,
            "dataset": self.dataset,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec of ``to_dict``; a malformed one is one ``ValueError`` line naming the key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"model spec: expected a mapping, got {type(data).__name__}")
        if data.get("format") != SPEC_FORMAT:
            raise ValueError(
                f"model spec: format {data.get('format')!r} is not {SPEC_FORMAT} (another mmrobust version)"
            )
        required = ("task", "modalities", "class_names", "num_classes", "inputs", "deployed", "model")
        absent = [k for k in required if k not in data]
        if absent:
            raise ValueError(f"model spec: missing keys {absent}")
        class_names = tuple(str(c) for c in data["class_names"])
        if len(class_names) != int(data["num_classes"]):
            raise ValueError(f"model spec: {len(class_names)} class names for num_classes={data['num_classes']}")
        inputs = {}
        for m, spec in dict(data["inputs"]).items():
            if not isinstance(spec, Mapping) or "shape" not in spec:
                raise ValueError(f"model spec: inputs.{m} needs a shape, got {spec!r}")
            reader = spec.get("reader")
            inputs[str(m)] = InputSpec(
                tuple(int(v) for v in spec["shape"]),
                str(spec.get("dtype", "float32")),
                None if reader is None else dict(reader),
            )
        return cls(
            task=str(data["task"]),
            modalities=tuple(str(m) for m in data["modalities"]),
            class_names=class_names,
            inputs=inputs,
            deployed=tuple(str(m) for m in data["deployed"]),
            model=copy.deepcopy(dict(data["model"])),
            version=str(data.get("version", "unknown")),
            dataset=None if data.get("dataset") is None else str(data["dataset"]),
        )


def job_spec(
    dataset: Any,
    task: Any,
    method: Any,
    model_config: Mapping[str, Any],
    subsets: Sequence[int],
    dataset_name: str | None = None,
) -> dict[str, Any]:
    """``provenance["spec"]`` of one job's checkpoints, as plain values.

    ``dataset``: the train split (modalities, shapes, ``input_spec``); ``task``: the run's task; ``method``:
    the built method (``model_config`` gives the architecture it trains, ``deployed_modalities`` the
    modalities the deployed model takes); ``subsets``: the job's subsets (a per-subset job deploys the
    modalities of its subset). Deployed = modalities in some job subset and (when the method says) deployed.
    """
    modalities = tuple(dataset.modalities)
    in_jobs = {m for s in subsets for m in members(s, modalities)}
    declared = method.deployed_modalities()
    deployed = tuple(m for m in modalities if m in in_jobs and (declared is None or m in declared))
    inputs = {
        m: InputSpec(tuple(int(v) for v in dataset.shapes[m]), "float32", dataset.input_spec(m)) for m in modalities
    }
    spec = ModelSpec(
        task=str(task.name),
        modalities=modalities,
        class_names=tuple(str(c) for c in task.class_names),
        inputs=inputs,
        deployed=deployed or modalities,
        model=method.model_config(copy.deepcopy(dict(model_config))),
        dataset=dataset_name,
    )
    return spec.to_dict()
