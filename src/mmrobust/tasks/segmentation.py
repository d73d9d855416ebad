"""Semantic segmentation: one class per pixel; per-pixel cross-entropy; mIoU and pixel accuracy.

Targets are int64 label maps ``[B, H, W]`` with classes ``0..K-1`` and ``IGNORE_INDEX`` (void) pixels, which
carry no loss and are not counted. Logits ``[B, K, h, w]`` of another size than the label map are resized
bilinearly to it first, so loss and metrics are always at the label resolution.

Metrics per subset, from a streaming ``K × K`` confusion matrix over the non-void pixels of the whole split
(rows = target, columns = prediction):

- IoU_k = TP_k / (TP_k + FP_k + FN_k); mIoU = mean of IoU_k over the classes with a non-empty union
  (a class neither present nor predicted anywhere in the split is left out, as ``nanmean`` does);
- pixel accuracy = Σ_k TP_k / number of non-void pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmrobust.data.base import IGNORE_INDEX
from mmrobust.registry import ConfigError
from mmrobust.tasks.base import TASKS, MetricFact, SubsetMetric, Task


def to_label_size(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Resize logits ``[B, K, h, w]`` bilinearly to the label size ``[B, H, W]`` (no-op when equal)."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"segmentation expects logits [B, K, h, w] and labels [B, H, W], got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    if logits.shape[-2:] == target.shape[-2:]:
        return logits
    return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)


class SegmentationMetric(SubsetMetric):
    """Streaming confusion matrix of one subset -> mIoU, pixel accuracy, per-class IoU."""

    confmat: torch.Tensor

    def __init__(self, num_classes: int, class_names: Sequence[str]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_names = tuple(class_names)
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Shape: logits [B, K, h, w], target [B, H, W]."""
        k = self.num_classes
        preds = to_label_size(logits, target).argmax(dim=1)  # [B, H, W]
        valid = target != IGNORE_INDEX
        self.confmat += torch.bincount(target[valid] * k + preds[valid], minlength=k * k).view(k, k)

    def iou(self) -> torch.Tensor:
        """Per-class IoU ``[K]``; NaN for a class with an empty union."""
        cm = self.confmat.double()
        tp = cm.diag()
        union = cm.sum(dim=0) + cm.sum(dim=1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def scores(self) -> dict[str, float]:  # type: ignore[override]
        iou = self.iou()
        seen = ~torch.isnan(iou)
        total = int(self.confmat.sum())
        return {
            "miou": float(iou[seen].mean()) if bool(seen.any()) else 0.0,
            "pixel_accuracy": float(self.confmat.diag().sum()) / max(total, 1),
        }

    def details(self) -> dict[str, Any]:
        iou = self.iou()
        return {"iou": {name: (None if torch.isnan(v) else float(v)) for name, v in zip(self.class_names, iou)}}


@TASKS.register("segmentation")
class Segmentation(Task):
    """Per-pixel classification with a void label.

    Args:
        num_classes, class_names: from the dataset.
        class_weights: optional per-class weights of the cross-entropy (a list of ``num_classes`` floats).
    """

    name = "segmentation"
    METRICS: ClassVar[dict[str, MetricFact]] = {
        "miou": MetricFact("mIoU (%)"),
        "pixel_accuracy": MetricFact("Pixel accuracy (%)"),
    }
    default_select_metric = "miou"

    def __init__(
        self, num_classes: int, class_names: Sequence[str] = (), class_weights: list[float] | None = None
    ) -> None:
        super().__init__(num_classes, class_names)
        if class_weights is not None and (len(class_weights) != num_classes or min(class_weights) < 0):
            raise ConfigError(
                f"task.class_weights: expected {num_classes} non-negative weights, got {list(class_weights)}"
            )
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)

    def collate_targets(self, targets: Sequence[Any]) -> torch.Tensor:
        shapes = {tuple(t.shape) for t in targets}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"label maps must all be [H, W] of one size in a batch, got shapes {sorted(shapes)}")
        target = torch.stack([torch.as_tensor(t, dtype=torch.long) for t in targets])
        bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= self.num_classes))
        if bool(bad.any()):
            values = sorted(set(target[bad].unique().tolist()))[:10]
            raise ValueError(
                f"label values {values} are outside the classes 0..{self.num_classes - 1} "
                f"(and {IGNORE_INDEX} for void)"
            )
        return target

    def loss(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel cross-entropy, void pixels ignored, optional class weights ``w``.

        Without ``mask``: ``Σ_p w_{y_p} CE_p / Σ_p w_{y_p}`` over the non-void pixels of the batch. With a
        per-sample ``mask [B]``: ``(1/B) Σ_b mask_b · CE_b`` where ``CE_b`` is that weighted mean over the
        pixels of sample ``b`` (0 for a sample with no labelled pixel).

        Shape: logits [B, K, h, w], target [B, H, W] -> scalar.
        """
        logits = to_label_size(logits, target)
        weight = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
        if mask is None:
            if not bool((target != IGNORE_INDEX).any()):
                return logits.sum() * 0.0  # no labelled pixel: zero loss, still connected to the graph
            return F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
        ce = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")  # [B,H,W]
        valid = target != IGNORE_INDEX
        w = valid.to(ce.dtype) if weight is None else weight[target.clamp(max=self.num_classes - 1)] * valid
        per_sample = ce.flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1e-12)  # [B]
        return (per_sample * mask.to(per_sample.dtype)).sum() / logits.shape[0]

    def new_metric(self) -> SegmentationMetric:
        return SegmentationMetric(self.num_classes, self.class_names)

    def probe_head(self, in_features: int) -> nn.Module:
        """A 1×1 convolution: ``[B, D, h, w] -> [B, K, h, w]`` (resized to the labels by the loss)."""
        return nn.Conv2d(in_features, self.num_classes, kernel_size=1)

    def compact(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the log of the mean predicted class distribution over its labelled pixels ``[B, K]``
        and its most frequent labelled class ``[B]`` (0 when no pixel is labelled)."""
        logits = to_label_size(logits, target)
        valid = (target != IGNORE_INDEX).unsqueeze(1).to(logits.dtype)  # [B, 1, H, W]
        probs = logits.float().softmax(dim=1) * valid
        mean = probs.flatten(2).sum(2) / valid.flatten(2).sum(2).clamp(min=1)  # [B, K]
        k = self.num_classes
        onehot = F.one_hot(target.clamp(max=k - 1), k).to(logits.dtype) * valid.squeeze(1).unsqueeze(-1)
        dominant = onehot.flatten(1, 2).sum(1).argmax(dim=1)  # [B]
        return mean.clamp(min=1e-12).log(), dominant

    def save_examples(self, model: Any, batch: Any, subsets: Sequence[int], path: Path) -> Path | None:
        from mmrobust.evaluation.seg_examples import save_examples

        return save_examples(model, batch, subsets, self.num_classes, path)

    def describe(self) -> dict[str, Any]:
        weights = None if self.class_weights is None else self.class_weights.tolist()
        return super().describe() | {"ignore_index": IGNORE_INDEX, "class_weights": weights}
