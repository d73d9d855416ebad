import math

import pytest
import torch
import torch.nn.functional as F

from mmrobust.data.base import IGNORE_INDEX
from mmrobust.registry import ConfigError
from mmrobust.tasks import Segmentation


def one_hot_logits(pred: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(pred, k).permute(0, 3, 1, 2).float() * 10  # [B, K, H, W]


def test_miou_and_pixel_accuracy_hand_computed_with_void_ignored():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, IGNORE_INDEX, IGNORE_INDEX]]])  # [1, 2, 4]
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 1]]])
    metric = Segmentation(3).new_metric()
    metric.update(one_hot_logits(pred, 3), target)
    s = metric.scores()
    # class0: tp 1, fp 1 (pixel 5), fn 1 -> 1/3; class1: tp 2, fp 1 -> 2/3; class2: tp 1, fn 1 -> 1/2
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)  # the two void pixels do not count
    iou = metric.details()["iou"]
    assert iou["1"] == pytest.approx(2 / 3)


def test_classes_absent_from_the_split_are_left_out_of_the_mean():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    metric = Segmentation(4).new_metric()
    metric.update(one_hot_logits(target, 4), target)
    assert metric.scores()["miou"] == 1.0
    assert metric.details()["iou"]["3"] is None


def test_streaming_over_batches_equals_one_update_and_logits_are_resized_to_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 8, 8, generator=g)
    target = torch.randint(0, 5, (6, 16, 16), generator=g)
    target[:, :2] = IGNORE_INDEX
    whole, parts = Segmentation(5).new_metric(), Segmentation(5).new_metric()
    whole.update(logits, target)
    for lg, tg in zip(logits.chunk(3), target.chunk(3)):
        parts.update(lg, tg)
    assert whole.scores() == parts.scores()
    assert torch.equal(whole.confmat, parts.confmat)
    assert int(whole.confmat.sum()) == int((target != IGNORE_INDEX).sum())


def test_loss_ignores_void_and_masks_samples():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    target[0, 0] = IGNORE_INDEX
    task = Segmentation(3)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert float(task.loss(logits, target).detach()) == pytest.approx(float(expected.detach()))
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    sample1 = ce[1].mean()
    masked = task.loss(logits, target, torch.tensor([False, True]))
    assert float(masked.detach()) == pytest.approx(float(sample1.detach() / 2))
    masked.backward()
    assert logits.grad is not None and torch.all(logits.grad[0] == 0)


def test_class_weights_and_gradcheck():
    logits = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[0, 1], [2, IGNORE_INDEX]]])
    task = Segmentation(3, class_weights=[1.0, 2.0, 0.5])
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    expected = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE_INDEX)
    assert float(task.loss(logits, target).detach()) == pytest.approx(float(expected.detach()))
    assert float(task.loss(logits, target, torch.tensor([True])).detach()) == pytest.approx(float(expected.detach()))
    assert torch.autograd.gradcheck(lambda x: task.loss(x, target, torch.tensor([True])), (logits,))


def test_bad_labels_are_one_line_errors():
    task = Segmentation(3)
    with pytest.raises(ValueError, match=r"label values \[3, 7\] are outside the classes 0..2"):
        task.collate_targets([torch.tensor([[0, 3], [7, IGNORE_INDEX]])])
    with pytest.raises(ValueError, match="one size"):
        task.collate_targets([torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)])
    with pytest.raises(ConfigError, match="class_weights"):
        Segmentation(3, class_weights=[1.0])


def test_compact_gives_per_sample_class_distributions():
    target = torch.tensor([[[0, 0], [1, IGNORE_INDEX]]])
    logits = one_hot_logits(torch.tensor([[[0, 0], [1, 1]]]), 2)
    log_mean, dominant = Segmentation(2).compact(logits, target)
    assert log_mean.shape == (1, 2) and dominant.tolist() == [0]
    assert math.isclose(float(log_mean.exp().sum()), 1.0, rel_tol=1e-4)
    assert float(log_mean.exp()[0, 0]) == pytest.approx(2 / 3, abs=1e-3)
