"""Atomic file writes: every file mmrobust writes goes through here.

The bytes go to a temporary file ``.<name>.<random>.tmp`` in the destination folder, which is flushed and
fsynced, given the mode the umask gives a normal file (``0o666 & ~umask``, so 0644 under the usual umask, not
mkstemp's 0600), renamed over the destination (``os.replace`` is atomic on POSIX) and the folder is fsynced
so the rename itself survives a power cut. A crash at any point leaves either the old file or the new one,
never a truncated one; a killed writer may leave its ``*.tmp`` file behind, which ``clean_orphan_temps``
removes at the start of the next run. A full disk (or a file-size limit) while writing becomes an
``OSError`` naming the destination.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

TEMP_SUFFIX = ".tmp"
_UMASK_LOCK = threading.Lock()


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
