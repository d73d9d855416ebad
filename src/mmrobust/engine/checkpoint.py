"""Every file mmrobust writes or loads goes through here: atomic writes and checked checkpoint loads.

Writes: the bytes go to a temporary file ``.<name>.<random>.tmp`` in the destination folder, which is
flushed and fsynced, given the mode the umask gives a normal file (``0o666 & ~umask``, so 0644 under the
usual umask, not mkstemp's 0600), renamed over the destination (``os.replace`` is atomic on POSIX) and the
folder is fsynced so the rename itself survives a power cut. A crash at any point leaves either the old
file or the new one, never a truncated one; a killed writer may leave its ``*.tmp`` file behind, which
``clean_orphan_temps`` removes at the start of the next run. A full disk (or a file-size limit) while
writing becomes an ``OSError`` naming the destination.

Loads: checkpoints hold only tensors and plain Python values and are loaded with ``weights_only=True``;
every failure (missing, truncated, not a checkpoint, refused as unsafe, keys that do not fit the model)
is one ``CheckpointError`` line naming the file and why.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

TEMP_SUFFIX = ".tmp"
_UMASK_LOCK = threading.Lock()


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded (missing, corrupt, unsafe, not a checkpoint, does not fit)."""


# ------------------------------------------------------------------------------------------------ writes
def current_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set-and-restore under a lock)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically with ``write(binary_file)``; see the module docstring."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            reason = "no space left on device" if error.errno != errno.EFBIG else "file size limit exceeded"
            raise OSError(error.errno, f"{reason} while writing", str(path)) from error
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return _write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write UTF-8 text to ``path`` atomically (fsynced like a checkpoint)."""
    data = text.encode("utf-8")

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return _write_atomic(path, write)


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    return write_text_atomic(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", path)


def clean_orphan_temps(folder: str | Path) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files a killed writer left anywhere under ``folder``.

    Call it at the start of a run, when no other writer uses the folder (the run lock). Returns the
    removed paths; a missing folder is not an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.rglob(f".*{TEMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------------- loads
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
