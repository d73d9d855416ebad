"""Classification metrics per subset: accuracy, macro-F1 and the ISO/IEC 30107-3 PAD error rates.

PAD rates treat ``bona_fide_class`` as the positive class, score = softmax probability of that class:

- APCER = attacks accepted as bona fide / attacks   (FP / (FP + TN))
- BPCER = bona fide rejected as attacks / bona fide (FN / (TP + FN))
- ACER  = (APCER + BPCER) / 2

The decision is the argmax (as the papers) or ``score >= threshold`` with a threshold fixed on the
validation split (``fit_threshold``). Lower is better for the three rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchmetrics.functional import accuracy, f1_score, stat_scores

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "apcer": False, "bpcer": False, "acer": False}
PAD_METRICS = ("apcer", "bpcer", "acer")


def classification_metrics(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy (fraction of samples) and macro-F1. Shape: logits [N, C], target [N]."""
    preds = logits.argmax(dim=1)
    return {
        "accuracy": float(accuracy(preds, target, task="multiclass", num_classes=num_classes, average="micro")),
        "macro_f1": float(f1_score(preds, target, task="multiclass", num_classes=num_classes, average="macro")),
    }


def pad_metrics(
    logits: torch.Tensor, target: torch.Tensor, bona_fide_class: int, threshold: float | None = None
) -> dict[str, float]:
    """APCER, BPCER, ACER for a binary (bona fide vs attack) task. Shape: logits [N, 2], target [N]."""
    if logits.shape[1] != 2:
        raise ValueError(f"PAD metrics need 2 classes (bona fide vs attack), got logits of shape {tuple(logits.shape)}")
    is_bona = target == bona_fide_class
    if threshold is None:
        accepted = logits.argmax(dim=1) == bona_fide_class
    else:
        accepted = logits.softmax(dim=1)[:, bona_fide_class] >= threshold
    tp, fp, tn, fn, _ = stat_scores(accepted.long(), is_bona.long(), task="binary").tolist()
    apcer = fp / max(fp + tn, 1)
    bpcer = fn / max(tp + fn, 1)
    return {"apcer": apcer, "bpcer": bpcer, "acer": (apcer + bpcer) / 2}


def fit_threshold(logits: torch.Tensor, target: torch.Tensor, bona_fide_class: int) -> float:
    """The score threshold that minimizes ACER on these (validation) predictions."""
    scores = logits.softmax(dim=1)[:, bona_fide_class]
    candidates = torch.unique(torch.cat([scores, torch.tensor([0.5, 1.0 + 1e-6])]))
    best = min(candidates.tolist(), key=lambda t: pad_metrics(logits, target, bona_fide_class, t)["acer"])
    return float(best)


def subset_metrics(
    predictions: Mapping[int, Any],
    bona_fide_class: int | None = None,
    thresholds: Mapping[int, float] | None = None,
) -> dict[int, dict[str, float]]:
    """Metrics of every subset from its predictions (objects with ``logits [N, C]`` and ``target [N]``).

    PAD metrics are added when ``bona_fide_class`` is set; ``thresholds`` (per subset, fixed on the
    validation split) replace the argmax decision for them.
    """
    out = {}
    for subset, p in predictions.items():
        metrics = classification_metrics(p.logits, p.target, p.logits.shape[1])
        if bona_fide_class is not None:
            threshold = None if thresholds is None else thresholds[subset]
            metrics |= pad_metrics(p.logits, p.target, bona_fide_class, threshold)
        out[subset] = metrics
    return out
