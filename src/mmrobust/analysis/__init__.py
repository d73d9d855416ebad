"""Analyses of trained runs: ``mmrobust analyze NAME RUN [RUN ...]``.

- ``dmrnet``: σ² per modality subset, D_channel feature diversity, α sweep (``mmrobust.analysis.dmrnet``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

ANALYSES = {"dmrnet": "mmrobust.analysis.dmrnet"}


def main(argv: Sequence[str]) -> None:
    """Dispatch ``NAME ARGS...`` to the analysis module's ``main(ARGS)``."""
    usage = f"usage: mmrobust analyze {{{','.join(ANALYSES)}}} RUN [RUN ...] [--out DIR] (-h for help)"
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return
    if not argv or argv[0] not in ANALYSES:
        sys.exit(usage)
    importlib.import_module(ANALYSES[argv[0]]).main(list(argv[1:]))
