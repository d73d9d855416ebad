"""Early stopping on the validation selection score (``trainer.early_stopping``), derived from the history.

The rule reads only the per-epoch records the trainer keeps in ``history.json`` and in ``last.ckpt``, so a
resumed run stops exactly where the uninterrupted run would (no counter to save):

    ref = score of the first epoch ``e ≥ select_from`` (epochs before cannot be selected, so never count);
    for each later epoch: improved  ⇔  sign · (score − ref) > min_delta  → ref = score, stale = 0;
                          otherwise stale += 1;
    stop after the first epoch where stale = patience.

``sign`` is +1 when a higher metric is better and −1 otherwise (ACER). ``patience = 0`` never stops. The
epoch that triggers the stop gets ``"early_stop": true`` in its history record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STOP_KEY = "early_stop"


def early_stop_epoch(
    history: Sequence[Mapping[str, Any]],
    score_key: str,
    *,
    sign: float,
    select_from: int,
    patience: int,
    min_delta: float = 0.0,
) -> int | None:
    """The epoch after which training stops (module docstring), or None while it goes on.

    Args:
        history: the trainer's per-epoch records (``epoch`` and ``score_key`` in each), in epoch order.
        score_key: the record key of the selection score (``val/avg_<metric>``).
        sign: +1 when higher is better, -1 when lower is better.
        select_from: the first epoch model selection may pick.
        patience: epochs without an improvement larger than ``min_delta`` before stopping; 0 = never.
        min_delta: the smallest change that counts as an improvement (>= 0, in the metric's units).
    """
    if patience <= 0:
        return None
    ref: float | None = None
    stale = 0
    for record in history:
        if record["epoch"] < select_from or score_key not in record:
            continue
        score = float(record[score_key])
        if ref is None or sign * (score - ref) > min_delta:
            ref, stale = score, 0
        else:
            stale += 1
            if stale >= patience:
                return int(record["epoch"])
    return None
