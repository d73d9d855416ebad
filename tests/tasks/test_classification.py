import pytest
import torch
from torchmetrics.functional import accuracy, f1_score

from mmrobust.registry import ConfigError
from mmrobust.tasks import Classification, build_task


def scores_of(task, logits, target, chunks=1, **options):
    metric = task.new_metric()
    for lg, tg in zip(logits.chunk(chunks), target.chunk(chunks)):
        metric.update(lg, tg)
    return metric.scores(**options), metric


def test_accuracy_and_macro_f1_hand_computed():
    logits = torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [0, 3, 0]])
    target = torch.tensor([0, 1, 2, 2])
    m, _ = scores_of(Classification(3), logits, target)
    assert m["accuracy"] == pytest.approx(0.75)
    # per-class F1: class0 1.0, class1 2/3 (P=.5,R=1), class2 2/3 (P=1,R=.5)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_streaming_metrics_equal_torchmetrics_on_the_whole_split(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(97, 6, generator=g)
    target = torch.randint(0, 5, (97,), generator=g)  # class 5 never a target: still counted when predicted
    m, _ = scores_of(Classification(6), logits, target, chunks=7)
    preds = logits.argmax(1)
    assert m["accuracy"] == pytest.approx(float(accuracy(preds, target, task="multiclass", num_classes=6, average="micro")))
    assert m["macro_f1"] == pytest.approx(float(f1_score(preds, target, task="multiclass", num_classes=6, average="macro")))


def test_pad_rates_iso_naming_and_either_label_encoding():
    # bona fide = class 1. 4 attacks (one accepted), 2 bona fide (one rejected)
    target = torch.tensor([0, 0, 0, 0, 1, 1])
    accepted = torch.tensor([0, 0, 0, 1, 1, 0])
    logits = torch.stack([1 - accepted.float(), accepted.float()], dim=1)
    m, _ = scores_of(Classification(2, bona_fide_class=1), logits, target)
    assert m["apcer"] == pytest.approx(1 / 4)  # attacks accepted
    assert m["bpcer"] == pytest.approx(1 / 2)  # bona fide rejected
    assert m["acer"] == pytest.approx(3 / 8)
    swapped, _ = scores_of(Classification(2, bona_fide_class=0), logits.flip(1), 1 - target)  # real = 0 (CeFA)
    assert swapped == m


def test_threshold_fixed_on_validation_separates_scores_and_applies_exactly():
    # bona fide scores 0.6, 0.7; attacks 0.55, 0.1: argmax accepts an attack, the fitted threshold does not
    p = torch.tensor([0.6, 0.7, 0.55, 0.1])
    logits = torch.stack([torch.log(1 - p), torch.log(p)], dim=1)
    target = torch.tensor([1, 1, 0, 0])
    task = Classification(2, bona_fide_class=1)
    m, metric = scores_of(task, logits, target)
    assert m["acer"] == pytest.approx(0.25)
    t = metric.fit_threshold()
    assert 0.55 < t <= 0.6
    assert metric.scores(threshold=t)["acer"] == 0.0
    # applying a threshold on the histograms = thresholding the scores themselves
    for threshold in (0.0, 0.2, 0.5501, 0.58, 0.65, 1.0):  # (not at a score: float rounding decides there)
        accepted = p >= threshold
        apcer = float(accepted[2:].float().mean())
        bpcer = float((~accepted[:2]).float().mean())
        assert metric.scores(threshold=threshold)["acer"] == pytest.approx((apcer + bpcer) / 2)


def test_fitted_threshold_is_the_best_one_computed_from_the_scores_themselves():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (2_000,), generator=g)
    logits = torch.randn(2_000, 2, generator=g) + torch.stack([1 - target, target], 1) * 0.8  # informative
    _, metric = scores_of(Classification(2, bona_fide_class=1), logits, target, chunks=10)
    t = metric.fit_threshold()
    score, bona = logits.softmax(1)[:, 1], target == 1

    def acer(threshold: float) -> float:  # brute force on the scores, no histogram
        accepted = score >= threshold
        return float((accepted[~bona].float().mean() + (~accepted[bona]).float().mean()) / 2)

    grid = [k / 200 for k in range(201)]
    assert metric.scores(threshold=t)["acer"] <= min(acer(x) for x in grid) + 1e-9
    assert metric.scores(threshold=t)["acer"] == pytest.approx(acer(t), abs=2e-3)  # bin-edge rounding only
    assert metric.scores(threshold=t)["acer"] < metric.scores()["acer"]  # beats the argmax decision here


def test_bad_task_settings_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="bona_fide_class.*2 classes"):
        Classification(3, bona_fide_class=1)
    with pytest.raises(ConfigError, match="bona_fide_class: 5 is not a class index"):
        Classification(2, bona_fide_class=5)
    with pytest.raises(ConfigError, match="unknown task"):
        build_task("regression", 2, (), {})
    with pytest.raises(ValueError, match=r"class labels \[7\] are outside 0..2"):
        Classification(3).collate_targets([0, 7])


def test_loss_is_cross_entropy_and_masked_mean():
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    task = Classification(3)
    assert torch.equal(task.loss(logits, target), torch.nn.functional.cross_entropy(logits, target))
    mask = torch.tensor([True, False, True, False])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert task.loss(logits, target, mask) == pytest.approx(float(ce[mask].sum() / 4))


def test_per_class_metrics_and_confusion_matrix_hand_computed():
    # targets 0,1,2,2 predicted 0,1,2,1 (as in the first test); class names from the task
    logits = torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [0, 3, 0]])
    target = torch.tensor([0, 1, 2, 2])
    _, metric = scores_of(Classification(3, class_names=["cat", "dog", "owl"]), logits, target, chunks=2)
    details = metric.details()
    assert details["class_names"] == ["cat", "dog", "owl"]
    assert details["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # rows = target, columns = prediction
    per_class = details["per_class"]
    assert per_class["cat"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert per_class["dog"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert per_class["owl"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


def test_per_class_metrics_equal_torchmetrics_and_a_never_seen_class_scores_zero():
    from torchmetrics.functional import precision, recall

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(61, 5, generator=g)
    logits[:, 4] = -10.0  # class 4: never predicted, never a target
    target = torch.randint(0, 4, (61,), generator=g)
    _, metric = scores_of(Classification(5), logits, target, chunks=4)
    per_class = metric.details()["per_class"]
    preds = logits.argmax(1)
    for name, fn in (("precision", precision), ("recall", recall), ("f1", f1_score)):
        expected = fn(preds, target, task="multiclass", num_classes=5, average="none", zero_division=0)
        assert [per_class[str(c)][name] for c in range(5)] == pytest.approx(expected.tolist())
    assert [per_class[str(c)]["support"] for c in range(5)] == torch.bincount(target, minlength=5).tolist()
