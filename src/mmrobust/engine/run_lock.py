"""One run at a time per run folder: a lock file created with ``O_CREAT | O_EXCL``.

``RunLock(run_dir)`` creates ``run_dir/.mmrobust.lock`` holding ``pid host``. ``O_EXCL`` makes the creation
atomic (also on NFS v3+): of two runs on one folder exactly one creates the file; the other reads who holds
it and stops with one ``RunFolderError`` line naming the folder and the holder's pid and host. Two runs
started in the same second with Hydra's default folder (timestamped to the second) meet here, so the second
refuses instead of silently sharing the folder.

The lock is released (the file removed) when the ``with`` block exits, also on an exception. A process killed
with SIGKILL cannot release it: the next run on the **same host** sees that the recorded pid is not alive and
takes the stale lock over with a warning. A lock recorded by another host is never taken over (its pid cannot
be checked from here); the message says which file to remove once that run is known to be gone. The takeover
itself is serialized by an ``flock`` on the folder, so two runs finding the same stale lock cannot both win.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from pathlib import Path
from types import TracebackType

from mmrobust.registry import ConfigError

log = logging.getLogger(__name__)
LOCK_NAME = ".mmrobust.lock"


class RunFolderError(ConfigError):
    """The run folder cannot be used by this run (locked by another run, already holding a run, nothing to resume)."""


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this host (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_holder(path: Path) -> tuple[int, str]:
    """``(pid, host)`` recorded in a lock file; ``(-1, "?")`` when it is unreadable or malformed."""
    try:
        pid, host = path.read_text(encoding="utf-8").split()[:2]
        return int(pid), host
    except (OSError, ValueError, UnicodeDecodeError):
        return -1, "?"


class RunLock:
    """Exclusive use of ``run_dir`` by this process; a context manager (see the module docstring).

    Raises:
        RunFolderError: on entry, when another live run (or a run of another host) holds the folder.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
            f.flush()
            os.fsync(f.fileno())
        return True

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        folder_fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(folder_fd, fcntl.LOCK_EX)  # serializes takeovers between runs of this host
            if not self._create():
                pid, host = read_holder(self.path)
                if host == socket.gethostname() and not pid_alive(pid):
                    log.warning(
                        "run folder %s: taking over the stale lock of process %d on %s (it is no longer running)",
                        self.run_dir,
                        pid,
                        host,
                    )
                    self.path.unlink(missing_ok=True)
                    if not self._create():  # pragma: no cover - only a run of another host could get here
                        pid, host = read_holder(self.path)
                        raise self._busy(pid, host)
                else:
                    raise self._busy(pid, host)
        finally:
            fcntl.flock(folder_fd, fcntl.LOCK_UN)
            os.close(folder_fd)
        self.held = True

    def _busy(self, pid: int, host: str) -> RunFolderError:
        here = host == socket.gethostname()
        return RunFolderError(
            f"run folder {self.run_dir} is in use by another run (pid {pid} on {host}); "
            + (
                "wait for it or choose another folder (hydra.run.dir=...); two runs started in the same second "
                "share Hydra's default timestamped folder"
                if here
                else f"if that run is gone, remove {self.path}"
            )
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        pid, _ = read_holder(self.path)
        if pid == os.getpid():
            try:
                self.path.unlink()
            except OSError as error:  # pragma: no cover - the folder vanished
                if error.errno != errno.ENOENT:
                    log.warning("run folder %s: could not remove the lock %s: %s", self.run_dir, self.path, error)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
