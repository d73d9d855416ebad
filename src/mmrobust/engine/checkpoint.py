"""Checkpoint loads, checked: checkpoints hold only tensors and plain Python values and are loaded with
``weights_only=True``; every failure (missing, truncated, not a checkpoint, refused as unsafe, keys that do
not fit the model) is one ``CheckpointError`` line naming the file and why. Writes go through
``mmrobust.atomic_io`` (re-exported here for the trainer).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmrobust.atomic_io import clean_orphan_temps, save_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "CheckpointError",
    "clean_orphan_temps",
    "load_checkpoint",
    "load_model_state",
    "save_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded (missing, corrupt, unsafe, not a checkpoint, does not fit)."""


# ------------------------------------------------------------------------------------------------ writes
def _describe_non_archive(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        return "the file is empty"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "it is a JSON/text file, not a PyTorch checkpoint"
    if head[:2] == b"PK":
        return "it is a truncated or corrupt zip archive"
    return "it is not a PyTorch checkpoint (zip archive) file"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load an mmrobust checkpoint on the CPU with ``weights_only=True``.

    Raises:
        CheckpointError: one line naming ``path`` and why it cannot be loaded.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: the file does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a file")
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"checkpoint {path}: {_describe_non_archive(path)}")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        found = re.search(r"(?:GLOBAL|global:?)\s+([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"checkpoint {path}: refused as unsafe: it holds Python objects that weights_only loading does not "
            f"allow{what}; mmrobust checkpoints hold only tensors and plain values"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        first = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path}: truncated or corrupt ({first})") from error
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"checkpoint {path}: not an mmrobust checkpoint (no 'model' entry; found {keys})")
    return ckpt


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{f', … +{len(names) - limit} more' if len(names) > limit else ''}]"


def load_model_state(model: nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch is one ``CheckpointError`` line.

    The line names ``path`` and lists the missing keys, the unexpected keys and the shape mismatches
    (checkpoint shape vs model shape), a few of each.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch (checkpoint vs model) {_listed(mismatched)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(problems)}")
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as error:  # pragma: no cover - e.g. dtype conversions torch refuses
        raise CheckpointError(f"checkpoint {path} does not fit this model: {str(error).splitlines()[0]}") from error
