"""Classification: one class per sample; accuracy, macro-F1 and, for presentation attack detection, the
ISO/IEC 30107-3 error rates.

PAD rates treat ``bona_fide_class`` as the positive class, score = softmax probability of that class:

- APCER = attacks accepted as bona fide / attacks   (FP / (FP + TN))
- BPCER = bona fide rejected as attacks / bona fide (FN / (TP + FN))
- ACER  = (APCER + BPCER) / 2

The decision is the argmax (as the papers) or ``score >= threshold`` with a threshold fixed on the
validation split (``fit_threshold``). Lower is better for the three rates.

Streaming state per subset: the ``C × C`` confusion matrix (rows = target, columns = argmax) and, with a
bona fide class, two ``PAD_BINS``-bin histograms of the bona fide score (bona fide samples, attacks). A
threshold ``k / PAD_BINS`` accepts exactly the samples of bins ``≥ k``, so thresholds are fitted and applied
on the histograms without keeping any score (resolution ``1 / PAD_BINS``).

Per-class metrics (``details()``, written to ``results.json``) come from the same confusion matrix ``M``
(``M[t, p]`` = samples of class ``t`` predicted ``p``): ``TP_c = M[c, c]``, ``FP_c = Σ_t M[t, c] − TP_c``,
``FN_c = Σ_p M[c, p] − TP_c``; precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, F1 ``2TP/(2TP+FP+FN)``, each 0
where its denominator is 0 (torchmetrics' ``zero_division=0``), and the support ``TP+FN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.losses.masked import masked_cross_entropy
from mmrobust.models.heads import LinearHead
from mmrobust.registry import ConfigError
from mmrobust.tasks.base import TASKS, MetricFact, SubsetMetric, Task

PAD_BINS = 10_000
PAD_METRICS = ("apcer", "bpcer", "acer")


def _ratio(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    return torch.where(denom > 0, num / denom.clamp(min=1), torch.zeros_like(num))


def per_class_counts(confmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(TP, FP, FN)`` per class (float64) of a confusion matrix (rows = target). Shape: ``[C, C] -> 3 × [C]``."""
    tp = confmat.diag().double()
    return tp, confmat.sum(dim=0).double() - tp, confmat.sum(dim=1).double() - tp


