"""Turn the errors a user can fix into one clear line on stderr and exit code 2 (no stack trace)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import OmegaConfBaseException

from mmrobust.data.base import DatasetLayoutError
from mmrobust.registry import ConfigError


@contextmanager
def user_errors() -> Iterator[None]:
    from mmrobust.engine.trainer import NonFiniteLossError

    try:
        yield
    except (
        ConfigError,
        DatasetLayoutError,
        NonFiniteLossError,
        FileNotFoundError,
        OmegaConfBaseException,
    ) as error:
        kind = {
            ConfigError: "config error",
            DatasetLayoutError: "dataset error",
            NonFiniteLossError: "training stopped",
        }.get(type(error), "error")
        message = str(error)
        if isinstance(error, OmegaConfBaseException):
            first_line = str(getattr(error, "msg", error)).splitlines()[0]
            kind, message = "config error", f"{getattr(error, 'full_key', '') or '?'}: {first_line}"
        print(f"mmrobust: {kind}: {message}", file=sys.stderr)
        sys.exit(2)
