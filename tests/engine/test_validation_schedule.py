"""Validation scheduling (engine.validation): the selection subsets each epoch, every subset when due, and one
pass over the split shared with a method's ``ctx.validate``."""

from __future__ import annotations

import json

import pytest
import torch

from mmrobust.engine.validation import epoch_subsets, evaluate_and_predict
from mmrobust.evaluation.evaluator import evaluate_subsets, predict_subsets
from mmrobust.experiment import run
from mmrobust.subsets import all_subsets
from mmrobust.tasks import Classification
from tests.conftest import batch_of, tiny_dataset, tiny_model
from tests.engine.test_trainer import config


def test_epoch_subsets_selection_first_and_every_subset_when_due() -> None:
    every = all_subsets(3)  # [1..7]
    assert epoch_subsets([7], every, 0, 5, 0) == ([7], False)
    assert epoch_subsets([7], every, 1, 5, 2) == ([7, *(s for s in every if s != 7)], True)  # epoch 2 of 5
    assert epoch_subsets([7], every, 2, 5, 2) == ([7], False)
    assert epoch_subsets([7, 3], every, 4, 5, 3)[0][:2] == [7, 3]  # the last epoch is always due
    assert epoch_subsets(every, every, 2, 5, 0) == (every, False)  # selection on every subset: nothing to add
    assert epoch_subsets([5], [5], 0, 1, 1) == ([5], True)  # restricted run: its subset is every subset


def test_one_pass_equals_metrics_pass_plus_prediction_pass() -> None:
    data = tiny_dataset("val")
    model = tiny_model(data)
    task = Classification(num_classes=data.num_classes)
    batches = [batch_of(data, 10, 0), batch_of(data, 6, 10)]
    metric_subsets, wanted = all_subsets(3), [1, 2, 4, 7]
    metrics, predictions = evaluate_and_predict(model, batches, metric_subsets, wanted, task)
    reference = evaluate_subsets(model, batches, metric_subsets, task)
    expected = predict_subsets(model, batches, wanted, compact=task.compact)
    for s in metric_subsets:
        assert metrics[s].scores() == reference[s].scores(), s
    for s in wanted:
        assert torch.allclose(predictions[s].logits, expected[s].logits, atol=1e-6), s
        assert torch.equal(predictions[s].target, expected[s].target)
        assert torch.equal(predictions[s].index, expected[s].index)


@pytest.mark.slow
def test_curves_every_n_epochs_leave_selection_and_hook_results_unchanged(tmp_path) -> None:
    joint = {"name": "diagnosed", "label": "joint"}
    narrow = {"select_subsets": ["a+b+c", "a"]}
    plain = run(config(joint, epochs=3, **narrow), tmp_path / "plain")
    curves = run(config(joint, epochs=3, **narrow, val_all_subsets_every=2), tmp_path / "curves")
    h0 = json.loads((tmp_path / "plain/history.json").read_text())
    h1 = json.loads((tmp_path / "curves/history.json").read_text())
    assert [h["val/avg_accuracy"] for h in h0] == [h["val/avg_accuracy"] for h in h1]
    assert plain["fits"] == curves["fits"]  # best epoch and score
    assert [("val_all/avg_accuracy" in h) for h in h1] == [False, True, True]  # epoch 2 (every 2) and the last
    assert not any("val_all/avg_accuracy" in h for h in h0)
    # the diagnostics hook asked for unimodal predictions: same values whichever subsets the trainer validated
    d0 = json.loads((tmp_path / "plain/diagnostics.json").read_text())
    d1 = json.loads((tmp_path / "curves/diagnostics.json").read_text())
    for r0, r1 in zip(d0, d1, strict=True):
        for key in ("val_acc/a", "val_acc/b", "val_acc/c", "val_acc/fused"):
            assert r0[key] == r1[key], key
    assert len(curves["metrics"]["test"]) == 7  # the final test still covers every subset