def per_class_scores(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class precision, recall, F1 and support of a confusion matrix (module docstring).

    Shape: confmat ``[C, C]`` (rows = target) -> each value ``[C]``.
    """
    tp, fp, fn = per_class_counts(confmat)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "support": tp + fn,
    }


def macro_f1(confmat: torch.Tensor) -> float:
    """Macro-F1 from a confusion matrix (rows = target), classes with no TP, FP nor FN left out (as
    torchmetrics' ``average='macro'``)."""
    tp, fp, fn = per_class_counts(confmat)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    seen = (tp + fp + fn) > 0
    return float(f1[seen].mean()) if bool(seen.any()) else 0.0


def pad_rates(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    apcer = fp / max(fp + tn, 1)
    bpcer = fn / max(tp + fn, 1)
    return {"apcer": apcer, "bpcer": bpcer, "acer": (apcer + bpcer) / 2}


class ClassificationMetric(SubsetMetric):
    """Streaming accuracy, macro-F1 and (with ``bona_fide_class``) PAD rates of one subset; per-class precision,
    recall, F1 and the confusion matrix in ``details()``. ``class_names`` default to ``"0" .. "C-1"``."""

    confmat: torch.Tensor
    bona_hist: torch.Tensor
    attack_hist: torch.Tensor

    def __init__(
        self, num_classes: int, bona_fide_class: int | None = None, class_names: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bona_fide_class = bona_fide_class
        self.class_names = tuple(class_names) or tuple(str(c) for c in range(num_classes))
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        if bona_fide_class is not None:
            self.add_state("bona_hist", torch.zeros(PAD_BINS, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state("attack_hist", torch.zeros(PAD_BINS, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Shape: logits [B, C], target [B]."""
        c = self.num_classes
        preds = logits.argmax(dim=1)
        self.confmat += torch.bincount(target * c + preds, minlength=c * c).view(c, c)
        if self.bona_fide_class is not None:
            score = logits.float().softmax(dim=1)[:, self.bona_fide_class]
            bins = (score * PAD_BINS).floor().long().clamp(0, PAD_BINS - 1)
            is_bona = target == self.bona_fide_class
            self.bona_hist += torch.bincount(bins[is_bona], minlength=PAD_BINS)
            self.attack_hist += torch.bincount(bins[~is_bona], minlength=PAD_BINS)

    def scores(self, threshold: float | None = None) -> dict[str, float]:  # type: ignore[override]
        confmat = self.confmat
        total = int(confmat.sum())
        out = {"accuracy": float(confmat.diag().sum()) / max(total, 1), "macro_f1": macro_f1(confmat)}
        if self.bona_fide_class is not None:
            out |= self.pad(threshold)
        return out

    def pad(self, threshold: float | None = None) -> dict[str, float]:
        """APCER/BPCER/ACER at the argmax decision, or at ``score >= threshold``."""
        b = self.bona_fide_class
        assert b is not None
        if threshold is None:
            cm = self.confmat
            tp = int(cm[b, b])
            fn = int(cm[b].sum()) - tp
            fp = int(cm[:, b].sum()) - tp
            tn = int(cm.sum()) - tp - fn - fp
            return pad_rates(tp, fp, tn, fn)
        k = min(max(round(threshold * PAD_BINS), 0), PAD_BINS + 1)
        tp, fn = int(self.bona_hist[k:].sum()), int(self.bona_hist[:k].sum())
        fp, tn = int(self.attack_hist[k:].sum()), int(self.attack_hist[:k].sum())
        return pad_rates(tp, fp, tn, fn)

    def fit_threshold(self) -> float:
        """The threshold ``k / PAD_BINS`` (k = 0 .. PAD_BINS + 1) that minimizes ACER; the smallest on ties."""
        assert self.bona_fide_class is not None
        zero = torch.zeros(1, dtype=torch.long)
        # accepted at threshold k: bins >= k, i.e. the reversed cumulative sums (k = 0 .. PAD_BINS), then none.
        bona_acc = torch.cat([self.bona_hist.flip(0).cumsum(0).flip(0), zero]).double()  # [PAD_BINS + 1]
        attack_acc = torch.cat([self.attack_hist.flip(0).cumsum(0).flip(0), zero]).double()
        n_bona, n_attack = float(self.bona_hist.sum()), float(self.attack_hist.sum())
        apcer = attack_acc / max(n_attack, 1)
        bpcer = (n_bona - bona_acc) / max(n_bona, 1)
        k = int(torch.argmin((apcer + bpcer) / 2))  # argmin returns the first minimum
        return k / PAD_BINS

    def details(self) -> dict[str, Any]:
        """``{"class_names": [...], "confusion_matrix": [[...]] (rows = target), "per_class": {name: {precision,
        recall, f1, support}}}`` (fractions; support a count)."""
        scores = per_class_scores(self.confmat)
        per_class = {
            name: {k: (int(v[c]) if k == "support" else float(v[c])) for k, v in scores.items()}
            for c, name in enumerate(self.class_names)
        }
        confusion = self.confmat.tolist()
        return {"class_names": list(self.class_names), "confusion_matrix": confusion, "per_class": per_class}


@TASKS.register("classification")
class Classification(Task):
    """One class index per sample; cross-entropy; accuracy / macro-F1 (+ PAD rates).

    Args:
        num_classes, class_names: from the dataset.
        bona_fide_class: the bona fide label of a presentation-attack-detection task (adds APCER/BPCER/ACER).
    """

    name = "classification"
    METRICS: ClassVar[dict[str, MetricFact]] = {
        "accuracy": MetricFact("Accuracy (%)"),
        "macro_f1": MetricFact("Macro-F1 (%)"),
        "apcer": MetricFact("APCER (%)", higher_is_better=False),
        "bpcer": MetricFact("BPCER (%)", higher_is_better=False),
        "acer": MetricFact("ACER (%)", higher_is_better=False),
    }
    default_select_metric = "accuracy"

    def __init__(
        self, num_classes: int, class_names: Sequence[str] = (), bona_fide_class: int | None = None
    ) -> None:
        super().__init__(num_classes, class_names)
        if bona_fide_class is not None:
            if num_classes != 2:
                raise ConfigError(
                    f"eval.bona_fide_class: PAD metrics need 2 classes (bona fide vs attack), "
                    f"this dataset has {num_classes}"
                )
            if not 0 <= bona_fide_class < num_classes:
                raise ConfigError(f"eval.bona_fide_class: {bona_fide_class} is not a class index (0 or 1)")
        self.bona_fide_class = bona_fide_class

    def metric_names(self) -> tuple[str, ...]:
        return ("accuracy", "macro_f1", *(PAD_METRICS if self.bona_fide_class is not None else ()))

    def collate_targets(self, targets: Sequence[Any]) -> torch.Tensor:
        target = torch.as_tensor([int(t) for t in targets], dtype=torch.long)
        bad = (target < 0) | (target >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"class labels {sorted(set(target[bad].tolist()))} are outside 0..{self.num_classes - 1}"
            )
        return target

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``CE(logits, target)`` (mean over samples); with ``mask [B]``: ``(1/B) Σ_b mask_b · CE_b``.

        Shape: logits [B, C], target [B] -> scalar.
        """
        if mask is None:
            return F.cross_entropy(logits, target)
        return masked_cross_entropy(logits, target, mask)

    def new_metric(self) -> ClassificationMetric:
        return ClassificationMetric(self.num_classes, self.bona_fide_class, self.class_names)

    def probe_head(self, in_features: int) -> nn.Module:
        """Global average pooling of maps + a linear classifier: ``[B, D(, H, W)] -> [B, C]``."""
        return LinearHead(in_features, self.num_classes)

    def compact(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits, target

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"bona_fide_class": self.bona_fide_class}
