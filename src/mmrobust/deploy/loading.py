"""``load_deployed``: a trained model and its ``ModelSpec`` from a checkpoint alone (no dataset, no config).

A run directory resolves to its best checkpoint (``RUN_DIR/checkpoints/best.ckpt``); a run of a multi-job
runner (per-subset models) has one per job, and the error lists them. Weights load strictly, the model is
put in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrobust.deploy.spec import ModelSpec
from mmrobust.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from mmrobust.models import build_model
from mmrobust.models.multimodal import MultimodalModel

BUILD_ONLY_KEYS = ("pretrained",)  # weight files read when a model is built; the checkpoint replaces them


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file of ``path``: the file itself, or the best checkpoint of a run directory."""
    path = Path(path)
    if not path.is_dir():
        return path
    best = path / "checkpoints" / "best.ckpt"
    if best.is_file():
        return best
    found = sorted(p.relative_to(path).as_posix() for p in path.glob("**/checkpoints/best.ckpt"))
    if found:
        shown = ", ".join(found[:6]) + (f", … +{len(found) - 6} more" if len(found) > 6 else "")
        raise CheckpointError(
            f"run {path} has one model per job (a multi-job runner), no {best.relative_to(path)}; "
            f"pass one of its checkpoints: {shown}"
        )
    raise CheckpointError(f"{path}: not a run directory with a best checkpoint (no {best.relative_to(path)})")


def _without_build_only(config: Any) -> Any:
    """The model config without weight-file options (the checkpoint holds the weights)."""
    if isinstance(config, dict):
        return {k: _without_build_only(v) for k, v in config.items() if k not in BUILD_ONLY_KEYS}
    if isinstance(config, list):
        return [_without_build_only(v) for v in config]
    return config


def read_spec(ckpt: dict[str, Any], path: Path) -> ModelSpec:
    """The ``ModelSpec`` stored in a loaded checkpoint, or one ``CheckpointError`` line."""
    provenance = ckpt.get("provenance") or {}
    if "spec" not in provenance:
        raise CheckpointError(
            f"checkpoint {path} has no model spec (written before mmrobust stored one in every checkpoint); "
            "re-train the run, or evaluate it with `mmrobust eval` where its dataset is available"
        )
    try:
        return ModelSpec.from_dict(provenance["spec"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error


def load_deployed(path: str | Path) -> tuple[MultimodalModel, ModelSpec]:
    """Rebuild the trained model of a checkpoint (or a run directory's best checkpoint) from its spec.

    Returns:
        ``(model, spec)``: the model in eval mode on the CPU with the checkpoint's weights (strict load).

    Raises:
        CheckpointError: one line (no checkpoint, several in a multi-job run, no spec, weights that do not fit).
    """
    file = resolve_checkpoint(path)
    ckpt = load_checkpoint(file)
    spec = read_spec(ckpt, file)
    try:
        model = build_model(_without_build_only(spec.model), spec.modalities, spec.shapes(), spec.num_classes)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {file}: cannot rebuild its model from the spec ({first})") from error
    load_model_state(model, ckpt["model"], file)
    return model.eval(), spec
