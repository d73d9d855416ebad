"""Every error that reaches a user of the command line is one line on stderr and a non-zero exit code.

``mmrobust: <kind>: <what is wrong, naming the key or file>``. Exit codes: 2 for what the user can fix in
the command (config, dataset layout, checkpoint, non-finite training), 1 for the environment (an OSError
such as a full disk or an unwritable folder) and for unexpected errors, 130 for Ctrl-C. ``MMROBUST_DEBUG=1``
re-raises instead, so the full traceback is printed.

Ctrl-C during ``mmrobust train`` (``interrupted``) names the checkpoint a resumed run continues from (the newest
``checkpoints/last.ckpt`` of the run folder: the model being trained) and the command that resumes it: the same
overrides, then ``resume=true hydra.run.dir=RUN_DIR``. Interrupted before any checkpoint, it gives the command
that starts the run again (``overwrite=true``).
"""

from __future__ import annotations

import errno
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from mmrobust.data.base import DatasetLayoutError
from mmrobust.engine.checkpoint import CheckpointError
from mmrobust.registry import ConfigError

DEBUG_ENV = "MMROBUST_DEBUG"
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _omegaconf(error: OmegaConfBaseException) -> str:
    first = str(getattr(error, "msg", None) or error).strip().splitlines()[0]
    return f"{getattr(error, 'full_key', '') or '?'}: {first}"


def _os_error(error: OSError) -> str:
    where = error.filename if error.filename is not None else None
    if where is None:
        return one_line(str(error))
    why = error.strerror or one_line(str(error))
    if error.errno in DISK_FULL:
        return f"cannot write {where}: {why} (disk full or file-size limit)"
    return f"{where}: {why}"


FOLDER_OVERRIDES = ("resume=", "overwrite=", "hydra.run.dir=", "++resume=", "++overwrite=", "+resume=")


def hydra_run() -> tuple[Path, list[str]] | None:
    """``(run folder, task overrides)`` of the Hydra job running in this process, or None outside one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        config = HydraConfig.get()
        return Path(config.runtime.output_dir), list(config.overrides.task)
    except Exception:  # describing an interruption must never fail
        return None


def interrupted_message() -> str:
    """What to do after Ctrl-C (module docstring); one line."""
    stopped = "stopped by the user"
    job = hydra_run()
    if job is None:
        return f"{stopped}; the last checkpoint written (if any) is kept"
    run_dir, overrides = job
    kept = [o for o in overrides if not o.startswith(FOLDER_OVERRIDES)]
    folder = shlex.quote(f"hydra.run.dir={run_dir}")
    command = shlex.join(["mmrobust", "train", *kept])
    last = sorted(run_dir.rglob("checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if last:
        return f"{stopped}; resume from {last[-1]} with: {command} resume=true {folder}"
    if any(run_dir.rglob("checkpoints/*.ckpt")):  # e.g. a teacher finished, the main model had no epoch yet
        return f"{stopped} before the model's first checkpoint; resume with: {command} resume=true {folder}"
    return f"{stopped} before any checkpoint of {run_dir}; start again with: {command} overwrite=true {folder}"


def describe(error: BaseException) -> tuple[str, str, int]:
    """``(kind, one-line message, exit code)`` of an error shown to a user."""
    from hydra.errors import HydraException, OverrideParseException

    from mmrobust.engine.trainer import NonFiniteLossError

    if isinstance(error, KeyboardInterrupt):
        return "interrupted", interrupted_message(), 130
    if isinstance(error, ConfigError):
        return "config error", one_line(str(error)), 2
    if isinstance(error, OmegaConfBaseException):
        return "config error", one_line(_omegaconf(error)), 2
    if isinstance(error, HydraException):
        message = one_line(str(error)).split(" Config search path:")[0]  # Hydra appends its search path
        if isinstance(error, OverrideParseException):
            message = f"cannot parse the override {error.override!r}: {message}"
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException):
            message = f"{message} ({one_line(_omegaconf(cause))})"
        return "config error", message, 2
    if isinstance(error, DatasetLayoutError):
        return "dataset error", one_line(str(error)), 2
    if isinstance(error, CheckpointError):
        return "checkpoint error", one_line(str(error)), 2
    if isinstance(error, NonFiniteLossError):
        return "training stopped", one_line(str(error)), 2
    if isinstance(error, OSError):
        return "error", _os_error(error), 1
    detail = one_line(str(error)) or "(no message)"
    return "internal error", f"{type(error).__name__}: {detail} (set {DEBUG_ENV}=1 for the traceback)", 1


def report(error: BaseException) -> int:
    """Print the one line of ``error`` on stderr and return its exit code."""
    kind, message, code = describe(error)
    print(f"mmrobust: {kind}: {message}", file=sys.stderr, flush=True)
    return code


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn any exception into one stderr line and ``SystemExit`` (unless ``MMROBUST_DEBUG=1``)."""
    try:
        yield
    except SystemExit:
        raise
    except (Exception, KeyboardInterrupt) as error:
        if debug():
            raise
        sys.exit(report(error))
