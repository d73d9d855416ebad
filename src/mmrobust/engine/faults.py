"""Test hook: kill this process with SIGKILL at a named write point (fault tests of kill -9 and resume).

Set ``MMROBUST_FAULT`` to ``WHEN:NAME`` or ``WHEN:NAME:epochK``, where ``WHEN`` is ``before`` or ``after``
and ``NAME`` is a write point of a run:

==================  =========================================================================
``config.yaml``     the run's resolved config (written once, before training)
``best.ckpt``       the best checkpoint of an epoch that improved (written before ``last.ckpt``)
``last.ckpt``       the checkpoint of every epoch (what ``resume=true`` continues from)
``history.json``    the per-epoch history (after ``last.ckpt``)
``results.json``    the final metrics (``before:results.json`` = killed during evaluation)
``table``           the table files (``table.md/.csv/.json/.tex`` and the heatmap)
==================  =========================================================================

``after:best.ckpt:epoch2`` kills the process right after ``best.ckpt`` of epoch 2 is on disk (a kill
between the best and the last checkpoint); without ``:epochK`` the first occurrence kills. Only the
process that writes (rank 0) reaches these points. Unset (the normal case) costs one dictionary lookup.
This is a test hook, not a user feature: nothing is cleaned up, exactly as with a real ``kill -9``.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "MMROBUST_FAULT"


def fault_point(when: str, name: str, epoch: int | None = None) -> None:
    """SIGKILL this process when ``MMROBUST_FAULT`` names this point (see the module docstring)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.strip().split(":")
    if parts[:2] != [when, name]:
        return
    if len(parts) > 2 and (epoch is None or parts[2] != f"epoch{epoch}"):
        return
    os.kill(os.getpid(), signal.SIGKILL)
